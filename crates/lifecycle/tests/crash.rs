//! Host-crash tests: a host process is SIGKILLed (no cleanup code runs)
//! and its procs, and their descendants, must still die.
//!
//! The host is the fixture binary in `host` mode. Its p1 has a setsid
//! grandchild and its p2 a double-forked daemon; p0 and p3 ignore SIGTERM.
//! Tests that check who killed the descendants give the host a cgroup base
//! of their own, so no manager of a test running in parallel can sweep it.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hostmux_lifecycle::{CgroupMode, ProcHandle, ProcessProcManager};
use rustix::process::{kill_process, pidfd_send_signal, Pid, Signal};

use crate::support::*;

/// Processes to watch: `(pid, pidfd)`.
type Watched = Vec<(u32, OwnedFd)>;

/// A fixture host and the pids it printed.
struct FixtureHost {
    child: Child,
    procs: Vec<u32>,
    descendants: Vec<u32>,
    guardian: Option<u32>,
}

impl FixtureHost {
    /// Starts `fixture host <n> <extra...>` and reads its report (bounded).
    fn start(n: usize, extra: &[&OsStr]) -> Self {
        let mut child = std::process::Command::new(fixture())
            .args(["host", &n.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let done = line == "ready";
                if tx.send(line).is_err() || done {
                    return;
                }
            }
        });
        let mut host = Self {
            child,
            procs: Vec::new(),
            descendants: Vec::new(),
            guardian: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = host.child.kill();
                panic!("the fixture host did not report its procs within 30 s");
            };
            if line == "ready" {
                break;
            }
            let (kind, pid) = line.split_once(' ').expect("`<kind> <pid>`");
            let pid: u32 = pid.parse().unwrap();
            match kind {
                "pid" => host.procs.push(pid),
                "descendant" => host.descendants.push(pid),
                "guardian" => host.guardian = Some(pid),
                other => panic!("unexpected fixture host line {other:?}"),
            }
        }
        assert_eq!(host.procs.len(), n);
        assert_eq!(
            host.descendants.len(),
            2,
            "a setsid and a double-forked one"
        );
        host
    }

    /// pidfds for every proc and descendant (all must be alive).
    fn pidfds(&self) -> (Watched, Watched) {
        let open = |pids: &[u32]| -> Watched {
            pids.iter()
                .map(|&p| (p, pidfd(p).expect("alive before the host dies")))
                .collect()
        };
        (open(&self.procs), open(&self.descendants))
    }

    /// SIGKILL: no code of the host runs.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A cgroup base directory for one test's host, next to the `m…` manager
/// directories (their sweeps ignore other names), so only this test
/// sweeps it. Swept and removed when dropped, so a failing test does not
/// leave its host's descendants running.
struct PrivateBase(PathBuf);

impl PrivateBase {
    /// `None` where this process has no usable cgroup v2 subtree or no
    /// guardian could be started.
    fn new(tag: &str) -> Option<Self> {
        let probe = ProcessProcManager::default();
        probe.guardian_pid()?;
        let hostmux_dir = probe.cgroup_dir()?.parent()?;
        let path = hostmux_dir.join(format!("test-{tag}-{}", std::process::id()));
        Some(Self(path))
    }

    fn host_args(&self) -> [&OsStr; 2] {
        ["cgroup-base".as_ref(), self.0.as_os_str()]
    }

    /// Sweeps what dead hosts left here (a manager's start-up sweep,
    /// killing what is inside). Returns the number of proc cgroups swept
    /// and the pids it killed.
    fn sweep(&self) -> (usize, Vec<u32>) {
        let manager = ProcessProcManager::builder()
            .cgroups(CgroupMode::Base(self.0.clone()))
            .build();
        (
            manager.swept_at_start(),
            manager.swept_pids_at_start().to_vec(),
        )
    }
}

impl Drop for PrivateBase {
    fn drop(&mut self) {
        self.sweep();
        let _ = std::fs::remove_dir(&self.0);
    }
}

const NO_CGROUP: &str = "no writable cgroup v2 subtree with cgroup.kill (or no /bin/sh for its \
     guardian); descendants of a SIGKILLed host then need pid_namespace(true)";

fn assert_all_exit(fds: &[(u32, OwnedFd)], what: &str) {
    for (pid, fd) in fds {
        assert!(exited_within(fd, EPSILON), "{what} {pid} outlived its host");
    }
}

