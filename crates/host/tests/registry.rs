//! One registry of procs, starting ones included (issue 11, case 4): `ps`,
//! stop, kill and spawn agree on it; a stop or kill reaches a starting proc
//! and fails its spawn; a dropped spawn leaks nothing; the agent's `Stop`
//! reaches a proc whose inbound ring was full when terminate started.

use std::os::fd::OwnedFd;
use std::time::Duration;

use hostmux_host::{HostConfig, HostError, ProcessProc};
use hostmux_lifecycle::TerminalStatus;
use hostmux_wire::{FrameKind, ProcInfo, ProcState, UndeliverableReason};

use crate::process::{client, echo, fixture, is_dead, run_os, serve_os, OsHost};
use crate::roles::role_command;
use crate::support::WAIT;

/// A host whose spawns wait for readiness without limit (a never-ready
/// proc stays starting until something stops it).
fn patient() -> HostConfig {
    HostConfig {
        spawn_ready_timeout: Duration::ZERO,
        ..HostConfig::default()
    }
}

/// Waits (bounded) until `ps` lists `name` as starting with a pid: its
/// process exists and its spawn waits for readiness.
async fn starting_pid(host: &OsHost, name: &str) -> u32 {
    let listed = async {
        loop {
            let procs = host.list().await.unwrap();
            if let Some(p) = procs
                .iter()
                .find(|p| p.name == name && p.state == ProcState::Starting && p.pid != 0)
            {
                return p.pid;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, listed)
        .await
        .expect("the proc is listed as starting with a pid within the wait")
}

/// A pidfd for `pid`, to wait on its exit.
fn pidfd(pid: u32) -> OwnedFd {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a positive pid");
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .expect("pidfd_open (Linux 5.3+)")
}

/// Waits (bounded) until the process behind `pidfd` has exited: the pidfd
/// turns readable.
async fn exited(pidfd: OwnedFd) {
    let readable = tokio::task::spawn_blocking(move || {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: WAIT.as_secs() as i64,
            tv_nsec: 0,
        };
        poll(&mut fds, Some(&timeout)).expect("poll the pidfd")
    })
    .await
    .unwrap();
    assert_eq!(readable, 1, "the process exited within the wait");
}

fn live<'a>(procs: &'a [ProcInfo], name: &str) -> Vec<&'a ProcInfo> {
    procs
        .iter()
        .filter(|p| {
            p.name == name
                && matches!(
                    p.state,
                    ProcState::Starting | ProcState::Ready | ProcState::Terminating
                )
        })
        .collect()
}

