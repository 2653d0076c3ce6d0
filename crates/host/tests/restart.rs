//! Restart policies with real OS procs: which ends restart a proc, the
//! growing wait between restarts, the start limit, and the stops that end
//! restarting for good. Every wait polls the host's list (or a file the
//! procs write) until a condition holds, under a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use hostmux_host::{HostConfig, ProcessProc, RestartLimit, RestartPolicy, TerminalStatus};
use hostmux_lifecycle::Readiness;
use hostmux_wire::{ProcInfo, ProcState, UndeliverableReason};

use crate::process::{client, echo, is_dead, run_os, serve_os, OsHost};
use crate::support::WAIT;

/// A shell script as a proc that does not speak the boot protocol (ready
/// once it is running).
fn script(text: &str) -> ProcessProc {
    ProcessProc::new("/bin/sh")
        .args(["-c", text])
        .readiness(Readiness::OnSpawn)
}

/// Fast restarts without a limit, for tests that count restarts.
fn quick(policy: RestartPolicy) -> RestartPolicy {
    policy
        .delays(Duration::from_millis(20), Duration::from_millis(20))
        .limit(None)
}

/// The list entry of `name` once `ready` holds for it, within `WAIT`.
async fn until(host: &OsHost, name: &str, ready: impl Fn(&ProcInfo) -> bool) -> ProcInfo {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        let listed = host.list().await.unwrap();
        // The first entry of a name is the live one (or its latest end).
        if let Some(info) = listed.into_iter().find(|p| p.name == name) {
            if ready(&info) {
                return info;
            }
            last = Some(info);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} never got there; last seen: {last:?}");
}

/// Runs `check` until it returns `Some`, within `WAIT`.
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, check: impl Fn() -> F) -> T {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within {WAIT:?}");
}

#[test]
fn on_failure_restarts_a_proc_that_exits_1_and_not_one_that_exits_0() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        let policy = quick(RestartPolicy::on_failure());
        host.spawn("clean", script("sleep 0.1; exit 0").restart(policy))
            .await
            .unwrap();
        host.spawn("failing", script("sleep 0.1; exit 1").restart(policy))
            .await
            .unwrap();
        let failing = until(&host, "failing", |p| p.restarts >= 2).await;
        assert_eq!(failing.last_exit, Some(ProcState::Exited { code: 1 }));
        // The clean one ended once, was not restarted, and freed its name.
        let clean = until(&host, "clean", |p| p.state == ProcState::Exited { code: 0 }).await;
        assert_eq!(clean.restarts, 0, "{clean:?}");
        assert!(!host.procs().iter().any(|n| n.as_str() == "clean"));
    });
}

#[test]
fn always_restarts_after_a_clean_exit() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        let policy = quick(RestartPolicy::always());
        host.spawn("loop", script("sleep 0.1; exit 0").restart(policy))
            .await
            .unwrap();
        let info = until(&host, "loop", |p| p.restarts >= 2).await;
        assert_eq!(info.last_exit, Some(ProcState::Exited { code: 0 }));
    });
}

#[test]
fn the_wait_between_restarts_doubles() {
    run_os(|| async {
        let dir = tempfile::tempdir().unwrap();
        let stamps = dir.path().join("starts");
        let (host, _serving) = serve_os(HostConfig::default()).await;
        let policy = RestartPolicy::on_failure()
            .delays(Duration::from_millis(200), Duration::from_secs(10))
            .limit(None);
        let text = format!("date +%s%N >> '{}'; sleep 0.05; exit 1", stamps.display());
        host.spawn("doubling", script(&text).restart(policy))
            .await
            .unwrap();
        // Five starts: the first and four restarts, 200, 400, 800 and
        // 1600 ms apart (plus the 50 ms each instance runs and the time a
        // start takes).
        let starts: Vec<u128> = eventually("five starts", || async {
            let text = std::fs::read_to_string(&stamps).unwrap_or_default();
            let starts: Vec<u128> = text.lines().map(|l| l.parse().unwrap()).collect();
            (starts.len() >= 5).then_some(starts)
        })
        .await;
        let gaps: Vec<u128> = starts
            .windows(2)
            .map(|w| (w[1] - w[0]) / 1_000_000)
            .collect();
        assert!(gaps[0] >= 200, "{gaps:?} ms");
        assert!(
            gaps.windows(2).all(|w| w[1] > w[0]),
            "each wait is longer than the one before: {gaps:?} ms"
        );
        assert!(gaps[3] >= 1600, "{gaps:?} ms");
        host.terminate_proc("doubling", WAIT).await.unwrap();
    });
}

