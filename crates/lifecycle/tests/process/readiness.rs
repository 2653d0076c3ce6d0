//! Readiness: a proc that never reports ready is killed at its ready
//! timeout; one that exits first fails at once; each mode (exec, sd_notify
//! with its watchdog, a TCP port) is ready on its own event only.

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use hostmux_lifecycle::{
    LifecycleError, ProcHandle, ProcManager, ProcStatus, ProcessConfig, ProcessProcManager,
    Readiness, ReadyError, TerminalStatus,
};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_ready_proc_is_killed_and_reaped_after_the_ready_timeout() {
    let manager = ProcessProcManager::default();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let proc = spawn(
        &manager,
        "sloth",
        fixture_mode("never-ready").ready_timeout(timeout),
    )
    .await;
    let fd = pidfd(proc.pid().unwrap()).expect("alive right after spawn");
    match proc.ready().await {
        Err(ReadyError::TimedOut {
            name: n,
            timeout: t,
        }) => {
            assert_eq!(n.as_str(), "sloth");
            assert_eq!(t, timeout);
        }
        other => panic!("expected a ready timeout, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took >= timeout && took <= timeout + EPSILON,
        "took {took:?}"
    );
    assert!(matches!(
        proc.wait().await.unwrap(),
        TerminalStatus::Failed { .. }
    ));
    assert!(
        exited_within(&fd, Duration::ZERO),
        "killed before ready() failed"
    );
    assert!(manager.live_procs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_before_ready_fails_at_once_not_at_the_timeout() {
    let manager = ProcessProcManager::default();
    let timeout = Duration::from_secs(60);
    let started = Instant::now();
    let proc = spawn(
        &manager,
        "quitter",
        fixture_mode("exit-before-ready")
            .arg("3")
            .ready_timeout(timeout),
    )
    .await;
    assert_eq!(proc.ready().await, Err(ReadyError::Terminal(exited(3))));
    assert!(
        started.elapsed() < EPSILON * 2,
        "took {:?}",
        started.elapsed()
    );
}

/// A Python one-liner (run by the proc's shell) that sends its arguments,
/// joined by newlines, as one datagram to `$NOTIFY_SOCKET`: what
/// `systemd-notify` does, which this machine may not have.
const NOTIFY_PY: &str = "import os, socket, sys; \
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); \
    s.sendto('\\n'.join(sys.argv[1:]).encode(), os.environ['NOTIFY_SOCKET'])";

/// `sh -c script` with [`NOTIFY_PY`] in `$NOTIFY_PY`, so the script sends
/// with `python3 -c "$NOTIFY_PY" KEY=VALUE...`.
fn shell(script: &str) -> ProcessConfig {
    ProcessConfig::new("sh")
        .args(["-c", script])
        .env("NOTIFY_PY", NOTIFY_PY)
        .env("PATH", "/usr/bin:/bin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_spawn_is_ready_once_exec_succeeded_and_a_failed_exec_is_a_spawn_error() {
    let manager = ProcessProcManager::default();
    let proc = spawn(
        &manager,
        "sleeper",
        ProcessConfig::new("sleep")
            .arg("1000")
            .readiness(Readiness::OnSpawn)
            .ready_timeout(Duration::from_secs(60)),
    )
    .await;
    proc.ready().await.expect("ready once it runs");
    assert_eq!(proc.status(), ProcStatus::Ready);
    proc.kill().await.unwrap();

    let missing = manager
        .spawn(
            name("ghost"),
            ProcessConfig::new("/nonexistent/hostmux-no-such-program")
                .readiness(Readiness::OnSpawn),
        )
        .await;
    match missing {
        Err(LifecycleError::Spawn { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_is_ready_only_at_ready_1_and_keeps_the_status_text() {
    let manager = ProcessProcManager::default();
    let started = Instant::now();
    let proc = spawn(
        &manager,
        "notifier",
        shell(
            "python3 -c \"$NOTIFY_PY\" 'STATUS=warming up'; sleep 0.3; \
             python3 -c \"$NOTIFY_PY\" READY=1 'STATUS=serving 3 queues'; exec sleep 1000",
        )
        .readiness(Readiness::Notify)
        .ready_timeout(Duration::from_secs(60)),
    )
    .await;
    proc.ready().await.expect("ready after READY=1");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "ready before the script sent READY=1 ({:?})",
        started.elapsed()
    );
    assert_eq!(proc.status_text().as_deref(), Some("serving 3 queues"));
    proc.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_ignores_ready_from_a_process_outside_the_procs_tree() {
    let runtime_dir = temp_path("runtime");
    let _ = std::fs::remove_dir_all(&runtime_dir);
    let manager = ProcessProcManager::builder()
        .notify_dir(&runtime_dir)
        .build();
    let timeout = Duration::from_millis(800);
    let proc = spawn(
        &manager,
        "silent",
        ProcessConfig::new("sleep")
            .arg("1000")
            .readiness(Readiness::Notify)
            .ready_timeout(timeout),
    )
    .await;
    let socket_path = notify_socket_of(proc.pid().unwrap());
    assert!(
        socket_path.starts_with(&runtime_dir),
        "{}",
        socket_path.display()
    );
    let dir_mode = std::fs::metadata(socket_path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o711);
    let mode = std::fs::metadata(&socket_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", socket_path.display());
    // Same uid, but this test process is not the proc or its descendant.
    let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
    sender.send_to(b"READY=1", &socket_path).unwrap();
    assert_eq!(
        proc.ready().await,
        Err(ReadyError::TimedOut {
            name: name("silent"),
            timeout
        })
    );
    proc.wait().await.unwrap();
    assert!(!socket_path.exists(), "the socket is removed with the proc");
    drop(manager);
    std::fs::remove_dir(&runtime_dir).expect("the manager left nothing in it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_proc_that_exits_before_ready_fails_with_its_exit_status() {
    let manager = ProcessProcManager::default();
    let proc = spawn(
        &manager,
        "quitter",
        shell("python3 -c \"$NOTIFY_PY\" 'STATUS=giving up'; exit 7")
            .readiness(Readiness::Notify)
            .ready_timeout(Duration::from_secs(60)),
    )
    .await;
    assert_eq!(proc.ready().await, Err(ReadyError::Terminal(exited(7))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_kills_a_proc_that_stops_pinging_and_says_so() {
    let manager = ProcessProcManager::default();
    let interval = Duration::from_millis(500);
    let proc = spawn(
        &manager,
        "hung",
        shell(
            "test \"$WATCHDOG_USEC\" = 500000 || exit 9; \
             test \"$WATCHDOG_PID\" = $$ || { echo \"WATCHDOG_PID=[$WATCHDOG_PID] pid=$$\" >&2; exit 8; }; \
             python3 -c \"$NOTIFY_PY\" READY=1; \
             python3 -c \"$NOTIFY_PY\" WATCHDOG=1; sleep 0.2; \
             python3 -c \"$NOTIFY_PY\" WATCHDOG=1; exec sleep 1000",
        )
        .readiness(Readiness::Notify)
        .watchdog(interval)
        .ready_timeout(Duration::from_secs(60)),
    )
    .await;
    proc.ready().await.expect("ready");
    let status = tokio::time::timeout(Duration::from_secs(60), proc.wait())
        .await
        .expect("the watchdog ends it")
        .unwrap();
    match status {
        TerminalStatus::Failed { reason, .. } => {
            assert_eq!(reason, "watchdog timeout: no WATCHDOG=1 within 500ms")
        }
        other => panic!("expected a watchdog failure, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_is_ready_once_the_port_accepts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let manager = ProcessProcManager::default();
    let started = Instant::now();
    let proc = spawn(
        &manager,
        "listener",
        shell(
            "sleep 0.3; exec python3 -c 'import socket, sys, time; \
             s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
             s.bind((\"127.0.0.1\", int(sys.argv[1]))); s.listen(); time.sleep(1000)' \"$PORT\"",
        )
        .env("PORT", port.to_string())
        .readiness(Readiness::Tcp(([127, 0, 0, 1], port).into()))
        .ready_timeout(Duration::from_secs(60)),
    )
    .await;
    proc.ready().await.expect("ready once it listens");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // It is listening now: a connect succeeds.
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("listening");
    proc.kill().await.unwrap();
}
