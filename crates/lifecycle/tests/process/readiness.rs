//! Readiness: a proc that never reports ready is killed at its ready
//! timeout; one that exits first fails at once.

use std::time::{Duration, Instant};

use hostmux_lifecycle::{ProcHandle, ProcessProcManager, ReadyError, TerminalStatus};

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
