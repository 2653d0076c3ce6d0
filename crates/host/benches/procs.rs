//! Real procs through the host vs a Unix socket pair between two processes,
//! side by side in one run.
//!
//! * Round trip: a pinger proc sends to an echo proc through the host and
//!   waits for the answer (proc -> host -> proc -> host -> proc), 100,000
//!   times, HDR histogram; vs a blocking write + read on a Unix socket pair
//!   between two processes.
//! * One-way throughput at 64 B and 4 KiB, at equal batching: the pinger
//!   sends B frames as fast as the rings allow to a counter proc and then
//!   publishes them once (`Outbox::batch`), again and again, then asks the
//!   counter for its count (FIFO: every earlier frame has been received by
//!   then); vs the same payloads over a Unix socket, 8-byte length prefix,
//!   B frames per `write`, every frame parsed by the reader. B sweeps 1,
//!   16, 128 and the number of frames in 64 KiB of socket bytes (910 at
//!   64 B, 15 at 4 KiB).
//!
//! Three busy processes (pinger, host, counter/echo) share this machine's
//! cores; CPU time of each (all threads, nanoseconds, from
//! `/proc/<pid>/task/*/schedstat`) is printed per phase, per frame or round
//! trip, and as cores busy, so the spin-then-sleep policy's cost is visible. This executable re-runs itself in the proc
//! roles (`HOSTMUX_BENCH_ROLE`). Run: `cargo bench -p hostmux-host --bench procs`
//! (`HOSTMUX_BENCH_QUICK=1` for a smoke run, `HOSTMUX_BENCH_ONLY=64x128` for
//! one payload size and batch only, with 1,000 round trips;
//! `HOSTMUX_BENCH_ROUNDS=N` for N rounds instead of 3;
//! `HOSTMUX_BENCH_RING_MEMORY=populated|on-demand` for the rings' memory
//! policy, default the host's, on demand: compare trees with the same
//! policy, since a short run on demand pays first-touch faults). Every round launches
//! the host side and the socket pair afresh; medians and each round's ratio
//! are printed (where the scheduler puts the three processes moves the host
//! path's throughput by up to 2x between launches).

