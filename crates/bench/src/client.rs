//! The load generator's side of [`hostmux_host::BlockingClient`]:
//! connecting to a frontend by its text address and naming what failed.

use std::time::Duration;

use anyhow::{anyhow, Context as _};
use hostmux_host::{BlockingClient, HostError};

/// Connects to the frontend at `addr` (its text form), says hello as
/// `name` with `token` and waits up to `timeout` for the ack.
pub(crate) fn connect(
    addr: &str,
    name: &str,
    token: &[u8],
    service_name: &str,
    timeout: Duration,
) -> anyhow::Result<BlockingClient> {
    let parsed: hostmux_wire::Addr = addr
        .parse()
        .with_context(|| format!("frontend address {addr:?} is not valid"))?;
    BlockingClient::connect(&parsed, name, token, service_name, timeout).map_err(|error| {
        client_error(error).context(format!("connecting to the frontend at {addr}"))
    })
}

/// Names a failed send or receive of the load generator.
pub(crate) fn client_error(error: HostError) -> anyhow::Error {
    match error {
        HostError::Send { source, .. } => anyhow::Error::new(source)
            .context("writing to the frontend (the host closed the connection?)"),
        HostError::Receive { source, .. } => {
            anyhow::Error::new(source).context("reading from the frontend")
        }
        HostError::ReceiveTimeout { .. } => anyhow!("timed out waiting for the host's answer"),
        HostError::MalformedFromHost { source, .. } => {
            anyhow::Error::new(source).context("the host sent a malformed frame")
        }
        other => anyhow::Error::new(other),
    }
}
