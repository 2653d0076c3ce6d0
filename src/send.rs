//! `hostmux send NAME PAYLOAD`: one frame through the frontend, and the reply.

use std::process::ExitCode;

use anyhow::Context as _;

use hostmux_wire::{FrameKind, Undeliverable};

use crate::cli::{CliError, SendArgs};
use crate::client::cli_error;

/// What came back for the frame sent.
enum Reply {
    /// A data frame's payload.
    Data { payload: Vec<u8> },
    /// The host could not deliver the frame, for this reason.
    Undeliverable { reason: String },
}

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
    let client_name = args
        .client_name
        .clone()
        .unwrap_or_else(|| format!("hostmux-send-{}", std::process::id()));
    let mut client = crate::client::connect(
        &args.frontend,
        &client_name,
        &token,
        "service",
        std::time::Duration::from_secs(5),
    )?;
    crate::client::queue(
        &mut client,
        &args.name,
        args.port,
        1,
        args.payload.as_bytes(),
    )?;
    client.flush().map_err(cli_error)?;
    if args.timeout.is_zero() {
        return Ok(ExitCode::SUCCESS);
    }
    client
        .set_read_timeout(Some(args.timeout))
        .map_err(cli_error)?;
    let reply = client
        .recv_with(|frame| match frame.kind() {
            FrameKind::Undeliverable => Reply::Undeliverable {
                reason: Undeliverable::decode(frame.payload())
                    .map(|u| format!("{:?}", u.reason))
                    .unwrap_or_else(|e| format!("undecodable notice: {e}")),
            },
            _ => Reply::Data {
                payload: frame.payload().to_vec(),
            },
        })
        .map_err(cli_error)
        .with_context(|| {
            format!(
                "no reply from proc {:?} within {:?}; it may not answer (pass --timeout 0 for one-way sends)",
                args.name, args.timeout
            )
        })?;
    match reply {
        Some(Reply::Data { payload }) => {
            println!("{}", String::from_utf8_lossy(&payload));
            Ok(ExitCode::SUCCESS)
        }
        Some(Reply::Undeliverable { reason }) => Err(CliError::refused(format!(
            "the host could not deliver to proc {:?}: {reason}; check `hostmux ps` for its name and state",
            args.name
        ))
        .into()),
        None => Err(CliError::unreachable("the host closed the connection before replying").into()),
    }
}
