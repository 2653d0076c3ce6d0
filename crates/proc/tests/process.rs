//! Real child processes spawned by `hostmux_lifecycle::ProcessProcManager`
//! with the boot protocol from `protocol::host_ends`; the test is the host.

use std::process::Command;
use std::time::Duration;

use hostmux_lifecycle::{
    CgroupMode, ProcHandle, ProcManager, ProcessConfig, ProcessHandle, ProcessProcManager,
    ReadyError, TerminalStatus,
};
use hostmux_proc::protocol::{
    HOST_DOORBELL_FD_ENV, INBOUND_FD_ENV, LANES_ENV, OUTBOUND_FD_ENV, PROC_ID_ENV, SERVICE_NAME_ENV,
};
use hostmux_ring::RingError;
use hostmux_wire::{AgentRequest, AgentResponse, FrameKind, ProcName, Sender};
use tokio::runtime::Runtime;

use crate::support::{expect_echo, TestHost, PATIENCE};

const RING: usize = 64 * 1024;
const CLEAN_EXIT: TerminalStatus = TerminalStatus::Exited {
    code: 0,
    output: None,
};
const ECHO: &str = env!("CARGO_BIN_EXE_hostmux-echo");
const SINK: &str = env!("CARGO_BIN_EXE_hostmux-sink");
const FIXTURE: &str = env!("CARGO_BIN_EXE_hostmux-proc-fixture");

struct Harness {
    rt: Runtime,
    manager: ProcessProcManager,
}

impl Harness {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let manager = rt.block_on(async {
            ProcessProcManager::builder()
                .cgroups(CgroupMode::Disabled)
                .build()
        });
        Self { rt, manager }
    }

    /// Spawns proc `name` from `config`, without waiting for it to be ready.
    fn spawn(&self, name: &str, config: ProcessConfig) -> ProcessHandle {
        self.rt
            .block_on(self.manager.spawn(ProcName::new(name).unwrap(), config))
            .expect("spawned")
    }

    /// Spawns `program args` as proc `name` and waits until it is ready.
    fn start(&self, name: &str, program: &str, args: &[&str]) -> (TestHost, ProcessHandle) {
        let (host, config) = TestHost::process(name, program, args, RING);
        let handle = self.spawn(name, config);
        self.rt.block_on(handle.ready()).expect("ready");
        (host, handle)
    }

    /// Stops the proc the lifecycle manager's way (SIGTERM, SIGKILL after `grace`).
    fn terminate(&self, handle: &ProcessHandle, grace: Duration) -> TerminalStatus {
        self.rt
            .block_on(handle.terminate(grace))
            .expect("terminated")
    }

    /// Asks the proc's agent to stop; the proc must confirm and exit 0.
    fn stop_through_the_agent(&self, host: &mut TestHost, handle: &ProcessHandle) {
        assert_eq!(
            host.ask_agent(1_000, AgentRequest::Stop),
            AgentResponse::Stopping
        );
        assert_eq!(self.wait(handle), CLEAN_EXIT);
    }

    fn wait(&self, handle: &ProcessHandle) -> TerminalStatus {
        self.rt
            .block_on(async { tokio::time::timeout(PATIENCE, handle.wait()).await })
            .expect("proc ended in time")
            .expect("terminal status")
    }
}

fn client(name: &str) -> Sender<'_> {
    Sender::Client { name }
}

#[test]
fn echo_round_trip_through_a_real_process() {
    let harness = Harness::new();
    let (mut host, handle) = harness.start("echo", ECHO, &[]);
    let big = vec![0xabu8; 4000];
    host.deliver_data(client("cli"), 7, 1, b"hello");
    host.deliver_data(client("cli"), 7, 2, b"");
    host.deliver_data(
        Sender::Proc {
            addr: "",
            name: "peer",
        },
        8,
        3,
        &big,
    );
    expect_echo(&host.expect_frame(), "cli", 7, 1, b"hello", "echo");
    expect_echo(&host.expect_frame(), "cli", 7, 2, b"", "echo");
    expect_echo(&host.expect_frame(), "peer", 8, 3, &big, "echo");
    // The proc sleeps between frames: each one must wake it.
    for id in 10..20 {
        host.deliver_data(client("cli"), 1, id, b"ping");
        expect_echo(&host.expect_frame(), "cli", 1, id, b"ping", "echo");
    }
    assert_eq!(
        host.ask_agent(99, AgentRequest::Ping { nonce: 5 }),
        AgentResponse::Pong { nonce: 5 }
    );
    harness.stop_through_the_agent(&mut host, &handle);
}

