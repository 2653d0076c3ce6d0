//! Two real processes share rings: ordering, integrity, wake-ups, backpressure
//! and a peer that goes away.

use std::time::{Duration, Instant};

use hostmux_ring::{Consumer, Doorbell, SharedRing, WaitOutcome};

use crate::peer::{busy_wait, fds_for, Peer, Plan, Role};
use crate::records;

/// Big enough for 64 KiB records, small enough to wrap thousands of times.
const CAPACITY: usize = 128 * 1024;
const MAX_RECORD: usize = 64 * 1024;
/// Upper bound on any test's waiting: reaching it fails the test instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

fn plan(role: Role, count: u64, max_len: usize) -> Plan {
    Plan {
        role,
        count,
        seed: 0x5eed ^ count,
        max_len,
        pace: Duration::ZERO,
        expect_full: false,
    }
}

#[derive(Debug, Default)]
struct Received {
    records: u64,
    bytes: u64,
    waits: u64,
}

/// Read and verify records until `plan.count` arrived (or, with `peer`, until
/// the peer process is gone and the ring is drained).
fn consume(consumer: &mut Consumer, plan: &Plan, pace: Duration, peer: Option<&Peer>) -> Received {
    consume_from(0, consumer, plan, pace, peer)
}

/// [`consume`], expecting the first record to be number `first`.
fn consume_from(
    first: u64,
    consumer: &mut Consumer,
    plan: &Plan,
    pace: Duration,
    peer: Option<&Peer>,
) -> Received {
    // Time without progress is bounded, not total time (the stress run takes minutes).
    let mut deadline = Instant::now() + PATIENCE;
    let mut records_at_last_wait = first;
    let mut got = Received {
        records: first,
        ..Received::default()
    };
    while got.records < plan.count {
        if let Some(record) = consumer.peek().unwrap() {
            records::verify(plan.seed, got.records, plan.max_len, record).unwrap();
            got.records += 1;
            got.bytes += record.len() as u64;
            consumer.release().unwrap();
            busy_wait(pace);
            continue;
        }
        got.waits += 1;
        if got.records != records_at_last_wait {
            records_at_last_wait = got.records;
            deadline = Instant::now() + PATIENCE;
        }
        assert!(Instant::now() < deadline, "no progress after {got:?}");
        let timeout = if peer.is_some() {
            Duration::from_millis(50)
        } else {
            PATIENCE
        };
        match consumer.wait_readable(Some(timeout)).unwrap() {
            WaitOutcome::Ready => {}
            WaitOutcome::TimedOut if peer.is_some_and(Peer::has_exited) => {
                // The producer is gone: whatever it published is all there is.
                while let Some(record) = consumer.peek().unwrap() {
                    records::verify(plan.seed, got.records, plan.max_len, record).unwrap();
                    got.records += 1;
                    consumer.release().unwrap();
                }
                return got;
            }
            WaitOutcome::TimedOut => assert!(peer.is_some(), "timed out after {got:?}"),
            WaitOutcome::PeerClosed => panic!("producer closed early after {got:?}"),
        }
    }
    got
}

fn child_to_host(count: u64) -> (Received, Duration) {
    let ring = SharedRing::create(CAPACITY).unwrap();
    let plan = plan(Role::Produce, count, MAX_RECORD);
    let peer = Peer::spawn(plan, &fds_for(&ring, None));
    let mut consumer = ring.into_consumer().unwrap();
    let start = Instant::now();
    let got = consume(&mut consumer, &plan, Duration::ZERO, None);
    let elapsed = start.elapsed();
    assert_eq!(
        consumer.wait_readable(Some(PATIENCE)).unwrap(),
        WaitOutcome::PeerClosed
    );
    assert_eq!(peer.exit_code(PATIENCE), Some(0));
    assert_eq!(got.records, count);
    (got, elapsed)
}

#[test]
fn random_sized_records_from_a_child_arrive_in_order_through_a_wrapping_ring() {
    let (got, _) = child_to_host(3000);
    let wraps = got.bytes / CAPACITY as u64;
    assert!(wraps >= 300, "ring wrapped only {wraps} times");
}

/// Run once and report: `cargo test -p hostmux-ring --release --test tests
/// stress_ten_million_records -- --ignored --nocapture`.
#[test]
#[ignore = "long: 10 million records, run explicitly in release mode"]
fn stress_ten_million_records() {
    let count = 10_000_000;
    let (got, elapsed) = child_to_host(count);
    let secs = elapsed.as_secs_f64();
    println!(
        "stress: {} records, {:.1} GB, {} wraps in {secs:.1} s: {:.2} M records/s, {:.2} GB/s",
        got.records,
        got.bytes as f64 / 1e9,
        got.bytes / CAPACITY as u64,
        got.records as f64 / secs / 1e6,
        got.bytes as f64 / secs / 1e9,
    );
}

#[test]
fn records_from_the_host_are_verified_by_a_child_consumer() {
    let ring = SharedRing::create(CAPACITY).unwrap();
    let plan = plan(Role::Consume, 3000, MAX_RECORD);
    let peer = Peer::spawn(plan, &fds_for(&ring, None));
    let mut producer = ring.into_producer().unwrap();
    for seq in 0..plan.count {
        records::produce(&mut producer, plan.seed, seq, plan.max_len, PATIENCE).unwrap();
        if seq % 8 == 7 {
            producer.publish().unwrap();
        }
    }
    producer.publish().unwrap();
    assert_eq!(peer.exit_code(PATIENCE), Some(0));
    // The child closed its end: a producer waiting for space is told so.
    while producer.try_reserve(MAX_RECORD).map(|r| r.commit()).is_ok() {}
    assert_eq!(
        producer.wait_writable(MAX_RECORD, Some(PATIENCE)).unwrap(),
        WaitOutcome::PeerClosed
    );
}

