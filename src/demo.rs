//! `hostmux demo`: the README's main command.
//!
//! Starts a host on a loopback port the kernel picks, spawns four echo procs
//! and one proc that ignores SIGTERM (this binary, re-executed in its hidden
//! proc modes), drives frames through the frontend with a progress bar,
//! prints per-proc counters and round-trip percentiles, then terminates
//! every proc and shows how each ended: the stubborn one is SIGKILLed after
//! the grace. It leaves no process and no file behind: the procs are
//! terminated and reaped, the frontend is a TCP port, and the lifecycle
//! manager removes its cgroups when it is dropped.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use hostmux_host::{Host, HostConfig, HostStats, TerminalStatus};
use hostmux_lifecycle::{ProcHandle as _, ProcManager as _, ProcessProcManager};
use hostmux_wire::{Addr, FrameKind, ProcName, Undeliverable};

use crate::cli::DemoArgs;
use crate::client::cli_error;
use crate::format::{self, Progress, Table};
use crate::procs::ProcMode;

const ECHO_PROCS: [&str; 4] = ["echo-1", "echo-2", "echo-3", "echo-4"];
const STUBBORN: &str = "stubborn";
/// Payload of every demo frame.
const PAYLOAD_LEN: usize = 100;
/// Frames in flight at most while driving.
const WINDOW: u64 = 512;
/// Sequential round trips measured on an otherwise idle host.
const IDLE_PINGS: u64 = 2_000;

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let config = HostConfig {
        frontend: args.frontend_kind.into(),
        ..HostConfig::default()
    };
    let (host, serving) = Host::serve_processes(
        ProcessProcManager::builder(),
        Addr::tcp("127.0.0.1", 0)?,
        config,
    )
    .await
    .context("starting the demo host on loopback")?;
    println!(
        "host serving on {} with the {} frontend",
        host.addr(),
        serving.frontend()
    );

    for (name, mode) in ECHO_PROCS
        .iter()
        .map(|n| (*n, ProcMode::Echo))
        .chain([(STUBBORN, ProcMode::IgnoreTerm)])
    {
        let spec = crate::procs::this_binary(mode)?;
        let id = host
            .spawn(name, spec)
            .await
            .with_context(|| format!("spawning demo proc {name}"))?;
        let pid = host
            .manager()
            .get(id.name())
            .and_then(|h| h.pid())
            .unwrap_or(0);
        println!("spawned {id} (pid {pid}, {})", mode.as_arg());
    }

    let addr = host.addr().to_string();
    let service = host.service_name().to_string();
    let frames = args.frames;
    let driven = tokio::task::spawn_blocking(move || drive(&addr, &service, frames))
        .await
        .context("the load thread panicked")??;

    let stats = host.stats().await.context("reading the host's counters")?;
    print_counters(&stats, driven.replies, driven.elapsed);
    print_latencies(&driven);

    // Terminate everything; watch each proc to show how it ended and when.
    let grace = args.grace;
    println!(
        "\nterminating all procs (grace {} ms before SIGKILL)…",
        grace.as_millis()
    );
    let mut watchers = Vec::new();
    let terminate_started = Instant::now();
    for name in ECHO_PROCS.iter().chain([&STUBBORN]) {
        let handle = host
            .manager()
            .get(&ProcName::new(name)?)
            .with_context(|| format!("proc {name} vanished before terminate"))?;
        let name = (*name).to_owned();
        watchers.push(tokio::spawn(async move {
            let status = handle.wait().await;
            (name, status, terminate_started.elapsed())
        }));
    }
    let summary = host.terminate_children(grace, 16).await;
    let mut table = Table::new(&["proc", "ended", "after", "how"]);
    let mut escalated = 0;
    for watcher in watchers {
        let (name, status, after) = watcher.await.context("a watcher panicked")?;
        let status = status.with_context(|| format!("waiting for proc {name}"))?;
        let how = match &status {
            TerminalStatus::Exited { code: 0, .. } => {
                "stopped politely (agent stop + SIGTERM)".to_owned()
            }
            TerminalStatus::Signaled {
                signal: libc::SIGKILL,
                ..
            } => {
                escalated += 1;
                "ignored SIGTERM → SIGKILL after the grace".to_owned()
            }
            other => format!("unexpected: {other}"),
        };
        table.row(vec![
            name,
            status.to_string(),
            format!("{} ms", after.as_millis()),
            how,
        ]);
    }
    print!("{}", table.render());
    println!("terminate summary: {summary}");
    serving.shutdown();
    drop(host);

    if driven.replies != frames || summary.failed != 0 || escalated != 1 {
        bail!(
            "demo check failed: {} of {frames} replies, {} procs failed to stop, {escalated} escalations (expected 1)",
            driven.replies,
            summary.failed
        );
    }
    println!(
        "demo finished in {:.1} s; every proc reaped, nothing left behind",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// What the load thread measured.
struct Driven {
    replies: u64,
    elapsed: Duration,
    loaded: Histogram<u64>,
    idle: Histogram<u64>,
}

/// Pipelines `frames` frames over the echo procs (at most [`WINDOW`] in
/// flight), timing every round trip, then measures [`IDLE_PINGS`]
/// sequential round trips.
fn drive(addr: &str, service: &str, frames: u64) -> anyhow::Result<Driven> {
    let mut client =
        crate::client::connect(addr, "demo-client", b"", service, Duration::from_secs(5))?;
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(cli_error)?;
    let payload = [0x5Au8; PAYLOAD_LEN];
    let mut loaded = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut idle = loaded.clone();
    // Send time of each message id in flight, indexed by id % WINDOW.
    let mut sent_at = vec![Instant::now(); WINDOW as usize];
    let mut progress = Progress::new(frames);
    let (mut sent, mut replies) = (0u64, 0u64);
    while replies < frames {
        while sent < frames && sent - replies < WINDOW {
            let dest = ECHO_PROCS[(sent % ECHO_PROCS.len() as u64) as usize];
            crate::client::queue(&mut client, dest, 0, sent, &payload)?;
            sent_at[(sent % WINDOW) as usize] = Instant::now();
            sent += 1;
            if client.queued() >= 32 << 10 {
                client.flush().map_err(cli_error)?;
            }
        }
        client.flush().map_err(cli_error)?;
        // Read until half the window is free again (or everything is back).
        let target = (sent.saturating_sub(WINDOW / 2))
            .max(replies + 1)
            .min(frames);
        while replies < target {
            // Read in place: the hot loop copies and allocates nothing per reply.
            let answer = client
                .recv_with(|frame| match frame.kind() {
                    FrameKind::Data => Ok(frame.message_id()),
                    // Only the failure path allocates (the reason text).
                    _ => Err(Undeliverable::decode(frame.payload())
                        .map(|u| format!("{:?}", u.reason))
                        .unwrap_or_else(|e| format!("unexpected frame: {e}"))),
                })
                .map_err(cli_error)?;
            match answer {
                Some(Ok(message_id)) => {
                    let rtt = sent_at[(message_id % WINDOW) as usize].elapsed();
                    loaded.saturating_record(rtt.as_nanos() as u64);
                    replies += 1;
                }
                Some(Err(reason)) => bail!("a demo frame came back undeliverable: {reason}"),
                None => bail!("the host closed the demo connection after {replies} replies"),
            }
        }
        progress.update(replies);
    }
    let elapsed = progress.finish();
    for i in 0..IDLE_PINGS {
        let at = Instant::now();
        let dest = ECHO_PROCS[(i % 4) as usize];
        crate::client::queue(&mut client, dest, 0, frames + i, &payload)?;
        client.flush().map_err(cli_error)?;
        match client.recv().map_err(cli_error)? {
            Some(frame) if frame.kind != FrameKind::Undeliverable => {
                idle.saturating_record(at.elapsed().as_nanos() as u64)
            }
            other => bail!("idle round trip {i}: unexpected answer {other:?}"),
        }
    }
    Ok(Driven {
        replies,
        elapsed,
        loaded,
        idle,
    })
}

fn print_counters(stats: &HostStats, replies: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut table = Table::new(&[
        "proc",
        "frames in",
        "bytes in",
        "frames out",
        "bytes out",
        "returned",
        "in rate",
        "in bandwidth",
    ]);
    for proc in &stats.procs {
        table.row(vec![
            proc.name.clone(),
            proc.frames_in.to_string(),
            format::bytes(proc.bytes_in),
            proc.frames_out.to_string(),
            format::bytes(proc.bytes_out),
            proc.returned_for.total().to_string(),
            format::si(proc.frames_in as f64 / secs, "frames/s"),
            format::si(proc.bytes_in as f64 / secs, "B/s"),
        ]);
    }
    println!(
        "\n{replies} frames of {PAYLOAD_LEN} B round-tripped in {secs:.2} s ({}); counters include {IDLE_PINGS} idle pings:",
        format::si(replies as f64 / secs, "frames/s")
    );
    print!("{}", table.render());
}

fn print_latencies(driven: &Driven) {
    let mut table = Table::new(&["round trip", "p50", "p99", "p99.9", "max", "samples"]);
    for (label, h) in [
        (format!("pipelined ({WINDOW} in flight)"), &driven.loaded),
        ("one at a time".to_owned(), &driven.idle),
    ] {
        table.row(vec![
            label,
            format::micros(h.value_at_quantile(0.5)),
            format::micros(h.value_at_quantile(0.99)),
            format::micros(h.value_at_quantile(0.999)),
            format::micros(h.max()),
            h.len().to_string(),
        ]);
    }
    println!();
    print!("{}", table.render());
}
