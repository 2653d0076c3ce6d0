//! Receive, reply, send (cached header or not), reserve, send batches,
//! batch receive and agent answers allocate nothing per message: a global
//! allocator counts allocations per thread (other tests run on other
//! threads meanwhile).

use hostmux_proc::{boot_from, BatchRecv, Recv};
use hostmux_wire::{AgentRequest, Sender};

use crate::support::{TestHost, PATIENCE};

/// The host's side runs on this thread too, so it must not allocate either
/// inside the measured loop: it writes frames and releases records only.
#[test]
fn recv_reply_send_reserve_batch_and_agent_allocate_nothing_per_message() {
    let (mut host, params) = TestHost::local("counted", 1 << 20, true);
    let mut proc = boot_from(params).unwrap();
    let payload = [5u8; 200];
    // Warm up: first use of every path (thread-locals, lazy statics).
    host.deliver_data(Sender::Client { name: "cli" }, 1, 0, &payload);
    host.deliver_agent(TestHost::service(), 0, AgentRequest::Stats);
    let Recv::Message(mut message) = proc.recv_timeout(PATIENCE).unwrap() else {
        panic!("expected a message");
    };
    message.reply(&payload).unwrap();
    let _ = proc.try_recv().unwrap();
    while host.from_proc.peek().unwrap().is_some() {
        host.from_proc.release().unwrap();
    }

    let counting = hostmux_testkit::start_counting();
    let mut replies = 0u64;
    for round in 0..2_000u64 {
        host.deliver_data(Sender::Client { name: "cli" }, 1, round, &payload);
        if round % 100 == 0 {
            host.deliver_agent(
                TestHost::service(),
                round,
                AgentRequest::Ping { nonce: round },
            );
        }
        let Recv::Message(mut message) = proc.recv_timeout(PATIENCE).unwrap() else {
            panic!("expected a message");
        };
        let body = message.payload();
        message.reply(body).unwrap();
        proc.outbox().send("other", 2, &payload[..16]).unwrap();
        let mut slot = proc.outbox().reserve("other", 3, 32).unwrap();
        slot.fill(1);
        slot.commit();
        // A batch, with destinations that change (header cache misses).
        let mut batch = proc.outbox().batch();
        batch.send("other", 2, &payload[..64]).unwrap();
        batch.send("third", 2, &payload[..64]).unwrap();
        batch.send("other", 4, &payload[..8]).unwrap();
        batch.publish().unwrap();
        // Batch flavour every few rounds.
        if round % 10 == 0 {
            host.deliver_data(Sender::Client { name: "cli" }, 1, round, &payload);
            let got = proc
                .recv_batch(8, PATIENCE, |mut m| {
                    let body = m.payload();
                    m.reply(body).unwrap();
                })
                .unwrap();
            assert_eq!(got, BatchRecv::Delivered(1));
        }
        while host.from_proc.peek().unwrap().is_some() {
            host.from_proc.release().unwrap();
            replies += 1;
        }
    }
    let allocated = counting.stop().allocations;
    assert!(
        replies >= 6 * 2_000,
        "replies and sends arrived ({replies})"
    );
    assert_eq!(allocated, 0, "allocations on the per-message path");
}

/// The same with three lanes: the round-robin receive, replies on the
/// arriving lane, sends on pair lanes (cache hits and misses) and a batch
/// spanning lanes allocate nothing either.
#[test]
fn three_lanes_allocate_nothing_per_message() {
    let (mut hosts, params) = TestHost::local_lanes("counted", 1 << 20, 3);
    let mut proc = boot_from(params).unwrap();
    let payload = [5u8; 200];
    let drain = |hosts: &mut [TestHost]| {
        let mut frames = 0u64;
        for host in hosts.iter_mut() {
            while host.from_proc.peek().unwrap().is_some() {
                host.from_proc.release().unwrap();
                frames += 1;
            }
        }
        frames
    };
    // Warm up every lane.
    for host in &mut hosts {
        host.deliver_data(Sender::Client { name: "cli" }, 1, 0, &payload);
    }
    for _ in 0..3 {
        let Recv::Message(mut message) = proc.recv_timeout(PATIENCE).unwrap() else {
            panic!("expected a message");
        };
        message.reply(&payload).unwrap();
    }
    drain(&mut hosts);

    let counting = hostmux_testkit::start_counting();
    let mut frames = 0u64;
    for round in 0..1_000u64 {
        for host in &mut hosts {
            host.deliver_data(Sender::Client { name: "cli" }, 1, round, &payload);
        }
        for _ in 0..3 {
            let Recv::Message(mut message) = proc.recv_timeout(PATIENCE).unwrap() else {
                panic!("expected a message");
            };
            let body = message.payload();
            message.reply(body).unwrap();
        }
        proc.outbox().send("other", 2, &payload[..16]).unwrap();
        proc.outbox().send("other", 2, &payload[..16]).unwrap();
        let mut batch = proc.outbox().batch();
        for name in ["c0", "c1", "c2", "c3"] {
            batch.send(name, 2, &payload[..8]).unwrap();
        }
        batch.publish().unwrap();
        frames += drain(&mut hosts);
    }
    let allocated = counting.stop().allocations;
    assert_eq!(frames, 9 * 1_000, "replies and sends arrived");
    assert_eq!(allocated, 0, "allocations on the per-message path");
}
