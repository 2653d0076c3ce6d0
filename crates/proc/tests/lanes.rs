//! A proc with several lanes (issue 15): one inbound and one outbound ring
//! per host I/O thread. Receives are fair between lanes and keep each
//! lane's order, replies go out on the arriving lane, other sends on the
//! pair's lane, and a proc asleep on every lane wakes for any of them.

use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt as _;
use std::time::{Duration, Instant};

use hostmux_proc::{
    boot_from, pair_lane, protocol::BootParams, BatchRecv, ProcError, Recv, LANE_QUANTUM,
};
use hostmux_wire::{AgentRequest, AgentResponse, Sender};

use crate::support::{expect_echo, TestHost, PATIENCE};

const RING: usize = 64 * 1024;

fn client(name: &str) -> Sender<'_> {
    Sender::Client { name }
}

fn proc_sender(name: &str) -> Sender<'_> {
    Sender::Proc { addr: "", name }
}

/// Asserts that no lane but `lane` has a frame from the proc.
fn only_on(hosts: &mut [TestHost], lane: usize) {
    for (k, host) in hosts.iter_mut().enumerate() {
        if k != lane {
            assert!(
                host.from_proc.peek().unwrap().is_none(),
                "a frame on lane {k}, expected only lane {lane}"
            );
        }
    }
}

#[test]
fn three_lanes_deliver_every_frame_in_lane_order_and_round_robin() {
    let (mut hosts, params) = TestHost::local_lanes("echo", RING, 3);
    let mut proc = boot_from(params).unwrap();
    // Lane 0 is flooded; lanes 1 and 2 get a few each.
    for id in 0..20 {
        hosts[0].deliver_data(client("flood"), 1, id, b"f");
    }
    for id in 0..5 {
        hosts[1].deliver_data(client("one"), 1, 1_000 + id, b"1");
        hosts[2].deliver_data(client("two"), 1, 2_000 + id, b"2");
    }
    let mut got = Vec::new();
    for _ in 0..30 {
        let Recv::Message(message) = proc.try_recv().unwrap() else {
            panic!("expected a message after {got:?}");
        };
        got.push((message.lane(), message.message_id()));
    }
    assert!(matches!(proc.try_recv().unwrap(), Recv::TimedOut));
    // Round robin with a quantum: the flood gives a quantum's worth, then
    // lanes 1 and 2 are served before the rest of it.
    let quantum = LANE_QUANTUM as usize;
    let lanes: Vec<usize> = got.iter().map(|(lane, _)| *lane).collect();
    let expected = [
        vec![0; quantum],
        vec![1; 5],
        vec![2; 5],
        vec![0; 20 - quantum],
    ]
    .concat();
    assert_eq!(lanes, expected, "{got:?}");
    // Per-lane order, none lost.
    for (lane, base, count) in [(0, 0, 20), (1, 1_000, 5), (2, 2_000, 5)] {
        let ids: Vec<u64> = got
            .iter()
            .filter(|(l, _)| *l == lane)
            .map(|(_, id)| *id)
            .collect();
        assert_eq!(ids, (base..base + count).collect::<Vec<_>>(), "lane {lane}");
    }
    assert_eq!(proc.stats().frames_in, 30);
}

#[test]
fn a_receive_batch_stays_on_a_lane_while_it_has_frames() {
    let (mut hosts, params) = TestHost::local_lanes("echo", RING, 3);
    let mut proc = boot_from(params).unwrap();
    for id in 0..10 {
        hosts[2].deliver_data(client("flood"), 1, id, b"f");
    }
    for id in 0..2 {
        hosts[0].deliver_data(client("zero"), 1, 100 + id, b"0");
    }
    let mut got = Vec::new();
    let step = proc
        .recv_batch(6, PATIENCE, |m| got.push((m.lane(), m.message_id())))
        .unwrap();
    assert_eq!(step, BatchRecv::Delivered(6));
    assert_eq!(
        got,
        [(0, 100), (0, 101), (2, 0), (2, 1), (2, 2), (2, 3)],
        "lane 0 first (the cursor starts there) while it has frames, then lane 2"
    );
}

