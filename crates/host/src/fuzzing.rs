//! Fuzz entry points over the sans-IO data plane (hostile clients, hostile
//! procs). A unit test runs each on generated inputs so `cargo test`
//! exercises them.

use std::time::Instant;

use hostmux_ring::{Consumer, Producer};
use hostmux_wire::FrameDecoder;

use crate::config::HostConfig;
use crate::dataplane::rig::Rig as Plane;
use crate::dataplane::{ConnKey, Dataplane, Delivery, Outbox, ProcKey};

struct Rig {
    dp: Dataplane,
    conn: ConnKey,
    proc_key: ProcKey,
    proc_in: Consumer,
    proc_out: Producer,
    /// A second proc, "peer": the echo's frames to it take the drain's
    /// fast lane when their headers repeat.
    peer_in: Consumer,
}

fn rig() -> Rig {
    let mut plane = Plane::new(HostConfig {
        client_outbox_bytes: 64 * 1024,
        ..HostConfig::default()
    });
    let echo = plane.add_proc("echo", 1 << 16, 1 << 16);
    let peer = plane.add_proc("peer", 1 << 16, 1 << 16);
    let conn = plane.add_conn("fuzz");
    Rig {
        dp: plane.dp,
        conn,
        proc_key: echo.key,
        proc_in: echo.inbound,
        proc_out: echo.outbound,
        peer_in: peer.inbound,
    }
}

/// Arbitrary bytes from a client: the host never panics, and every frame
/// it accepted is delivered or returned.
pub fn client_stream(data: &[u8]) {
    let mut rig = rig();
    let mut decoder = FrameDecoder::new(Default::default());
    let mut sent = Vec::new();
    for chunk in data.chunks(97) {
        decoder.feed(chunk);
        loop {
            let now = Instant::now();
            // As the I/O thread reads: repeats first, then the full path.
            rig.dp.deliver_repeats(rig.conn, &mut decoder);
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if let Delivery::Blocked(on, _) =
                        rig.dp.handle_conn_frame(rig.conn, &frame, true, None, now)
                    {
                        rig.dp.give_up_conn_frame(rig.conn, &frame, on);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    rig.dp.fail_conn(rig.conn);
                    break;
                }
            }
        }
        rig.dp.flush();
        while let Ok(Some(_)) = rig.proc_in.peek() {
            let _ = rig.proc_in.release();
        }
        while rig.dp.take_outbox(rig.conn, &mut sent) == Outbox::Bytes {
            sent.clear();
        }
    }
    let stats = rig.dp.stats();
    let conn = &stats.conns[0];
    assert_eq!(
        conn.accepted,
        conn.delivered + conn.returned.total() + conn.dropped.total()
    );
}

/// Arbitrary records from a proc's outbound ring: the host never panics,
/// every record it drained is delivered or returned, and every frame it
/// wrote into another proc's ring is a valid frame from that proc (the
/// sender cannot be forged, on the full path or the fast lane).
pub fn proc_records(data: &[u8]) {
    let mut rig = rig();
    let mut rest = data;
    let mut to_drain = Vec::new();
    while rest.len() >= 2 {
        let len = (u16::from_le_bytes([rest[0], rest[1]]) as usize % 2048).min(rest.len() - 2);
        let (record, tail) = rest[2..].split_at(len);
        rest = tail;
        if let Ok(mut slot) = rig.proc_out.try_reserve(record.len().max(1)) {
            slot[..record.len()].copy_from_slice(record);
            slot.commit();
        }
        let _ = rig.proc_out.publish();
        to_drain.clear();
        rig.dp.poll_doorbell(&mut to_drain);
        rig.dp.drain_outbound(rig.proc_key, Instant::now());
        while let Ok(Some(_)) = rig.proc_in.peek() {
            let _ = rig.proc_in.release();
        }
        while let Ok(Some(record)) = rig.peer_in.peek() {
            let frame = hostmux_wire::decode_frame(record, &Default::default())
                .expect("the host wrote a valid frame into the peer's ring");
            assert!(
                matches!(
                    frame.sender(),
                    hostmux_wire::Sender::Proc {
                        name: "echo",
                        addr: ""
                    }
                ),
                "forged sender {:?}",
                frame.sender()
            );
            let _ = rig.peer_in.release();
        }
        let mut sent = Vec::new();
        let _ = rig.dp.take_outbox(rig.conn, &mut sent);
    }
    let stats = rig.dp.stats();
    if let Some(proc) = stats.proc("echo") {
        assert_eq!(
            proc.frames_out,
            proc.outbound_delivered
                + proc.outbound_returned.total()
                + proc.outbound_dropped.total()
        );
    }
}
