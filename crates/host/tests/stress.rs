//! Long-running measurements, run explicitly:
//! `cargo test -p hostmux-host --release --test tests stress_ -- --ignored --nocapture`.

use std::time::Duration;

use hostmux_host::{FrontendKind, HostConfig};
use hostmux_testkit::facility::{missing, Facility};

use crate::support::{echo_proc, serve, Client};

fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer we own.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn idle_cpu(kind: FrontendKind) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(256)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (host, serving) = serve(kind, HostConfig::default()).await;
        for i in 0..100 {
            host.spawn(&format!("idle-{i}"), echo_proc(usize::MAX)).await.unwrap();
        }
        // Traffic first, so every ring has been drained and re-armed once.
        let mut client = Client::connect(&host, "warm").await;
        for i in 0..100u64 {
            client.send(&format!("idle-{i}"), i, b"warm up").await;
            assert_eq!(client.recv().await.message_id, i);
        }
        let window = Duration::from_secs(10);
        let before = cpu_time();
        tokio::time::sleep(window).await;
        let used = cpu_time() - before;
        let share = used.as_secs_f64() / window.as_secs_f64() * 100.0;
        println!(
            "idle host ({kind:?}, 100 procs, 1 client): {used:?} CPU over {window:?} = {share:.3}% of one core (whole test process)"
        );
        assert!(share < 1.0, "idle host used {share:.3}% of a core");
        drop(client);
        host.terminate_children(Duration::from_secs(5), 16).await;
        serving.shutdown();
    });
}

#[test]
#[ignore = "measures CPU over a 10 s window; run explicitly"]
fn stress_idle_cpu_epoll() {
    idle_cpu(FrontendKind::Epoll);
}

#[test]
#[ignore = "measures CPU over a 10 s window; run explicitly"]
fn stress_idle_cpu_io_uring() {
    if !crate::support::io_uring_or_report() {
        return;
    }
    idle_cpu(FrontendKind::IoUring);
}

#[test]
#[ignore = "measures CPU over a 10 s window; run explicitly"]
fn stress_idle_cpu_io_uring_direct() {
    if !crate::support::io_uring_or_report() {
        return;
    }
    idle_cpu(FrontendKind::IoUringDirect);
}

/// Round trips client → host → proc ring → host → client, pipelined, on
/// one frontend; returns frames per second.
async fn echo_throughput(kind: FrontendKind, frames: u64, payload: usize) -> f64 {
    let (host, serving) = serve(kind, HostConfig::default()).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let client = Client::connect(&host, "bench").await;
    let body = vec![0x5au8; payload];
    let mut batch = Vec::new();
    const BATCH: u64 = 64;
    for id in 0..BATCH {
        client.encode("echo", id, &body, &mut batch);
    }
    let (mut write_half, mut read_half) = client.into_split();
    let started = std::time::Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..frames / BATCH {
            write_half.write_raw(&batch).await.unwrap();
        }
        write_half
    });
    let mut received = 0;
    while received < frames / BATCH * BATCH {
        let kind = read_half
            .recv_with(|frame| frame.kind())
            .await
            .unwrap()
            .expect("the host keeps the connection open");
        assert_eq!(kind, hostmux_wire::FrameKind::Data);
        received += 1;
    }
    let elapsed = started.elapsed();
    drop(writer.await.unwrap());
    let stats = host.stats().await.unwrap();
    let conn = stats.conn("bench").unwrap();
    assert_eq!(conn.accepted, conn.delivered);
    host.terminate_children(Duration::from_secs(5), 4).await;
    serving.shutdown();
    received as f64 / elapsed.as_secs_f64()
}

#[test]
#[ignore = "throughput benchmark; run explicitly in release mode"]
fn stress_echo_throughput() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    const FRAMES: u64 = 200_000;
    for payload in [64usize, 1024, 16 * 1024] {
        let mut results = Vec::new();
        for kind in [
            FrontendKind::Epoll,
            FrontendKind::IoUring,
            FrontendKind::IoUringDirect,
        ] {
            if kind != FrontendKind::Epoll && !hostmux_host::io_uring_available() {
                missing(Facility::IoUring, "the kernel refused to set up a ring");
                continue;
            }
            // Median of three runs.
            let mut runs: Vec<f64> = (0..3)
                .map(|_| runtime.block_on(echo_throughput(kind, FRAMES, payload)))
                .collect();
            runs.sort_by(f64::total_cmp);
            results.push((kind, runs[1]));
        }
        let epoll = results[0].1;
        for (kind, rate) in &results {
            println!(
                "echo round trips, {payload} B payload, {kind:?}: {:.0} frames/s ({:.1} MB/s each way), {:.2}x epoll",
                rate,
                rate * payload as f64 / 1e6,
                rate / epoll
            );
        }
    }
}