/// Two flooded lanes take turns a quantum at a time: neither waits for
/// more than [`LANE_QUANTUM`] of the other's messages, they do not
/// alternate message by message, and each lane's messages keep their
/// order.
#[test]
fn flooded_lanes_take_turns_a_quantum_at_a_time() {
    let (mut hosts, params) = TestHost::local_lanes("echo", RING, 3);
    let mut proc = boot_from(params).unwrap();
    let quantum = LANE_QUANTUM as usize;
    let per_lane = 2 * quantum + quantum / 2;
    for id in 0..per_lane as u64 {
        hosts[0].deliver_data(client("zero"), 1, id, b"0");
        hosts[1].deliver_data(client("one"), 1, 1_000 + id, b"1");
    }
    let mut got = Vec::new();
    while got.len() < 2 * per_lane {
        let step = proc
            .recv_batch(7, PATIENCE, |m| got.push((m.lane(), m.message_id())))
            .unwrap();
        assert!(matches!(step, BatchRecv::Delivered(_)), "{step:?}");
    }
    assert!(matches!(proc.try_recv().unwrap(), Recv::TimedOut));
    // Runs of messages from one lane: none longer than a quantum, the
    // first a whole one, and few of them (strict alternation would make
    // 80 runs of one).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (lane, _) in &got {
        match runs.last_mut() {
            Some((last, len)) if last == lane => *len += 1,
            _ => runs.push((*lane, 1)),
        }
    }
    assert!(runs.iter().all(|&(_, len)| len <= quantum), "{runs:?}");
    assert_eq!(runs[0], (0, quantum), "{runs:?}");
    assert!(runs.len() <= 2 * per_lane.div_ceil(quantum) + 2, "{runs:?}");
    for (lane, base) in [(0, 0), (1, 1_000)] {
        let ids: Vec<u64> = got
            .iter()
            .filter(|(l, _)| *l == lane)
            .map(|(_, id)| *id)
            .collect();
        assert_eq!(ids, (base..base + per_lane as u64).collect::<Vec<_>>());
    }
}

#[test]
fn replies_and_agent_answers_go_out_on_the_lane_the_message_came_in_on() {
    let (mut hosts, params) = TestHost::local_lanes("echo", RING, 3);
    let mut proc = boot_from(params).unwrap();
    // Client "cli" is served by lane 2's thread and "peer" by lane 1's;
    // their pair lanes with "echo" may be others: a reply ignores those.
    hosts[2].deliver_data(client("cli"), 7, 1, b"hello");
    let Recv::Message(mut message) = proc.recv_timeout(PATIENCE).unwrap() else {
        panic!("expected a message");
    };
    assert_eq!(message.lane(), 2);
    message.reply(b"hello").unwrap();
    expect_echo(&hosts[2].expect_frame(), "cli", 7, 1, b"hello", "echo");
    only_on(&mut hosts, 2);

    hosts[1].deliver_data(proc_sender("peer"), 8, 2, b"slot");
    let Recv::Message(mut message) = proc.recv_timeout(PATIENCE).unwrap() else {
        panic!("expected a message");
    };
    let mut slot = message.reply_slot(4).unwrap();
    slot.copy_from_slice(b"slot");
    slot.commit();
    proc.outbox().flush().unwrap();
    expect_echo(&hosts[1].expect_frame(), "peer", 8, 2, b"slot", "echo");
    only_on(&mut hosts, 1);

    // The agent answers on the lane it was asked on (inside a receive),
    // with every lane's counters.
    for (lane, id) in [(0, 10), (1, 11), (2, 12)] {
        hosts[lane].deliver_agent(TestHost::service(), id, AgentRequest::Stats);
        assert!(matches!(proc.try_recv().unwrap(), Recv::TimedOut));
        let answer = hosts[lane].expect_frame();
        assert_eq!(answer.header.message_id, id);
        match answer.agent_response() {
            AgentResponse::Stats(stats) => {
                assert_eq!((stats.frames_in, stats.frames_out), (2, 2));
            }
            other => panic!("expected stats, got {other:?}"),
        }
        only_on(&mut hosts, lane);
    }
}