#[test]
fn ps_says_starting_until_the_spawn_would_return() {
    run_os(|| async {
        let (host, _serving) = serve_os(patient()).await;
        // It reports ready to its manager but never reads its ring, so the
        // agent's ping goes unanswered and the spawn keeps waiting.
        let spawning = tokio::spawn({
            let host = host.clone();
            async move { host.spawn("deaf", fixture(&["ignore-term"])).await }
        });
        // The host wrote the ping into its ring: the manager has already
        // said ready. Frames to it still come back `NotReady`, so `ps`
        // must not say ready.
        let pinged = async {
            loop {
                let procs = host.list().await.unwrap();
                if let Some(p) = procs
                    .iter()
                    .find(|p| p.name == "deaf" && p.counters.inbound_used > 0)
                {
                    return p.clone();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let info = tokio::time::timeout(WAIT, pinged)
            .await
            .expect("the agent is pinged within the wait");
        assert_eq!(info.state, ProcState::Starting, "{info:?}");
        assert!(!spawning.is_finished());
        host.kill_proc("deaf").await.unwrap();
        let failed = spawning.await.unwrap().unwrap_err();
        assert!(
            matches!(failed, HostError::StoppedWhileStarting { .. }),
            "{failed}"
        );
    });
}

#[test]
fn stopping_a_starting_proc_kills_it_and_fails_its_spawn() {
    run_os(|| async {
        let (host, _serving) = serve_os(patient()).await;
        let spawning = tokio::spawn({
            let host = host.clone();
            async move { host.spawn("slow", fixture(&["never-ready"])).await }
        });
        let pid = starting_pid(&host, "slow").await;

        let status = host
            .terminate_proc("slow", Duration::from_secs(5))
            .await
            .expect("a starting proc can be stopped");
        // never-ready installs no handler: the escalation's SIGTERM ends it.
        assert!(
            matches!(status, TerminalStatus::Signaled { signal, .. } if signal == libc::SIGTERM),
            "{status}"
        );
        assert!(is_dead(pid), "pid {pid} still runs");
        let error = tokio::time::timeout(WAIT, spawning)
            .await
            .expect("the spawn returned within the wait")
            .unwrap()
            .expect_err("the spawn of a stopped proc fails");
        match &error {
            HostError::StoppedWhileStarting {
                name,
                how,
                status: reported,
            } => {
                assert_eq!((name.as_str(), *how), ("slow", "stopped"));
                assert_eq!(*reported, status);
            }
            other => panic!("unexpected spawn error: {other}"),
        }
        assert!(
            error.to_string().contains("was stopped while starting"),
            "{error}"
        );

        // `ps` shows how it ended, nothing live; the name is free again.
        let procs = host.list().await.unwrap();
        assert!(live(&procs, "slow").is_empty(), "{procs:?}");
        let gone = procs.iter().find(|p| p.name == "slow").unwrap();
        assert_eq!(
            (gone.pid, &gone.state),
            (
                pid,
                &ProcState::Signaled {
                    signal: libc::SIGTERM,
                    core_dumped: false
                }
            )
        );
        host.spawn("slow", echo()).await.unwrap();
    });
}

#[test]
fn killing_a_starting_proc_kills_it_and_fails_its_spawn() {
    run_os(|| async {
        let (host, _serving) = serve_os(patient()).await;
        let spawning = tokio::spawn({
            let host = host.clone();
            async move { host.spawn("slow", fixture(&["never-ready"])).await }
        });
        let pid = starting_pid(&host, "slow").await;
        let status = host
            .kill_proc("slow")
            .await
            .expect("a starting proc can be killed");
        assert!(
            matches!(status, TerminalStatus::Signaled { signal, .. } if signal == libc::SIGKILL),
            "{status}"
        );
        assert!(is_dead(pid));
        let error = tokio::time::timeout(WAIT, spawning)
            .await
            .expect("the spawn returned within the wait")
            .unwrap()
            .expect_err("the spawn of a killed proc fails");
        assert!(
            matches!(
                &error,
                HostError::StoppedWhileStarting { how: "killed", .. }
            ),
            "{error}"
        );
        assert!(live(&host.list().await.unwrap(), "slow").is_empty());
    });
}

#[test]
fn stop_and_kill_of_an_ended_proc_say_how_it_ended() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        host.spawn("once", echo()).await.unwrap();
        let status = host
            .terminate_proc("once", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(status.success(), "{status}");
        for again in [
            host.terminate_proc("once", Duration::from_secs(1)).await,
            host.kill_proc("once").await,
        ] {
            match again {
                Err(HostError::AlreadyEnded {
                    name,
                    status: ended,
                }) => {
                    assert_eq!(name.as_str(), "once");
                    assert_eq!(ended, status);
                }
                other => panic!("expected AlreadyEnded, got {other:?}"),
            }
        }
        // A name that never existed is still "no proc named".
        assert!(matches!(
            host.kill_proc("never").await,
            Err(HostError::NoSuchProc(_))
        ));
    });
}

/// Dropped while it waits for readiness (as a `tokio::time::timeout`
/// around it does): the child is killed, its name, slot and route are
/// released, and the name can be spawned again.
#[test]
fn a_dropped_spawn_kills_its_child_and_frees_its_name() {
    run_os(|| async {
        let (host, _serving) = serve_os(patient()).await;
        // The timeout fires once the process exists and the spawn waits
        // for its readiness (its pidfd is opened while it surely lives);
        // the spawn future is dropped there.
        let spawn = host.spawn("slow", fixture(&["never-ready"]));
        let (pid, pidfd) = tokio::time::timeout(WAIT, async {
            tokio::select! {
                result = spawn => panic!("a never-ready proc's spawn returned: {result:?}"),
                pid = starting_pid(&host, "slow") => (pid, pidfd(pid)),
            }
        })
        .await
        .expect("the proc showed up as starting");
        exited(pidfd).await;
        assert!(is_dead(pid));

        // The same name again, at once: it waits for the release, then works.
        host.spawn("slow", echo())
            .await
            .expect("the name is free again");
        let procs = host.list().await.unwrap();
        let live = live(&procs, "slow");
        assert_eq!(live.len(), 1, "{procs:?}");
        assert_eq!(live[0].state, ProcState::Ready);
        assert_ne!(live[0].pid, pid);
        // Its route is the new proc's.
        let mut client = client(&host, "cli").await;
        client.send("slow", 1, 7, b"hi").await.unwrap();
        let frame = tokio::time::timeout(WAIT, client.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            (frame.kind, frame.payload.as_slice()),
            (FrameKind::Data, &b"hi"[..])
        );
        assert_eq!(host.stats().await.unwrap().procs.len(), 1, "no leaked slot");
    });
}

/// Dropped by a `tokio::time::timeout` that fires at once, at whatever
/// await point the spawn had reached: nothing is left behind.
#[test]
fn a_spawn_dropped_early_leaves_nothing_behind() {
    run_os(|| async {
        let (host, _serving) = serve_os(patient()).await;
        for _ in 0..5 {
            let dropped = tokio::time::timeout(Duration::ZERO, host.spawn("early", echo())).await;
            assert!(dropped.is_err(), "the timeout fired first");
        }
        host.spawn("early", echo()).await.expect("the name is free");
        let procs = host.list().await.unwrap();
        assert_eq!(live(&procs, "early").len(), 1, "{procs:?}");
        assert_eq!(host.stats().await.unwrap().procs.len(), 1, "no leaked slot");
        assert_eq!(host.procs().len(), 1);
    });
}

/// A proc whose inbound ring is full when terminate starts still gets its
/// agent's `Stop` (queued until it has made room), not just a closed ring.
#[test]
fn the_agent_stop_reaches_a_proc_whose_ring_was_full() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        let (exe, args, (key, value)) = role_command("reads-after-sigterm");
        let spec = ProcessProc::new(exe)
            .args(args)
            .env(key, value)
            .ring_sizes(64 * 1024, 64 * 1024);
        host.spawn("full", spec).await.unwrap();
        let mut client = client(&host, "f").await;
        // Small frames (no larger than the agent's Stop) until the ring
        // refuses them: then a Stop does not fit either.
        for id in 0..2_000u64 {
            client.send("full", 1, id, b"x").await.unwrap();
        }
        let overloaded = async {
            loop {
                let frame = client.recv().await.unwrap().expect("a frame");
                if frame
                    .undeliverable()
                    .is_some_and(|n| n.reason == UndeliverableReason::Overloaded)
                {
                    return;
                }
            }
        };
        tokio::time::timeout(WAIT, overloaded)
            .await
            .expect("the ring filled up and frames came back Overloaded");

        let status = host
            .terminate_proc("full", Duration::from_secs(20))
            .await
            .unwrap();
        // Exit 0: it read everything and then its agent's Stop; 3 would
        // mean the ring closed without a Stop.
        assert_eq!(
            status,
            TerminalStatus::Exited {
                code: 0,
                output: None
            },
            "{status}"
        );
    });
}

/// The `reads-after-sigterm` role: answers the readiness ping, then reads
/// nothing until SIGTERM (which it does not take as a stop); then reads
/// everything. Exit 0 on the agent's Stop, 3 if the ring closed without
/// one, 4 if nothing came for 30 s.
pub(crate) fn reads_after_sigterm() -> i32 {
    use hostmux_proc::{BootOptions, Recv};
    let mut sigterm =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM]).expect("SIGTERM");
    let options = BootOptions {
        handle_signals: false,
        ..BootOptions::default()
    };
    let mut proc = hostmux_proc::boot_with(options).expect("boot");
    while proc.stats().agent_requests == 0 {
        if let Err(e) = proc.recv_timeout(Duration::from_millis(100)) {
            eprintln!("waiting for the ping: {e}");
            return 5;
        }
    }
    let _ = sigterm.forever().next();
    loop {
        match proc.recv_timeout(Duration::from_secs(30)) {
            Ok(Recv::Message(_)) => {}
            Ok(Recv::Stopped) => return 0,
            Ok(Recv::Closed) => return 3,
            Ok(Recv::TimedOut) => return 4,
            Err(e) => {
                eprintln!("reading: {e}");
                return 5;
            }
        }
    }
}
