//! `hostmux send NAME PAYLOAD`: one frame through the frontend, and the reply.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{CliError, SendArgs};
use crate::client::{DataClient, Reply};

/// Reads a token file: its contents without the trailing newline.
pub(crate) fn read_token(path: Option<&std::path::Path>) -> anyhow::Result<Vec<u8>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let text = std::fs::read(path).map_err(|e| {
        CliError::usage(format!(
            "cannot read the token file {} ({e}); check the path and its permissions",
            path.display()
        ))
    })?;
    let trimmed = text.trim_ascii_end().to_vec();
    if trimmed.is_empty() {
        return Err(CliError::usage(format!(
            "token file {} is empty; write the token into it (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
            path.display()
        ))
        .into());
    }
    Ok(trimmed)
}

pub(crate) fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let token = read_token(args.token_file.as_deref())?;
    let mut client = DataClient::connect(
        &args.frontend,
        &args.client_name,
        &token,
        "service",
        std::time::Duration::from_secs(5),
    )?;
    client.queue(&args.name, args.port, 1, args.payload.as_bytes())?;
    client.flush()?;
    if args.timeout.is_zero() {
        return Ok(ExitCode::SUCCESS);
    }
    client.set_timeout(Some(args.timeout))?;
    let reply = client.recv().with_context(|| {
        format!(
            "no reply from proc {:?} within {:?}; it may not answer (pass --timeout 0 for one-way sends)",
            args.name, args.timeout
        )
    })?;
    match reply {
        Some(Reply::Data { payload, .. }) => {
            println!("{}", String::from_utf8_lossy(&payload));
            Ok(ExitCode::SUCCESS)
        }
        Some(Reply::Undeliverable { reason, .. }) => Err(CliError::refused(format!(
            "the host could not deliver to proc {:?}: {reason}; check `hostmux ps` for its name and state",
            args.name
        ))
        .into()),
        None => Err(CliError::unreachable("the host closed the connection before replying").into()),
    }
}