/// Waits (bounded) until `pid` ignores every signal in `signals`.
fn wait_until_ignored(pid: u32, signals: &[Signal]) {
    let wanted = signals.iter().fold(0u64, |m, s| m | 1 << (s.as_raw() - 1));
    let deadline = Instant::now() + EPSILON;
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let ignored = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
            .unwrap();
        if ignored & wanted == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "{pid} ignores only {ignored:#x}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn killed_host_guardian_kills_setsid_and_double_forked_descendants_without_pid_namespaces() {
    let Some(base) = PrivateBase::new("guardian") else {
        missing(Facility::Cgroup, NO_CGROUP);
        return;
    };
    let host = FixtureHost::start(4, &base.host_args());
    let guardian = host
        .guardian
        .expect("a manager with cgroups has a guardian");
    let guardian_fd = pidfd(guardian).expect("guardian alive");
    let (procs, descendants) = host.pidfds();
    // Polite and terminal signals do not take the guardian down (were it
    // gone, nothing would kill the descendants below: nobody sweeps `base`).
    let polite = [Signal::TERM, Signal::INT, Signal::HUP];
    wait_until_ignored(guardian, &polite);
    for signal in polite {
        pidfd_send_signal(&guardian_fd, signal).unwrap();
    }

    host.kill();

    assert_all_exit(&procs, "proc"); // PDEATHSIG
    assert_all_exit(&descendants, "descendant"); // the guardian's cgroup.kill
    assert!(
        exited_within(&guardian_fd, EPSILON),
        "the guardian {guardian} did not exit after its kill"
    );
}

#[test]
fn killed_host_without_a_guardian_leaves_descendants_to_the_next_sweep() {
    let Some(base) = PrivateBase::new("sweep") else {
        missing(Facility::Cgroup, NO_CGROUP);
        return;
    };
    let host = FixtureHost::start(4, &base.host_args());
    let guardian_fd = pidfd(host.guardian.expect("a guardian")).expect("guardian alive");
    let (procs, descendants) = host.pidfds();
    // Stopped, the host cannot replace its guardian: then both die.
    let host_pid = host.child.id();
    kill_process(Pid::from_raw(host_pid as i32).unwrap(), Signal::STOP).unwrap();
    wait_for_state(host_pid, 'T');
    pidfd_send_signal(&guardian_fd, Signal::KILL).unwrap();
    assert!(exited_within(&guardian_fd, EPSILON));

    host.kill();

    assert_all_exit(&procs, "proc");
    for (pid, fd) in &descendants {
        // Nothing but the guardian could have killed it yet.
        assert!(!exited_within(fd, Duration::ZERO), "{pid} died unswept");
    }
    let (cgroups, mut killed) = base.sweep();
    assert!(cgroups > 0, "the sweep found no cgroup");
    // The sweep reports exactly the processes it killed: the descendants.
    let mut expected: Vec<u32> = descendants.iter().map(|(pid, _)| *pid).collect();
    killed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(killed, expected);
    assert_all_exit(&descendants, "descendant");
}