use std::io::{Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hostmux_host::{Client, Host, HostConfig, ProcessProc, RingMemory};
use hostmux_lifecycle::ProcessProcManager;
use hostmux_proc::{BatchRecv, Dest, ProcError};
use hostmux_wire::{Addr, Sender};

const ROLE: &str = "HOSTMUX_BENCH_ROLE";
const SOCKET: &str = "HOSTMUX_BENCH_SOCKET";
const MODE_RTT: u64 = 1;
const MODE_BLAST: u64 = 2;
const COUNT_PORT: u32 = 2;
/// Socket bytes per `write` that the largest batch size matches.
const BATCH_BYTES: usize = 64 * 1024;

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let result = match role.as_str() {
            "echo" => proc_echo(),
            "counter" => proc_counter(),
            "pinger" => proc_pinger(),
            "sock-echo" => {
                sock_echo();
                Ok(())
            }
            "sock-sink" => {
                sock_sink();
                Ok(())
            }
            other => panic!("unknown role {other}"),
        };
        if let Err(e) = result {
            eprintln!("bench role {role}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let quick = std::env::var_os("HOSTMUX_BENCH_QUICK").is_some();
    let profiling = std::env::var_os("HOSTMUX_BENCH_ONLY").is_some();
    let round_trips: u64 = std::env::var("HOSTMUX_BENCH_ROUND_TRIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(match (quick, profiling) {
            (_, true) => 1_000,
            (true, false) => 10_000,
            (false, false) => 100_000,
        });
    let scale = |full: u64| if quick { full / 10 } else { full };
    // Frames per throughput run: enough for ~0.1 s at the expected rate.
    let frames = |size: usize, batch: usize| -> u64 {
        match (size <= 64, batch) {
            (true, 1) => scale(500_000),
            (true, _) => scale(2_000_000),
            (false, 1) => scale(100_000),
            (false, _) => scale(200_000),
        }
    };
    let batches = |size: usize| -> Vec<usize> {
        let full = BATCH_BYTES / (8 + size);
        let mut b: Vec<usize> = [1, 16, 128].into_iter().filter(|&b| b < full).collect();
        b.push(full);
        b
    };
    // `HOSTMUX_BENCH_ONLY=64x128,4096x15` keeps only those one-way runs
    // (payload x frames per publication), e.g. to profile one of them.
    let only: Option<Vec<String>> = std::env::var("HOSTMUX_BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let mut runs = Vec::new();
    for size in [64, 4096] {
        for batch in batches(size) {
            if only
                .as_ref()
                .is_some_and(|o| !o.contains(&format!("{size}x{batch}")))
            {
                continue;
            }
            runs.push(Run {
                size,
                batch,
                frames: frames(size, batch),
            });
        }
    }
    println!("hostmux-host procs bench: {round_trips} round trips; one-way runs (payload, frames per publication/write, frames):");
    for r in &runs {
        println!(
            "  {:>5} B  B = {:>4}  {:>9} frames",
            r.size, r.batch, r.frames
        );
    }
    // Rounds, each running every side once, in this order: which CPU each
    // of the three processes lands on is decided at spawn and moves the
    // host path's throughput by up to 2x from one launch to the next, so
    // one launch is not a measurement. Medians are reported, with every
    // round's ratio.
    let rounds: usize = std::env::var("HOSTMUX_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 })
        .max(1);
    let mut spin_rounds = Vec::new();
    let mut no_spin_rounds = Vec::new();
    let mut sock_rtt_rounds = Vec::new();
    let mut sock_rounds: Vec<Vec<f64>> = Vec::new();
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        spin_rounds.push(run_host_side(round_trips, &runs, Duration::from_micros(20)));
        no_spin_rounds.push(run_host_side(round_trips, &runs, Duration::ZERO));
        sock_rtt_rounds.push(socket_rtt(round_trips, 64));
        sock_rounds.push(
            runs.iter()
                .map(|r| socket_throughput(r.size, r.frames, r.batch))
                .collect(),
        );
    }
    let rtt_median = |figures: &[[u64; 4]]| -> [u64; 4] {
        std::array::from_fn(|q| median(figures.iter().map(|f| f[q] as f64)) as u64)
    };
    let ring_rtt = rtt_median(&spin_rounds.iter().map(|f| f.rtt).collect::<Vec<_>>());
    let no_spin_rtt = rtt_median(&no_spin_rounds.iter().map(|f| f.rtt).collect::<Vec<_>>());
    let sock_rtt = rtt_median(&sock_rtt_rounds);

    println!();
    println!("medians of {rounds} round(s); each round launches the host side and the socket pair afresh");
    println!("round trip, 64 B payload (ns)      p50      p99    p99.9      max");
    println!(
        "  procs via host          {:>12} {:>8} {:>8} {:>8}",
        ring_rtt[0], ring_rtt[1], ring_rtt[2], ring_rtt[3]
    );
    println!(
        "  host, poll_spin = 0     {:>12} {:>8} {:>8} {:>8}",
        no_spin_rtt[0], no_spin_rtt[1], no_spin_rtt[2], no_spin_rtt[3]
    );
    println!(
        "  Unix socket pair        {:>12} {:>8} {:>8} {:>8}",
        sock_rtt[0], sock_rtt[1], sock_rtt[2], sock_rtt[3]
    );
    let rtt_ratios: Vec<f64> = spin_rounds
        .iter()
        .zip(&sock_rtt_rounds)
        .map(|(host, sock)| sock[0] as f64 / host.rtt[0] as f64)
        .collect();
    println!(
        "  ratio p50 socket/host: {:.2} (> 1: the host path is faster); per round: {}",
        sock_rtt[0] as f64 / ring_rtt[0] as f64,
        list(&rtt_ratios)
    );
    println!();
    println!("one-way throughput at equal batching: B frames per publication (host) / per write (socket)");
    println!("  payload     B   host frames/s     MB/s   no-spin frames/s   socket frames/s     MB/s   host/socket   per round");
    for (i, r) in runs.iter().enumerate() {
        let host = median(spin_rounds.iter().map(|f| f.throughput[i]));
        let host0 = median(no_spin_rounds.iter().map(|f| f.throughput[i]));
        let sock = median(sock_rounds.iter().map(|f| f[i]));
        let ratios: Vec<f64> = spin_rounds
            .iter()
            .zip(&sock_rounds)
            .map(|(host, sock)| host.throughput[i] / sock[i])
            .collect();
        let mb = |rate: f64| rate * r.size as f64 / 1e6;
        println!(
            "  {:>5} B {:>5} {:>15.0} {:>8.1} {:>18.0} {:>17.0} {:>8.1} {:>13.2}   {}",
            r.size,
            r.batch,
            host,
            mb(host),
            host0,
            sock,
            mb(sock),
            host / sock,
            list(&ratios)
        );
    }
    println!();
    println!("CPU seconds used during each host-path phase, and per frame or round trip:");
    for (round, (ring, no_spin)) in spin_rounds.iter().zip(&no_spin_rounds).enumerate() {
        println!(" round {}", round + 1);
        for line in &ring.cpu {
            println!("  poll_spin 20 us, {line}");
        }
        for line in &no_spin.cpu {
            println!("  poll_spin 0,     {line}");
        }
    }
    println!("idle: {}", spin_rounds[0].idle);
}

/// The median of some figures (the mean of the middle two for an even count).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn list(ratios: &[f64]) -> String {
    ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One one-way throughput run: payload size, frames per publication or
/// write, frames in all.
struct Run {
    size: usize,
    batch: usize,
    frames: u64,
}

struct HostFigures {
    rtt: [u64; 4],
    /// Frames per second, one per [`Run`].
    throughput: Vec<f64>,
    cpu: Vec<String>,
    idle: String,
}

fn self_proc(role: &str) -> ProcessProc {
    let exe = std::env::current_exe().expect("this bench executable");
    ProcessProc::new(exe).env(ROLE, role)
}

/// CPU time of a process (all its threads), in seconds, from
/// `/proc/<pid>/task/*/schedstat` (nanoseconds on the CPU; the tick-based
/// `stat` fields are only good to 10 ms).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

fn run_host_side(round_trips: u64, runs: &[Run], poll_spin: Duration) -> HostFigures {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (host, _serving) = Host::serve_processes(
            ProcessProcManager::builder(),
            Addr::tcp("127.0.0.1", 0).unwrap(),
            HostConfig {
                poll_spin,
                ring_memory: ring_memory(),
                ..HostConfig::default()
            },
        )
        .await
        .expect("serving");
        for role in ["echo", "counter", "pinger"] {
            host.spawn(role, self_proc(role)).await.expect("spawn");
        }
        let listed = host.list().await.unwrap();
        let pid = |name: &str| listed.iter().find(|p| p.name == name).unwrap().pid;
        let (pinger, echo, counter) = (pid("pinger"), pid("echo"), pid("counter"));
        let me = std::process::id();
        let addr = format!("127.0.0.1:{}", host.addr().port().unwrap());
        let mut client = Client::connect_tcp(&addr, "bench", None, "service")
            .await
            .unwrap();
        let mut cpu = Vec::new();
        let mut ask =
            async |mode: u64, count: u64, size: u64, batch: u64, other: u32, label: String| {
                let before = [cpu_seconds(pinger), cpu_seconds(me), cpu_seconds(other)];
                let started = Instant::now();
                let mut request = Vec::new();
                for v in [mode, count, size, batch] {
                    request.extend_from_slice(&v.to_le_bytes());
                }
                client.send("pinger", 1, mode, &request).await.unwrap();
                let answer = client.recv().await.unwrap().expect("the pinger answers");
                let wall = started.elapsed().as_secs_f64();
                let after = [cpu_seconds(pinger), cpu_seconds(me), cpu_seconds(other)];
                let used: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
                let per = |s: f64| s * 1e9 / count as f64;
                cpu.push(format!(
                    "{label}: pinger {:.3} ({:.0} ns/{unit}), host {:.3} ({:.0}), {} {:.3} ({:.0}) \
                     [wall {wall:.3}; {:.2} cores busy]",
                    used[0],
                    per(used[0]),
                    used[1],
                    per(used[1]),
                    if mode == MODE_RTT { "echo" } else { "counter" },
                    used[2],
                    per(used[2]),
                    used.iter().sum::<f64>() / wall,
                    unit = if mode == MODE_RTT { "round trip" } else { "frame" },
                ));
                answer
                    .payload
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<u64>>()
            };
        let r = ask(MODE_RTT, round_trips, 64, 1, echo, "round trips".to_owned()).await;
        let rtt = [r[0], r[1], r[2], r[3]];
        let mut throughput = Vec::new();
        for run in runs {
            let r = ask(
                MODE_BLAST,
                run.frames,
                run.size as u64,
                run.batch as u64,
                counter,
                format!("{} B one-way, B = {}", run.size, run.batch),
            )
            .await;
            let (elapsed_ns, received) = (r[0], r[1]);
            assert_eq!(received, run.frames, "the counter saw every frame");
            throughput.push(run.frames as f64 / (elapsed_ns as f64 / 1e9));
        }
        // Idle: everything sleeps.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pids = [me, pinger, echo, counter];
        let before: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let used: f64 = pids
            .iter()
            .zip(&before)
            .map(|(&p, b)| cpu_seconds(p) - b)
            .sum();
        let idle = format!("host + 3 procs used {used:.4} CPU seconds in 2 s of idle");
        let _ = host.terminate_children(Duration::from_secs(2), 8).await;
        HostFigures {
            rtt,
            throughput,
            cpu,
            idle,
        }
    })
}

