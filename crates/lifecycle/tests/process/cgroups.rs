//! cgroups and descendants: each proc in a cgroup of its own, which is
//! emptied and reused (or removed once killed) after the proc; setsid and
//! double-forked descendants die with their proc.

use std::time::Duration;

use hostmux_lifecycle::{ProcHandle, ProcessProcManager};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setsid_grandchild_dies_with_its_proc_where_cgroups_exist() {
    // Without cgroups a setsid escape cannot be contained.
    let manager = ProcessProcManager::default();
    if cgroup_dir_or_skip(&manager).is_none() {
        return;
    }
    let (proc, grandchild, gc_fd) =
        spawn_with_descendant(&manager, "setsid", "setsid-grandchild").await;
    proc.terminate(Duration::from_secs(5)).await.unwrap();
    assert!(
        exited_within(&gc_fd, EPSILON),
        "setsid grandchild {grandchild} survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_forking_daemon_leaves_no_process_and_no_zombie() {
    // Without cgroups a daemonised grandchild cannot be found.
    let manager = ProcessProcManager::default();
    if cgroup_dir_or_skip(&manager).is_none() {
        return;
    }
    let (proc, daemon, daemon_fd) = spawn_with_descendant(&manager, "daemon", "double-fork").await;
    assert_ne!(proc_state(daemon), Some('Z'));
    proc.terminate(Duration::from_secs(5)).await.unwrap();
    assert!(
        exited_within(&daemon_fd, EPSILON),
        "daemon {daemon} survived"
    );
    // Reaping the orphan is its new parent's job (init); wait for it.
    wait_until(
        EPSILON * 2,
        || proc_state(daemon) != Some('Z'),
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