#[test]
fn sink_counts_reach_the_host_through_agent_stats() {
    let harness = Harness::new();
    let (mut host, handle) = harness.start("sink", SINK, &[]);
    for id in 0..300 {
        host.deliver_data(client("cli"), 3, id, &[1u8; 100]);
    }
    let stats = host.ask_stats(1);
    assert_eq!((stats.frames_in, stats.bytes_in), (300, 30_000));
    assert_eq!((stats.frames_out, stats.bytes_out), (0, 0));
    assert!(
        host.next_frame(Duration::from_millis(50))
            .unwrap()
            .is_none(),
        "a sink sends nothing but agent answers"
    );
    harness.stop_through_the_agent(&mut host, &handle);
}

#[test]
fn sigterm_is_a_graceful_stop_and_the_proc_exits_zero() {
    let harness = Harness::new();
    let (mut host, handle) = harness.start("termed", ECHO, &[]);
    host.deliver_data(client("cli"), 1, 1, b"x");
    host.expect_frame();
    // `terminate` sends SIGTERM (no polite-stop hook installed); the proc
    // sleeps on its doorbell and must wake on the signal.
    assert_eq!(harness.terminate(&handle, PATIENCE), CLEAN_EXIT);
}

#[test]
fn without_a_proc_doorbell_the_proc_uses_futexes_and_still_stops_on_sigterm() {
    let harness = Harness::new();
    let (mut host, config) = TestHost::process_without_proc_doorbell("futexed", ECHO, RING);
    let handle = harness.spawn("futexed", config);
    harness.rt.block_on(handle.ready()).unwrap();
    for id in 0..5 {
        host.deliver_data(client("cli"), 1, id, b"futex");
        expect_echo(&host.expect_frame(), "cli", 1, id, b"futex", "futexed");
    }
    // The proc sleeps on the inbound futex; SIGTERM is noticed within
    // SIGNAL_CHECK_INTERVAL.
    assert_eq!(harness.terminate(&handle, PATIENCE), CLEAN_EXIT);
}

#[test]
fn a_proc_ignoring_sigterm_is_killed_after_the_grace() {
    let harness = Harness::new();
    let (_host, handle) = harness.start("stubborn", FIXTURE, &["ignore-term"]);
    assert_eq!(
        harness.terminate(&handle, Duration::from_millis(300)),
        TerminalStatus::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false,
            output: None,
        }
    );
}

#[test]
fn crash_after_n_messages_is_a_sigabrt() {
    let harness = Harness::new();
    let (mut host, handle) = harness.start("crasher", FIXTURE, &["crash-after", "3"]);
    for id in 0..5 {
        host.deliver_data(client("cli"), 1, id, b"msg");
    }
    for id in 0..3 {
        expect_echo(&host.expect_frame(), "cli", 1, id, b"msg", "crasher");
    }
    match harness.wait(&handle) {
        TerminalStatus::Signaled { signal, .. } => assert_eq!(signal, libc::SIGABRT),
        other => panic!("expected SIGABRT, got {other:?}"),
    }
    assert!(
        host.from_proc.peek().unwrap().is_none(),
        "nothing after the crash"
    );
}

#[test]
fn a_proc_that_never_becomes_ready_fails_its_spawn_after_the_timeout() {
    let harness = Harness::new();
    let (_host, config) = TestHost::process("sleepy", FIXTURE, &["never-ready"], RING);
    let config = config.ready_timeout(Duration::from_millis(300));
    let handle = harness.spawn("sleepy", config);
    let ready = harness.rt.block_on(handle.ready());
    assert!(
        matches!(ready, Err(ReadyError::TimedOut { .. })),
        "{ready:?}"
    );
    assert!(matches!(
        harness.wait(&handle),
        TerminalStatus::Failed { .. }
    ));
}

#[test]
fn a_proc_corrupting_its_outbound_ring_is_seen_as_corrupted_by_the_host() {
    let harness = Harness::new();
    let (mut host, handle) = harness.start("vandal", FIXTURE, &["corrupt-outbound"]);
    host.deliver_data(client("cli"), 1, 1, b"fine");
    expect_echo(&host.expect_frame(), "cli", 1, 1, b"fine", "vandal");
    host.deliver_data(client("cli"), 1, 2, b"corrupt");
    let err = host.next_frame(PATIENCE).unwrap_err();
    assert!(matches!(err, RingError::Corrupted { .. }), "{err}");
    // The end stays poisoned; the host fails the proc.
    assert!(host.from_proc.peek().is_err());
    let status = harness.rt.block_on(handle.kill()).unwrap();
    assert!(matches!(status, TerminalStatus::Signaled { signal, .. } if signal == libc::SIGKILL));
}

