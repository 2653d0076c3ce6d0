//! `hostmux send NAME PAYLOAD`: one frame through the frontend, and the reply
//! (or why there is none: an `Undeliverable` notice's reason in words, exit
//! 4; no reply within `--timeout`, exit 1; the connection lost, exit 3).

use std::process::ExitCode;

use hostmux_host::HostError;
use hostmux_wire::{FrameKind, Undeliverable, UndeliverableReason};

use crate::cli::{CliError, SendArgs};
use crate::client::cli_error;

/// What came back for the frame sent.
enum Reply {
    /// A data frame's payload.
    Data { payload: Vec<u8> },
    /// The host could not deliver the frame, for this reason.
    Undeliverable(UndeliverableReason),
    /// A notice whose payload did not decode.
    UndecodableNotice(String),
}

/// What an undeliverable frame to `proc` means and what to do, in one line.
fn undeliverable_message(proc: &str, reason: UndeliverableReason, payload_len: usize) -> String {
    let (what, to_do) = match reason {
        UndeliverableReason::NoSuchProc => (
            "no proc of that name on the host".to_owned(),
            "`hostmux ps` lists the procs there are",
        ),
        UndeliverableReason::NotReady => (
            "the proc does not take frames yet, or at all: it is still starting, or it was \
             spawned with `--ready spawn|notify|tcp:PORT` and has no rings"
                .to_owned(),
            "send again once `hostmux ps` shows it ready; only `--ready boot` procs (the \
             default) receive frames",
        ),
        UndeliverableReason::ProcExited => (
            "the proc exited before the frame reached it".to_owned(),
            "`hostmux ps` shows how it ended",
        ),
        UndeliverableReason::Overloaded => (
            "the proc's inbound ring stayed full for longer than the host waits".to_owned(),
            "the proc is too slow for its traffic: send again later, or give it larger rings \
             (serve --inbound-ring-bytes)",
        ),
        UndeliverableReason::Oversized => (
            format!("the frame ({payload_len} bytes of payload) is larger than the proc's inbound ring takes"),
            "send less, or give the host larger rings (serve --inbound-ring-bytes)",
        ),
        UndeliverableReason::Malformed => (
            "the host found the frame's header malformed".to_owned(),
            "this client and the host disagree on the wire format: use matching hostmux versions",
        ),
        UndeliverableReason::HopLimit => (
            "the frame crossed too many hosts (a routing loop between peers?)".to_owned(),
            "check the hosts' --peer lists, or raise serve --max-hops",
        ),
        UndeliverableReason::NotAPeer => (
            "the destination host is not a peer of this host".to_owned(),
            "add it to this host's --peer list",
        ),
        UndeliverableReason::HostUnreachable => (
            "the destination host could not be reached".to_owned(),
            "check that it runs and that this host can connect to it (`hostmux links`)",
        ),
        UndeliverableReason::LinkFailed => (
            "the link to the destination host failed before an answer came (the frame may or may not have arrived)".to_owned(),
            "`hostmux links` shows the link's state; send again if the payload is safe to repeat",
        ),
        UndeliverableReason::PeerRefused => (
            "the destination host refused this host's link".to_owned(),
            "check that both hosts list each other as peers with the same --peer-token-file (and TLS settings)",
        ),
    };
    format!("not delivered to proc {proc:?} ({reason}): {what}; {to_do}")
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
    client.flush().map_err(|e| lost_connection(&args, e))?;
    if args.timeout.is_zero() {
        return Ok(ExitCode::SUCCESS);
    }
    client
        .set_read_timeout(Some(args.timeout))
        .map_err(cli_error)?;
    let reply = client
        .recv_with(|frame| match frame.kind() {
            FrameKind::Undeliverable => match Undeliverable::decode(frame.payload()) {
                Ok(notice) => Reply::Undeliverable(notice.reason),
                Err(e) => Reply::UndecodableNotice(e.to_string()),
            },
            _ => Reply::Data {
                payload: frame.payload().to_vec(),
            },
        })
        .map_err(|e| match e {
            HostError::ReceiveTimeout { waited, .. } => {
                anyhow::Error::new(CliError::failure(format!(
                "no reply from proc {:?} within {}: it may not answer this payload, or be busy; \
                 pass a longer --timeout, or --timeout 0 for one-way sends",
                args.name,
                humane(waited)
            )))
            }
            other => lost_connection(&args, other),
        })?;
    match reply {
        Some(Reply::Data { payload }) => {
            println!("{}", String::from_utf8_lossy(&payload));
            Ok(ExitCode::SUCCESS)
        }
        Some(Reply::Undeliverable(reason)) => Err(CliError::refused(undeliverable_message(
            &args.name,
            reason,
            args.payload.len(),
        ))
        .into()),
        Some(Reply::UndecodableNotice(why)) => Err(anyhow::anyhow!(
            "the host answered proc {:?}'s frame with a notice this client cannot read ({why}); \
             use matching hostmux versions",
            args.name
        )),
        None => Err(lost_connection(
            &args,
            HostError::ClosedBeforeAnswer {
                addr: args.frontend.clone(),
            },
        )),
    }
}

/// The connection to the frontend ended (or failed) before the answer:
/// exit 3, saying so once.
fn lost_connection(args: &SendArgs, error: HostError) -> anyhow::Error {
    let why = match &error {
        HostError::ClosedBeforeAnswer { .. } => "the host closed the connection".to_owned(),
        HostError::Send { source, .. } | HostError::Receive { source, .. } => source.to_string(),
        _ => return cli_error(error),
    };
    CliError::unreachable(format!(
        "no answer for proc {:?} from the host at {}: {why} before it answered (it stopped, or \
         the frame broke a limit: the host's log says which); check that `hostmux serve` runs \
         there and send again",
        args.name, args.frontend
    ))
    .into()
}

/// A duration as people write it: `5s`, `250ms`, `1.5s`.
fn humane(duration: std::time::Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.as_secs() == 0 {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}
