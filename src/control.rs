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
use hostmux_wire::{
    ControlErrorKind, EnvVar, ProcInfo, ProcState, RestartRequest, RestartWhen, SpawnRequest,
    UndeliverableReason,
};
use serde_json::json;

use crate::cli::{
    CliError, ControlArgs, KillArgs, LinksArgs, PsArgs, Restart, SpawnArgs, StatsArgs, StopArgs,
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
            Some(String::from_utf8(token).map_err(|_| {
                CliError::usage(format!(
                    "the token file {} does not hold UTF-8 text; pass the file the host was started with (serve --token-file)",
                    shown(target.control_token_file.as_deref())
                ))
            })?)
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
                if host_port.starts_with("unix:") {
                    return Err(CliError::usage(format!(
                        "--control-tcp {addr:?} is not a TCP address; give the host's TCP frontend (tcp:HOST:PORT), or its control socket with --control-socket"
                    ))
                    .into());
                }
                ControlClient::connect_tcp(host_port, &token)
                    .await
                    .map_err(|e| tcp_connect_error(addr, target, e))?
            }
            _ => ControlClient::connect_unix(&target.control_socket)
                .await
                .map_err(|e| socket_connect_error(&target.control_socket, e))?,
        };
        f(&mut client).await
    })
}

fn shown(path: Option<&Path>) -> String {
    path.map_or_else(|| "-".to_owned(), |p| p.display().to_string())
}

/// The host's reason in a refusal of the hello (the client prefixes it with
/// where the host is).
fn host_reason(message: &str) -> &str {
    message
        .split_once(" refused the connection: ")
        .map_or(message, |(_, reason)| reason)
}

/// What could not be reached through the control socket at `socket`, and
/// what to do.
fn socket_connect_error(socket: &Path, error: HostError) -> anyhow::Error {
    use std::io::ErrorKind;
    let socket = socket.display();
    match error {
        // The host's peer check refused this uid and said so.
        HostError::Control { message, .. } => CliError::refused(format!(
            "refused: {}; run the command as the host's user or root (procs spawned --user \
             cannot use the control socket), or reach the control plane over TCP with the \
             host's token (--control-tcp ADDR --control-token-file FILE)",
            host_reason(&message)
        ))
        .into(),
        HostError::HelloRefused { .. } => CliError::refused(format!(
            "refused: the host at {socket} closed the control connection without an answer; \
             its log (`peer_uid`) says why"
        ))
        .into(),
        HostError::Connect { source, .. } => {
            let what = match source.kind() {
                ErrorKind::NotFound => format!(
                    "no control socket at {socket}: is `hostmux serve` running? start it, or \
                     pass its --control-socket (or set HOSTMUX_CONTROL_SOCKET)"
                ),
                ErrorKind::ConnectionRefused => format!(
                    "nothing listens on the control socket {socket} (a host that stopped left \
                     it?): start `hostmux serve`, or pass its --control-socket (or set \
                     HOSTMUX_CONTROL_SOCKET)"
                ),
                ErrorKind::PermissionDenied => format!(
                    "refused: uid {uid} cannot connect to the control socket {socket} \
                     ({source}): it is only for the host's user and root; run the command as \
                     one of them (procs spawned --user cannot use it), or reach the control \
                     plane over TCP with the host's token (--control-tcp ADDR \
                     --control-token-file FILE)",
                    uid = rustix::process::getuid().as_raw()
                ),
                _ => format!(
                    "cannot connect to the control socket {socket} ({source}); is `hostmux \
                     serve` running? pass its --control-socket (or set HOSTMUX_CONTROL_SOCKET)"
                ),
            };
            CliError::unreachable(what).into()
        }
        other => CliError::unreachable(format!(
            "cannot reach the host's control plane at {socket} ({other}); is `hostmux serve` \
             running? pass its --control-socket (or set HOSTMUX_CONTROL_SOCKET)"
        ))
        .into(),
    }
}

/// What could not be reached through the TCP frontend at `addr`, and what
/// to do.
fn tcp_connect_error(addr: &str, target: &ControlArgs, error: HostError) -> anyhow::Error {
    match error {
        HostError::HelloRefused { .. } | HostError::HelloNotAcknowledged { .. } => {
            CliError::refused(format!(
                "refused: the host at {addr} did not accept the token in {}: pass the file the \
                 host was started with (serve --token-file); a host started without one takes \
                 control requests only on its control socket",
                shown(target.control_token_file.as_deref())
            ))
            .into()
        }
        HostError::Control { message, .. } => {
            CliError::refused(format!("refused: {}", host_reason(&message))).into()
        }
        HostError::Connect { source, .. } => CliError::unreachable(format!(
            "cannot connect to {addr} ({source}): is `hostmux serve` running with that \
             --frontend? pass its frontend address to --control-tcp"
        ))
        .into(),
        other => CliError::unreachable(format!(
            "cannot reach the host's control plane at {addr} ({other}); is `hostmux serve` \
             running with that --frontend? pass its frontend address to --control-tcp"
        ))
        .into(),
    }
}