/// Runs the fixture's `boot` mode with exactly `env` and returns (exit code, stderr).
#[test]
fn boot_leaves_no_boot_variables_and_no_stray_inherited_fds_in_the_proc() {
    // An fd this (host) process holds without close-on-exec, as a library
    // or the host's own parent might leave one: the proc must not get it.
    let marker = std::env::temp_dir().join(format!(
        "hostmux-stray-fd-marker-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let file = std::fs::File::create(&marker).unwrap();
    // At a number above every fd the spawner places (a low one could be
    // replaced by a ring fd and hide a leak).
    let stray = rustix::io::fcntl_dupfd_cloexec(&file, 300).unwrap();
    drop(file);
    rustix::io::fcntl_setfd(&stray, rustix::io::FdFlags::empty()).unwrap();
    let harness = Harness::new();
    let (mut host, handle) = harness.start("leftovers", FIXTURE, &["boot-leftovers"]);
    drop(stray);
    std::fs::remove_file(&marker).unwrap();
    host.deliver_data(client("cli"), 1, 1, b"report");
    let reply = host.expect_frame();
    let report = String::from_utf8(reply.payload.clone()).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    // The proc's view was taken after boot, so it lists its own fds.
    assert!(lines.iter().any(|l| l.starts_with("fd ")), "{report}");
    for line in &lines {
        assert!(
            !line.starts_with("env ") && !line.starts_with("environ "),
            "a boot variable survived boot: {line}\n{report}"
        );
        assert!(
            !line.contains("hostmux-stray-fd-marker"),
            "the proc inherited a stray fd: {line}\n{report}"
        );
    }
    harness.stop_through_the_agent(&mut host, &handle);
}

fn boot_with_env(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(FIXTURE)
        .arg("boot")
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("fixture runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn boot_parameter_errors_name_the_parameter() {
    let complete = [
        (PROC_ID_ENV, "unix:@t/echo"),
        (SERVICE_NAME_ENV, "service"),
        (INBOUND_FD_ENV, "200"),
        (OUTBOUND_FD_ENV, "201"),
        (HOST_DOORBELL_FD_ENV, "202"),
    ];
    let missing: Vec<_> = complete
        .iter()
        .copied()
        .filter(|(k, _)| *k != PROC_ID_ENV)
        .collect();
    let (code, stderr) = boot_with_env(&missing);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("boot failed: boot parameter HOSTMUX_PROC_ID is not set"),
        "{stderr}"
    );

    let mut invalid = complete.to_vec();
    invalid[3] = (OUTBOUND_FD_ENV, "stdout");
    let (code, stderr) = boot_with_env(&invalid);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("boot parameter HOSTMUX_OUTBOUND_FD is invalid"),
        "{stderr}"
    );

    // Well-formed, but fd 200 is not open in the child.
    let (code, stderr) = boot_with_env(&complete);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("boot parameter HOSTMUX_INBOUND_FD is invalid: fd 200 is not open"),
        "{stderr}"
    );
}

#[test]
fn a_process_booted_with_three_lanes_serves_each_on_its_own_lane() {
    let harness = Harness::new();
    let (mut hosts, config) = TestHost::process_lanes("echo", ECHO, RING, 3);
    let handle = harness.spawn("echo", config);
    harness.rt.block_on(handle.ready()).expect("ready");
    // Frames on every lane; the proc sleeps between rounds, so each round
    // wakes it through whichever lane carries the frame.
    for round in 0..3u64 {
        for (lane, host) in hosts.iter_mut().enumerate() {
            let id = round * 10 + lane as u64;
            host.deliver_data(client("cli"), 1, id, b"lane");
            expect_echo(&host.expect_frame(), "cli", 1, id, b"lane", "echo");
        }
    }
    // All three at once, then each answer on its own lane.
    for (lane, host) in hosts.iter_mut().enumerate() {
        host.deliver_data(client("cli"), 2, 100 + lane as u64, b"burst");
    }
    for (lane, host) in hosts.iter_mut().enumerate() {
        expect_echo(
            &host.expect_frame(),
            "cli",
            2,
            100 + lane as u64,
            b"burst",
            "echo",
        );
    }
    let stats = hosts[2].ask_stats(500);
    assert_eq!((stats.frames_in, stats.frames_out), (12, 12));
    harness.stop_through_the_agent(&mut hosts[1], &handle);
}

