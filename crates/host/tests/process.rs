//! The host with real OS procs (`ProcessProc` through `ProcessProcManager`):
//! hostmux-proc's binaries, and this test executable re-run as a proc.

use std::collections::HashSet;
use std::time::Duration;

use hostmux_host::{Client, Host, HostConfig, HostError, ProcessProc, ServeHandle};
use hostmux_lifecycle::{ProcessProcManager, Readiness};
use hostmux_wire::{Addr, FrameKind, ProcState, UndeliverableReason};

use crate::bins::proc_bin;
use crate::roles::{role_command, RELAY_TARGET_ENV};
use crate::support::WAIT;

pub(crate) type OsHost = Host<ProcessProcManager>;

/// Runs `scenario` on a fresh multi-threaded runtime, bounded.
pub(crate) fn run_os<Fut: std::future::Future<Output = ()>>(scenario: impl FnOnce() -> Fut) {
    crate::support::runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), scenario())
            .await
            .expect("scenario finished within 60 s");
    });
}

pub(crate) async fn serve_os(config: HostConfig) -> (OsHost, ServeHandle) {
    try_serve_os(config).await.unwrap()
}

/// A host on a loopback port whose procs are OS processes.
pub(crate) async fn try_serve_os(config: HostConfig) -> Result<(OsHost, ServeHandle), HostError> {
    Host::serve_processes(
        ProcessProcManager::builder(),
        Addr::tcp("127.0.0.1", 0).unwrap(),
        config,
    )
    .await
}

pub(crate) async fn client(host: &OsHost, name: &str) -> Client {
    let addr = format!("127.0.0.1:{}", host.addr().port().unwrap());
    Client::connect_tcp(&addr, name, host.config().token.as_deref(), "service")
        .await
        .unwrap()
}

pub(crate) fn echo() -> ProcessProc {
    ProcessProc::new(proc_bin("hostmux-echo"))
}

pub(crate) fn fixture(args: &[&str]) -> ProcessProc {
    ProcessProc::new(proc_bin("hostmux-proc-fixture")).args(args)
}

fn relay_to(target: &str) -> ProcessProc {
    let (exe, args, (key, value)) = role_command("relay");
    ProcessProc::new(exe)
        .args(args)
        .env(key, value)
        .env(RELAY_TARGET_ENV, target)
}

/// Whether process `pid` is gone (no /proc entry, or a zombie nobody reaps).
pub(crate) fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

async fn recv(client: &mut Client) -> hostmux_host::ReceivedFrame {
    tokio::time::timeout(WAIT, client.recv())
        .await
        .expect("a frame within the wait")
        .unwrap()
        .expect("a frame, not the end of the stream")
}

#[test]
fn echo_round_trip_through_an_os_proc_and_terminal_status_in_list() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        let id = host.spawn("echo", echo()).await.unwrap();
        assert_eq!(id.name().as_str(), "echo");
        let listed = host.list().await.unwrap();
        let echo_info = listed.iter().find(|p| p.name == "echo").unwrap();
        assert!(echo_info.pid > 0, "{echo_info:?}");
        assert_eq!(echo_info.state, ProcState::Ready);
        let pid = echo_info.pid;

        let mut client = client(&host, "cli").await;
        for id in 0..100u64 {
            client.send("echo", 7, id, &id.to_le_bytes()).await.unwrap();
        }
        for id in 0..100u64 {
            let frame = recv(&mut client).await;
            assert_eq!(frame.kind, FrameKind::Data);
            assert_eq!((frame.message_id, frame.port), (id, 7));
            assert_eq!(frame.sender, "echo");
            assert_eq!(frame.payload, id.to_le_bytes());
        }
        // Terminate: the agent's stop and SIGTERM; the echo exits 0.
        let status = host
            .terminate_proc("echo", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(status.success(), "{status}");
        assert!(is_dead(pid));
        let listed = host.list().await.unwrap();
        let gone = listed.iter().find(|p| p.name == "echo").unwrap();
        assert_eq!(gone.state, ProcState::Exited { code: 0 });
        assert_eq!(gone.pid, pid);
        assert_eq!(gone.counters.frames_in, 100);
        // Its name routes nowhere now.
        client.send("echo", 7, 1000, b"late").await.unwrap();
        let notice = recv(&mut client).await.undeliverable().unwrap();
        assert_eq!(notice.reason, UndeliverableReason::NoSuchProc);
    });
}