fn proc_echo() -> Result<(), ProcError> {
    let mut proc = hostmux_proc::boot()?;
    proc.serve(|mut message| {
        let payload = message.payload();
        message.reply(payload)
    })
}

fn proc_counter() -> Result<(), ProcError> {
    let mut proc = hostmux_proc::boot()?;
    let mut count: u64 = 0;
    loop {
        let step = proc.recv_batch(256, Duration::from_secs(3600), |mut message| {
            if message.port() == COUNT_PORT {
                let _ = message.reply(&count.to_le_bytes());
                count = 0;
            } else {
                count += 1;
            }
        })?;
        if matches!(step, BatchRecv::Stopped | BatchRecv::Closed) {
            return Ok(());
        }
    }
}

fn proc_pinger() -> Result<(), ProcError> {
    let mut proc = hostmux_proc::boot()?;
    loop {
        // A request from the bench client: mode, count, size, batch.
        let (mode, count, size, batch) = match proc.recv()? {
            None => return Ok(()),
            Some(message) => {
                if !matches!(message.sender(), Sender::Client { .. }) {
                    continue;
                }
                let p = message.payload();
                let word = |i: usize| u64::from_le_bytes(p[i * 8..i * 8 + 8].try_into().unwrap());
                (word(0), word(1), word(2) as usize, word(3).max(1))
            }
        };
        let payload = vec![0x5a_u8; size];
        let answer: Vec<u64> = if mode == MODE_RTT {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
            for _ in 0..count {
                let started = Instant::now();
                proc.outbox().send("echo", 1, &payload)?;
                loop {
                    let Some(reply) = proc.recv()? else {
                        return Ok(());
                    };
                    if matches!(reply.sender(), Sender::Proc { name: "echo", .. }) {
                        break;
                    }
                }
                hist.record(started.elapsed().as_nanos() as u64).unwrap();
            }
            vec![
                hist.value_at_quantile(0.5),
                hist.value_at_quantile(0.99),
                hist.value_at_quantile(0.999),
                hist.max(),
            ]
        } else {
            let started = Instant::now();
            let mut left = count;
            while left > 0 {
                // B frames, one publication.
                let n = batch.min(left);
                let mut frames = proc.outbox().batch();
                for _ in 0..n {
                    frames.send("counter", 1, &payload)?;
                }
                frames.publish()?;
                left -= n;
            }
            proc.outbox().send("counter", COUNT_PORT, &[])?;
            let received = loop {
                let Some(reply) = proc.recv()? else {
                    return Ok(());
                };
                if matches!(
                    reply.sender(),
                    Sender::Proc {
                        name: "counter",
                        ..
                    }
                ) {
                    let p = reply.payload();
                    break u64::from_le_bytes(p[..8].try_into().unwrap());
                }
            };
            vec![started.elapsed().as_nanos() as u64, received]
        };
        let bytes: Vec<u8> = answer.iter().flat_map(|v| v.to_le_bytes()).collect();
        proc.outbox().send(Dest::client("bench"), 1, &bytes)?;
    }
}