#[test]
fn fast_child_producer_waits_for_space_behind_a_slow_host_consumer() {
    let ring = SharedRing::create(64 * 1024).unwrap();
    let plan = Plan {
        expect_full: true, // the child exits non-zero unless it waited for space
        ..plan(Role::Produce, 1000, 4096)
    };
    let peer = Peer::spawn(plan, &fds_for(&ring, None));
    let mut consumer = ring.into_consumer().unwrap();
    // 100 µs per record: far slower than the producer even in a debug build.
    let got = consume(&mut consumer, &plan, Duration::from_micros(100), None);
    assert_eq!(got.records, plan.count);
    assert_eq!(peer.exit_code(PATIENCE), Some(0));
}

#[test]
fn slow_child_producer_wakes_a_host_consumer_sleeping_on_the_futex() {
    let ring = SharedRing::create(64 * 1024).unwrap();
    let plan = Plan {
        pace: Duration::from_micros(200),
        ..plan(Role::Produce, 300, 256)
    };
    let peer = Peer::spawn(plan, &fds_for(&ring, None));
    let mut consumer = ring.into_consumer().unwrap();
    consumer.set_spin(Duration::ZERO); // announce sleep at once: every wait is a futex wait
    let got = consume(&mut consumer, &plan, Duration::ZERO, None);
    assert_eq!(got.records, plan.count);
    assert!(got.waits > 0, "the consumer never had to sleep");
    assert_eq!(peer.exit_code(PATIENCE), Some(0));
}

#[test]
fn one_doorbell_wakes_the_host_for_two_children_and_flags_the_pending_rings() {
    let doorbell = Doorbell::new().unwrap();
    let mut rings = Vec::new();
    let mut peers = Vec::new();
    for i in 0..2u64 {
        let ring = SharedRing::create(64 * 1024).unwrap();
        let plan = Plan {
            pace: Duration::from_micros(300),
            seed: 77 + i,
            ..plan(Role::ProduceWithDoorbell, 200, 512)
        };
        peers.push(Peer::spawn(plan, &fds_for(&ring, Some(&doorbell))));
        rings.push((ring.into_consumer().unwrap(), plan, 0u64));
    }
    let deadline = Instant::now() + PATIENCE;
    let (mut sleeps, mut pending_seen) = (0u64, 0u64);
    // The documented protocol: drain the doorbell, then per ring clear its
    // pending flag, drain it, re-arm it; sleep only if every ring armed.
    while rings.iter().any(|(_, plan, got)| *got < plan.count) {
        assert!(Instant::now() < deadline, "stuck");
        doorbell.drain().unwrap();
        let mut all_armed = true;
        for (consumer, plan, got) in &mut rings {
            pending_seen += u64::from(consumer.take_pending());
            while let Some(record) = consumer.peek().unwrap() {
                records::verify(plan.seed, *got, plan.max_len, record).unwrap();
                *got += 1;
                consumer.release().unwrap();
            }
            if *got < plan.count && !consumer.arm_doorbell().unwrap() {
                all_armed = false;
            }
        }
        let done = rings.iter().all(|(_, plan, got)| *got == plan.count);
        if all_armed && !done {
            sleeps += 1;
            assert!(
                doorbell.wait(Some(PATIENCE)).unwrap(),
                "doorbell never rang"
            );
        }
    }
    assert!(
        sleeps > 0 && pending_seen > 0,
        "sleeps {sleeps}, pending {pending_seen}"
    );
    for peer in peers {
        assert_eq!(peer.exit_code(PATIENCE), Some(0));
    }
}

#[test]
fn child_exiting_mid_stream_without_closing_is_noticed_through_its_pidfd() {
    let ring = SharedRing::create(CAPACITY).unwrap();
    let plan = plan(Role::ProduceThenVanish, 500, 2048);
    let peer = Peer::spawn(plan, &fds_for(&ring, None));
    let mut consumer = ring.into_consumer().unwrap();
    // Ask for more than the child sends: only the pidfd can end this loop.
    let wanting_more = Plan {
        count: u64::MAX,
        ..plan
    };
    let got = consume(&mut consumer, &wanting_more, Duration::ZERO, Some(&peer));
    assert_eq!(got.records, 500);
    assert!(!consumer.is_producer_closed());
    assert_eq!(peer.exit_code(PATIENCE), Some(0));
}

#[test]
fn child_killed_mid_stream_leaves_a_consistent_prefix_and_no_hang() {
    let ring = SharedRing::create(CAPACITY).unwrap();
    let plan = Plan {
        pace: Duration::from_micros(50),
        ..plan(Role::Produce, 1_000_000, 2048)
    };
    let mut peer = Peer::spawn(plan, &fds_for(&ring, None));
    let mut consumer = ring.into_consumer().unwrap();
    let first = consume(
        &mut consumer,
        &Plan { count: 200, ..plan },
        Duration::ZERO,
        None,
    );
    assert_eq!(first.records, 200);
    peer.child.kill().unwrap();
    // Continue the same sequence: every further record must still verify, and
    // only the pidfd ends the loop (the killed child never closed the ring).
    let total = consume_from(
        200,
        &mut consumer,
        &Plan {
            count: u64::MAX,
            ..plan
        },
        Duration::ZERO,
        Some(&peer),
    );
    assert!(total.records >= 200 && total.records < plan.count);
    assert!(!consumer.is_producer_closed());
    assert_eq!(peer.exit_code(PATIENCE), None, "killed by a signal");
}
