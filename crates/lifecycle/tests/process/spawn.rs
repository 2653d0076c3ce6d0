//! Spawning: what the child starts with (signals, PDEATHSIG, fds, env,
//! cwd, name), typed spawn failures, unique names, and that storms and
//! cancelled spawns leak no process, zombie, name or fd.

use std::future::Future as _;
use std::time::{Duration, Instant};

use hostmux_lifecycle::{
    LifecycleError, OutputMode, ProcHandle, ProcManager, ProcessConfig, ProcessProcManager,
    Readiness,
};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_live_name_is_rejected() {
    let manager = ProcessProcManager::default();
    let first = spawn(&manager, "twin", term_ignorer()).await;
    let second = manager.spawn(name("twin"), term_ignorer()).await;
    assert!(matches!(second, Err(LifecycleError::ProcExists(n)) if n.as_str() == "twin"));
    first.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_failures_are_typed_and_leak_no_fds() {
    if run_isolated(None) {
        return;
    }
    let manager = ProcessProcManager::default();
    let baseline = warm_up(&manager).await;

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
    if run_isolated(Some("trap '' USR1;")) {
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
    let (_, exit) = run_to_exit(
        &manager,
        "inspect-signals",
        ProcessConfig::new("cat")
            .arg("/proc/self/status")
            .readiness(Readiness::OnSpawn)
            .stdout(OutputMode::Capture {
                max_bytes: 64 * 1024,
            }),
    )
    .await;
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
    let proc = spawn_ready(
        &manager,
        "inspect-pdeathsig",
        fixture_mode("report-status").arg(&out),
    )
    .await;
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
    let (_, status) = run_to_exit(
        &manager,
        "fds",
        fixture_mode("write-fds")
            .args(["10", "HOSTMUX_TEST_FD"])
            .fd(fixed_tx, ChildFdSlot::Fixed(10))
            .fd(env_tx, ChildFdSlot::Env("HOSTMUX_TEST_FD".into())),
    )
    .await;
    assert_eq!(status, exited(0));
    // The manager closed its copies, so these reads end at the child's exit.
    let (mut fixed, mut env) = (String::new(), String::new());
    fixed_rx.read_to_string(&mut fixed).unwrap();
    env_rx.read_to_string(&mut env).unwrap();
    assert_eq!((fixed.as_str(), env.as_str()), ("fixed", "env"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fds_announced_in_one_variable_make_a_list_in_order() {
    use hostmux_lifecycle::ChildFdSlot;
    use std::io::Read as _;
    let pipe = || {
        let (rx, tx) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        (std::fs::File::from(rx), tx)
    };
    let ((mut rx1, tx1), (mut rx2, tx2), (mut rx3, tx3)) = (pipe(), pipe(), pipe());
    let slot = || ChildFdSlot::Env("HOSTMUX_TEST_FDS".into());
    let manager = ProcessProcManager::default();
    // Writes its position in the list into each fd, and prints the list.
    let script = "i=1; for fd in $(echo \"$HOSTMUX_TEST_FDS\" | tr , ' '); do \
                  printf '%s' $i >&$fd; i=$((i+1)); done; printf '%s' \"$HOSTMUX_TEST_FDS\"";
    let (_, exit) = run_to_exit(
        &manager,
        "fd-list",
        shell(script)
            .fd(tx1, slot())
            .fd(tx2, slot())
            .fd(tx3, slot())
            .stdout(OutputMode::Capture { max_bytes: 256 }),
    )
    .await;
    assert!(exit.success(), "{exit}");
    let list = String::from_utf8(exit.output().unwrap().stdout.clone()).unwrap();
    let numbers: Vec<i32> = list.split(',').map(|n| n.parse().unwrap()).collect();
    assert_eq!(numbers.len(), 3, "{list}");
    // The manager closed its copies, so these reads end at the child's exit.
    let mut got = [String::new(), String::new(), String::new()];
    for (rx, out) in [&mut rx1, &mut rx2, &mut rx3].into_iter().zip(&mut got) {
        rx.read_to_string(out).unwrap();
    }
    assert_eq!(got, ["1", "2", "3"], "announced as {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_cwd_and_name_reach_the_child() {
    let manager = ProcessProcManager::default();
    let (_, exit) = run_to_exit(
        &manager,
        "env-check",
        shell("printf '%s|%s|%s' \"$GREETING\" \"$HOSTMUX_PROC_NAME\" \"$(pwd)\"")
            .env("GREETING", "hello")
            .current_dir("/tmp")
            .stdout(OutputMode::Capture { max_bytes: 256 }),
    )
    .await;
    assert!(exit.success(), "{exit}");
    let out = String::from_utf8(exit.output().unwrap().stdout.clone()).unwrap();
    assert_eq!(out, "hello|env-check|/tmp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_storm_of_500_is_bounded_reaped_and_leaks_no_fds() {
    if run_isolated(None) {
        return;
    }
    let manager = ProcessProcManager::builder().max_starting(32).build();
    let baseline = warm_up(&manager).await;
    let mut storm = tokio::task::JoinSet::new();
    for i in 0..500 {
        let manager = manager.clone();
        storm.spawn(async move {
            let proc = spawn_ready(
                &manager,
                &format!("storm{i}"),
                fixture_mode("ready-exit").arg("0"),
            )
            .await;
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
            let proc = spawn_ready(&manager, &format!("s{i}"), fixture_mode(mode).arg("0")).await;
            terminal_either_way(proc.terminate(Duration::from_secs(5)).await)
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
async fn cancelled_spawns_leak_no_process_name_or_fd() {
    if run_isolated(None) {
        return;
    }
    let manager = ProcessProcManager::default();
    let baseline = warm_up(&manager).await;
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
    // The manager's cgroup guardian is a child of this process too.
    let guardian = manager.guardian_pid();
    let procs = || -> Vec<u32> {
        children()
            .into_iter()
            .map(|(pid, _)| pid)
            .filter(|pid| Some(*pid) != guardian)
            .collect()
    };
    // A proc whose caller vanished after the clone is killed and reaped by
    // its own supervisor, asynchronously: wait for that, bounded.
    wait_until(
        Duration::from_secs(5),
        || procs().is_empty() && fd_count() == baseline,
        || {
            format!(
                "leaked children {:?} or fds ({} vs baseline {baseline})",
                procs(),
                fd_count()
            )
        },
    )
    .await;
    assert!(manager.live_procs().is_empty());
}
