//! The worker process of one measurement: sets up the receiving side (a
//! discard server, a hostmux host with a sink or echo proc, or the
//! conventional host and its child), runs the load generator as another
//! process, and prints the [`Measurement`] as JSON.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use hostmux_host::{FrontendKind, Host, HostConfig};
use hostmux_lifecycle::{ProcHandle as _, ProcManager as _, ProcessProcManager};
use hostmux_wire::{Addr, ProcName};

use super::load::{dest_for, hostmux_frame};
use super::{conventional, cpu_ticks, LoadResult, Measurement, Mode, RunSpec, System, NS_PER_TICK};
use crate::procs::ProcMode;

/// Ring size for benchmark procs: a 1 MiB frame and then some fit.
const BENCH_RING_BYTES: usize = 16 << 20;

pub(crate) fn serve(spec: RunSpec) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let measurement = runtime.block_on(measure(spec))?;
    println!("{}", serde_json::to_string(&measurement)?);
    Ok(ExitCode::SUCCESS)
}

async fn measure(spec: RunSpec) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe()?;
    let dest = dest_for(spec.mode);
    // What runs, and the pid of the separate receiving process (if any).
    let mut host_and_serving = None;
    let mut conv_child = None;
    let mut socket_path = None;
    let (target, receiver_pid): (String, Option<u32>) = match spec.system {
        System::Tcp => {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?.to_string();
            let frame_len = hostmux_frame(dest, spec.size)?.len();
            let mode = spec.mode;
            std::thread::spawn(move || discard_server(listener, mode, frame_len));
            (addr, None)
        }
        System::Uring | System::Epoll | System::Tls => {
            let frontend = if spec.system == System::Epoll {
                FrontendKind::Epoll
            } else {
                FrontendKind::IoUring
            };
            let tls = match spec.system {
                System::Tls => Some(super::bench_tls()?),
                _ => None,
            };
            let config = HostConfig {
                frontend,
                inbound_ring_bytes: BENCH_RING_BYTES,
                outbound_ring_bytes: BENCH_RING_BYTES,
                overload_wait: Duration::from_secs(10),
                client_outbox_bytes: 64 << 20,
                tls,
                ..HostConfig::default()
            };
            let (host, serving) = Host::serve_processes(
                ProcessProcManager::builder(),
                Addr::tcp("127.0.0.1", 0)?,
                config,
            )
            .await
            .with_context(|| format!("starting a hostmux host with the {frontend:?} frontend"))?;
            let mode = match spec.mode {
                Mode::Oneway => ProcMode::Sink,
                Mode::Rr => ProcMode::Echo,
            };
            host.spawn(dest, crate::procs::this_binary(mode)?)
                .await
                .context("spawning the benchmark proc")?;
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
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the load generator")?;
    let stdout = load.stdout.take().context("load generator stdout")?;
    let receiver = receiver_pid.map(|p| p.to_string());
    let outcome =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(LoadResult, (u64, u64))> {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines
                .next()
                .context("the load generator printed nothing")??;
            if first != "START" {
                bail!("unexpected line from the load generator: {first:?}");
            }
            // (this process: the host or server; the separate receiver, if any)
            let ticks = |pid: &Option<String>| -> anyhow::Result<(u64, u64)> {
                Ok((
                    cpu_ticks("self")?,
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
        host.terminate_children(Duration::from_secs(2), 4).await;
        serving.shutdown();
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

/// The physical-limit receiver: reads and discards, then answers the byte
/// count at end of stream (one-way); or echoes whole frames (round trip).
fn discard_server(listener: TcpListener, mode: Mode, frame_len: usize) {
    let Ok((mut stream, _)) = listener.accept() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; (256 << 10).max(frame_len)];
    match mode {
        Mode::Oneway => {
            let mut total = 0u64;
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
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