/// Maps a failed control request to an error with an exit code and advice.
fn refused(what: &str, error: HostError) -> anyhow::Error {
    match error {
        HostError::Control { kind, message } => {
            let hint = match kind {
                ControlErrorKind::NoSuchProc if message.contains("already ended") => {
                    "; there is nothing to stop: `hostmux ps` shows how it ended"
                }
                ControlErrorKind::NoSuchProc => "; `hostmux ps` lists the procs there are",
                ControlErrorKind::DuplicateName => {
                    "; pick another name, or stop the running one first (`hostmux stop NAME`)"
                }
                // Stopped or killed by `hostmux stop`/`kill` while it started:
                // nothing wrong with the program.
                ControlErrorKind::SpawnFailed if message.contains("while starting") => "",
                ControlErrorKind::SpawnFailed if message.contains("failed to spawn") => {
                    "; check the program path and that this host's user may run it"
                }
                ControlErrorKind::SpawnFailed => {
                    "; check that the program reports ready the way the host waits for \
                     (docs/proc.md) and within --ready-timeout"
                }
                ControlErrorKind::Unauthorized => {
                    "; only the host's user and root (on the control socket) or a client with \
                     the host's token may send control requests"
                }
                // The host's message says what to change.
                ControlErrorKind::InvalidRequest if message.contains("reserved") => "",
                ControlErrorKind::InvalidRequest => "; check the name and arguments",
                ControlErrorKind::Internal => {
                    "; the host's log says more (run it with HOSTMUX_LOG=debug)"
                }
            };
            CliError::refused(format!("{what}: {message}{hint}")).into()
        }
        HostError::ClosedBeforeAnswer { addr } => CliError::unreachable(format!(
            "{what}: the host at {addr} closed the connection before answering (it stopped or \
             crashed?); `hostmux ps` shows whether the request took effect once it runs again"
        ))
        .into(),
        HostError::Receive { addr, source } | HostError::Send { addr, source } => {
            CliError::unreachable(format!(
                "{what}: the connection to the host at {addr} failed ({source}); it stopped or \
                 crashed? `hostmux ps` shows whether the request took effect once it runs again"
            ))
            .into()
        }
        other => anyhow::Error::new(other).context(what.to_owned()),
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
            .map_err(|e| {
                CliError::usage(format!(
                    "program {program:?} not found ({e}); a relative path is taken from this directory: give one that exists, or an absolute path"
                ))
            })?
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
        restart: RestartRequest {
            when: match args.restart {
                Restart::No => RestartWhen::No,
                Restart::OnFailure => RestartWhen::OnFailure,
                Restart::Always => RestartWhen::Always,
            },
            delay_ms: args.restart_delay.as_millis() as u64,
            delay_max_ms: args.restart_delay_max.max(args.restart_delay).as_millis() as u64,
            limit_burst: args.restart_limit.burst,
            limit_interval_ms: args.restart_limit.interval.as_millis() as u64,
        },
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
        ProcState::BackingOff => "backing-off".into(),
    }
}

/// How an instance ended, short: `exit 3`, `signal 9`, `failed`.
fn exit_text(state: &ProcState) -> String {
    match state {
        ProcState::Exited { code } => format!("exit {code}"),
        ProcState::Signaled {
            signal,
            core_dumped,
        } => format!(
            "signal {signal}{}",
            if *core_dumped { " (core)" } else { "" }
        ),
        ProcState::Failed { .. } => "failed".into(),
        other => state_text(other),
    }
}

