//! The fast path for a client frame whose header repeats the previous one:
//! it must route exactly as the full path would, whatever changed between
//! the two frames (the routing table, the proc's state).

use std::time::Instant;

use hostmux_ring::Consumer;
use hostmux_wire::{
    encode_frame_to_vec, FrameDecoder, FrameHeader, Limits, ProcName, UndeliverableReason,
};

use crate::config::HostConfig;
use crate::dataplane::rig::Rig;
use crate::dataplane::{ConnKey, Dataplane, Delivery, Route};

/// Feeds `count` frames to "alpha" that differ only in their message id
/// through one decoder (as one client's stream) and routes each, with the
/// I/O thread's fast lane for repeats (`fast_lane`) or through frame views
/// only; returns how many were recognised as repeats.
fn send(
    dp: &mut Dataplane,
    conn: ConnKey,
    decoder: &mut FrameDecoder,
    count: u64,
    fast_lane: bool,
) -> u64 {
    let mut stream = Vec::new();
    for id in 0..count {
        let header = FrameHeader::data("alpha", id);
        encode_frame_to_vec(&mut stream, &header, b"payload", &Limits::default()).unwrap();
    }
    decoder.feed(&stream);
    let mut repeats = 0;
    loop {
        if fast_lane {
            repeats += dp.deliver_repeats(conn, decoder) as u64;
        }
        let Some(frame) = decoder.next_frame().unwrap() else {
            break;
        };
        repeats += u64::from(frame.repeats_previous_header());
        let delivery = dp.handle_conn_frame(conn, &frame, true, None, Instant::now());
        assert_eq!(delivery, Delivery::Done);
    }
    dp.flush();
    repeats
}

/// Records waiting in a proc's inbound ring; releases them.
fn drain(ring: &mut Consumer) -> u64 {
    let mut records = 0;
    while ring.peek().unwrap().is_some() {
        ring.release().unwrap();
        records += 1;
    }
    records
}

#[test]
fn repeated_headers_follow_table_and_proc_changes() {
    repeats_follow_changes(false);
}

#[test]
fn the_fast_lane_follows_table_and_proc_changes() {
    repeats_follow_changes(true);
}

fn repeats_follow_changes(fast_lane: bool) {
    let mut rig = Rig::new(HostConfig::default());
    let mut alpha = rig.add_proc("alpha", 1 << 16, 1 << 16);
    let mut beta = rig.add_proc("beta", 1 << 16, 1 << 16);
    let conn = rig.add_conn("client");
    let (mut dp, table) = (rig.dp, rig.table);
    let mut decoder = FrameDecoder::new(Limits::default());

    // The first frame takes the full path, the rest the fast one.
    assert_eq!(send(&mut dp, conn, &mut decoder, 5, fast_lane), 4);
    assert_eq!(
        (drain(&mut alpha.inbound), drain(&mut beta.inbound)),
        (5, 0)
    );

    // "alpha" now names beta's proc: repeats must follow the table.
    table.remove(b"alpha");
    table
        .insert(ProcName::new("alpha").unwrap(), Route::Proc(beta.key))
        .unwrap();
    assert_eq!(send(&mut dp, conn, &mut decoder, 3, fast_lane), 3);
    assert_eq!(
        (drain(&mut alpha.inbound), drain(&mut beta.inbound)),
        (0, 3)
    );

    // Unbound: returned, not delivered to the proc that had the name.
    table.remove(b"alpha");
    send(&mut dp, conn, &mut decoder, 2, fast_lane);
    assert_eq!(drain(&mut beta.inbound), 0);

    // Bound again to beta, which then detaches without any table change:
    // the fast path must not write into its closed ring.
    table
        .insert(ProcName::new("alpha").unwrap(), Route::Proc(beta.key))
        .unwrap();
    send(&mut dp, conn, &mut decoder, 1, fast_lane);
    assert_eq!(drain(&mut beta.inbound), 1);
    dp.detach_proc(beta.key);
    send(&mut dp, conn, &mut decoder, 2, fast_lane);

    let stats = dp.stats();
    let client = stats.conns.iter().find(|c| c.name == "client").unwrap();
    assert_eq!(client.accepted, 13);
    assert_eq!(client.delivered, 9);
    assert_eq!(client.returned.get(UndeliverableReason::NoSuchProc), 2);
    assert_eq!(client.returned.get(UndeliverableReason::ProcExited), 2);
    assert_eq!(client.accepted, client.delivered + client.returned.total());
}
