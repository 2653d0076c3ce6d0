//! The worker process of one measurement: sets up the receiving side (a
//! discard server, a hostmux host with a sink or echo proc, two `hostmux
//! serve` peers with the proc on one of them, or the conventional host and
//! its child), runs the load generator as another process, and prints the
//! [`Measurement`] as JSON.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use hostmux_host::{FrontendKind, Host, HostConfig};
use hostmux_lifecycle::{ProcHandle as _, ProcManager as _, ProcessProcManager};
use hostmux_wire::ProcName;

use super::hosts::{HostPair, Side};
use super::load::{dest_for, hostmux_frame};
use super::{
    bench_ring_bytes, conventional, cpu_ticks, LoadResult, Measurement, Mode, RunSpec, System,
    NS_PER_TICK,
};
use crate::procs::ProcMode;

pub(crate) fn serve(spec: RunSpec, hostmux: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let measurement = runtime.block_on(measure(spec, hostmux))?;
    println!("{}", serde_json::to_string(&measurement)?);
    Ok(ExitCode::SUCCESS)
}

async fn measure(spec: RunSpec, hostmux: Option<PathBuf>) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe()?;
    let dest = dest_for(spec.mode);
    let proc_mode = match spec.mode {
        Mode::Oneway => ProcMode::Sink,
        Mode::Rr => ProcMode::Echo,
    };
    // What runs, and the pid of the separate receiving process (if any).
    let mut host_and_serving = None;
    let mut host_pair = None;
    let mut conv_child = None;
    let mut socket_path = None;
    // The destination proc's host address, when it is not the target's.
    let mut dest_addr = String::new();
    let (target, receiver_pid): (String, Option<u32>) = match spec.system {
        System::Tcp | System::TcpBusyPoll => {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?.to_string();
            let frame_len = hostmux_frame(super::load::CLIENT_NAME, dest, "", spec.size)?.len();
            let (mode, busy_poll) = (spec.mode, spec.system == System::TcpBusyPoll);
            std::thread::spawn(move || discard_server(listener, mode, frame_len, busy_poll, None));
            (addr, None)
        }
        System::TcpSpread => {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?.to_string();
            let frame_len = hostmux_frame(super::load::CLIENT_NAME, dest, "", spec.size)?.len();
            let (mode, span) = (spec.mode, Some(bench_ring_bytes(spec.size)));
            std::thread::spawn(move || discard_server(listener, mode, frame_len, false, span));
            (addr, None)
        }
        System::TcpRelay | System::TcpRelayBusyPoll => {
            // (9) a blocking relay to a discarding (or echoing) end; (12)
            // both busy-polling, for round trips.
            let busy_poll = spec.system == System::TcpRelayBusyPoll;
            let end = TcpListener::bind("127.0.0.1:0")?;
            let end_addr = end.local_addr()?;
            let frame_len = hostmux_frame(super::load::CLIENT_NAME, dest, "", spec.size)?.len();
            let mode = spec.mode;
            std::thread::spawn(move || discard_server(end, mode, frame_len, busy_poll, None));
            let relay = TcpListener::bind("127.0.0.1:0")?;
            let addr = relay.local_addr()?.to_string();
            if busy_poll {
                std::thread::spawn(move || busy_poll_relay(relay, end_addr));
            } else {
                std::thread::spawn(move || relay_server(relay, end_addr));
            }
            (addr, None)
        }
        System::SameHost | System::CrossHost => {
            let hostmux = hostmux
                .as_deref()
                .context("the same-host and cross-host systems need --hostmux")?;
            let pair = HostPair::start(hostmux).context("starting two hostmux hosts")?;
            let side = if spec.system == System::CrossHost {
                dest_addr = pair.addr(Side::B).to_owned();
                Side::B
            } else {
                Side::A
            };
            let pid = pair
                .spawn(side, dest, proc_mode, bench_ring_bytes(spec.size))
                .await?;
            let target = pair.addr(Side::A).to_owned();
            host_pair = Some(pair);
            (target, Some(pid))
        }
        System::Uring | System::Epoll | System::UringDirect | System::Tls => {
            let frontend = match spec.system {
                System::Epoll => FrontendKind::Epoll,
                System::UringDirect => FrontendKind::IoUringDirect,
                _ => FrontendKind::IoUring,
            };
            let tls = match spec.system {
                System::Tls => Some(super::bench_tls()?),
                _ => None,
            };
            let config = HostConfig {
                frontend,
                inbound_ring_bytes: bench_ring_bytes(spec.size),
                outbound_ring_bytes: bench_ring_bytes(spec.size),
                overload_wait: Duration::from_secs(10),
                client_outbox_bytes: 64 << 20,
                ring_memory: spec.ring_memory,
                tls,
                uring_recv_buffers: if spec.no_multishot {
                    None
                } else {
                    HostConfig::default().uring_recv_buffers
                },
                ..HostConfig::default()
            };
            let (host, serving) = super::start_host(config).await.with_context(|| {
                format!("starting a hostmux host with the {frontend:?} frontend")
            })?;
            host.spawn(dest, crate::procs::this_binary(proc_mode)?)
                .await
                .context("spawning the benchmark proc")?;
            spawn_idle_procs(&host, 0..spec.idle_procs).await?;
            let pid = host
                .manager()
                .get(&ProcName::new(dest)?)
                .and_then(|h| h.pid());
            let target = host.addr().to_string();
            host_and_serving = Some((host, serving));
            (target, pid)
        }
        System::Conventional => {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = tcp.local_addr()?.to_string();
            let path =
                std::env::temp_dir().join(format!("hostmux-bench-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let uds = tokio::net::UnixListener::bind(&path)?;
            tokio::spawn(conventional::host(tcp, uds, dest.to_owned()));
            let child = Command::new(&exe)
                .args(["__bench", "conv-child", "--name", dest, "--mode"])
                .arg(format!("{:?}", spec.mode).to_lowercase())
                .arg("--socket")
                .arg(&path)
                .stdin(Stdio::null())
                .spawn()
                .context("starting the conventional child")?;
            let pid = child.id();
            conv_child = Some(child);
            socket_path = Some(path);
            (addr, Some(pid))
        }
    };

    let mut load = Command::new(&exe)
        .args(["__bench", "load"])
        .args(spec.to_args())
        .arg("--target")
        .arg(&target)
        .arg("--dest-addr")
        .arg(&dest_addr)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the load generator")?;
    let stdout = load.stdout.take().context("load generator stdout")?;
    let receiver = receiver_pid.map(|p| p.to_string());
    // The host's CPU: this process, or the `serve` processes.
    let hosts: Vec<String> = match &host_pair {
        Some(pair) => pair.pids().iter().map(u32::to_string).collect(),
        None => vec!["self".to_owned()],
    };
    let outcome =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(LoadResult, (u64, u64))> {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines
                .next()
                .context("the load generator printed nothing")??;
            if first != "START" {
                bail!("unexpected line from the load generator: {first:?}");
            }
            // (the host or server; the separate receiver, if any)
            let ticks = |pid: &Option<String>| -> anyhow::Result<(u64, u64)> {
                let mut host = 0;
                for h in &hosts {
                    host += cpu_ticks(h)?;
                }
                Ok((
                    host,
                    pid.as_deref().map(cpu_ticks).transpose()?.unwrap_or(0),
                ))
            };
            let before = ticks(&receiver)?;
            let line = lines
                .next()
                .context("the load generator printed no result")??;
            let after = ticks(&receiver)?;
            let result: LoadResult = serde_json::from_str(&line)?;
            Ok((result, (after.0 - before.0, after.1 - before.1)))
        })
        .await?;
    let status = load.wait()?;
    let (result, (host_ticks, receiver_ticks)) = outcome?;
    if !status.success() {
        bail!("the load generator failed: {status}");
    }

    if let Some((host, serving)) = host_and_serving {
        host.terminate_children(Duration::from_secs(2), 64).await;
        serving.shutdown();
    }
    if let Some(pair) = host_pair {
        pair.stop()?;
    }
    if let Some(mut child) = conv_child {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(path) = socket_path {
        let _ = std::fs::remove_file(path);
    }

    let frames = result.frames.max(1);
    let per_frame = |ticks: u64| ticks as f64 * NS_PER_TICK / frames as f64;
    Ok(Measurement {
        system: spec.system,
        mode: spec.mode,
        size: spec.size,
        idle_procs: spec.idle_procs,
        frames: result.frames,
        returned: result.returned,
        secs: result.secs,
        frames_per_sec: result.frames as f64 / result.secs,
        gb_per_sec: result.frames as f64 * spec.size as f64 / result.secs / 1e9,
        cpu_ns_per_frame: per_frame(host_ticks + receiver_ticks + result.cpu_ticks),
        cpu_split_ns: [
            per_frame(result.cpu_ticks),
            per_frame(host_ticks),
            per_frame(receiver_ticks),
        ],
        p50_ns: result.p50_ns,
        p99_ns: result.p99_ns,
        p999_ns: result.p999_ns,
        rounds: 1,
    })
}

/// Spawns sink procs named `idle-N` for every N in `names` that nobody
/// sends to, 32 at a time, each ready before this returns.
pub(crate) async fn spawn_idle_procs(
    host: &Host<ProcessProcManager>,
    names: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    let mut next = names.start;
    while next < names.end {
        let batch_end = names.end.min(next + 32);
        let mut batch = tokio::task::JoinSet::new();
        for n in next..batch_end {
            let host = host.clone();
            batch.spawn(async move {
                let spec = crate::procs::this_binary(ProcMode::Sink)?;
                host.spawn(format!("idle-{n}").as_str(), spec)
                    .await
                    .with_context(|| format!("spawning idle proc {n}"))?;
                anyhow::Ok(())
            });
        }
        while let Some(outcome) = batch.join_next().await {
            outcome??;
        }
        next = batch_end;
    }
    Ok(())
}

/// The physical-limit receiver: reads and discards, then answers the byte
/// count at end of stream (one-way); or echoes whole frames (round trip),
/// busy-polling a non-blocking socket if `busy_poll`. With `span` (one-way),
/// each read lands after the previous one in a buffer of `span` bytes,
/// wrapping at its end, as a ring's writer copies; otherwise every read
/// reuses one buffer (which stays in cache).
fn discard_server(
    listener: TcpListener,
    mode: Mode,
    frame_len: usize,
    busy_poll: bool,
    span: Option<usize>,
) {
    let Ok((mut stream, _)) = listener.accept() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    if busy_poll {
        if mode == Mode::Rr && stream.set_nonblocking(true).is_ok() {
            busy_poll_echo(&mut stream, frame_len);
        }
        return;
    }
    let read_len = (256 << 10).max(frame_len);
    // Filled with ones, not zeros: every page is touched before the
    // measurement (a zeroed allocation would fault its pages in as it goes).
    let mut buf = vec![1u8; span.unwrap_or(0).max(read_len)];
    match mode {
        Mode::Oneway => {
            let mut total = 0u64;
            let mut at = 0;
            loop {
                if buf.len() - at < read_len {
                    at = 0;
                }
                match stream.read(&mut buf[at..at + read_len]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        total += n as u64;
                        if span.is_some() {
                            at += n;
                        }
                    }
                }
            }
            let _ = stream.write_all(&total.to_le_bytes());
        }
        Mode::Rr => {
            let frame = &mut buf[..frame_len];
            while stream.read_exact(frame).is_ok() {
                if stream.write_all(frame).is_err() {
                    return;
                }
            }
        }
    }
}

