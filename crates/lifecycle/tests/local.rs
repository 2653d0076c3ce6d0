//! In-process manager tests.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hostmux_lifecycle::{
    BulkTerminate, BulkTerminateMode, LocalProcConfig, LocalProcManager, ProcHandle, ProcManager,
    ReadyError, SingleTerminate, TerminalStatus, TerminateError,
};

use crate::support::*;

fn cooperative() -> LocalProcConfig {
    LocalProcConfig::new(|mut cx| async move {
        cx.report_ready();
        cx.stopped().await;
        Ok(())
    })
}

fn deaf() -> LocalProcConfig {
    LocalProcConfig::new(|mut cx| async move {
        cx.report_ready();
        std::future::pending::<()>().await;
        Ok(())
    })
}

const ABORTED: TerminalStatus = TerminalStatus::Signaled {
    signal: libc::SIGKILL,
    core_dumped: false,
    output: None,
};

#[tokio::test]
async fn cooperative_task_exits_zero_after_polite_stop() {
    let (hook, calls) = counting_hook();
    let manager = LocalProcManager::with_polite_stop(Some(hook));
    let proc = manager.spawn(name("coop"), cooperative()).await.unwrap();
    proc.ready().await.unwrap();
    let status = manager
        .terminate_proc(&name("coop"), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(status, exited(0));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(matches!(
        manager.terminate_proc(&name("coop"), Duration::ZERO).await,
        Err(TerminateError::NoSuchProc(_))
    ));
}

#[tokio::test]
async fn task_ignoring_stop_is_aborted_at_the_deadline() {
    let manager = LocalProcManager::new();
    let proc = manager.spawn(name("deaf"), deaf()).await.unwrap();
    proc.ready().await.unwrap();
    let grace = Duration::from_millis(150);
    let started = Instant::now();
    assert_eq!(proc.terminate(grace).await.unwrap(), ABORTED);
    let took = started.elapsed();
    assert!(took >= grace && took <= grace + EPSILON, "took {took:?}");
    assert!(matches!(proc.kill().await, Err(TerminateError::AlreadyTerminated(s)) if s == ABORTED));
}

#[tokio::test]
async fn never_ready_task_times_out_and_is_aborted() {
    let manager = LocalProcManager::new();
    let config = LocalProcConfig::new(|_cx| async {
        std::future::pending::<()>().await;
        Ok(())
    })
    .ready_timeout(Duration::from_millis(100));
    let proc = manager.spawn(name("sloth"), config).await.unwrap();
    assert!(
        matches!(proc.ready().await, Err(ReadyError::TimedOut { timeout, .. }) if timeout == Duration::from_millis(100))
    );
    assert!(matches!(
        proc.wait().await.unwrap(),
        TerminalStatus::Failed { .. }
    ));
}

#[tokio::test]
async fn errors_and_panics_map_to_failed_and_fail_readiness() {
    let manager = LocalProcManager::new();
    let erring = manager
        .spawn(
            name("erring"),
            LocalProcConfig::new(|_cx| async { Err("no config".to_owned()) }),
        )
        .await
        .unwrap();
    let failed = TerminalStatus::Failed {
        reason: "no config".into(),
        output: None,
    };
    assert_eq!(
        erring.ready().await,
        Err(ReadyError::Terminal(failed.clone()))
    );
    assert_eq!(erring.wait().await.unwrap(), failed);

    let panicking = manager
        .spawn(
            name("panicking"),
            LocalProcConfig::new(|mut cx| async move {
                cx.report_ready();
                panic!("boom");
            }),
        )
        .await
        .unwrap();
    match panicking.wait().await.unwrap() {
        TerminalStatus::Failed { reason, .. } => assert!(reason.contains("boom"), "{reason}"),
        other => panic!("expected Failed, got {other:?}"),
    }
}

/// Spawns `deaf_count` tasks that ignore the stop signal (`deaf0`…) and
/// `polite_count` ones that return on it (`polite0`…), all ready.
async fn spawn_mix(
    manager: &LocalProcManager,
    deaf_count: usize,
    polite_count: usize,
) -> Vec<String> {
    let deaf_names = (0..deaf_count).map(|i| format!("deaf{i}"));
    let polite_names = (0..polite_count).map(|i| format!("polite{i}"));
    let mut names = Vec::new();
    for proc_name in deaf_names.chain(polite_names) {
        let config = if proc_name.starts_with("deaf") {
            deaf()
        } else {
            cooperative()
        };
        let proc = manager.spawn(name(&proc_name), config).await.unwrap();
        proc.ready().await.unwrap();
        names.push(proc_name);
    }
    names
}

#[tokio::test]
async fn bulk_terminate_runs_every_polite_stop_with_bounded_concurrency_in_process() {
    let (hook, log) = TerminationLog::hook();
    let manager = LocalProcManager::with_polite_stop(Some(hook));
    let names = spawn_mix(&manager, 3, 9).await;
    let handles: Vec<_> = names
        .iter()
        .map(|n| manager.get(&name(n)).unwrap())
        .collect();
    let grace = Duration::from_millis(200);
    let started = Instant::now();
    let summary = manager.terminate_all(grace, 2).await;
    assert_eq!(summary.to_string(), "attempted=12 ok=12 failed=0");
    log.assert_each_once(&names);
    assert!(log.peak() <= 2, "terminating at once: {}", log.peak());
    for (proc_name, proc) in names.iter().zip(&handles) {
        let status = proc.wait().await.unwrap();
        if proc_name.starts_with("deaf") {
            assert_eq!(status, ABORTED, "{proc_name}");
            assert!(log.ended(proc_name) >= started + grace, "{proc_name}");
        } else {
            assert_eq!(status, exited(0), "{proc_name}");
        }
    }
    // Three deaf tasks on two slots: two of them one after the other.
    assert!(started.elapsed() >= grace * 2);
}

#[tokio::test]
async fn bulk_terminate_overall_deadline_stops_all_at_once_in_process() {
    let (hook, log) = TerminationLog::hook();
    let manager = LocalProcManager::with_polite_stop(Some(hook));
    let names = spawn_mix(&manager, 4, 4).await;
    let grace = Duration::from_millis(200);
    let started = Instant::now();
    let summary = manager
        .terminate_all_with(grace, BulkTerminateMode::OverallDeadline)
        .await;
    let took = started.elapsed();
    assert!(took >= grace && took <= grace + EPSILON, "took {took:?}");
    assert_eq!(summary.to_string(), "attempted=8 ok=8 failed=0");
    log.assert_each_once(&names);
    let last_began = names.iter().map(|n| log.began(n)).max().unwrap();
    let first_deaf_end = (0..4)
        .map(|i| log.ended(&format!("deaf{i}")))
        .min()
        .unwrap();
    assert!(last_began < first_deaf_end, "{:?}", log.events());
}