#[test]
fn a_reply_publishes_its_message_consumed_on_its_own_lane() {
    let (mut hosts, params) = TestHost::local_lanes("echo", RING, 2);
    let inbound: Vec<OwnedFd> = params
        .lanes
        .iter()
        .map(|lane| lane.inbound.try_clone().unwrap())
        .collect();
    let mut proc = boot_from(params).unwrap();
    hosts[0].deliver_data(client("a"), 1, 1, b"x");
    hosts[1].deliver_data(client("b"), 1, 2, b"y");
    let published_head = |k: usize| {
        // The consumer index the proc published (docs/ring.md: offset 256).
        let mut bytes = [0u8; 8];
        std::fs::File::from(inbound[k].try_clone().unwrap())
            .read_exact_at(&mut bytes, 256)
            .unwrap();
        u64::from_le_bytes(bytes)
    };
    let before = (published_head(0), published_head(1));
    let Recv::Message(mut first) = proc.try_recv().unwrap() else {
        panic!("expected a message");
    };
    assert_eq!(first.lane(), 0);
    first.reply(b"x").unwrap();
    // Lane 0's record is published consumed with the reply; lane 1's
    // position is untouched (its message is not even received).
    assert!(published_head(0) > before.0);
    assert_eq!(published_head(1), before.1);
    expect_echo(&hosts[0].expect_frame(), "a", 1, 1, b"x", "echo");
    let Recv::Message(mut second) = proc.try_recv().unwrap() else {
        panic!("expected a message");
    };
    assert_eq!(second.lane(), 1);
    second.reply(b"y").unwrap();
    assert!(published_head(1) > before.1);
    expect_echo(&hosts[1].expect_frame(), "b", 1, 2, b"y", "echo");
}

#[test]
fn two_procs_send_to_each_other_on_their_pair_lane_both_ways() {
    const LANES: usize = 4;
    let (mut alpha_hosts, alpha) = TestHost::local_lanes("alpha", RING, LANES);
    let (mut beta_hosts, beta) = TestHost::local_lanes("beta", RING, LANES);
    let (mut alpha, mut beta) = (boot_from(alpha).unwrap(), boot_from(beta).unwrap());
    let lane = pair_lane("alpha", "beta", LANES);
    assert_eq!(lane, pair_lane("beta", "alpha", LANES));
    for id in 0..3 {
        let sent = alpha.outbox().send("beta", 1, b"a->b").unwrap();
        let back = beta.outbox().send("alpha", 1, b"b->a").unwrap();
        assert_eq!((sent, back), (id + 1, id + 1));
    }
    for (hosts, to) in [(&mut alpha_hosts, "beta"), (&mut beta_hosts, "alpha")] {
        for id in 1..=3 {
            let frame = hosts[lane].expect_frame();
            assert_eq!(
                (frame.header.dest_name.as_str(), frame.header.message_id),
                (to, id)
            );
        }
        only_on(hosts, lane);
    }
    // Every destination on its own pair lane, through the header cache's
    // hits and misses, `reserve` and `send_frame` alike.
    let names = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];
    for name in names.iter().chain(&names) {
        // The second send hits the header cache.
        alpha.outbox().send(*name, 2, b"s").unwrap();
        alpha.outbox().send(*name, 2, b"s").unwrap();
        let mut slot = alpha.outbox().reserve(*name, 3, 1).unwrap();
        slot.copy_from_slice(b"r");
        slot.commit();
        alpha.outbox().flush().unwrap();
        let header = hostmux_wire::FrameHeader {
            sender: proc_sender("alpha"),
            ..hostmux_wire::FrameHeader::data(name, 99)
        };
        alpha.outbox().send_frame(&header, b"f").unwrap();
        let lane = pair_lane("alpha", name, LANES);
        for port in [2, 2, 3, 0] {
            let frame = alpha_hosts[lane].expect_frame();
            assert_eq!(
                (frame.header.dest_name.as_str(), frame.header.dest_port),
                (*name, port)
            );
        }
        only_on(&mut alpha_hosts, lane);
    }
    // The pairs spread: these eight names do not all share one lane.
    let used: std::collections::HashSet<usize> =
        names.iter().map(|n| pair_lane("alpha", n, LANES)).collect();
    assert!(used.len() > 1);
}

#[test]
fn a_send_batch_to_mixed_destinations_publishes_every_lane_it_wrote() {
    const LANES: usize = 4;
    let (mut hosts, params) = TestHost::local_lanes("alpha", RING, LANES);
    let mut proc = boot_from(params).unwrap();
    let names = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];
    let mut batch = proc.outbox().batch();
    for name in names {
        batch.send(name, 1, name.as_bytes()).unwrap();
    }
    // Nothing is visible before the batch is published.
    for host in &mut hosts {
        assert!(host.from_proc.peek().unwrap().is_none());
    }
    batch.publish().unwrap();
    let mut seen = Vec::new();
    for (lane, host) in hosts.iter_mut().enumerate() {
        while let Some(frame) = host.next_frame(Duration::ZERO).unwrap() {
            assert_eq!(pair_lane("alpha", &frame.header.dest_name, LANES), lane);
            seen.push(frame.header.dest_name);
        }
    }
    seen.sort();
    assert_eq!(seen, names);
}