/// A plain TCP relay: accepts one connection, connects to `to`, and copies
/// bytes both ways (read, then write on: what a forwarding host does at
/// the least), passing each end of stream on.
fn relay_server(listener: TcpListener, to: std::net::SocketAddr) {
    let Ok((client, _)) = listener.accept() else {
        return;
    };
    let Ok(server) = std::net::TcpStream::connect(to) else {
        return;
    };
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
    }
    let (Ok(client_back), Ok(server_back)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || copy_until_end(server_back, client_back));
    copy_until_end(client, server);
    let _ = back.join();
}

/// A busy-polling TCP relay, one thread for both directions (as a
/// host's one I/O thread): accepts one connection, connects to `to`, and
/// polls both non-blocking sockets in turn, writing on what it read,
/// yielding the CPU when neither had anything; stops when either ends.
fn busy_poll_relay(listener: TcpListener, to: std::net::SocketAddr) {
    let Ok((mut client, _)) = listener.accept() else {
        return;
    };
    let Ok(mut server) = std::net::TcpStream::connect(to) else {
        return;
    };
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
        if stream.set_nonblocking(true).is_err() {
            return;
        }
    }
    let mut buf = vec![0u8; 256 << 10];
    // Reads what `from` has and writes all of it on (spinning while `to`
    // would block): Some(bytes moved), None when either end is done.
    let mut pass = |from: &mut std::net::TcpStream, to: &mut std::net::TcpStream| {
        let n = match from.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(0),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Some(0),
            Err(_) => return None,
        };
        let mut done = 0;
        while done < n {
            match to.write(&buf[done..n]) {
                Ok(0) => return None,
                Ok(written) => done += written,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Some(n)
    };
    while let (Some(up), Some(down)) = (
        pass(&mut client, &mut server),
        pass(&mut server, &mut client),
    ) {
        if up == 0 && down == 0 {
            std::thread::yield_now();
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Both);
}

/// Copies `from` to `to` until `from` ends, then shuts `to`'s write side.
fn copy_until_end(mut from: std::net::TcpStream, mut to: std::net::TcpStream) {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Echoes whole frames of `frame_len` bytes on a non-blocking `stream`,
/// polling again (and yielding the CPU) while it would block, until the
/// client closes.
fn busy_poll_echo(stream: &mut std::net::TcpStream, frame_len: usize) {
    let mut frame = vec![0u8; frame_len];
    loop {
        let mut done = 0;
        while done < frame_len {
            match stream.read(&mut frame[done..]) {
                Ok(0) => return,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
        done = 0;
        while done < frame_len {
            match stream.write(&frame[done..]) {
                Ok(0) => return,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}