#[test]
fn proc_to_proc_through_the_host() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        host.spawn("echo", echo()).await.unwrap();
        host.spawn("relay", relay_to("echo")).await.unwrap();
        let mut client = client(&host, "cli").await;
        // client -> relay -> echo -> relay -> client, 50 in flight.
        for id in 0..50u64 {
            client.send("relay", 3, id, &[id as u8; 40]).await.unwrap();
        }
        for id in 0..50u64 {
            let frame = recv(&mut client).await;
            assert_eq!((frame.kind, frame.message_id), (FrameKind::Data, id));
            assert_eq!(frame.sender, "relay");
            assert_eq!(frame.payload, [id as u8; 40]);
        }
        let stats = host.stats().await.unwrap();
        let relay = stats.proc("relay").unwrap();
        let echo = stats.proc("echo").unwrap();
        // frames_out also counts each agent's answer to the readiness ping.
        assert_eq!((relay.frames_in, relay.frames_out), (100, 101));
        assert_eq!((echo.frames_in, echo.frames_out), (50, 51));
        let summary = host.terminate_children(Duration::from_secs(5), 4).await;
        assert_eq!((summary.attempted, summary.ok), (2, 2));
    });
}

#[test]
fn os_proc_crash_mid_stream_returns_every_remaining_frame() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        const ANSWERED: u64 = 10;
        const SENT: u64 = 300;
        host.spawn("quitter", fixture(&["crash-after", "10"]))
            .await
            .unwrap();
        let client = client(&host, "stream").await;
        let (mut writer, mut reader) = client.into_split();
        for id in 0..SENT {
            writer.queue("quitter", 1, id, &id.to_le_bytes()).unwrap();
        }
        writer.flush().await.unwrap();
        // Every message comes back: an echo, or a notice. A frame the proc
        // had read but whose release it had not yet published (the ring
        // publishes releases in batches) is returned `ProcExited` even if
        // it was echoed: notices are at-least-once when a proc dies.
        let mut echoed = HashSet::new();
        let mut noticed = HashSet::new();
        while echoed.union(&noticed).count() < SENT as usize {
            let frame = tokio::time::timeout(WAIT, reader.recv())
                .await
                .expect("every frame comes back")
                .unwrap()
                .unwrap();
            match frame.kind {
                FrameKind::Data => {
                    assert!(echoed.insert(frame.message_id), "echoed twice");
                    assert_eq!(frame.payload, frame.message_id.to_le_bytes());
                }
                FrameKind::Undeliverable => {
                    let reason = frame.undeliverable().unwrap().reason;
                    assert!(
                        matches!(
                            reason,
                            UndeliverableReason::ProcExited | UndeliverableReason::NoSuchProc
                        ),
                        "{reason:?}"
                    );
                    assert!(noticed.insert(frame.message_id), "noticed twice");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(echoed.len() as u64, ANSWERED);
        assert!((0..ANSWERED).all(|id| echoed.contains(&id)));
        assert!((ANSWERED..SENT).all(|id| noticed.contains(&id)));
        let stats = host.stats().await.unwrap();
        let conn = stats.conn("stream").unwrap();
        assert_eq!(conn.accepted, SENT);
        assert_eq!(conn.accepted, conn.delivered + conn.returned.total());
        let listed = host.list().await.unwrap();
        let quitter = listed.iter().find(|p| p.name == "quitter").unwrap();
        assert_eq!(
            quitter.state,
            ProcState::Signaled {
                signal: libc::SIGABRT,
                core_dumped: quitter.state
                    == ProcState::Signaled {
                        signal: libc::SIGABRT,
                        core_dumped: true
                    }
            }
        );
    });
}

#[test]
fn a_proc_corrupting_its_ring_is_killed_and_nobody_else_notices() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        host.spawn("vandal", fixture(&["corrupt-outbound"]))
            .await
            .unwrap();
        host.spawn("echo", echo()).await.unwrap();
        let vandal_pid = host
            .list()
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.name == "vandal")
            .unwrap()
            .pid;
        let mut client = client(&host, "cli").await;
        client.send("vandal", 1, 1, b"corrupt").await.unwrap();
        // Wait (bounded) until the host has killed it.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let listed = host.list().await.unwrap();
            let vandal = listed.iter().find(|p| p.name == "vandal").unwrap();
            if vandal.state
                == (ProcState::Signaled {
                    signal: libc::SIGKILL,
                    core_dumped: false,
                })
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{vandal:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(is_dead(vandal_pid));
        // The echo and the host carry on.
        for id in 10..20u64 {
            client.send("echo", 1, id, b"still here").await.unwrap();
            loop {
                let frame = recv(&mut client).await;
                // The corrupt request itself may come back as ProcExited.
                if frame.message_id == 1 {
                    continue;
                }
                assert_eq!((frame.kind, frame.message_id), (FrameKind::Data, id));
                break;
            }
        }
        assert!(host.procs().iter().all(|p| p.as_str() == "echo"));
    });
}

