//! The control-plane subcommands: `spawn`, `ps`, `stop`, `kill`, `stats`.
//!
//! Each connects to the host's control socket with
//! [`hostmux_host::ControlClient`] (the host checks the peer's credentials)
//! and turns the host's answers and errors into output and exit codes.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hostmux_host::{ControlClient, HostError};
use hostmux_wire::{ControlErrorKind, EnvVar, ProcInfo, ProcState, SpawnRequest};
use serde_json::json;

use crate::cli::{
    CliError, ControlArgs, KillArgs, LinksArgs, PsArgs, SpawnArgs, StatsArgs, StopArgs,
};
use crate::format::{self, Table};

/// Runs `f` with a control client on a small single-threaded runtime:
/// through the control socket, or through a TCP frontend with the token.
fn with_client<T>(
    target: &ControlArgs,
    f: impl AsyncFnOnce(&mut ControlClient) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let token = match &target.control_tcp {
        Some(_) => {
            let token = crate::send::read_token(target.control_token_file.as_deref())?;
            Some(
                String::from_utf8(token)
                    .map_err(|_| CliError::usage("the token file must hold UTF-8 text"))?,
            )
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut client = match (&target.control_tcp, token) {
            (Some(addr), Some(token)) => {
                let host_port = addr.strip_prefix("tcp:").unwrap_or(addr);
                ControlClient::connect_tcp(host_port, &token)
                    .await
                    .map_err(|e| unreachable(Path::new(addr), e))?
            }
            _ => ControlClient::connect_unix(&target.control_socket)
                .await
                .map_err(|e| unreachable(&target.control_socket, e))?,
        };
        f(&mut client).await
    })
}

fn unreachable(socket: &Path, error: HostError) -> anyhow::Error {
    let hint = match &error {
        // Reached the host, but it refused this connection: exit 4.
        HostError::HelloRefused { .. } => {
            return CliError::refused(format!(
                "the host at {} refused the connection ({error}); check --control-token-file, or use the control socket as the host's user",
                socket.display()
            ))
            .into();
        }
        // The control socket's peer check said no (this process runs as
        // another user than the host, e.g. inside a proc spawned --user).
        HostError::Control { message, .. } => {
            return CliError::refused(format!(
                "{message} (control socket {}); run as the host's user or root",
                socket.display()
            ))
            .into();
        }
        HostError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            "the control socket is only for the host's user and root: run as one of them \
             (procs spawned --user cannot use it), or pass --control-socket"
        }
        _ => {
            "is `hostmux serve` running? pass its --control-socket (or set HOSTMUX_CONTROL_SOCKET)"
        }
    };
    CliError::unreachable(format!(
        "cannot reach the host's control plane at {} ({error}); {hint}",
        socket.display()
    ))
    .into()
}

/// Maps a failed control request to an error with an exit code and advice.
fn refused(what: &str, error: HostError) -> anyhow::Error {
    match error {
        HostError::Control { kind, message } => {
            let hint = match kind {
                ControlErrorKind::NoSuchProc => {
                    "; see `hostmux ps` for the procs there are and how they ended"
                }
                ControlErrorKind::DuplicateName => "; pick another name or stop the running one",
                // Stopped or killed by `hostmux stop`/`kill` while it started:
                // nothing wrong with the program.
                ControlErrorKind::SpawnFailed if message.contains("while starting") => "",
                ControlErrorKind::SpawnFailed => {
                    "; check the program path and that it speaks the boot protocol (docs/proc.md)"
                }
                ControlErrorKind::Unauthorized => "; use the control socket as the host's user",
                ControlErrorKind::InvalidRequest => "; check the name and arguments",
                _ => "",
            };
            CliError::refused(format!("{what}: {message}{hint}")).into()
        }
        other => anyhow::Error::new(other).context(format!("{what}: the host connection failed")),
    }
}

pub(crate) fn spawn(args: SpawnArgs) -> anyhow::Result<ExitCode> {
    let mut env = Vec::new();
    for pair in &args.env {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(CliError::usage(format!(
                "--env {pair:?} is not KEY=VALUE; write e.g. --env RUST_LOG=info"
            ))
            .into());
        };
        env.push(EnvVar {
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| CliError::usage("give the program after `--`"))?;
    // A relative path with a slash is resolved here: the host's working
    // directory is not the caller's.
    let program = if program.contains('/') && !program.starts_with('/') {
        std::fs::canonicalize(program)
            .map_err(|e| CliError::usage(format!("program {program:?} not found ({e})")))?
            .to_string_lossy()
            .into_owned()
    } else {
        program.clone()
    };
    let request = SpawnRequest {
        name: args.name.clone(),
        program,
        args: rest.to_vec(),
        env,
        inbound_ring_bytes: 0,
        outbound_ring_bytes: 0,
        ready_timeout_ms: args.ready_timeout.as_millis() as u64,
        user: args.user.clone(),
        group: args.group.clone(),
        ready: args.ready.to_string(),
        watchdog_ms: args.watchdog.as_millis() as u64,
    };
    let pid = with_client(&args.control, async |client| {
        client
            .spawn(request)
            .await
            .map_err(|e| refused(&format!("spawning proc {:?}", args.name), e))
    })?;
    println!("spawned {} (pid {pid}), ready", args.name);
    Ok(ExitCode::SUCCESS)
}

fn state_text(state: &ProcState) -> String {
    match state {
        ProcState::Starting => "starting".into(),
        ProcState::Ready => "ready".into(),
        ProcState::Terminating => "terminating".into(),
        ProcState::Exited { code } => format!("exited({code})"),
        ProcState::Signaled {
            signal,
            core_dumped,
        } => format!(
            "signaled({}{})",
            signal_name(*signal),
            if *core_dumped { ", core" } else { "" }
        ),
        ProcState::Failed { reason } => format!("failed: {reason}"),
    }
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGINT => "SIGINT".into(),
        other => format!("signal {other}"),
    }
}