/// A child process in `role` connected to a fresh Unix socket; returns it
/// and the main process's end.
fn socket_child(role: &str) -> (Child, UnixStream) {
    let dir = std::env::temp_dir().join(format!("hostmux-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{role}.sock"));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .env(SOCKET, &path)
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    let _ = std::fs::remove_file(&path);
    // Connected: neither the socket file nor its directory is needed now.
    let _ = std::fs::remove_dir(&dir);
    (child, stream)
}

fn connect_back() -> UnixStream {
    UnixStream::connect(std::env::var_os(SOCKET).expect("socket path")).unwrap()
}

fn socket_rtt(round_trips: u64, size: usize) -> [u64; 4] {
    let (mut child, mut stream) = socket_child("sock-echo");
    let mut frame = vec![0x5a_u8; 8 + size];
    frame[..8].copy_from_slice(&(size as u64).to_le_bytes());
    let mut back = vec![0u8; 8 + size];
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    for _ in 0..round_trips {
        let started = Instant::now();
        stream.write_all(&frame).unwrap();
        stream.read_exact(&mut back).unwrap();
        hist.record(started.elapsed().as_nanos() as u64).unwrap();
    }
    drop(stream);
    child.wait().unwrap();
    [
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max(),
    ]
}

fn sock_echo() {
    let mut stream = connect_back();
    let mut len = [0u8; 8];
    let mut body = Vec::new();
    while stream.read_exact(&mut len).is_ok() {
        body.resize(u64::from_le_bytes(len) as usize, 0);
        stream.read_exact(&mut body).unwrap();
        stream.write_all(&len).unwrap();
        stream.write_all(&body).unwrap();
    }
}

