//! cgroups and descendants: each proc in a cgroup of its own, which is
//! emptied and reused (or removed once killed) after the proc; setsid and
//! double-forked descendants die with their proc, also where the child
//! enters its cgroup through `cgroup.procs` instead of `clone3`.

use std::time::Duration;

use hostmux_lifecycle::{ProcHandle, ProcessProcManager, TerminalStatus};

use crate::support::*;

/// Spawns the fixture in `mode` (a proc whose descendant left its process
/// group) under a default manager, terminates the proc and asserts that
/// the descendant, `what`, dies with it. `None`: no cgroup v2 here, so the
/// calling test is skipped.
async fn terminate_with_descendant(mode: &str, what: &str) -> Option<Descendant> {
    let manager = ProcessProcManager::default();
    cgroup_dir_or_skip(&manager)?;
    let (proc, descendant) = spawn_with_descendant(&manager, mode, fixture_mode(mode)).await;
    assert_ne!(proc_state(descendant.pid), Some('Z'), "{what} already dead");
    proc.terminate(Duration::from_secs(5)).await.unwrap();
    descendant.assert_dies_within(EPSILON, what);
    Some(descendant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setsid_grandchild_dies_with_its_proc_where_cgroups_exist() {
    // Without cgroups a setsid escape cannot be contained.
    terminate_with_descendant("setsid-grandchild", "setsid grandchild").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_forking_daemon_leaves_no_process_and_no_zombie() {
    // Without cgroups a daemonised grandchild cannot be found.
    let Some(daemon) = terminate_with_descendant("double-fork", "daemon").await else {
        return;
    };
    // Reaping the orphan is its new parent's job (init); wait for it.
    wait_until(
        EPSILON * 2,
        || proc_state(daemon.pid) != Some('Z'),
        || "daemon left a zombie".into(),
    )
    .await;
    assert!(zombie_children().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_runs_in_its_own_cgroup_which_is_emptied_and_reused_after_exit() {
    let manager = ProcessProcManager::default();
    let Some(manager_dir) = cgroup_dir_or_skip(&manager) else {
        return;
    };
    let proc = spawn_ready(&manager, "caged", fixture_mode("ready")).await;
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
    let next = spawn_ready(&manager, "caged-again", fixture_mode("ready")).await;
    assert_eq!(cgroup_of(next.pid().unwrap()), first);
    next.terminate(Duration::from_secs(5)).await.unwrap();
    drop(manager);
    assert!(
        !manager_dir.exists(),
        "manager cgroup directory left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_cgroup_is_removed_and_the_pool_refilled_after_the_status() {
    let manager = ProcessProcManager::default();
    let Some(manager_dir) = cgroup_dir_or_skip(&manager) else {
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
    let ignorer = spawn_ready(&manager, "killed-cgroup", fixture_mode("ignore-term")).await;
    let leaf = manager_dir.join(cgroup_of(ignorer.pid().unwrap()).file_name().unwrap());
    assert!(leaf.is_dir());
    assert_eq!(
        ignorer.terminate(Duration::from_millis(50)).await.unwrap(),
        SIGKILLED
    );
    assert!(!leaf.exists(), "a cgroup.kill'ed cgroup must not be kept");
    // The replacement is made after the status went out; wait for it.
    wait_until(
        Duration::from_secs(5),
        || proc_cgroups() == pooled,
        || format!("pool not refilled: {}", proc_cgroups()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_after_a_cgroup_kill_starts_normally() {
    // Regression: a cgroup that received `cgroup.kill` must not be handed to
    // the next proc (on 6.18 a child cloned into it is SIGKILLed at birth).
    let manager = ProcessProcManager::default();
    for round in 0..3 {
        let ignorer = spawn_ready(
            &manager,
            &format!("doomed{round}"),
            fixture_mode("ignore-term"),
        )
        .await;
        let status = ignorer.terminate(Duration::from_millis(50)).await.unwrap();
        assert_eq!(status, SIGKILLED);
        let next = spawn_ready(&manager, &format!("survivor{round}"), fixture_mode("ready")).await;
        assert_eq!(
            next.terminate(Duration::from_secs(5)).await.unwrap(),
            exited(0)
        );
    }
}

/// The pids in a proc cgroup's `cgroup.procs`, sorted.
fn cgroup_members(leaf: &std::path::Path) -> Vec<u32> {
    let mut members: Vec<u32> = std::fs::read_to_string(leaf.join("cgroup.procs"))
        .unwrap()
        .lines()
        .map(|pid| pid.parse().unwrap())
        .collect();
    members.sort_unstable();
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroup_procs_fallback_cages_the_proc_and_its_descendants_die_with_it() {
    // Where clone3(CLONE_INTO_CGROUP) is missing (other architectures, old
    // kernels) the child writes its own pid to `cgroup.procs` before exec.
    // This kernel always has clone3, so the manager is told to skip it.
    let manager = ProcessProcManager::builder()
        .force_cgroup_procs_fallback()
        .build();
    let Some(manager_dir) = cgroup_dir_or_skip(&manager) else {
        return;
    };
    let host_cgroup = cgroup_of("self");

    // Terminated: a proc with a setsid grandchild, both in its cgroup.
    let (proc, grandchild) = spawn_with_descendant(
        &manager,
        "fallback-setsid",
        fixture_mode("setsid-grandchild"),
    )
    .await;
    let pid = proc.pid().unwrap();
    let proc_fd = pidfd(pid).expect("proc alive while ready");
    let own = cgroup_of(pid);
    assert_ne!(own, host_cgroup, "the proc stayed in the host's cgroup");
    assert!(
        manager_dir.ends_with(own.parent().unwrap().strip_prefix("/").unwrap()),
        "proc is in {own:?}, not under {manager_dir:?}"
    );
    assert_eq!(
        cgroup_of(grandchild.pid),
        own,
        "the grandchild is elsewhere"
    );
    let leaf = manager_dir.join(own.file_name().unwrap());
    let mut both = vec![pid, grandchild.pid];
    both.sort_unstable();
    assert_eq!(cgroup_members(&leaf), both);
    let status = proc.terminate(Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(status, TerminalStatus::Signaled { signal, .. } if signal == libc::SIGTERM),
        "{status:?}"
    );
    assert!(
        exited_within(&proc_fd, Duration::ZERO),
        "proc {pid} survived"
    );
    grandchild.assert_dies_within(EPSILON, "setsid grandchild");
    // The grandchild outlived the SIGTERM, so the cgroup was cgroup.kill'ed:
    // such a cgroup is removed rather than reused.
    assert!(!leaf.exists(), "a cgroup.kill'ed cgroup must not be kept");

    // Killed: a proc with a double-forked daemon, as PID 1 of its own PID
    // namespace (the child writes `0`, "myself", from inside it).
    let (proc, daemon) = spawn_with_descendant(
        &manager,
        "fallback-daemon",
        fixture_mode("double-fork").pid_namespace(true),
    )
    .await;
    assert!(proc.in_pid_namespace());
    let pid = proc.pid().unwrap();
    let proc_fd = pidfd(pid).expect("proc alive while ready");
    let own = cgroup_of(pid);
    assert_ne!(own, host_cgroup, "the proc stayed in the host's cgroup");
    assert_eq!(cgroup_of(daemon.pid), own, "the daemon is elsewhere");
    assert_eq!(proc.kill().await.unwrap(), SIGKILLED);
    assert!(
        exited_within(&proc_fd, Duration::ZERO),
        "proc {pid} survived"
    );
    daemon.assert_dies_within(EPSILON, "daemon");
    assert!(manager.live_procs().is_empty());
}
