//! Zero-copy receive in the sans-IO core: while a frame is held in a
//! proc's ring, everything else for that ring waits as for a full ring
//! (other connections' frames, other procs' drains, the fast lane), and
//! the end of the hold, committed or moved back, wakes them; the frames
//! then land after the held one, in order.

use std::time::Instant;

use hostmux_ring::{Consumer, HeldRecord};
use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{decode_frame, encode_frame_to_vec, FrameHeader, Limits, Sender};

use crate::config::HostConfig;
use crate::dataplane::rig::Rig;
use crate::dataplane::{
    copy_partial_head, Blocker, ConnKey, Dataplane, Delivery, Drain, Event, ProcKey,
};

fn frame(sender: Sender<'_>, dest: &str, id: u64, payload: &[u8]) -> AlignedVec<16> {
    let header = FrameHeader {
        sender,
        ..FrameHeader::data(dest, id)
    };
    let mut bytes = Vec::new();
    encode_frame_to_vec(&mut bytes, &header, payload, &Limits::default()).unwrap();
    let mut aligned = AlignedVec::new();
    aligned.extend_from_slice(&bytes);
    aligned
}

fn client(name: &str) -> Sender<'_> {
    Sender::Client { name }
}

/// Takes `big`'s first 4 KiB as the decoder would hold them and holds the
/// frame in its proc's ring.
fn begin(
    dp: &mut Dataplane,
    conn: ConnKey,
    big: &[u8],
    scratch: &mut AlignedVec<16>,
) -> (HeldRecord, ProcKey) {
    let front = &big[..4096];
    let (head, _) = copy_partial_head(front, scratch, &Limits::default()).unwrap();
    dp.begin_zero_copy(conn, &head, front, big.len())
        .expect("taken for zero-copy receive")
}

/// Message ids in `ring`, released.
fn ids(ring: &mut Consumer) -> Vec<u64> {
    let mut ids = Vec::new();
    while let Some(record) = ring.peek().unwrap() {
        ids.push(
            decode_frame(record, &Limits::default())
                .unwrap()
                .message_id(),
        );
        ring.release().unwrap();
    }
    ids
}

fn events(dp: &mut Dataplane) -> Vec<Event> {
    std::iter::from_fn(|| dp.poll_event()).collect()
}

#[test]
fn a_held_ring_holds_back_others_until_the_frame_is_committed() {
    let mut rig = Rig::new(HostConfig::default());
    let mut sink = rig.add_proc("sink", 1 << 20, 1 << 16);
    let mut sender = rig.add_proc("sender", 1 << 16, 1 << 16);
    let big_conn = rig.add_conn("big");
    let other = rig.add_conn("other");
    let mut dp = rig.dp;
    let big = frame(client("big"), "sink", 1, &[5; 100_000]);
    let mut scratch = AlignedVec::new();
    let (mut held, q) = begin(&mut dp, big_conn, &big, &mut scratch);
    assert_eq!(q, sink.key);
    // Another client's frame waits, as for a full ring.
    let small = frame(client("other"), "sink", 2, b"small");
    let view = decode_frame(&small, &Limits::default()).unwrap();
    let now = Instant::now();
    let Delivery::Blocked(Blocker::Ring(on), _) =
        dp.handle_conn_frame(other, &view, true, None, now)
    else {
        panic!("a frame for a held ring must wait");
    };
    assert_eq!(on, q);
    // So does a proc's drain.
    let header = FrameHeader {
        sender: Sender::Proc {
            addr: "",
            name: "sender",
        },
        ..FrameHeader::data("sink", 3)
    };
    let mut bytes = Vec::new();
    encode_frame_to_vec(&mut bytes, &header, b"from a proc", &Limits::default()).unwrap();
    let mut slot = sender.outbound.try_reserve(bytes.len()).unwrap();
    slot.copy_from_slice(&bytes);
    slot.commit();
    sender.outbound.publish().unwrap();
    assert!(matches!(
        dp.drain_outbound(sender.key, now),
        Drain::Blocked(_)
    ));
    dp.flush();
    events(&mut dp);
    assert_eq!(
        ids(&mut sink.inbound),
        Vec::<u64>::new(),
        "nothing published"
    );
    // The frame completes: committed, and the waiters are told.
    held.bytes_mut()[4096..].copy_from_slice(&big[4096..]);
    let head = copy_partial_head(&big[..4096], &mut scratch, &Limits::default()).unwrap();
    let finished = dp.finish_zero_copy(big_conn, q, (&head.1, &head.0), held, now);
    assert!(finished.is_ok());
    let woken = events(&mut dp);
    assert!(
        woken
            .iter()
            .any(|e| matches!(e, Event::WakeReader(c) if *c == other)),
        "{woken:?}"
    );
    assert!(
        woken.iter().any(|e| matches!(e, Event::ReplyQueueRoom)),
        "{woken:?}"
    );
    let mut retry = Vec::new();
    dp.take_conn_room(&mut retry);
    assert!(retry.contains(&sender.key), "{retry:?}");
    // The retries land after the held frame.
    assert_eq!(
        dp.handle_conn_frame(other, &view, false, Some(q), now),
        Delivery::Done
    );
    assert!(!matches!(
        dp.drain_outbound(sender.key, now),
        Drain::Blocked(_)
    ));
    dp.flush();
    assert_eq!(ids(&mut sink.inbound), [1, 2, 3]);
    let stats = dp.stats();
    let sink_stats = stats.procs.iter().find(|p| p.name == "sink").unwrap();
    assert_eq!(
        (sink_stats.frames_in, sink_stats.zero_copy_frames),
        (3, 1),
        "{sink_stats:?}"
    );
    for conn in &stats.conns {
        assert_eq!(conn.accepted, 1, "{conn:?}");
        assert_eq!(conn.delivered, 1, "{conn:?}");
    }
}

