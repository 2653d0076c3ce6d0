//! Bulk terminate of real processes, in both modes: every proc gets its
//! polite stop, SIGTERM and (if it ignores SIGTERM) SIGKILL after its
//! grace; per-proc grace bounds how many terminate at once, the overall
//! deadline bounds the total time.

use std::time::{Duration, Instant};

use hostmux_lifecycle::{
    BulkTerminate, BulkTerminateMode, ProcHandle, ProcessHandle, ProcessProcManager,
    TerminateSummary,
};

use crate::support::*;

/// Spawns `deaf` SIGTERM-ignoring procs named `deaf0`… and `cooperative`
/// procs named `polite0`… (which exit 0 on SIGTERM), so the deaf ones sort first, each ready (the deaf
/// ones sleeping with their trap set) before this returns.
async fn spawn_mix(
    manager: &ProcessProcManager,
    deaf: usize,
    cooperative: usize,
) -> Vec<(String, ProcessHandle)> {
    let mut procs = Vec::new();
    for i in 0..deaf {
        let proc_name = format!("deaf{i}");
        let proc = spawn_until_sleeping(manager, &proc_name, term_ignorer()).await;
        procs.push((proc_name, proc));
    }
    for i in 0..cooperative {
        let proc_name = format!("polite{i}");
        let proc = spawn_ready(manager, &proc_name, fixture_mode("ready")).await;
        procs.push((proc_name, proc));
    }
    procs
}

fn all_ok(n: usize) -> TerminateSummary {
    TerminateSummary {
        attempted: n,
        ok: n,
        failed: 0,
    }
}

/// Regression (issue 11, case 5): bulk terminate sent every proc its stop
/// at once and only capped the polite-stop hooks, so hooks still waiting
/// for a slot were dropped when their proc ended (3, 4 and 7 of 8 ran).
/// Now at most `max_in_flight` procs terminate at a time, each with its
/// polite stop and full escalation, and a slow one holds only its own slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_terminate_runs_every_polite_stop_with_bounded_concurrency() {
    let (hook, log) = TerminationLog::hook();
    let manager = ProcessProcManager::builder().polite_stop(hook).build();
    // `deaf0` sorts first, so it takes a slot in the first round and holds
    // it for its whole grace.
    let procs = spawn_mix(&manager, 1, 7).await;
    let names: Vec<String> = procs.iter().map(|(n, _)| n.clone()).collect();
    let grace = Duration::from_secs(3);

    let started = Instant::now();
    let summary = manager.terminate_all(grace, 3).await;

    assert_eq!(summary, all_ok(8));
    log.assert_each_once(&names);
    assert!(log.peak() <= 3, "terminating at once: {}", log.peak());
    for (proc_name, proc) in &procs {
        let status = proc.wait().await.unwrap();
        if proc_name.starts_with("deaf") {
            // Full escalation: SIGTERM ignored, SIGKILL once its grace ran out.
            assert_eq!(status, SIGKILLED, "{proc_name}");
            assert!(
                log.ended(proc_name) >= started + grace,
                "{proc_name} killed before its grace: {:?}",
                log.ended(proc_name) - started
            );
        } else {
            // SIGTERM reached it (the fixture exits 0 only on SIGTERM).
            assert_eq!(status, exited(0), "{proc_name}");
            // The deaf proc held one slot; the others went through the
            // remaining two as soon as each freed, not after the deaf one.
            assert!(
                log.ended(proc_name) < log.ended("deaf0"),
                "{proc_name} waited for the deaf proc: {:?}",
                log.events()
            );
        }
    }
    assert!(manager.live_procs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_terminate_overall_deadline_stops_all_at_once_within_grace_plus_epsilon() {
    let (hook, log) = TerminationLog::hook();
    let manager = ProcessProcManager::builder().polite_stop(hook).build();
    let procs = spawn_mix(&manager, 6, 2).await;
    let names: Vec<String> = procs.iter().map(|(n, _)| n.clone()).collect();
    let grace = Duration::from_secs(1);

    let started = Instant::now();
    let summary = manager
        .terminate_all_with(grace, BulkTerminateMode::OverallDeadline)
        .await;
    let took = started.elapsed();

    // The bound: one deadline for all, so grace + ε however many ignore
    // SIGTERM (per-proc grace with fewer than 6 slots would need 2 × grace).
    assert!(took >= grace && took <= grace + EPSILON, "took {took:?}");
    assert_eq!(summary, all_ok(8));
    log.assert_each_once(&names);
    // No cap: every proc's termination began before any deaf one ended.
    let last_began = names.iter().map(|n| log.began(n)).max().unwrap();
    let first_deaf_end = (0..6)
        .map(|i| log.ended(&format!("deaf{i}")))
        .min()
        .unwrap();
    assert!(last_began < first_deaf_end, "{:?}", log.events());
    for (proc_name, proc) in &procs {
        let status = proc.wait().await.unwrap();
        if proc_name.starts_with("deaf") {
            assert_eq!(status, SIGKILLED, "{proc_name}");
            assert!(log.ended(proc_name) >= started + grace, "{proc_name}");
        } else {
            assert_eq!(status, exited(0), "{proc_name}");
        }
    }
    assert!(manager.live_procs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_terminate_counts_procs_that_ended_before_their_turn_as_ok() {
    let (hook, log) = TerminationLog::hook();
    let manager = ProcessProcManager::builder().polite_stop(hook).build();
    let procs = spawn_mix(&manager, 1, 2).await;
    // `polite0` and `polite1` exit on their own (SIGTERM from outside) while
    // `deaf0` holds the only slot.
    let terminating = tokio::spawn({
        let manager = manager.clone();
        async move { manager.terminate_all(Duration::from_millis(500), 1).await }
    });
    wait_until(
        EPSILON,
        || !log.events().is_empty(),
        || "deaf0's termination never began".into(),
    )
    .await;
    for (proc_name, proc) in &procs[1..] {
        let pid = rustix::process::Pid::from_raw(proc.pid().unwrap() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        assert_eq!(proc.wait().await.unwrap(), exited(0), "{proc_name}");
    }
    let summary = terminating.await.unwrap();
    assert_eq!(summary, all_ok(3));
    assert_eq!(procs[0].1.wait().await.unwrap(), SIGKILLED);
    // Only deaf0 was still running when its turn came.
    log.assert_each_once(&["deaf0".to_owned()]);
}