#[test]
fn the_restart_limit_leaves_the_proc_failed_and_says_why() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        let limit = RestartLimit {
            burst: 3,
            interval: Duration::from_secs(60),
        };
        let policy = RestartPolicy::on_failure()
            .delays(Duration::from_millis(10), Duration::from_millis(10))
            .limit(Some(limit));
        host.spawn("limited", script("sleep 0.05; exit 7").restart(policy))
            .await
            .unwrap();
        let info = until(&host, "limited", |p| {
            matches!(p.state, ProcState::Failed { .. })
        })
        .await;
        assert_eq!(
            info.state,
            ProcState::Failed {
                reason: "restart limit reached: 3 restarts in 60s".into()
            }
        );
        assert_eq!(info.restarts, 3);
        assert_eq!(info.last_exit, Some(ProcState::Exited { code: 7 }));
        // Down for good: the name is free again.
        assert!(host.procs().is_empty(), "{:?}", host.procs());
        let again = host.kill_proc("limited").await.unwrap_err();
        assert!(
            again.to_string().contains("restart limit reached"),
            "{again}"
        );
    });
}

#[test]
fn a_stop_or_kill_ends_a_restarting_proc_for_good() {
    // Outside the scenario's time limit: the first use may build the binary.
    let policy = RestartPolicy::always();
    let (stopped, killed) = (echo().restart(policy), echo().restart(policy));
    run_os(|| async move {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        // Ready: a stop is the operator's, not a failure.
        host.spawn("stopped", stopped).await.unwrap();
        let status = host.terminate_proc("stopped", WAIT).await.unwrap();
        assert!(status.success(), "{status}");
        // Settled before the stop returned: no restart pending.
        assert!(host.procs().is_empty(), "{:?}", host.procs());
        host.spawn("killed", killed).await.unwrap();
        let status = host.kill_proc("killed").await.unwrap();
        assert!(matches!(status, TerminalStatus::Signaled { signal: 9, .. }));
        assert!(host.procs().is_empty(), "{:?}", host.procs());

        // Backing off: the stop ends the wait and reports the last end.
        let slow =
            RestartPolicy::on_failure().delays(Duration::from_secs(30), Duration::from_secs(30));
        host.spawn("waiting", script("sleep 0.05; exit 4").restart(slow))
            .await
            .unwrap();
        let info = until(&host, "waiting", |p| p.state == ProcState::BackingOff).await;
        let next = info.next_restart_ms.expect("the time to the restart");
        assert!(next > 0 && next <= 30_000, "{next}");
        let status = host.terminate_proc("waiting", WAIT).await.unwrap();
        assert_eq!(
            status,
            TerminalStatus::Exited {
                code: 4,
                output: None
            }
        );
        assert!(host.procs().is_empty(), "{:?}", host.procs());
        let gone = until(&host, "waiting", |_| true).await;
        assert_eq!(gone.state, ProcState::Exited { code: 4 });
    });
}