#[test]
fn killed_guardian_is_replaced_and_a_killed_host_still_leaves_no_descendant() {
    let Some(base) = PrivateBase::new("respawn") else {
        missing(Facility::Cgroup, NO_CGROUP);
        return;
    };
    let host = FixtureHost::start(4, &base.host_args());
    let first = host.guardian.expect("a guardian");
    let first_fd = pidfd(first).expect("guardian alive");
    let (procs, descendants) = host.pidfds();
    pidfd_send_signal(&first_fd, Signal::KILL).unwrap();
    assert!(exited_within(&first_fd, EPSILON));
    // The host notices and starts another guardian (its child, by name).
    let host_pid = host.child.id();
    let deadline = Instant::now() + EPSILON;
    let second = loop {
        if let Some(pid) = guardians_of(host_pid).into_iter().find(|&p| p != first) {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no new guardian within {EPSILON:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let second_fd = pidfd(second).expect("the new guardian is alive");

    host.kill();

    assert_all_exit(&procs, "proc");
    assert_all_exit(&descendants, "descendant"); // the new guardian's kill
    assert!(
        exited_within(&second_fd, EPSILON),
        "the new guardian {second} did not exit after its kill"
    );
    assert_eq!(base.sweep().1, Vec::<u32>::new(), "nothing left to sweep");
}

#[test]
fn dead_guardian_is_replaced_while_the_manager_lives() {
    let manager = ProcessProcManager::default();
    let Some(first) = manager.guardian_pid() else {
        missing(Facility::Cgroup, NO_CGROUP);
        return;
    };
    assert_eq!(manager.guardian_restarts(), 0);
    let first_fd = pidfd(first).expect("guardian alive");
    pidfd_send_signal(&first_fd, Signal::KILL).unwrap();
    let deadline = Instant::now() + EPSILON;
    while manager.guardian_restarts() == 0 {
        assert!(Instant::now() < deadline, "the guardian was not replaced");
        std::thread::sleep(Duration::from_millis(2));
    }
    let second = manager.guardian_pid().expect("a new guardian");
    assert_ne!(second, first);
    // Other tests' managers have guardians of their own; the dead one is
    // reaped, the new one runs the script.
    let running = guardians_of(std::process::id());
    assert!(running.contains(&second), "{second} not in {running:?}");
    assert!(
        proc_state(first).is_none(),
        "the dead guardian {first} was not reaped"
    );
    // Dropping the manager still ends the (new) guardian.
    let second_fd = pidfd(second).expect("alive");
    drop(manager);
    assert!(exited_within(&second_fd, EPSILON), "guardian still runs");
}

/// Children of `parent` that run the guardian script (`$0` is
/// `hostmux-guardian`).
fn guardians_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        let ppid: Option<u32> = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(parent)
            && proc_state(pid) != Some('Z')
            && cmdline.split(|&b| b == 0).any(|a| a == b"hostmux-guardian")
        {
            found.push(pid);
        }
    }
    found
}

/// Waits (bounded) until `pid`'s state letter is `state`.
fn wait_for_state(pid: u32, state: char) {
    let deadline = Instant::now() + EPSILON;
    while proc_state(pid) != Some(state) {
        assert!(
            Instant::now() < deadline,
            "{pid} never reached state {state}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn killed_host_takes_whole_pid_namespaces_with_it_without_cgroups() {
    let host = FixtureHost::start(4, &["pidns".as_ref()]);
    assert_eq!(host.guardian, None, "no cgroups, no guardian");
    let (procs, descendants) = host.pidfds();
    host.kill();
    // PDEATHSIG kills each namespace init; the kernel then kills the rest
    // of its namespace, including the setsid and daemonised grandchildren.
    assert_all_exit(&procs, "proc");
    assert_all_exit(&descendants, "descendant");
}

#[test]
fn killed_host_takes_all_its_procs_with_it() {
    let host = FixtureHost::start(6, &[]);
    let guarded = host.guardian.is_some();
    let (procs, descendants) = host.pidfds();
    host.kill();
    assert_all_exit(&procs, "proc");
    if guarded {
        assert_all_exit(&descendants, "descendant");
    } else {
        // Fails unless HOSTMUX_TEST_SKIP names cgroup; then clean up.
        missing(Facility::Cgroup, NO_CGROUP);
        for (_, fd) in &descendants {
            let _ = pidfd_send_signal(fd, Signal::KILL);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid_namespace_init_with_a_term_handler_still_stops_cooperatively() {
    let manager = ProcessProcManager::default();
    let proc = spawn_ready(
        &manager,
        "ns-coop",
        fixture_mode("ready").pid_namespace(true),
    )
    .await;
    assert!(proc.in_pid_namespace());
    let status = proc.terminate(Duration::from_secs(30)).await.unwrap();
    assert_eq!(status, exited(0));
}

/// `(process group, parent pid)` from `/proc/<pid>/stat`.
fn group_and_parent(pid: u32) -> (u32, u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let mut fields = stat[stat.rfind(')').unwrap() + 1..].split_whitespace();
    let ppid = fields.nth(1).unwrap().parse().unwrap();
    let pgrp = fields.next().unwrap().parse().unwrap();
    (pgrp, ppid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_manager_reaps_its_guardian_and_spares_another_managers_procs() {
    let plain = ProcessProcManager::builder()
        .cgroups(CgroupMode::Disabled)
        .build();
    assert_eq!(plain.guardian_pid(), None, "no cgroups, no guardian");
    let first = ProcessProcManager::default();
    let Some(guardian) = first.guardian_pid() else {
        missing(Facility::Cgroup, NO_CGROUP);
        return;
    };
    // Not a proc: its own process group, our child, in our own cgroup
    // (outside the subtree it kills).
    assert_eq!(group_and_parent(guardian), (guardian, std::process::id()));
    assert_eq!(cgroup_of(guardian), cgroup_of("self"));
    let second = ProcessProcManager::default();
    assert_ne!(first.cgroup_dir(), second.cgroup_dir());
    let survivor = spawn_ready(&second, "survivor", fixture_mode("ready")).await;
    let gone = spawn_ready(&first, "gone", fixture_mode("ready")).await;
    // The guardian's pipe: its read end is the guardian's stdin, its only
    // write end is ours (close-on-exec, so the proc has no copy).
    let trigger = std::fs::read_link(format!("/proc/{guardian}/fd/0")).unwrap();
    assert!(
        trigger.to_string_lossy().starts_with("pipe:"),
        "{trigger:?}"
    );
    let holders = |pid: &str| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == trigger))
            .count()
    };
    assert_eq!(holders("self"), 1, "the host holds the write end once");
    assert_eq!(holders(&gone.pid().unwrap().to_string()), 0);
    assert_eq!(
        gone.terminate(Duration::from_secs(30)).await.unwrap(),
        exited(0)
    );
    let guardian_fd = pidfd(guardian).expect("guardian alive while its manager is");
    drop((gone, first));

    // Its procs' supervisors let go of it right after they finish; then the
    // guardian sees EOF, kills its (empty) subtree, exits and is reaped.
    assert!(exited_within(&guardian_fd, EPSILON), "guardian still runs");
    wait_until(
        EPSILON,
        || proc_state(guardian).is_none(),
        || format!("guardian {guardian} not reaped"),
    )
    .await;
    // Its kill went to its own subtree only: the other manager's proc still
    // stops cooperatively instead of having been SIGKILLed.
    assert_eq!(
        survivor.terminate(Duration::from_secs(30)).await.unwrap(),
        exited(0)
    );
}
