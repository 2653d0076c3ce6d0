//! Long-running measurements, run explicitly:
//! `cargo test -p hostmux-host --release --test tests stress_ -- --ignored --nocapture`.

use std::time::Duration;

use hostmux_host::{FrontendKind, HostConfig};

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
    if hostmux_host::io_uring_available() {
        idle_cpu(FrontendKind::IoUring);
    }
}
