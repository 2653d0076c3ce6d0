//! Receive, reply, send (cached header or not), reserve, send batches,
//! batch receive and agent answers allocate nothing per message: a global
//! allocator counts allocations per thread (other tests run on other
//! threads meanwhile).

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use hostmux_proc::{boot_from, BatchRecv, Recv};
use hostmux_wire::{AgentRequest, Sender};

use crate::support::{TestHost, PATIENCE};

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Forwards to the system allocator and counts allocations on this thread.
pub(crate) struct CountingAllocator;

// SAFETY: every method forwards to `System` with the caller's arguments; the
// counter is a const-initialised thread-local `Cell` that never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

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

    let before = allocations();
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
    let after = allocations();
    assert!(
        replies >= 6 * 2_000,
        "replies and sends arrived ({replies})"
    );
    assert_eq!(after - before, 0, "allocations on the per-message path");
}
