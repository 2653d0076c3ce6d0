//! What a proc may answer and when its host may consider a message
//! consumed (issue 11): only data is answered, and the inbound read
//! position is published no later than the answer, read back the way the
//! host reads a dead proc's leftovers (a second mapping of the inbound ring
//! whose consumer starts at the published index).

use std::os::fd::OwnedFd;
use std::time::Duration;

use hostmux_proc::{boot_from, BatchRecv, ProcError, Recv};
use hostmux_ring::SharedRing;
use hostmux_wire::{decode_frame, FrameKind, Limits, Sender};

use crate::support::{expect_echo, TestHost, PATIENCE};

const RING: usize = 64 * 1024;

fn client(name: &str) -> Sender<'_> {
    Sender::Client { name }
}

/// The message ids a host would return if the proc died now: every frame
/// past the inbound ring's published consumer index.
fn left_over(inbound: &OwnedFd, limits: &Limits) -> Vec<u64> {
    let mut consumer = SharedRing::attach(inbound.try_clone().unwrap())
        .unwrap()
        .into_consumer()
        .unwrap();
    // A batch reads without publishing this second consumer's index (a
    // `peek` that finds the ring empty would), and the consumer is not
    // dropped (that publishes and marks the ring closed): the proc's ring
    // stays as it was.
    let ids = consumer
        .batch()
        .map(|record| decode_frame(record.unwrap(), limits).unwrap().message_id())
        .collect();
    std::mem::forget(consumer);
    ids
}

#[test]
fn reply_refuses_notices_and_control_frames_naming_kind_and_id() {
    let (mut host, params) = TestHost::local("echo", RING, false);
    let mut proc = boot_from(params).unwrap();
    let kinds = [
        FrameKind::Undeliverable,
        FrameKind::ControlRequest,
        FrameKind::ControlResponse,
    ];
    for (id, kind) in (10..).zip(kinds) {
        host.deliver_kind(kind, client("cli"), 1, id, b"payload");
        let Recv::Message(mut message) = proc.recv_timeout(PATIENCE).unwrap() else {
            panic!("expected the {kind:?} frame");
        };
        assert_eq!(message.kind(), kind);
        let refused = |result: Result<(), ProcError>| match result {
            Err(ProcError::NotAnswerable {
                kind: k,
                message_id,
            }) => (k, message_id),
            other => panic!("expected NotAnswerable, got {other:?}"),
        };
        assert_eq!(refused(message.reply(b"answer")), (kind, id));
        assert_eq!(
            refused(message.reply_slot(8).map(|slot| slot.commit())),
            (kind, id)
        );
        let asynchronous = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(message.reply_async(b"answer"));
        assert_eq!(refused(asynchronous), (kind, id));
        let text = message.reply(b"x").unwrap_err().to_string();
        assert!(
            text.contains(&format!("{kind:?}")) && text.contains(&id.to_string()),
            "{text}"
        );
    }
    // Nothing was written for them: the next frame out is the answer to
    // the data message that follows.
    host.deliver_data(client("cli"), 1, 20, b"data");
    let mut message = proc.recv().unwrap().unwrap();
    message.reply(b"data").unwrap();
    expect_echo(&host.expect_frame(), "cli", 1, 20, b"data", "echo");
    assert_eq!(proc.stats().frames_out, 1);
}

#[test]
fn a_reply_publishes_its_message_as_consumed_first() {
    let (mut host, params) = TestHost::local("echo", RING, false);
    let inbound = params.lanes[0].inbound.try_clone().unwrap();
    let limits = params.limits;
    let mut proc = boot_from(params).unwrap();
    for id in 0..4 {
        host.deliver_data(client("cli"), 1, id, b"msg");
    }
    // Received but not answered: a dead proc's host would return it.
    let message = proc.recv().unwrap().unwrap();
    assert_eq!(message.message_id(), 0);
    assert_eq!(left_over(&inbound, &limits), [0, 1, 2, 3]);
    // A send that answers nothing does not consume it either.
    proc.outbox().send("elsewhere", 1, b"unrelated").unwrap();
    assert_eq!(host.expect_frame().header.message_id, 1);
    assert_eq!(left_over(&inbound, &limits), [0, 1, 2, 3]);
    // The reply is visible to the host, so message 0 is consumed (and 1,
    // received after 0 was released, is not).
    let mut message = proc.recv().unwrap().unwrap();
    assert_eq!(message.message_id(), 1);
    message.reply(b"one").unwrap();
    expect_echo(&host.expect_frame(), "cli", 1, 1, b"one", "echo");
    assert_eq!(left_over(&inbound, &limits), [2, 3]);
    // A slot reply is the same once committed and published.
    let mut message = proc.recv().unwrap().unwrap();
    let mut slot = message.reply_slot(3).unwrap();
    slot.copy_from_slice(b"two");
    slot.commit();
    proc.outbox().flush().unwrap();
    expect_echo(&host.expect_frame(), "cli", 1, 2, b"two", "echo");
    assert_eq!(left_over(&inbound, &limits), [3]);
}

#[test]
fn a_receive_batch_publishes_its_answered_messages_with_its_replies() {
    let (mut host, params) = TestHost::local("echo", RING, false);
    let inbound = params.lanes[0].inbound.try_clone().unwrap();
    let limits = params.limits;
    let mut proc = boot_from(params).unwrap();
    for id in 0..6 {
        host.deliver_data(client("cli"), 1, id, b"msg");
    }
    // Answers the even ids of the first four; the batch stops at four.
    let step = proc
        .recv_batch(4, Duration::ZERO, |mut message| {
            if message.message_id() % 2 == 0 {
                let payload = message.payload();
                message.reply(payload).unwrap();
            }
        })
        .unwrap();
    assert!(matches!(step, BatchRecv::Delivered(4)), "{step:?}");
    for id in [0, 2] {
        expect_echo(&host.expect_frame(), "cli", 1, id, b"msg", "echo");
    }
    // 0..=2 are consumed (2 answered, 0 and 1 released before it); 3 was
    // handed out last and not answered, so a dead proc's host returns it.
    assert_eq!(left_over(&inbound, &limits), [3, 4, 5]);
}
