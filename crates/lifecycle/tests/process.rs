//! OS-process manager tests: each injects a fault into a real child process
//! and checks the outcome.

use std::future::Future as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hostmux_lifecycle::{
    BulkTerminate, LifecycleError, OutputMode, PoliteStopHook, ProcHandle, ProcManager, ProcStatus,
    ProcessConfig, ProcessProcManager, Readiness, ReadyError, TerminalStatus, TerminateError,
};

use crate::support::*;

const SIGKILLED: TerminalStatus = TerminalStatus::Signaled {
    signal: libc::SIGKILL,
    core_dumped: false,
    output: None,
};

fn term_ignorer() -> ProcessConfig {
    ProcessConfig::new("sh")
        .args(["-c", "trap '' TERM; exec sleep 1000"])
        .readiness(Readiness::OnSpawn)
}

fn fixture_mode(mode: &str) -> ProcessConfig {
    ProcessConfig::new(fixture()).arg(mode)
}

fn counting_hook() -> (PoliteStopHook, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let hook: PoliteStopHook = Arc::new(move |_name| {
        counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    });
    (hook, calls)
}

/// `sh` has exec'd `sleep` once its /proc comm says so; until then a TERM
/// might reach the shell before the trap is set.
async fn wait_for_comm(pid: u32, comm: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_owned())
        .ok()
        .as_deref()
        != Some(comm)
    {
        assert!(Instant::now() < deadline, "proc {pid} never became {comm}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_ignoring_proc_is_sigkilled_within_grace_plus_epsilon() {
    let manager = ProcessProcManager::default();
    let proc = manager
        .spawn(name("ignorer"), term_ignorer())
        .await
        .unwrap();
    wait_for_comm(proc.pid().unwrap(), "sleep").await;
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
    let proc = manager
        .spawn(name("coop"), fixture_mode("ready"))
        .await
        .unwrap();
    proc.ready().await.unwrap();
    assert_eq!(proc.status(), ProcStatus::Ready);
    let status = proc.terminate(Duration::from_secs(30)).await.unwrap();
    assert_eq!(status, exited(0));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setsid_grandchild_dies_with_its_proc_where_cgroups_exist() {
    let manager = ProcessProcManager::default();
    if manager.cgroup_dir().is_none() {
        eprintln!("no writable cgroup v2 here; setsid escape cannot be contained");
        return;
    }
    let pidfile = temp_path("setsid");
    let proc = manager
        .spawn(
            name("setsid"),
            fixture_mode("setsid-grandchild").arg(&pidfile),
        )
        .await
        .unwrap();
    proc.ready().await.unwrap();
    let grandchild: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = std::fs::remove_file(&pidfile);
    let gc_fd = pidfd(grandchild).expect("grandchild alive before terminate");
    proc.terminate(Duration::from_secs(5)).await.unwrap();
    assert!(
        exited_within(&gc_fd, EPSILON),
        "setsid grandchild {grandchild} survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_forking_daemon_leaves_no_process_and_no_zombie() {
    let manager = ProcessProcManager::default();
    if manager.cgroup_dir().is_none() {
        eprintln!("no writable cgroup v2 here; a daemonised grandchild cannot be found");
        return;
    }
    let pidfile = temp_path("daemon");
    let proc = manager
        .spawn(name("daemon"), fixture_mode("double-fork").arg(&pidfile))
        .await
        .unwrap();
    proc.ready().await.unwrap();
    let daemon: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = std::fs::remove_file(&pidfile);
    let daemon_fd = pidfd(daemon).expect("daemon alive before terminate");
    assert_ne!(proc_state(daemon), Some('Z'));
    proc.terminate(Duration::from_secs(5)).await.unwrap();
    assert!(
        exited_within(&daemon_fd, EPSILON),
        "daemon {daemon} survived"
    );
    // Reaping the orphan is its new parent's job (init); wait for it.
    let deadline = Instant::now() + EPSILON * 2;
    while proc_state(daemon) == Some('Z') && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_ne!(proc_state(daemon), Some('Z'), "daemon left a zombie");
    assert!(zombie_children().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_and_repeated_terminates_coalesce_onto_one_escalation() {
    let (hook, calls) = counting_hook();
    let manager = ProcessProcManager::builder().polite_stop(hook).build();
    let proc = manager
        .spawn(name("coalesce"), term_ignorer())
        .await
        .unwrap();
    wait_for_comm(proc.pid().unwrap(), "sleep").await;
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
        let proc = manager
            .spawn(
                name(&format!("racer{i}")),
                fixture_mode("ready-exit-deaf").arg("7"),
            )
            .await
            .unwrap();
        let _ = proc.ready().await;
        let status = match proc.terminate(Duration::from_secs(30)).await {
            Ok(status) | Err(TerminateError::AlreadyTerminated(status)) => status,
            Err(e) => panic!("terminate racing exit: {e}"),
        };
        // SIGTERM cannot kill this proc, so whichever way the race went the
        // status is its own exit; signals to the exiting proc (ESRCH) are
        // absorbed rather than reported.
        assert_eq!(status, exited(7), "racer {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_proc_still_terminates() {
    let manager = ProcessProcManager::default();
    let proc = manager
        .spawn(name("stopped"), fixture_mode("ready"))
        .await
        .unwrap();
    proc.ready().await.unwrap();
    let pid = proc.pid().unwrap();
    // Our unreaped child: its pid cannot have been reused.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::STOP,
    )
    .unwrap();
    let deadline = Instant::now() + EPSILON;
    while proc_state(pid) != Some('T') {
        assert!(Instant::now() < deadline, "never stopped");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // SIGCONT follows SIGTERM, so the stopped proc wakes and exits cleanly.
    let status = proc.terminate(Duration::from_secs(30)).await.unwrap();
    assert_eq!(status, exited(0));

    let ignorer = manager
        .spawn(name("stopped-ignorer"), term_ignorer())
        .await
        .unwrap();
    let pid = ignorer.pid().unwrap();
    wait_for_comm(pid, "sleep").await;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::STOP,
    )
    .unwrap();
    assert_eq!(
        ignorer.terminate(Duration::from_millis(200)).await.unwrap(),
        SIGKILLED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_caller_does_not_cancel_the_escalation() {
    let manager = ProcessProcManager::default();
    let proc = manager
        .spawn(name("cancelled"), term_ignorer())
        .await
        .unwrap();
    wait_for_comm(proc.pid().unwrap(), "sleep").await;
    let grace = Duration::from_millis(400);
    let started = Instant::now();
    let cut_short = tokio::time::timeout(Duration::from_millis(100), proc.terminate(grace)).await;
    assert!(cut_short.is_err(), "the caller gave up mid-grace");
    assert_eq!(proc.wait().await.unwrap(), SIGKILLED);
    let took = started.elapsed();
    assert!(took >= grace && took <= grace + EPSILON, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_ready_proc_is_killed_and_reaped_after_the_ready_timeout() {
    let manager = ProcessProcManager::default();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let proc = manager
        .spawn(
            name("sloth"),
            fixture_mode("never-ready").ready_timeout(timeout),
        )
        .await
        .unwrap();
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
    let proc = manager
        .spawn(
            name("quitter"),
            fixture_mode("exit-before-ready")
                .arg("3")
                .ready_timeout(timeout),
        )
        .await
        .unwrap();
    assert_eq!(proc.ready().await, Err(ReadyError::Terminal(exited(3))));
    assert!(
        started.elapsed() < EPSILON * 2,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segfault_after_ready_is_signaled_sigsegv_not_exit_139() {
    let manager = ProcessProcManager::default();
    let proc = manager
        .spawn(
            name("crasher"),
            fixture_mode("segfault-after-ready").stderr(OutputMode::Null),
        )
        .await
        .unwrap();
    proc.ready().await.unwrap();
    match proc.wait().await.unwrap() {
        TerminalStatus::Signaled { signal, .. } => assert_eq!(signal, libc::SIGSEGV),
        other => panic!("expected SIGSEGV, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_status_carries_the_bounded_output_tail_complete_at_exit() {
    let manager = ProcessProcManager::default();
    let proc = manager
        .spawn(
            name("talker"),
            ProcessConfig::new("sh")
                .args(["-c", "printf 0123456789; printf oops >&2; exit 4"])
                .readiness(Readiness::OnSpawn)
                .stdout(OutputMode::Capture { max_bytes: 4 })
                .stderr(OutputMode::Capture { max_bytes: 64 }),
        )
        .await
        .unwrap();
    let status = proc.wait().await.unwrap();
    let TerminalStatus::Exited {
        code: 4,
        output: Some(tail),
    } = &status
    else {
        panic!("expected exit 4 with a tail, got {status:?}");
    };
    assert_eq!(tail.stdout, b"6789", "only the last max_bytes of stdout");
    assert_eq!(tail.stderr, b"oops");
    assert_eq!(tail.dropped_bytes, 6);
    assert!(tail.complete, "both pipes read to EOF before publishing");
    assert_eq!(
        status.to_string(),
        "exited with code 4 (8 output bytes captured, 6 dropped)"
    );
    assert_eq!(proc.output_tail().as_ref(), Some(&**tail));
    assert_eq!(proc.wait().await.unwrap(), status, "every waiter sees it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_and_failed_statuses_carry_the_output_tail() {
    let manager = ProcessProcManager::default();
    let ignorer = manager
        .spawn(
            name("loud-ignorer"),
            ProcessConfig::new("sh")
                .args(["-c", "trap '' TERM; echo started; exec sleep 1000"])
                .readiness(Readiness::OnSpawn)
                .stdout(OutputMode::Capture { max_bytes: 64 }),
        )
        .await
        .unwrap();
    wait_for_comm(ignorer.pid().unwrap(), "sleep").await;
    let status = ignorer.terminate(Duration::from_millis(50)).await.unwrap();
    match &status {
        TerminalStatus::Signaled {
            signal,
            output: Some(tail),
            ..
        } => {
            assert_eq!(*signal, libc::SIGKILL);
            assert_eq!(tail.stdout, b"started\n");
            assert!(tail.stderr.is_empty(), "stderr was not captured");
            assert!(tail.complete);
        }
        other => panic!("expected SIGKILL with a tail, got {other:?}"),
    }

    // The tail of a proc that never became ready says why. It closes its
    // ready pipe after writing, so the failure comes after the write.
    let silent = manager
        .spawn(
            name("never-ready"),
            ProcessConfig::new("sh")
                .args([
                    "-c",
                    "echo 'config missing' >&2; eval \"exec $HOSTMUX_READY_FD>&-\"; exec sleep 1000",
                ])
                .stderr(OutputMode::Capture { max_bytes: 64 }),
        )
        .await
        .unwrap();
    match silent.wait().await.unwrap() {
        TerminalStatus::Failed {
            output: Some(tail), ..
        } => assert_eq!(tail.stderr, b"config missing\n"),
        other => panic!("expected Failed with a tail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncaptured_proc_status_carries_no_output() {
    let manager = ProcessProcManager::default();
    let proc = manager
        .spawn(
            name("quiet"),
            ProcessConfig::new("sh")
                // `|| exit 3`: a write error to the null stream would show.
                .args(["-c", "echo to-null || exit 3; exit 2"])
                .readiness(Readiness::OnSpawn)
                .stdout(OutputMode::Null),
        )
        .await
        .unwrap();
    let status = proc.wait().await.unwrap();
    assert_eq!(
        status,
        TerminalStatus::Exited {
            code: 2,
            output: None
        }
    );
    assert_eq!(status.output(), None);
    assert_eq!(proc.output_tail(), None);
    assert_eq!(status.to_string(), "exited with code 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_live_name_is_rejected() {
    let manager = ProcessProcManager::default();
    let first = manager.spawn(name("twin"), term_ignorer()).await.unwrap();
    let second = manager.spawn(name("twin"), term_ignorer()).await;
    assert!(matches!(second, Err(LifecycleError::ProcExists(n)) if n.as_str() == "twin"));
    first.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_failures_are_typed_and_leak_no_fds() {
    if run_isolated("process::spawn_failures_are_typed_and_leak_no_fds", None) {
        return;
    }
    let manager = ProcessProcManager::default();
    // Warm up lazily created state (spawner thread, reactor) before counting.
    let warm = manager
        .spawn(name("warm"), fixture_mode("ready-exit").arg("0"))
        .await
        .unwrap();
    warm.wait().await.unwrap();
    let baseline = fd_count();

    let missing = manager
        .spawn(
            name("missing"),
            ProcessConfig::new("/nonexistent/hostmux-no-such-binary"),
        )
        .await;
    match missing {
        Err(LifecycleError::Spawn {
            name: n, source, ..
        }) => {
            assert_eq!(n.as_str(), "missing");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
    let not_exec = temp_path("not-executable");
    std::fs::write(&not_exec, b"#!/bin/sh\nexit 0\n").unwrap();
    let denied = manager
        .spawn(name("denied"), ProcessConfig::new(&not_exec))
        .await;
    let _ = std::fs::remove_file(&not_exec);
    match denied {
        Err(LifecycleError::Spawn { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied)
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
    assert_eq!(fd_count(), baseline);
    assert!(manager.live_procs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_starts_with_clean_signals_and_pdeathsig() {
    // The isolated copy starts with SIGUSR1 ignored, which children would
    // inherit across exec unless the manager resets dispositions.
    if run_isolated(
        "process::child_starts_with_clean_signals_and_pdeathsig",
        Some("trap '' USR1;"),
    ) {
        return;
    }
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let usr1_bit = 1u64 << (libc::SIGUSR1 - 1);
    assert_ne!(
        status_mask(&own, "SigIgn") & usr1_bit,
        0,
        "precondition: host ignores SIGUSR1"
    );

    let manager = ProcessProcManager::default();
    // `cat` changes no signal state itself (a Rust child would: the Rust
    // runtime ignores SIGPIPE at start-up), so its status shows what it got.
    let cat = manager
        .spawn(
            name("inspect-signals"),
            ProcessConfig::new("cat")
                .arg("/proc/self/status")
                .readiness(Readiness::OnSpawn)
                .stdout(OutputMode::Capture {
                    max_bytes: 64 * 1024,
                }),
        )
        .await
        .unwrap();
    let exit = cat.wait().await.unwrap();
    assert!(exit.success(), "{exit}");
    let status = String::from_utf8(exit.output().unwrap().stdout.clone()).unwrap();
    assert_eq!(
        status_mask(&status, "SigBlk"),
        0,
        "blocked mask not cleared"
    );
    assert_eq!(
        status_mask(&status, "SigIgn"),
        0,
        "ignored dispositions leaked"
    );

    // The death signal is not in /proc/<pid>/status; the child reads it
    // with PR_GET_PDEATHSIG and reports it.
    let out = temp_path("pdeathsig");
    let proc = manager
        .spawn(
            name("inspect-pdeathsig"),
            fixture_mode("report-status").arg(&out),
        )
        .await
        .unwrap();
    proc.ready().await.unwrap();
    let report = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(report.trim(), format!("PDeathSig:\t{}", libc::SIGKILL));
    proc.terminate(Duration::from_secs(5)).await.unwrap();
}

fn status_mask(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in status"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_terminate_counts_every_proc_and_caps_polite_stops() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (flight, top) = (Arc::clone(&in_flight), Arc::clone(&peak));
    let hook: PoliteStopHook = Arc::new(move |_name| {
        let (flight, top) = (Arc::clone(&flight), Arc::clone(&top));
        Box::pin(async move {
            let _in_flight = InFlight::enter(&flight, &top);
            tokio::time::sleep(Duration::from_millis(20)).await;
        })
    });
    let manager = ProcessProcManager::builder().polite_stop(hook).build();
    let mut handles = Vec::new();
    for i in 0..10 {
        let config = if i % 3 == 0 {
            term_ignorer()
        } else {
            fixture_mode("ready")
        };
        let h = manager
            .spawn(name(&format!("bulk{i}")), config)
            .await
            .unwrap();
        if i % 3 == 0 {
            wait_for_comm(h.pid().unwrap(), "sleep").await;
        } else {
            h.ready().await.unwrap();
        }
        handles.push(h);
    }
    let grace = Duration::from_millis(500);
    let started = Instant::now();
    let summary = manager.terminate_all(grace, 3).await;
    assert!(started.elapsed() <= grace + EPSILON);
    assert_eq!(summary.attempted, 10);
    assert_eq!(summary.ok + summary.failed, summary.attempted);
    assert_eq!(summary.ok, 10);
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "polite stops in flight: {}",
        peak.load(Ordering::SeqCst)
    );
    for (i, h) in handles.iter().enumerate() {
        let expected = if i % 3 == 0 { SIGKILLED } else { exited(0) };
        assert_eq!(h.wait().await.unwrap(), expected, "proc {i}");
    }
    assert!(manager.live_procs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_storm_of_500_is_bounded_reaped_and_leaks_no_fds() {
    if run_isolated(
        "process::spawn_storm_of_500_is_bounded_reaped_and_leaks_no_fds",
        None,
    ) {
        return;
    }
    let manager = ProcessProcManager::builder().max_starting(32).build();
    let warm = manager
        .spawn(name("warm"), fixture_mode("ready-exit").arg("0"))
        .await
        .unwrap();
    warm.wait().await.unwrap();
    let baseline = fd_count();
    let mut storm = tokio::task::JoinSet::new();
    for i in 0..500 {
        let manager = manager.clone();
        storm.spawn(async move {
            let proc = manager
                .spawn(
                    name(&format!("storm{i}")),
                    fixture_mode("ready-exit").arg("0"),
                )
                .await
                .expect("spawn");
            proc.ready().await.expect("ready");
            proc.wait().await.expect("wait")
        });
    }
    while let Some(status) = storm.join_next().await {
        assert_eq!(status.unwrap(), exited(0));
    }
    assert!(
        manager.starting_peak() <= 32,
        "peak {}",
        manager.starting_peak()
    );
    assert!(manager.starting_peak() >= 2, "the storm never overlapped");
    assert!(
        zombie_children().is_empty(),
        "zombies: {:?}",
        zombie_children()
    );
    assert_eq!(fd_count(), baseline);
    assert!(manager.live_procs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stress: run explicitly with --ignored"]
async fn stress_spawn_storm_5000_with_terminates() {
    let manager = ProcessProcManager::builder().max_starting(64).build();
    let started = Instant::now();
    let mut storm = tokio::task::JoinSet::new();
    for i in 0..5000 {
        let manager = manager.clone();
        storm.spawn(async move {
            let mode = if i % 2 == 0 {
                "ready"
            } else {
                "ready-exit-deaf"
            };
            let proc = manager
                .spawn(name(&format!("s{i}")), fixture_mode(mode).arg("0"))
                .await
                .expect("spawn");
            proc.ready().await.expect("ready");
            match proc.terminate(Duration::from_secs(5)).await {
                Ok(status) | Err(TerminateError::AlreadyTerminated(status)) => status,
                Err(e) => panic!("terminate: {e}"),
            }
        });
    }
    while let Some(status) = storm.join_next().await {
        assert_eq!(status.unwrap(), exited(0));
    }
    eprintln!(
        "5000 spawn+ready+terminate in {:?}, starting peak {}",
        started.elapsed(),
        manager.starting_peak()
    );
    assert!(manager.live_procs().is_empty());
    assert!(zombie_children().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_fds_land_at_fixed_and_announced_numbers() {
    use hostmux_lifecycle::ChildFdSlot;
    use std::io::Read as _;
    let pipe = || {
        let (rx, tx) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        (std::fs::File::from(rx), tx)
    };
    let (mut fixed_rx, fixed_tx) = pipe();
    let (mut env_rx, env_tx) = pipe();
    let manager = ProcessProcManager::default();
    let proc = manager
        .spawn(
            name("fds"),
            fixture_mode("write-fds")
                .args(["10", "HOSTMUX_TEST_FD"])
                .fd(fixed_tx, ChildFdSlot::Fixed(10))
                .fd(env_tx, ChildFdSlot::Env("HOSTMUX_TEST_FD".into())),
        )
        .await
        .unwrap();
    assert_eq!(proc.wait().await.unwrap(), exited(0));
    // The manager closed its copies, so these reads end at the child's exit.
    let (mut fixed, mut env) = (String::new(), String::new());
    fixed_rx.read_to_string(&mut fixed).unwrap();
    env_rx.read_to_string(&mut env).unwrap();
    assert_eq!((fixed.as_str(), env.as_str()), ("fixed", "env"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_cwd_and_name_reach_the_child() {
    let manager = ProcessProcManager::default();
    let proc = manager
        .spawn(
            name("env-check"),
            ProcessConfig::new("sh")
                .args([
                    "-c",
                    "printf '%s|%s|%s' \"$GREETING\" \"$HOSTMUX_PROC_NAME\" \"$(pwd)\"",
                ])
                .env("GREETING", "hello")
                .current_dir("/tmp")
                .readiness(Readiness::OnSpawn)
                .stdout(OutputMode::Capture { max_bytes: 256 }),
        )
        .await
        .unwrap();
    let exit = proc.wait().await.unwrap();
    assert!(exit.success(), "{exit}");
    let out = String::from_utf8(exit.output().unwrap().stdout.clone()).unwrap();
    assert_eq!(out, "hello|env-check|/tmp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_runs_in_its_own_cgroup_which_is_emptied_and_reused_after_exit() {
    let manager = ProcessProcManager::default();
    let Some(manager_dir) = manager.cgroup_dir().map(|d| d.to_path_buf()) else {
        eprintln!("no writable cgroup v2 here");
        return;
    };
    let cgroup_of = |pid: u32| {
        let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let own = membership
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap()
            .to_owned();
        std::path::PathBuf::from(own)
    };
    let proc = manager
        .spawn(name("caged"), fixture_mode("ready"))
        .await
        .unwrap();
    proc.ready().await.unwrap();
    let first = cgroup_of(proc.pid().unwrap());
    let leaf = manager_dir.join(first.file_name().unwrap());
    assert!(
        manager_dir.ends_with(first.parent().unwrap().strip_prefix("/").unwrap()),
        "proc is in {first:?}"
    );
    assert_eq!(
        std::fs::read_to_string(leaf.join("cgroup.procs"))
            .unwrap()
            .trim(),
        proc.pid().unwrap().to_string()
    );
    proc.terminate(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(leaf.join("cgroup.procs")).unwrap(),
        "",
        "cgroup not emptied"
    );

    // The emptied cgroup is reused by the next proc.
    let next = manager
        .spawn(name("caged-again"), fixture_mode("ready"))
        .await
        .unwrap();
    next.ready().await.unwrap();
    assert_eq!(cgroup_of(next.pid().unwrap()), first);
    next.terminate(Duration::from_secs(5)).await.unwrap();
    drop(manager);
    assert!(
        !manager_dir.exists(),
        "manager cgroup directory left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_spawns_leak_no_process_name_or_fd() {
    if run_isolated("process::cancelled_spawns_leak_no_process_name_or_fd", None) {
        return;
    }
    let manager = ProcessProcManager::default();
    let warm = manager
        .spawn(name("warm"), fixture_mode("ready-exit").arg("0"))
        .await
        .unwrap();
    warm.wait().await.unwrap();
    let baseline = fd_count();
    let mut cancelled = Vec::new();
    for i in 0..20 {
        // Poll once (the job goes to the spawner thread), then drop: the
        // spawn is cancelled while the spawner thread has the job. The
        // spawner thread may also win the race and finish the job before
        // that one poll returns; such a proc is killed and not counted.
        let phantom = format!("phantom-{i}");
        let spawn = manager.spawn(name(&phantom), fixture_mode("never-ready"));
        tokio::pin!(spawn);
        let first =
            std::future::poll_fn(|cx| std::task::Poll::Ready(spawn.as_mut().poll(cx))).await;
        match first {
            std::task::Poll::Pending => cancelled.push(phantom),
            std::task::Poll::Ready(result) => {
                let handle = result.expect("a finished spawn succeeded");
                handle.kill().await.expect("kill the uncancelled proc");
            }
        }
    }
    assert!(!cancelled.is_empty(), "no spawn was cancelled mid-flight");
    // The spawner runs jobs in order: once this one is done, so are those.
    let reused = cancelled.last().expect("checked above");
    let after = manager
        .spawn(name(reused), fixture_mode("ready-exit").arg("0"))
        .await
        .expect("the name is free again");
    assert_eq!(after.wait().await.unwrap(), exited(0));
    let me = std::process::id().to_string();
    // The manager's cgroup guardian is a child of this process too.
    let guardian = manager.guardian_pid();
    let children = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|pid| Some(*pid) != guardian)
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat[stat.rfind(')').unwrap() + 1..]
                        .split_whitespace()
                        .nth(1)
                        == Some(me.as_str())
                })
            })
            .collect()
    };
    // A proc whose caller vanished after the clone is killed and reaped by
    // its own supervisor, asynchronously: wait for that, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !children().is_empty() || fd_count() != baseline {
        assert!(
            Instant::now() < deadline,
            "leaked children {:?} or fds ({} vs baseline {baseline})",
            children(),
            fd_count()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(manager.live_procs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_cgroup_is_removed_and_the_pool_refilled_after_the_status() {
    let manager = ProcessProcManager::default();
    let Some(manager_dir) = manager.cgroup_dir().map(|d| d.to_path_buf()) else {
        eprintln!("no writable cgroup v2 here");
        return;
    };
    let proc_cgroups = || {
        std::fs::read_dir(&manager_dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count()
    };
    // Pre-created at build, so a spawn finds an empty cgroup waiting.
    let pooled = proc_cgroups();
    assert!(pooled > 0, "no cgroups pre-created");
    let ignorer = manager
        .spawn(name("killed-cgroup"), fixture_mode("ignore-term"))
        .await
        .unwrap();
    ignorer.ready().await.unwrap();
    let membership =
        std::fs::read_to_string(format!("/proc/{}/cgroup", ignorer.pid().unwrap())).unwrap();
    let leaf = manager_dir.join(
        std::path::Path::new(
            membership
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap(),
        )
        .file_name()
        .unwrap(),
    );
    assert!(leaf.is_dir());
    assert_eq!(
        ignorer.terminate(Duration::from_millis(50)).await.unwrap(),
        SIGKILLED
    );
    assert!(!leaf.exists(), "a cgroup.kill'ed cgroup must not be kept");
    // The replacement is made after the status went out; wait for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while proc_cgroups() != pooled {
        assert!(
            Instant::now() < deadline,
            "pool not refilled: {}",
            proc_cgroups()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_after_a_cgroup_kill_starts_normally() {
    // Regression: a cgroup that received `cgroup.kill` must not be handed to
    // the next proc (on 6.18 a child cloned into it is SIGKILLed at birth).
    let manager = ProcessProcManager::default();
    for round in 0..3 {
        let ignorer = manager
            .spawn(name(&format!("doomed{round}")), fixture_mode("ignore-term"))
            .await
            .unwrap();
        ignorer.ready().await.unwrap();
        let status = ignorer.terminate(Duration::from_millis(50)).await.unwrap();
        assert_eq!(status, SIGKILLED);
        let next = manager
            .spawn(name(&format!("survivor{round}")), fixture_mode("ready"))
            .await
            .unwrap();
        next.ready().await.unwrap();
        assert_eq!(
            next.terminate(Duration::from_secs(5)).await.unwrap(),
            exited(0)
        );
    }
}