#[test]
fn lane_boot_parameter_errors_name_the_parameter() {
    let base = [
        (PROC_ID_ENV, "unix:@t/echo"),
        (SERVICE_NAME_ENV, "service"),
        (INBOUND_FD_ENV, "200,203"),
        (OUTBOUND_FD_ENV, "201,204"),
        (HOST_DOORBELL_FD_ENV, "202,205"),
    ];
    // Lists without the count: read as one lane, so not one fd number.
    let (code, stderr) = boot_with_env(&base);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("boot parameter HOSTMUX_INBOUND_FD is invalid: \"200,203\" holds 2 fd numbers, one per lane, but HOSTMUX_LANES says 1 lanes"),
        "{stderr}"
    );
    let mut with_count = base.to_vec();
    with_count.push((LANES_ENV, "3"));
    let (code, stderr) = boot_with_env(&with_count);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("boot parameter HOSTMUX_INBOUND_FD is invalid"),
        "{stderr}"
    );
    with_count.pop();
    with_count.push((LANES_ENV, "0"));
    let (code, stderr) = boot_with_env(&with_count);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("boot failed: HOSTMUX_LANES: 0 lanes, a proc takes 1 to 256"),
        "{stderr}"
    );
    // Two lanes, well-formed: the first fd is checked (and is not open).
    with_count.pop();
    with_count.push((LANES_ENV, "2"));
    let (code, stderr) = boot_with_env(&with_count);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("boot parameter HOSTMUX_INBOUND_FD is invalid: fd 200 is not open"),
        "{stderr}"
    );
}

/// Pipelines `frames` frames of `size` bytes through an echo process with
/// both 64 KiB rings filling up (the proc blocks on its full outbound ring,
/// the host on the full inbound ring), and checks every reply in order.
fn pipelined_echo_loses_nothing(frames: u64, size: usize) {
    let harness = Harness::new();
    let (mut host, handle) = harness.start("piped", ECHO, &[]);
    let mut payload = vec![0u8; size];
    let (mut sent, mut received) = (0u64, 0u64);
    let limits = host.limits;
    let started = std::time::Instant::now();
    while received < frames {
        let mut progressed = false;
        while sent < frames {
            payload[..8].copy_from_slice(&sent.to_le_bytes());
            let header = hostmux_wire::FrameHeader {
                dest_port: 5,
                sender: client("cli"),
                ..hostmux_wire::FrameHeader::data("piped", sent)
            };
            let len = hostmux_wire::encoded_len(&header, size);
            match host.to_proc.try_reserve(len) {
                Ok(mut slot) => {
                    hostmux_wire::encode_frame(&mut slot, &header, &payload, &limits).unwrap();
                    slot.commit();
                    sent += 1;
                    progressed = true;
                }
                Err(RingError::Full) => break,
                Err(e) => panic!("{e}"),
            }
        }
        host.to_proc.publish().unwrap();
        while let Some(reply) = host.next_frame(Duration::ZERO).unwrap() {
            assert_eq!(reply.header.message_id, received, "replies in order");
            assert_eq!(reply.payload.len(), size);
            assert_eq!(reply.payload[..8], received.to_le_bytes());
            received += 1;
            progressed = true;
        }
        if !progressed {
            // Nothing to do until the proc frees inbound space or replies.
            let _ = host
                .next_frame(Duration::from_millis(1))
                .unwrap()
                .map(|reply| {
                    assert_eq!(reply.header.message_id, received);
                    received += 1;
                });
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "stalled at {received}/{frames}"
        );
    }
    let stats = host.ask_stats(u64::MAX);
    assert_eq!((stats.frames_in, stats.frames_out), (frames, frames));
    harness.stop_through_the_agent(&mut host, &handle);
    eprintln!(
        "{frames} frames of {size} B echoed in {:?} ({:.0} frames/s)",
        started.elapsed(),
        frames as f64 / started.elapsed().as_secs_f64()
    );
}

#[test]
fn pipelined_echo_with_full_rings_loses_nothing() {
    pipelined_echo_loses_nothing(3_000, 1000);
}

#[test]
#[ignore = "stress: a million frames; run with --ignored --nocapture"]
fn stress_pipelined_echo_a_million_frames() {
    pipelined_echo_loses_nothing(1_000_000, 200);
}

/// A notice or a control response reaching an echo proc is never answered
/// (answering it made echo and the host bounce frames forever, issue 11):
/// the next frame out of the proc is the echo of the data sent after them.
#[test]
fn echo_procs_answer_data_only_and_ignore_notices_and_control_responses() {
    let harness = Harness::new();
    for (program, args) in [(ECHO, &[][..]), (FIXTURE, &["boot"][..])] {
        let (mut host, handle) = harness.start("echo", program, args);
        for (id, kind) in [
            (1, FrameKind::Undeliverable),
            (2, FrameKind::ControlResponse),
        ] {
            host.deliver_kind(kind, TestHost::service(), 7, id, b"not a request");
        }
        host.deliver_data(client("cli"), 7, 3, b"data");
        expect_echo(&host.expect_frame(), "cli", 7, 3, b"data", "echo");
        let stats = host.ask_stats(4);
        assert_eq!(
            (stats.frames_in, stats.frames_out),
            (3, 1),
            "{program}: three received, one answered"
        );
        harness.stop_through_the_agent(&mut host, &handle);
    }
}
