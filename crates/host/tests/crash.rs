//! A host SIGKILLed with OS procs running leaves no process behind: not a
//! proc (PDEATHSIG), not one that ignores SIGTERM, not a proc's own child
//! (the proc runs as init of its own PID namespace), nor, where cgroups are
//! delegated, a proc's child without a namespace (the manager's cgroup
//! guardian kills it). The host runs in a subprocess (this test executable
//! in its `host` role); processes are checked through /proc.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hostmux_host::{HostConfig, ProcessProc};
use hostmux_lifecycle::ProcessProcManager;
use hostmux_testkit::facility::{missing, Facility};

use crate::bins::proc_bin;
use crate::process::{is_dead, serve_os};
use crate::roles::role_process;

/// The `host` role: serve, spawn three procs, print their pids (and the
/// grandchild's), then wait to be killed.
pub(crate) fn run_host_role() -> i32 {
    crate::support::quiet_runtime().block_on(async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        let fixture = proc_bin("hostmux-proc-fixture");
        host.spawn("echo", ProcessProc::new(proc_bin("hostmux-echo")))
            .await
            .unwrap();
        host.spawn(
            "stubborn",
            // It never receives, so its agent never answers: no ping.
            ProcessProc::new(&fixture)
                .args(["ignore-term"])
                .ping_agent(false),
        )
        .await
        .unwrap();
        // A proc with a child of its own, in its own PID namespace.
        host.spawn(
            "nest",
            ProcessProc::new("/bin/sh")
                .args(["-c", "sleep 600 & exec \"$0\" boot"])
                .args([&fixture])
                .pid_namespace(true),
        )
        .await
        .unwrap();
        // The same without a namespace, where a manager has a guardian.
        let guarded = ProcessProcManager::default().guardian_pid().is_some();
        if guarded {
            host.spawn(
                "loose-nest",
                ProcessProc::new("/bin/sh")
                    .args(["-c", "sleep 600 & exec \"$0\" boot"])
                    .args([&fixture]),
            )
            .await
            .unwrap();
        }
        let listed = host.list().await.unwrap();
        let pid = |name: &str| listed.iter().find(|p| p.name == name).unwrap().pid;
        let child_of = |parent: u32| -> u32 {
            std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
                .unwrap()
                .split_whitespace()
                .next()
                .expect("the nest proc has a child")
                .parse()
                .unwrap()
        };
        let nest = pid("nest");
        let mut pids = vec![pid("echo"), pid("stubborn"), nest, child_of(nest)];
        if guarded {
            let loose = pid("loose-nest");
            pids.extend([loose, child_of(loose)]);
        }
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        println!("PIDS {}", pids.join(" "));
        std::future::pending::<()>().await;
    });
    0
}

#[test]
fn host_sigkilled_with_procs_running_leaves_no_process() {
    if ProcessProcManager::default().guardian_pid().is_none() {
        // The host role then spawns no proc outside a PID namespace.
        missing(
            Facility::Cgroup,
            "no cgroup guardian: the proc whose child escapes without a PID namespace is not tried",
        );
    }
    // Build the binaries here, not in the host subprocess (bounded waits).
    let _ = proc_bin("hostmux-echo");
    let mut host = role_process("host")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the host subprocess");
    let stdout = host.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // libtest prints "test roles::role_entry ... " before it.
            if let Some((_, pids)) = line.split_once("PIDS ") {
                let _ = tx.send(
                    pids.split_whitespace()
                        .map(|p| p.parse::<u32>().unwrap())
                        .collect::<Vec<_>>(),
                );
                return;
            }
        }
    });
    // Generous: the subprocess starts a host and five procs, which took
    // over 30 s on the 2-core machine under a full build's load.
    let pids = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(pids) => pids,
        Err(e) => {
            let _ = host.kill();
            panic!("the host subprocess did not report its procs: {e}");
        }
    };
    assert!(pids.len() == 4 || pids.len() == 6, "{pids:?}");
    for &pid in &pids {
        assert!(!is_dead(pid), "process {pid} should be running");
    }
    host.kill().unwrap(); // SIGKILL: no host code runs.
    host.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| !is_dead(p)).collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after the host was SIGKILLed: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