#[test]
fn a_crashed_proc_comes_back_under_its_name_and_frames_reach_it() {
    let policy = RestartPolicy::on_failure().delays(Duration::from_secs(2), Duration::from_secs(2));
    // Outside the scenario's time limit: the first use may build the binary.
    let spec = echo().restart(policy);
    run_os(|| async move {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        host.spawn("echo", spec).await.unwrap();
        let first = until(&host, "echo", |p| p.state == ProcState::Ready).await;
        let mut client = client(&host, "cli").await;
        // Killed behind the host's back: a failure.
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &first.pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        until(&host, "echo", |p| p.state == ProcState::BackingOff).await;
        // Down: answered like a proc that ended, not lost.
        client.send("echo", 0, 1, b"while down").await.unwrap();
        let notice = tokio::time::timeout(WAIT, client.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .undeliverable()
            .expect("a notice");
        assert_eq!(notice.reason, UndeliverableReason::NoSuchProc);
        let second = until(&host, "echo", |p| p.state == ProcState::Ready).await;
        assert_ne!(second.pid, first.pid);
        assert!(is_dead(first.pid));
        assert_eq!(second.restarts, 1);
        assert_eq!(
            second.last_exit,
            Some(ProcState::Signaled {
                signal: 9,
                core_dumped: false
            })
        );
        client.send("echo", 0, 2, b"back").await.unwrap();
        let reply = tokio::time::timeout(WAIT, client.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            (reply.message_id, &reply.payload[..]),
            (2, &b"back"[..]),
            "{reply:?}"
        );
    });
}

#[test]
fn bulk_terminate_ends_a_crash_looping_proc_and_restarts_nothing() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        host.spawn(
            "looping",
            script("sleep 0.05; exit 1").restart(quick(RestartPolicy::always())),
        )
        .await
        .unwrap();
        until(&host, "looping", |p| p.restarts >= 1).await;
        let summary = host.terminate_children(Duration::from_secs(2), 4).await;
        assert_eq!(summary.attempted, summary.ok + summary.failed);
        // Every instance is settled and nothing holds the name: nothing
        // is left to restart.
        assert!(host.procs().is_empty(), "{:?}", host.procs());
        let listed = host.list().await.unwrap();
        assert!(
            listed.iter().all(|p| !matches!(
                p.state,
                ProcState::Ready | ProcState::Starting | ProcState::BackingOff
            )),
            "{listed:?}"
        );
        for p in listed.iter().filter(|p| p.pid != 0) {
            assert!(is_dead(p.pid), "{p:?}");
        }
    });
}

#[test]
fn a_spec_that_cannot_be_copied_is_refused_a_restart_policy() {
    struct Once;
    impl hostmux_host::ProcSpec<hostmux_lifecycle::ProcessProcManager> for Once {
        fn into_config(
            self,
            _rings: hostmux_host::ChildRings,
        ) -> Result<hostmux_lifecycle::ProcessConfig, hostmux_host::HostError> {
            Ok(hostmux_lifecycle::ProcessConfig::new("/bin/true"))
        }
        fn restart_policy(&self) -> RestartPolicy {
            RestartPolicy::always()
        }
    }
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        let error = host.spawn("once", Once).await.unwrap_err();
        assert!(
            matches!(error, hostmux_host::HostError::CannotRestart { .. }),
            "{error}"
        );
        assert!(host.procs().is_empty());
    });
}

#[test]
fn a_restart_that_never_becomes_ready_counts_as_a_failure() {
    // Outside the scenario's time limit: the first use may build the binary.
    let echo_bin = crate::bins::proc_bin("hostmux-echo");
    run_os(|| async move {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("started-once");
        // The first instance is an echo (boot protocol, ready); every
        // later one exits 5 before it reports ready.
        let text = format!(
            "if [ -e '{mark}' ]; then exit 5; fi; touch '{mark}'; exec '{echo}'",
            mark = mark.display(),
            echo = echo_bin.display()
        );
        let limit = RestartLimit {
            burst: 2,
            interval: Duration::from_secs(60),
        };
        let policy = RestartPolicy::on_failure()
            .delays(Duration::from_millis(10), Duration::from_millis(10))
            .limit(Some(limit));
        let spec = ProcessProc::new("/bin/sh")
            .args(["-c", &text])
            .restart(policy);
        host_spawn_and_crash(spec, limit).await;
    });
}

/// Spawns `spec` as `flaky`, kills its ready first instance from outside
/// and waits for the start limit to end its failing restarts.
async fn host_spawn_and_crash(spec: ProcessProc, limit: RestartLimit) {
    let (host, _serving) = serve_os(HostConfig::default()).await;
    host.spawn("flaky", spec).await.unwrap();
    let first = until(&host, "flaky", |p| p.state == ProcState::Ready).await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first.pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let info = until(&host, "flaky", |p| {
        matches!(p.state, ProcState::Failed { .. })
    })
    .await;
    assert_eq!(
        info.state,
        ProcState::Failed {
            reason: format!("restart limit reached: {limit}")
        }
    );
    assert_eq!(info.restarts, limit.burst);
    assert_eq!(info.last_exit, Some(ProcState::Exited { code: 5 }));
}