/// Frames per second, sender in this process writing `per_batch` frames
/// per `write`, receiver a child that parses every frame.
fn socket_throughput(size: usize, frames: u64, per_batch: usize) -> f64 {
    let (mut child, mut stream) = socket_child("sock-sink");
    let mut one = vec![0x5a_u8; 8 + size];
    one[..8].copy_from_slice(&(size as u64).to_le_bytes());
    let batch: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * per_batch)
        .collect();
    let started = Instant::now();
    let mut sent = 0;
    while sent < frames {
        let n = per_batch.min((frames - sent) as usize);
        stream.write_all(&batch[..n * one.len()]).unwrap();
        sent += n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    child.wait().unwrap();
    assert_eq!(u64::from_le_bytes(count), frames);
    frames as f64 / elapsed
}

fn sock_sink() {
    let mut stream = connect_back();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut filled, mut count) = (0usize, 0u64);
    loop {
        let n = stream.read(&mut buf[filled..]).unwrap();
        if n == 0 {
            break;
        }
        filled += n;
        // Walk whole frames; keep a partial one at the front.
        let mut at = 0;
        while filled - at >= 8 {
            let len = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap()) as usize;
            if filled - at < 8 + len {
                break;
            }
            at += 8 + len;
            count += 1;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
    }
    stream.write_all(&count.to_le_bytes()).unwrap();
}

/// The rings' memory policy: `HOSTMUX_BENCH_RING_MEMORY`, else the host's
/// default.
fn ring_memory() -> RingMemory {
    match std::env::var("HOSTMUX_BENCH_RING_MEMORY").as_deref() {
        Ok("populated") => RingMemory::Populated,
        Ok("on-demand") => RingMemory::OnDemand,
        Ok(other) => panic!("HOSTMUX_BENCH_RING_MEMORY={other}: populated or on-demand"),
        Err(_) => HostConfig::default().ring_memory,
    }
}