#[test]
fn a_frame_moved_back_leaves_nothing_in_the_ring_and_frees_it() {
    let mut rig = Rig::new(HostConfig::default());
    let mut sink = rig.add_proc("sink", 1 << 20, 1 << 16);
    let big_conn = rig.add_conn("big");
    let other = rig.add_conn("other");
    let mut dp = rig.dp;
    let big = frame(client("big"), "sink", 1, &[5; 100_000]);
    let mut scratch = AlignedVec::new();
    let (held, q) = begin(&mut dp, big_conn, &big, &mut scratch);
    let small = frame(client("other"), "sink", 2, b"small");
    let view = decode_frame(&small, &Limits::default()).unwrap();
    let now = Instant::now();
    assert!(matches!(
        dp.handle_conn_frame(other, &view, true, None, now),
        Delivery::Blocked(..)
    ));
    events(&mut dp);
    // The sender stalled: the part read is moved out, the record dropped.
    drop(held);
    dp.zero_copy_moved_back(q);
    let woken = events(&mut dp);
    assert!(
        woken
            .iter()
            .any(|e| matches!(e, Event::WakeReader(c) if *c == other)),
        "{woken:?}"
    );
    assert_eq!(
        dp.handle_conn_frame(other, &view, false, Some(q), now),
        Delivery::Done
    );
    dp.flush();
    assert_eq!(ids(&mut sink.inbound), [2]);
    let stats = dp.stats();
    let sink_stats = &stats.procs[0];
    assert_eq!(
        (
            sink_stats.zero_copy_holds,
            sink_stats.zero_copy_frames,
            sink_stats.zero_copy_moved_back
        ),
        (1, 0, 1)
    );
    // Nothing was counted for the moved-back frame (the copied path counts
    // it when it completes).
    assert_eq!(stats.conn("big").unwrap().accepted, 0);
}

#[test]
fn only_a_clients_data_frame_for_a_ready_proc_with_room_is_held() {
    let mut rig = Rig::new(HostConfig::default());
    let _sink = rig.add_proc("sink", 1 << 20, 1 << 16);
    let conn = rig.add_conn("big");
    let waiter = rig.add_conn("waiter");
    let mut dp = rig.dp;
    let mut scratch = AlignedVec::new();
    let limits = Limits::default();
    let try_begin = |dp: &mut Dataplane, bytes: &[u8], scratch: &mut AlignedVec<16>| {
        let front = &bytes[..4096];
        let (head, _) = copy_partial_head(front, scratch, &limits).unwrap();
        dp.begin_zero_copy(conn, &head, front, bytes.len())
    };
    // No such proc, a frame larger than the ring, another sender's name.
    let nobody = frame(client("big"), "nobody", 1, &[0; 100_000]);
    assert!(try_begin(&mut dp, &nobody, &mut scratch).is_none());
    let huge = frame(client("big"), "sink", 1, &[0; 2 << 20]);
    assert!(try_begin(&mut dp, &huge, &mut scratch).is_none());
    let spoofed = frame(client("someone-else"), "sink", 1, &[0; 100_000]);
    assert!(try_begin(&mut dp, &spoofed, &mut scratch).is_none());
    // One held at a time per ring.
    let big = frame(client("big"), "sink", 1, &[0; 100_000]);
    let (held, q) = try_begin(&mut dp, &big, &mut scratch).expect("held");
    assert!(try_begin(&mut dp, &big, &mut scratch).is_none());
    // A connection waiting on the ring goes first.
    let small = frame(client("waiter"), "sink", 2, b"small");
    let view = decode_frame(&small, &Limits::default()).unwrap();
    assert!(matches!(
        dp.handle_conn_frame(waiter, &view, true, None, Instant::now()),
        Delivery::Blocked(..)
    ));
    drop(held);
    dp.zero_copy_moved_back(q);
    // Woken, it gets the next turn: no frame is held before it wrote.
    assert!(try_begin(&mut dp, &big, &mut scratch).is_none());
    assert_eq!(
        dp.handle_conn_frame(waiter, &view, false, Some(q), Instant::now()),
        Delivery::Done
    );
    assert!(try_begin(&mut dp, &big, &mut scratch).is_some());
}
