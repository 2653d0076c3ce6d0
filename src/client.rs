//! The CLI's side of [`hostmux_host::BlockingClient`] (used by `send`, the
//! demo and the benchmark's load generator): parsing the frontend address
//! and turning [`HostError`]s into the CLI's messages and exit codes.

use std::time::Duration;

use anyhow::anyhow;
use hostmux_host::{BlockingClient, HostError};

use crate::cli::CliError;

/// Connects to the frontend at `addr` (its text form), says hello as
/// `name` with `token` and waits up to `timeout` for the ack.
pub(crate) fn connect(
    addr: &str,
    name: &str,
    token: &[u8],
    service_name: &str,
    timeout: Duration,
) -> anyhow::Result<BlockingClient> {
    let parsed: hostmux_wire::Addr = addr.parse().map_err(|e| {
        CliError::usage(format!(
            "frontend address {addr:?} is not valid ({e}); use tcp:HOST:PORT or unix:/PATH"
        ))
    })?;
    BlockingClient::connect(&parsed, name, token, service_name, timeout).map_err(|error| {
        match error {
            HostError::Connect { source, .. } => CliError::unreachable(format!(
                "cannot connect to the host's frontend at {addr} ({source}): is `hostmux serve` running there? pass its address with --frontend (or set HOSTMUX_FRONTEND)"
            ))
            .into(),
            HostError::InvalidAddr { .. } => CliError::usage(format!(
                "frontend address {addr}: abstract Unix sockets are not supported by this client; use a path"
            ))
            .into(),
            HostError::HelloRefused { .. } | HostError::HelloNotAcknowledged { .. } => {
                CliError::refused(format!(
                    "refused: the host at {addr} did not accept the hello of client {name:?}: the token is wrong or missing (pass the host's token with --token-file), or another client holds that name (pass another --client-name)"
                ))
                .into()
            }
            HostError::Control { message, .. } => {
                CliError::refused(format!("refused: {message}")).into()
            }
            HostError::ReceiveTimeout { waited, .. } => CliError::unreachable(format!(
                "the host at {addr} did not answer the hello within {waited:?}: is it a hostmux frontend? pass the host's --frontend address"
            ))
            .into(),
            HostError::Wire(e) => anyhow::Error::new(e).context("encoding the hello"),
            other => cli_error(other),
        }
    })
}

/// The CLI's message for a failed send or receive: a connection the host
/// closed or broke is exit code 3, anything else 1.
pub(crate) fn cli_error(error: HostError) -> anyhow::Error {
    match error {
        HostError::Send { addr, source } => CliError::unreachable(format!(
            "writing to the host at {addr} failed ({source}): it closed the connection; its log says why"
        ))
        .into(),
        HostError::Receive { addr, source } => CliError::unreachable(format!(
            "reading from the host at {addr} failed ({source}): it closed the connection; its log says why"
        ))
        .into(),
        HostError::ReceiveTimeout { addr, waited } => {
            anyhow!("no answer from the host at {addr} within {waited:?}")
        }
        HostError::MalformedFromHost { addr, source } => anyhow!(
            "the host at {addr} sent a malformed frame ({source}); use matching hostmux versions"
        ),
        HostError::Wire(e) => anyhow::Error::new(e),
        other => anyhow::Error::new(other),
    }
}

/// Queues a data frame to `dest`; the error names the destination.
pub(crate) fn queue(
    client: &mut BlockingClient,
    dest: &str,
    port: u32,
    message_id: u64,
    payload: &[u8],
) -> anyhow::Result<()> {
    client
        .queue(dest, port, message_id, payload)
        .map_err(|e| cli_error(e).context(format!("encoding a frame for {dest:?}")))
}