#[test]
fn a_proc_corrupting_its_ring_before_it_is_ready_is_killed_not_leaked() {
    run_os(|| async {
        let config = HostConfig {
            spawn_ready_timeout: Duration::from_secs(20),
            ..HostConfig::default()
        };
        let (host, _serving) = serve_os(config).await;
        let (exe, args, (key, value)) = role_command("corrupt-before-ready");
        let spec = ProcessProc::new(exe).args(args).env(key, value);
        let started = std::time::Instant::now();
        let err = host.spawn("early", spec).await.unwrap_err();
        // Killed, so it fails well before the 20 s ready timeout.
        assert!(started.elapsed() < Duration::from_secs(10), "{err:?}");
        assert!(
            matches!(
                err,
                HostError::NotReady { .. } | HostError::AgentUnanswered { .. }
            ),
            "{err:?}"
        );
        let listed = host.list().await.unwrap();
        let early = listed.iter().find(|p| p.name == "early").unwrap();
        assert_eq!(
            early.state,
            ProcState::Signaled {
                signal: libc::SIGKILL,
                core_dumped: false
            }
        );
        assert!(early.pid > 0 && is_dead(early.pid));
        assert!(host.procs().is_empty());
    });
}

#[test]
fn inbound_occupancy_is_reported_for_a_proc_that_does_not_read() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        // It never receives (so its agent never answers: no ping).
        let spec = fixture(&["ignore-term"]).ping_agent(false);
        host.spawn("deaf", spec).await.unwrap();
        let mut client = client(&host, "cli").await;
        for id in 0..10u64 {
            client.send("deaf", 1, id, &[1; 1000]).await.unwrap();
        }
        // Bounded wait until all ten were written into its ring.
        let deadline = tokio::time::Instant::now() + WAIT;
        let deaf = loop {
            let stats = host.stats().await.unwrap();
            let deaf = stats.proc("deaf").unwrap().clone();
            if deaf.frames_in == 10 {
                break deaf;
            }
            assert!(tokio::time::Instant::now() < deadline, "{deaf:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert!(deaf.inbound_used >= deaf.bytes_in, "{deaf:?}");
        assert!(deaf.inbound_high_water >= deaf.inbound_used, "{deaf:?}");
        let listed = host.list().await.unwrap();
        let info = listed.iter().find(|p| p.name == "deaf").unwrap();
        assert_eq!(info.counters.inbound_used, deaf.inbound_used);
        host.kill_proc("deaf").await.unwrap();
    });
}