pub(crate) fn signal_name(signal: i32) -> String {
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

/// Per-reason counts as a JSON object keyed by reason name (every reason,
/// zeros included, so the keys never change).
fn by_reason(counts: &[u64; hostmux_wire::REASON_COUNT]) -> serde_json::Value {
    UndeliverableReason::ALL
        .iter()
        .zip(counts)
        .map(|(reason, n)| (format!("{reason:?}"), json!(n)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// `ps --json` and `stats --json`: one object per proc with every counter
/// (`docs/operations.md` says what each means).
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
                    "accepted": c.frames_in,
                    "delivered": c.delivered,
                    "returned": c.returned,
                    "returned_by_reason": by_reason(&c.returned_by_reason),
                    "frames_in": c.frames_in,
                    "frames_out": c.frames_out,
                    "bytes_in": c.bytes_in,
                    "bytes_out": c.bytes_out,
                    "sent_returned": c.sent_returned_by_reason.iter().sum::<u64>(),
                    "sent_returned_by_reason": by_reason(&c.sent_returned_by_reason),
                    "sent_dropped": c.sent_dropped,
                    "inbound_used": c.inbound_used,
                    "inbound_high_water": c.inbound_high_water,
                    "inbound_capacity": c.inbound_capacity,
                    "zero_copy_frames": c.zero_copy_frames,
                    "zero_copy_bytes": c.zero_copy_bytes,
                    "zero_copy_moved_back": c.zero_copy_moved_back,
                    "restarts": p.restarts,
                    "last_exit": p.last_exit.as_ref().map(exit_text),
                    "next_restart_ms": p.next_restart_ms,
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
        "DELIVERED",
        "BYTES IN",
        "RETURNED",
        "RING",
        "RESTARTS",
        "LAST EXIT",
        "STATUS",
    ]);
    for p in &procs {
        let state = match p.next_restart_ms {
            Some(ms) => format!("{} (in {})", state_text(&p.state), format::millis(ms)),
            None => state_text(&p.state),
        };
        table.row(vec![
            p.name.clone(),
            p.pid.to_string(),
            state,
            uptime(p.uptime_ms),
            p.counters.frames_in.to_string(),
            p.counters.frames_out.to_string(),
            p.counters.delivered.to_string(),
            format::bytes(p.counters.bytes_in),
            p.counters.returned.to_string(),
            ring_use(p),
            p.restarts.to_string(),
            p.last_exit
                .as_ref()
                .map_or_else(|| "-".to_owned(), exit_text),
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
        "DELIVERED",
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
            c.delivered.to_string(),
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
            if args.json {
                // One document; with --watch one per line (JSON lines).
                let value = ps_json(&now);
                let text = if args.watch {
                    serde_json::to_string(&value)?
                } else {
                    serde_json::to_string_pretty(&value)?
                };
                let mut out = std::io::stdout().lock();
                writeln!(out, "{text}")?;
                out.flush()?;
                if !args.watch {
                    return Ok(ExitCode::SUCCESS);
                }
                drop(out);
                tokio::time::sleep(args.interval).await;
                continue;
            }
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
            restarts: 0,
            last_exit: None,
            next_restart_ms: None,
            status: "draining 3 queues".into(),
        }
    }

    #[test]
    fn ps_json_names_the_state_and_counters() {
        let mut proc = info("echo", 7);
        proc.counters.delivered = 6;
        proc.counters.returned = 2;
        proc.counters.returned_by_reason[UndeliverableReason::Overloaded as usize] = 2;
        proc.counters.sent_returned_by_reason[UndeliverableReason::NoSuchProc as usize] = 1;
        proc.counters.zero_copy_frames = 3;
        proc.counters.zero_copy_bytes = 3 << 20;
        proc.counters.zero_copy_moved_back = 1;
        let value = ps_json(&[proc]);
        assert_eq!(value[0]["name"], "echo");
        assert_eq!(value[0]["state"], "signaled(SIGKILL)");
        assert_eq!(value[0]["frames_in"], 7);
        assert_eq!(value[0]["accepted"], 7);
        assert_eq!(value[0]["delivered"], 6);
        assert_eq!(value[0]["returned"], 2);
        assert_eq!(value[0]["returned_by_reason"]["Overloaded"], 2);
        assert_eq!(value[0]["returned_by_reason"]["NoSuchProc"], 0);
        assert_eq!(
            value[0]["returned_by_reason"].as_object().unwrap().len(),
            UndeliverableReason::ALL.len()
        );
        assert_eq!(value[0]["sent_returned"], 1);
        assert_eq!(value[0]["sent_returned_by_reason"]["NoSuchProc"], 1);
        assert_eq!(value[0]["zero_copy_frames"], 3);
        assert_eq!(value[0]["zero_copy_bytes"], 3 << 20);
        assert_eq!(value[0]["zero_copy_moved_back"], 1);
        assert_eq!(value[0]["restarts"], 0);
        assert!(value[0]["last_exit"].is_null());
        assert_eq!(value[0]["status"], "draining 3 queues");
    }

    #[test]
    fn ps_json_says_how_a_restarted_proc_last_ended_and_when_it_restarts() {
        let mut backing_off = info("flaky", 0);
        backing_off.state = ProcState::BackingOff;
        backing_off.restarts = 2;
        backing_off.last_exit = Some(ProcState::Exited { code: 3 });
        backing_off.next_restart_ms = Some(400);
        let value = ps_json(&[backing_off]);
        assert_eq!(value[0]["state"], "backing-off");
        assert_eq!(value[0]["restarts"], 2);
        assert_eq!(value[0]["last_exit"], "exit 3");
        assert_eq!(value[0]["next_restart_ms"], 400);
        let signaled = ProcState::Signaled {
            signal: 9,
            core_dumped: false,
        };
        assert_eq!(exit_text(&signaled), "signal 9");
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
