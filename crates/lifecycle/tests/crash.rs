//! Host-crash tests: a host process is SIGKILLed (no cleanup code runs)
//! and its procs, and their descendants, must still die.

use std::time::Duration;

use hostmux_lifecycle::{ProcHandle, ProcManager, ProcessConfig, ProcessProcManager};

use crate::support::*;

/// Starts the fixture in host mode and returns it with the pids it printed
/// (n procs, plus the setsid grandchild of proc p1 right after p1's pid).
fn start_fixture_host(n: usize, extra: &[&str]) -> (std::process::Child, Vec<u32>) {
    let mut host = std::process::Command::new(fixture())
        .args(["host", &n.to_string()])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(host.stdout.take().unwrap()));
    let mut pids = Vec::new();
    for line in lines {
        let line = line.unwrap();
        if line == "ready" {
            break;
        }
        pids.push(line.strip_prefix("pid ").unwrap().parse::<u32>().unwrap());
    }
    assert_eq!(pids.len(), n + 1, "n procs plus one setsid grandchild");
    (host, pids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_host_takes_whole_pid_namespaces_with_it_without_cgroups() {
    let (mut host, pids) = start_fixture_host(4, &["pidns"]);
    let fds: Vec<_> = pids
        .iter()
        .map(|&p| (p, pidfd(p).expect("alive")))
        .collect();
    host.kill().unwrap();
    host.wait().unwrap();
    // PDEATHSIG kills each namespace init; the kernel then kills the rest
    // of its namespace, including the setsid grandchild. No sweep needed.
    for (pid, fd) in &fds {
        assert!(exited_within(fd, EPSILON), "{pid} outlived its host");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid_namespace_init_with_a_term_handler_still_stops_cooperatively() {
    let manager = ProcessProcManager::default();
    let proc = manager
        .spawn(
            name("ns-coop"),
            ProcessConfig::new(fixture())
                .arg("ready")
                .pid_namespace(true),
        )
        .await
        .unwrap();
    proc.ready().await.unwrap();
    assert!(proc.in_pid_namespace());
    let status = proc.terminate(Duration::from_secs(30)).await.unwrap();
    assert_eq!(status, exited(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_host_takes_all_its_procs_with_it() {
    let n = 6;
    let (mut host, pids) = start_fixture_host(n, &[]);
    let grandchild = pids[2]; // printed right after proc p1
    let fds: Vec<_> = pids
        .iter()
        .map(|&p| (p, pidfd(p).expect("alive")))
        .collect();

    host.kill().unwrap(); // SIGKILL: no cleanup code runs in the host
    host.wait().unwrap();

    for (pid, fd) in &fds {
        if *pid != grandchild {
            assert!(exited_within(fd, EPSILON), "proc {pid} outlived its host");
        }
    }
    // PDEATHSIG cannot reach the setsid grandchild; the next manager's
    // start-up sweep of dead managers' cgroups does.
    let next = ProcessProcManager::default();
    let gc_fd = &fds.iter().find(|(p, _)| *p == grandchild).unwrap().1;
    if next.cgroup_dir().is_some() {
        // (The sweep may also have been done by a manager another test
        // created meanwhile, so only the outcome is asserted.)
        assert!(
            exited_within(gc_fd, EPSILON),
            "grandchild survived the sweep"
        );
    } else {
        let _ = rustix::process::pidfd_send_signal(gc_fd, rustix::process::Signal::KILL);
    }
}