#[test]
fn a_full_os_proc_ring_slows_only_its_sender_and_returns_overloaded() {
    run_os(|| async {
        let config = HostConfig {
            overload_wait: Duration::from_millis(100),
            ..HostConfig::default()
        };
        let (host, _serving) = serve_os(config).await;
        // Never reads; 64 KiB inbound ring.
        let deaf = fixture(&["ignore-term"])
            .ping_agent(false)
            .ring_sizes(1 << 16, 1 << 16);
        host.spawn("deaf", deaf).await.unwrap();
        host.spawn("echo", echo()).await.unwrap();
        const SENT: u64 = 200;
        let flooder = client(&host, "flooder").await;
        let (mut writer, mut reader) = flooder.into_split();
        for id in 0..SENT {
            writer.queue("deaf", 1, id, &[3; 1000]).unwrap();
        }
        writer.flush().await.unwrap();
        // Another client is served meanwhile.
        let mut other = client(&host, "other").await;
        other.send("echo", 1, 1, b"ping").await.unwrap();
        let answer = recv(&mut other).await;
        assert_eq!(
            (answer.kind, answer.payload.as_slice()),
            (FrameKind::Data, &b"ping"[..])
        );
        // What did not fit comes back Overloaded once the wait is over.
        let mut overloaded = 0;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let stats = host.stats().await.unwrap();
            let conn = stats.conn("flooder").unwrap();
            if conn.accepted == SENT && conn.delivered + conn.returned.total() == SENT {
                let deaf = stats.proc("deaf").unwrap();
                assert_eq!(conn.delivered, deaf.frames_in);
                assert!(deaf.frames_in > 0 && deaf.frames_in < SENT, "{deaf:?}");
                assert!(deaf.inbound_high_water <= deaf.inbound_capacity);
                while overloaded < conn.returned.total() {
                    let frame = tokio::time::timeout(WAIT, reader.recv())
                        .await
                        .unwrap()
                        .unwrap()
                        .unwrap();
                    assert_eq!(
                        frame.undeliverable().map(|u| u.reason),
                        Some(UndeliverableReason::Overloaded)
                    );
                    overloaded += 1;
                }
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{conn:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(overloaded > 0);
        host.kill_proc("deaf").await.unwrap();
    });
}

/// About a million (2^20) 200-byte frames pipelined client -> host -> hostmux-echo ->
/// host -> client, every answer checked in order. Run with
/// `cargo test -p hostmux-host --release --test tests stress_os -- --ignored --nocapture`.
#[test]
#[ignore = "a million frames through a real proc; run explicitly"]
fn stress_os_echo_a_million_frames() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        host.spawn("echo", echo()).await.unwrap();
        const BATCH: u64 = 256;
        const FRAMES: u64 = 4096 * BATCH;
        let (mut writer, mut reader) = client(&host, "stress").await.into_split();
        let started = std::time::Instant::now();
        let sending = tokio::spawn(async move {
            let payload = [0x42u8; 200];
            for batch in 0..FRAMES / BATCH {
                for i in 0..BATCH {
                    writer
                        .queue("echo", 1, batch * BATCH + i, &payload)
                        .unwrap();
                }
                writer.flush().await.unwrap();
            }
            writer
        });
        for id in 0..FRAMES {
            let got = tokio::time::timeout(
                WAIT,
                reader.recv_with(|f| (f.kind(), f.message_id(), f.payload().len())),
            )
            .await;
            let got = match got {
                Ok(got) => got.unwrap().unwrap(),
                Err(_) => {
                    let stats = host.stats().await.unwrap();
                    panic!("no answer {id} within {WAIT:?}: {stats:#?}");
                }
            };
            assert_eq!(got, (FrameKind::Data, id, 200));
        }
        let elapsed = started.elapsed();
        let _writer = sending.await.unwrap();
        println!(
            "{FRAMES} x 200 B round trips pipelined through hostmux-echo: {elapsed:?}, {:.2} M frames/s",
            FRAMES as f64 / elapsed.as_secs_f64() / 1e6
        );
        let stats = host.stats().await.unwrap();
        let conn = stats.conn("stress").unwrap();
        assert_eq!((conn.accepted, conn.delivered), (FRAMES, FRAMES));
    });
}

#[test]
fn any_program_is_a_proc_without_rings_and_a_spawn_has_its_own_ready_timeout() {
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        // Ready once exec'd: `sleep` speaks no protocol.
        host.spawn(
            "plain",
            ProcessProc::new("sleep")
                .args(["1000"])
                .readiness(Readiness::OnSpawn),
        )
        .await
        .unwrap();
        let listed = host.list().await.unwrap();
        let plain = listed.iter().find(|p| p.name == "plain").unwrap();
        assert_eq!(plain.state, ProcState::Ready);
        assert_eq!(
            plain.counters.inbound_capacity,
            64 << 10,
            "the smallest ring"
        );
        // It has no rings to receive on: frames to it come back NotReady.
        let mut client = client(&host, "cli").await;
        client.send("plain", 7, 1, b"hello").await.unwrap();
        let notice = recv(&mut client).await.undeliverable().unwrap();
        assert_eq!(notice.reason, UndeliverableReason::NotReady);

        // This spawn's own ready timeout, not the host's (30 s): a notify
        // proc that never sends READY=1 is killed after 300 ms.
        let timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let err = host
            .spawn_with_ready_timeout(
                "mute",
                ProcessProc::new("sleep")
                    .args(["1000"])
                    .readiness(Readiness::Notify),
                timeout,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, HostError::ReadyTimeout { timeout: t, .. } if t == timeout),
            "{err:?}"
        );
        assert!(started.elapsed() >= timeout);
        let listed = host.list().await.unwrap();
        let mute = listed.iter().find(|p| p.name == "mute").unwrap();
        assert!(mute.pid > 0 && is_dead(mute.pid), "{mute:?}");
        assert!(
            matches!(
                mute.state,
                ProcState::Signaled { .. } | ProcState::Failed { .. }
            ),
            "{mute:?}"
        );
    });
}
