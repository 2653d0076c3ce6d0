//! The drain's fast lane (`Dataplane::drain_repeats`): records from a proc
//! whose header repeats the previous record's go where the previous one
//! went, without a route lookup. It must deliver exactly what the full
//! path would: follow table and proc changes, refuse a record that changes
//! its sender mid-run, never lose or reorder a record when the destination
//! ring fills.

use std::time::Instant;

use hostmux_ring::{Consumer, Producer};
use hostmux_wire::{
    decode_frame, encode_frame_to_vec, FrameHeader, FrameKind, Limits, ProcName, Sender,
    Undeliverable, UndeliverableReason,
};

use crate::config::HostConfig;
use crate::dataplane::rig::Rig;
use crate::dataplane::{Dataplane, Drain, ProcKey, Route};

/// Writes frames from `from` to `dest` with message ids `ids` into a proc's
/// outbound ring and publishes them.
fn send(out: &mut Producer, from: &str, dest: &str, ids: std::ops::Range<u64>) {
    for id in ids {
        let header = FrameHeader {
            sender: Sender::Proc {
                addr: "",
                name: from,
            },
            ..FrameHeader::data(dest, id)
        };
        let mut bytes = Vec::new();
        encode_frame_to_vec(&mut bytes, &header, &id.to_le_bytes(), &Limits::default()).unwrap();
        let mut slot = out.try_reserve(bytes.len()).unwrap();
        slot.copy_from_slice(&bytes);
        slot.commit();
    }
    out.publish().unwrap();
}

/// Drains `key`'s outbound ring until it is idle or blocked.
fn drain(dp: &mut Dataplane, key: ProcKey) -> Drain {
    loop {
        match dp.drain_outbound(key, Instant::now()) {
            Drain::More => continue,
            other => return other,
        }
    }
}

/// Message ids of the data frames waiting in a proc's inbound ring, and the
/// reasons of the undeliverable notices; releases them all.
fn received(ring: &mut Consumer) -> (Vec<u64>, Vec<UndeliverableReason>) {
    let (mut ids, mut notices) = (Vec::new(), Vec::new());
    while let Some(record) = ring.peek().unwrap() {
        let frame = decode_frame(record, &Limits::default()).expect("a canonical frame");
        match frame.kind() {
            FrameKind::Data => {
                assert_eq!(frame.payload(), frame.message_id().to_le_bytes());
                ids.push(frame.message_id());
            }
            FrameKind::Undeliverable => {
                notices.push(Undeliverable::decode(frame.payload()).unwrap().reason);
            }
            other => panic!("unexpected {other:?}"),
        }
        ring.release().unwrap();
    }
    (ids, notices)
}

#[test]
fn the_drain_fast_lane_follows_table_and_proc_changes() {
    let mut rig = Rig::new(HostConfig::default());
    let mut a = rig.add_proc("a", 1 << 16, 1 << 16);
    let mut b = rig.add_proc("b", 1 << 16, 1 << 16);
    let mut c = rig.add_proc("c", 1 << 16, 1 << 16);
    let (mut dp, table) = (rig.dp, rig.table);

    // The first record takes the full path, the other four the fast lane.
    send(&mut a.outbound, "a", "b", 0..5);
    assert_eq!(drain(&mut dp, a.key), Drain::Idle);
    assert_eq!(received(&mut b.inbound).0, (0..5).collect::<Vec<_>>());
    assert_eq!(dp.drain_fast_lane, 4);

    // "b" now names c's proc: the run must follow the table.
    table.remove(b"b");
    table
        .insert(ProcName::new("b").unwrap(), Route::Proc(c.key))
        .unwrap();
    send(&mut a.outbound, "a", "b", 5..8);
    drain(&mut dp, a.key);
    assert_eq!(received(&mut b.inbound).0, Vec::<u64>::new());
    assert_eq!(received(&mut c.inbound).0, vec![5, 6, 7]);

    // Unbound: returned to a, delivered to nobody.
    table.remove(b"b");
    send(&mut a.outbound, "a", "b", 8..10);
    drain(&mut dp, a.key);
    assert_eq!(
        received(&mut a.inbound).1,
        vec![UndeliverableReason::NoSuchProc; 2]
    );

    // Bound to c again, which then detaches without a table change: the
    // fast lane must not write into its closed ring.
    table
        .insert(ProcName::new("b").unwrap(), Route::Proc(c.key))
        .unwrap();
    send(&mut a.outbound, "a", "b", 10..11);
    drain(&mut dp, a.key);
    assert_eq!(received(&mut c.inbound).0, vec![10]);
    dp.detach_proc(c.key);
    send(&mut a.outbound, "a", "b", 11..13);
    drain(&mut dp, a.key);
    assert_eq!(
        received(&mut a.inbound).1,
        vec![UndeliverableReason::ProcExited; 2]
    );

    let stats = dp.stats();
    let a_stats = stats.procs.iter().find(|p| p.name == "a").unwrap();
    assert_eq!(a_stats.frames_out, 13);
    assert_eq!(a_stats.outbound_delivered, 9);
    assert_eq!(
        a_stats.frames_out,
        a_stats.outbound_delivered + a_stats.outbound_returned.total()
    );
}

#[test]
fn a_record_that_changes_its_sender_mid_run_is_refused() {
    let mut rig = Rig::new(HostConfig::default());
    let mut a = rig.add_proc("a", 1 << 16, 1 << 16);
    let mut b = rig.add_proc("b", 1 << 16, 1 << 16);
    rig.add_proc("c", 1 << 16, 1 << 16);
    let mut dp = rig.dp;

    // a's third record claims to come from c: not a repeat, and refused by
    // the full path's sender check. The run resumes after it.
    send(&mut a.outbound, "a", "b", 0..2);
    send(&mut a.outbound, "c", "b", 2..3);
    send(&mut a.outbound, "a", "b", 3..6);
    drain(&mut dp, a.key);
    assert_eq!(received(&mut b.inbound).0, vec![0, 1, 3, 4, 5]);
    assert_eq!(
        received(&mut a.inbound).1,
        vec![UndeliverableReason::Malformed]
    );
    assert!(dp.drain_fast_lane >= 2);
}

#[test]
fn a_full_destination_ring_blocks_the_run_without_losing_or_reordering() {
    let mut rig = Rig::new(HostConfig::default());
    let mut a = rig.add_proc("a", 1 << 16, 1 << 20);
    // The smallest ring: room for a few hundred of these records.
    let mut b = rig.add_proc("b", 1 << 16, 1 << 16);
    let mut dp = rig.dp;

    send(&mut a.outbound, "a", "b", 0..2000);
    let mut got = Vec::new();
    let mut rounds = 0;
    while got.len() < 2000 {
        rounds += 1;
        assert!(
            rounds < 100,
            "the run never finished: {} of 2000",
            got.len()
        );
        let drained = drain(&mut dp, a.key);
        got.extend(received(&mut b.inbound).0);
        b.inbound.publish_released().unwrap();
        if got.len() < 2000 {
            assert!(matches!(drained, Drain::Blocked(_)), "{drained:?}");
        }
    }
    assert_eq!(got, (0..2000).collect::<Vec<_>>());
    assert!(rounds > 2, "the ring was expected to fill");
    assert!(dp.drain_fast_lane > 1000);
    let stats = dp.stats();
    let a_stats = stats.procs.iter().find(|p| p.name == "a").unwrap();
    assert_eq!(a_stats.outbound_delivered, 2000);
}
