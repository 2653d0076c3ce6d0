//! Terminate and kill: SIGTERM → SIGKILL escalation within grace + ε, the
//! polite-stop hook, coalescing, races with the exit, stopped procs and
//! cancelled callers. Bulk terminate is in `bulk`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hostmux_lifecycle::{ProcHandle, ProcStatus, ProcessProcManager, TerminateError};

use crate::support::*;

/// Sends SIGSTOP to `pid`, an unreaped child of ours (so its pid cannot
/// have been reused).
fn stop_process(pid: u32) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::STOP,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_ignoring_proc_is_sigkilled_within_grace_plus_epsilon() {
    let manager = ProcessProcManager::default();
    let proc = spawn_until_sleeping(&manager, "ignorer", term_ignorer()).await;
    let grace = Duration::from_millis(400);
    let started = Instant::now();
    let status = proc.terminate(grace).await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, SIGKILLED);
    assert!(took >= grace && took <= grace + EPSILON, "took {took:?}");
    assert_eq!(proc.wait().await.unwrap(), SIGKILLED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_proc_exits_cleanly_without_sigkill_and_gets_polite_stop() {
    let (hook, calls) = counting_hook();
    let manager = ProcessProcManager::builder().polite_stop(hook).build();
    let proc = spawn_ready(&manager, "coop", fixture_mode("ready")).await;
    assert_eq!(proc.status(), ProcStatus::Ready);
    let status = proc.terminate(Duration::from_secs(30)).await.unwrap();
    assert_eq!(status, exited(0));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_and_repeated_terminates_coalesce_onto_one_escalation() {
    let (hook, calls) = counting_hook();
    let manager = ProcessProcManager::builder().polite_stop(hook).build();
    let proc = spawn_until_sleeping(&manager, "coalesce", term_ignorer()).await;
    let grace = Duration::from_millis(300);
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let p = proc.clone();
        callers.spawn(async move { p.terminate(grace).await });
    }
    let kill = proc.clone();
    callers.spawn(async move { kill.terminate(Duration::from_secs(60)).await });
    while let Some(result) = callers.join_next().await {
        assert_eq!(result.unwrap().unwrap(), SIGKILLED);
    }
    assert!(started.elapsed() <= grace + EPSILON);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one escalation, one polite stop"
    );
    match proc.terminate(grace).await {
        Err(TerminateError::AlreadyTerminated(status)) => assert_eq!(status, SIGKILLED),
        other => panic!("repeat terminate: {other:?}"),
    }
    assert!(matches!(
        proc.kill().await,
        Err(TerminateError::AlreadyTerminated(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_racing_terminate_reports_the_exit_code() {
    let manager = ProcessProcManager::default();
    for i in 0..10 {
        let proc = spawn(
            &manager,
            &format!("racer{i}"),
            fixture_mode("ready-exit-deaf").arg("7"),
        )
        .await;
        let _ = proc.ready().await;
        let status = terminal_either_way(proc.terminate(Duration::from_secs(30)).await);
        // SIGTERM cannot kill this proc, so whichever way the race went the
        // status is its own exit; signals to the exiting proc (ESRCH) are
        // absorbed rather than reported.
        assert_eq!(status, exited(7), "racer {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_proc_still_terminates() {
    let manager = ProcessProcManager::default();
    let proc = spawn_ready(&manager, "stopped", fixture_mode("ready")).await;
    let pid = proc.pid().unwrap();
    stop_process(pid);
    wait_until(
        EPSILON,
        || proc_state(pid) == Some('T'),
        || "never stopped".into(),
    )
    .await;
    // SIGCONT follows SIGTERM, so the stopped proc wakes and exits cleanly.
    let status = proc.terminate(Duration::from_secs(30)).await.unwrap();
    assert_eq!(status, exited(0));

    let ignorer = spawn_until_sleeping(&manager, "stopped-ignorer", term_ignorer()).await;
    stop_process(ignorer.pid().unwrap());
    assert_eq!(
        ignorer.terminate(Duration::from_millis(200)).await.unwrap(),
        SIGKILLED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_caller_does_not_cancel_the_escalation() {
    let manager = ProcessProcManager::default();
    let proc = spawn_until_sleeping(&manager, "cancelled", term_ignorer()).await;
    let grace = Duration::from_millis(400);
    let started = Instant::now();
    let cut_short = tokio::time::timeout(Duration::from_millis(100), proc.terminate(grace)).await;
    assert!(cut_short.is_err(), "the caller gave up mid-grace");
    assert_eq!(proc.wait().await.unwrap(), SIGKILLED);
    let took = started.elapsed();
    assert!(took >= grace && took <= grace + EPSILON, "took {took:?}");
}
