//! In-process manager tests.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hostmux_lifecycle::{
    BulkTerminate, LocalProcConfig, LocalProcManager, ProcHandle, ProcManager, ReadyError,
    SingleTerminate, TerminalStatus, TerminateError,
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

#[tokio::test]
async fn bulk_terminate_summary_adds_up_and_caps_polite_stops() {
    let (hook, peak) = peak_counting_hook(Duration::from_millis(20));
    let manager = LocalProcManager::with_polite_stop(Some(hook));
    for i in 0..12 {
        let config = if i % 4 == 0 { deaf() } else { cooperative() };
        manager
            .spawn(name(&format!("p{i}")), config)
            .await
            .unwrap()
            .ready()
            .await
            .unwrap();
    }
    let summary = manager.terminate_all(Duration::from_millis(200), 2).await;
    assert_eq!(summary.attempted, 12);
    assert_eq!(summary.ok, 12);
    assert_eq!(summary.failed, 0);
    assert_eq!(summary.to_string(), "attempted=12 ok=12 failed=0");
    assert!(peak.load(Ordering::SeqCst) <= 2);
}