fn uptime(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
    }
}

fn ring_use(info: &ProcInfo) -> String {
    let c = &info.counters;
    (c.inbound_used * 100)
        .checked_div(c.inbound_capacity)
        .map_or_else(|| "-".into(), |percent| format!("{percent}%"))
}

/// `ps` as JSON: one object per proc.
pub(crate) fn ps_json(procs: &[ProcInfo]) -> serde_json::Value {
    serde_json::Value::Array(
        procs
            .iter()
            .map(|p| {
                let c = &p.counters;
                json!({
                    "name": p.name,
                    "pid": p.pid,
                    "state": state_text(&p.state),
                    "uptime_ms": p.uptime_ms,
                    "frames_in": c.frames_in,
                    "frames_out": c.frames_out,
                    "bytes_in": c.bytes_in,
                    "bytes_out": c.bytes_out,
                    "returned": c.returned,
                    "inbound_used": c.inbound_used,
                    "inbound_capacity": c.inbound_capacity,
                    "status": p.status,
                })
            })
            .collect(),
    )
}

pub(crate) fn ps(args: PsArgs) -> anyhow::Result<ExitCode> {
    let procs = with_client(&args.control, async |client| {
        client.list().await.map_err(|e| refused("listing procs", e))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ps_json(&procs))?);
        return Ok(ExitCode::SUCCESS);
    }
    if procs.is_empty() {
        println!("no procs; start one with `hostmux spawn NAME -- PROGRAM ARGS…`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        "NAME",
        "PID",
        "STATE",
        "UPTIME",
        "FRAMES IN",
        "FRAMES OUT",
        "BYTES IN",
        "RETURNED",
        "RING",
        "STATUS",
    ]);
    for p in &procs {
        table.row(vec![
            p.name.clone(),
            p.pid.to_string(),
            state_text(&p.state),
            uptime(p.uptime_ms),
            p.counters.frames_in.to_string(),
            p.counters.frames_out.to_string(),
            format::bytes(p.counters.bytes_in),
            p.counters.returned.to_string(),
            ring_use(p),
            if p.status.is_empty() {
                "-".to_owned()
            } else {
                p.status.clone()
            },
        ]);
    }
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

/// The links as JSON: one object per configured peer, every counter.
pub(crate) fn links_json(links: &[hostmux_wire::LinkInfo]) -> serde_json::Value {
    serde_json::Value::Array(
        links
            .iter()
            .map(|l| {
                serde_json::json!({
                    "peer": l.peer,
                    "state": l.state,
                    "reason": (!l.reason.is_empty()).then_some(&l.reason),
                    "queued_bytes": l.queued_bytes,
                    "in_flight_frames": l.in_flight_frames,
                    "in_flight_bytes": l.in_flight_bytes,
                    "sent": l.sent,
                    "acked": l.acked,
                    "awaiting_answers": l.awaiting_answers,
                    "round_trip_us": (l.round_trip_us > 0).then_some(l.round_trip_us),
                    "dials": l.dials,
                    "dial_failures": l.dial_failures,
                    "link_failures": l.link_failures,
                    "answered_here": l.answered_here,
                    "late_answers_dropped": l.late_answers_dropped,
                    "received": l.received,
                })
            })
            .collect(),
    )
}

pub(crate) fn links(args: LinksArgs) -> anyhow::Result<ExitCode> {
    let links = with_client(&args.control, async |client| {
        client
            .links()
            .await
            .map_err(|e| refused("listing links", e))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&links_json(&links))?);
        return Ok(ExitCode::SUCCESS);
    }
    if links.is_empty() {
        println!(
            "no links; a host links to its peers (serve --peer ADDR) when a frame first goes to one"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        "PEER",
        "STATE",
        "QUEUED",
        "IN FLIGHT",
        "AWAITING",
        "RTT",
        "SENT",
        "RECEIVED",
        "DIALS/FAILED",
        "LINK FAILURES",
        "ANSWERED HERE",
    ]);
    for l in &links {
        let state = if l.reason.is_empty() {
            l.state.clone()
        } else {
            format!("{} ({})", l.state, l.reason)
        };
        table.row(vec![
            l.peer.clone(),
            state,
            format::bytes(l.queued_bytes),
            format!(
                "{} ({})",
                l.in_flight_frames,
                format::bytes(l.in_flight_bytes)
            ),
            l.awaiting_answers.to_string(),
            if l.round_trip_us > 0 {
                format::micros(l.round_trip_us * 1000)
            } else {
                "-".to_owned()
            },
            l.sent.to_string(),
            l.received.to_string(),
            format!("{}/{}", l.dials, l.dial_failures),
            l.link_failures.to_string(),
            l.answered_here.to_string(),
        ]);
    }
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