/// Reads the consumer-sleep word of an inbound ring (docs/ring.md: a u32 at
/// offset 264; 2 means asleep on the doorbell).
fn consumer_sleep(inbound: &OwnedFd) -> u32 {
    let mut bytes = [0u8; 4];
    std::fs::File::from(inbound.try_clone().unwrap())
        .read_exact_at(&mut bytes, 264)
        .unwrap();
    u32::from_le_bytes(bytes)
}

const SLEEP_DOORBELL: u32 = 2;

#[test]
fn a_proc_asleep_on_every_lane_wakes_for_a_frame_on_lane_two_only() {
    let (mut hosts, params) = TestHost::local_lanes("echo", RING, 3);
    let inbound: Vec<OwnedFd> = params
        .lanes
        .iter()
        .map(|lane| lane.inbound.try_clone().unwrap())
        .collect();
    let mut proc = boot_from(params).unwrap();
    proc.set_spin(Duration::ZERO);
    let receiver = std::thread::spawn(move || {
        let started = Instant::now();
        let got = match proc.recv_timeout(PATIENCE).unwrap() {
            Recv::Message(message) => Some((message.lane(), message.message_id())),
            _ => None,
        };
        (got, started.elapsed(), proc)
    });
    // The real event: the proc announced its sleep on all three lanes.
    let deadline = Instant::now() + PATIENCE;
    while !inbound
        .iter()
        .all(|fd| consumer_sleep(fd) == SLEEP_DOORBELL)
    {
        assert!(
            Instant::now() < deadline,
            "the proc never slept on every lane"
        );
        std::thread::yield_now();
    }
    hosts[2].deliver_data(client("cli"), 1, 42, b"wake");
    let (got, waited, proc) = receiver.join().unwrap();
    assert_eq!(got, Some((2, 42)), "woken by lane 2's frame, not timed out");
    assert!(waited < PATIENCE);
    // Awake again: no lane still says it sleeps, so no host thread rings
    // the doorbell for nothing.
    for fd in &inbound {
        assert_eq!(consumer_sleep(fd), 0);
    }
    drop(proc);
}

#[test]
fn a_lane_the_host_closed_neither_ends_the_proc_nor_keeps_it_awake() {
    let (mut hosts, params) = TestHost::local_lanes("echo", RING, 3);
    let inbound: Vec<OwnedFd> = params
        .lanes
        .iter()
        .map(|lane| lane.inbound.try_clone().unwrap())
        .collect();
    let mut proc = boot_from(params).unwrap();
    proc.set_spin(Duration::ZERO);
    // Lane 0's thread is gone: its producer closed the ring.
    drop(hosts.remove(0));
    let receiver = std::thread::spawn(move || {
        let got = match proc.recv_timeout(PATIENCE).unwrap() {
            Recv::Message(message) => Some((message.lane(), message.message_id())),
            _ => None,
        };
        (got, proc)
    });
    // It sleeps on the lanes that can still get frames (1 and 2, now
    // hosts[0] and hosts[1]), not on the closed one.
    let deadline = Instant::now() + PATIENCE;
    while !inbound[1..]
        .iter()
        .all(|fd| consumer_sleep(fd) == SLEEP_DOORBELL)
    {
        assert!(Instant::now() < deadline, "the proc never slept");
        std::thread::yield_now();
    }
    assert_eq!(consumer_sleep(&inbound[0]), 0);
    hosts[0].deliver_data(client("cli"), 1, 7, b"still here");
    let (got, mut proc) = receiver.join().unwrap();
    assert_eq!(got, Some((1, 7)));
    // Once every lane is closed and empty, the proc is told so.
    hosts.clear();
    assert!(matches!(proc.recv_timeout(PATIENCE).unwrap(), Recv::Closed));
}

#[test]
fn several_lanes_without_a_proc_doorbell_or_no_lanes_fail_to_boot_naming_why() {
    let (_hosts, mut params) = TestHost::local_lanes("echo", RING, 2);
    params.proc_doorbell = None;
    match boot_from(params) {
        Err(ProcError::InvalidParameter { name, reason }) => {
            assert_eq!(name, hostmux_proc::protocol::PROC_DOORBELL_FD_ENV);
            assert!(reason.contains("2 lanes"), "{reason}");
        }
        other => panic!("expected a named error, got {other:?}"),
    }
    let (_hosts, params) = TestHost::local_lanes("echo", RING, 1);
    let params = BootParams {
        lanes: Vec::new(),
        ..params
    };
    assert!(matches!(
        boot_from(params),
        Err(ProcError::LaneCount {
            name: "lanes",
            count: 0,
            ..
        })
    ));
}