fn print_stopped(name: &str, state: &ProcState) -> ExitCode {
    println!("{name}: {}", state_text(state));
    ExitCode::SUCCESS
}

pub(crate) fn stop(args: StopArgs) -> anyhow::Result<ExitCode> {
    let state = with_client(&args.control, async |client| {
        client
            .terminate(&args.name, args.timeout.as_millis() as u64)
            .await
            .map_err(|e| refused(&format!("stopping proc {:?}", args.name), e))
    })?;
    Ok(print_stopped(&args.name, &state))
}

pub(crate) fn kill(args: KillArgs) -> anyhow::Result<ExitCode> {
    let state = with_client(&args.control, async |client| {
        client
            .kill(&args.name)
            .await
            .map_err(|e| refused(&format!("killing proc {:?}", args.name), e))
    })?;
    Ok(print_stopped(&args.name, &state))
}

/// Per-proc rates between two snapshots.
fn stats_table(now: &[ProcInfo], before: Option<(&[ProcInfo], Duration)>) -> String {
    let mut table = Table::new(&[
        "NAME",
        "FRAMES IN/s",
        "BYTES IN/s",
        "FRAMES OUT/s",
        "BYTES OUT/s",
        "RETURNED",
        "RING",
        "FRAMES IN",
    ]);
    for p in now {
        let c = &p.counters;
        // Without an earlier snapshot, the average since the proc started.
        let (prev, secs) =
            match before.and_then(|(b, d)| Some((b.iter().find(|q| q.name == p.name)?, d))) {
                Some((q, d)) => (q.counters, d.as_secs_f64()),
                None => (Default::default(), p.uptime_ms as f64 / 1000.0),
            };
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs.max(1e-3);
        table.row(vec![
            p.name.clone(),
            format::si(rate(c.frames_in, prev.frames_in), ""),
            format::si(rate(c.bytes_in, prev.bytes_in), "B"),
            format::si(rate(c.frames_out, prev.frames_out), ""),
            format::si(rate(c.bytes_out, prev.bytes_out), "B"),
            c.returned.to_string(),
            ring_use(p),
            c.frames_in.to_string(),
        ]);
    }
    table.render()
}

pub(crate) fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.clone();
    with_client(&args.control, async |client| {
        let what = "reading stats";
        let mut before: Option<(Vec<ProcInfo>, Instant)> = None;
        loop {
            let now = client
                .stats(name.as_deref())
                .await
                .map_err(|e| refused(what, e))?;
            let at = Instant::now();
            let text = stats_table(&now, before.as_ref().map(|(b, t)| (b.as_slice(), at - *t)));
            if !args.watch {
                print!("{text}");
                return Ok(ExitCode::SUCCESS);
            }
            // Redraw in place: home the cursor and clear the screen.
            let mut out = std::io::stdout().lock();
            write!(
                out,
                "\x1b[H\x1b[2Jhostmux stats (every {} ms, Ctrl-C to quit)\n\n{text}",
                args.interval.as_millis()
            )?;
            out.flush()?;
            before = Some((now, at));
            tokio::time::sleep(args.interval).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostmux_wire::ProcCounters;

    fn info(name: &str, frames_in: u64) -> ProcInfo {
        ProcInfo {
            name: name.into(),
            pid: 42,
            state: ProcState::Signaled {
                signal: libc::SIGKILL,
                core_dumped: false,
            },
            uptime_ms: 61_000,
            counters: ProcCounters {
                frames_in,
                inbound_used: 1 << 19,
                inbound_capacity: 1 << 20,
                ..ProcCounters::default()
            },
            status: "draining 3 queues".into(),
        }
    }

    #[test]
    fn ps_json_names_the_state_and_counters() {
        let value = ps_json(&[info("echo", 7)]);
        assert_eq!(value[0]["name"], "echo");
        assert_eq!(value[0]["state"], "signaled(SIGKILL)");
        assert_eq!(value[0]["frames_in"], 7);
        assert_eq!(value[0]["status"], "draining 3 queues");
    }

    #[test]
    fn stats_rates_come_from_the_difference_between_snapshots() {
        let before = [info("echo", 1_000)];
        let now = [info("echo", 3_000)];
        let text = stats_table(&now, Some((&before, Duration::from_secs(2))));
        assert!(text.contains("1.00 k"), "{text}");
        assert!(text.contains("50%"), "{text}");
        assert_eq!(uptime(61_000), "1m01s");
    }
}
