//! Fuzz entry points over the sans-IO data plane (hostile clients, hostile
//! procs). A unit test runs each on generated inputs so `cargo test`
//! exercises them.

use std::time::Instant;

use hostmux_ring::{Consumer, Producer};
use hostmux_wire::FrameDecoder;

use crate::config::HostConfig;
use crate::dataplane::rig::Rig as Plane;
use crate::dataplane::{ConnKey, Dataplane, Delivery, Outbox, ProcKey};
use crate::io::budget::{plan_read, Charge, ConnBudget, Shortfall};

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

/// Connections [`client_stream`] drives at once.
const CONNS: usize = 4;
/// Their decoders' read chunk: small, so that short inputs hold frames
/// larger than it.
const FUZZ_READ_CHUNK: usize = 256;
/// Their shared memory budget: every read chunk plus one 1 KiB frame (the
/// generated inputs also hold frames larger than the whole budget).
const FUZZ_CONN_MEMORY: usize = CONNS * FUZZ_READ_CHUNK + 1024;

/// One fuzzed connection: the bytes it sent that the host has not read
/// yet (its socket), its decoder and its budget charge.
struct FuzzConn {
    key: ConnKey,
    socket: std::collections::VecDeque<u8>,
    read_size: usize,
    decoder: FrameDecoder,
    charge: Charge,
    open: bool,
    waiting: bool,
}

/// Arbitrary bytes from clients: the same bytes sent on four
/// connections, each read in its own chunk size, interleaved, under one
/// small connection memory budget, as the I/O thread reads (a read is
/// charged first; a connection that cannot be charged is not read; one
/// whose frame can never fit is closed). The host never panics, every
/// frame it accepted is delivered or returned, no decoder ever holds more
/// than its charge, and the charges never exceed the budget.
pub fn client_stream(data: &[u8]) {
    client_streams(data);
}

/// [`client_stream`], returning the budget's counters (for the unit test
/// that checks the generated inputs reach the budget's every branch).
pub(crate) fn client_streams(data: &[u8]) -> crate::ConnLimitStats {
    let mut rig = rig();
    let budget = ConnBudget::new(&HostConfig {
        conn_memory: FUZZ_CONN_MEMORY,
        ..HostConfig::default()
    });
    let mut conns: Vec<FuzzConn> = (0..CONNS)
        .map(|i| {
            let mut charge = budget.charge();
            charge
                .set(FUZZ_READ_CHUNK)
                .expect("every connection's first chunk fits");
            FuzzConn {
                key: if i == 0 {
                    rig.conn
                } else {
                    rig.dp
                        .add_conn(hostmux_wire::ProcName::new(&format!("fuzz{i}")).unwrap())
                        .expect("free name")
                },
                socket: data.iter().copied().collect(),
                read_size: 97 + 61 * i,
                decoder: FrameDecoder::with_read_chunk(Default::default(), FUZZ_READ_CHUNK),
                charge,
                open: true,
                waiting: false,
            }
        })
        .collect();
    let mut sent = Vec::new();
    loop {
        let mut progressed = false;
        for conn in conns.iter_mut().filter(|c| c.open && !c.socket.is_empty()) {
            let need = plan_read(&mut conn.charge, &mut conn.decoder);
            match conn.charge.set_for_read(need, conn.waiting) {
                Ok(()) => conn.waiting = false,
                Err(Shortfall::Wait) => {
                    conn.waiting = true;
                    continue;
                }
                Err(Shortfall::OverBudget) => {
                    rig.dp.fail_conn(conn.key);
                    conn.open = false;
                    conn.charge.set(0).expect("lowering always succeeds");
                    progressed = true;
                    continue;
                }
            }
            let spare = conn.decoder.spare_capacity_mut();
            let n = spare.len().min(conn.read_size).min(conn.socket.len());
            for (to, from) in spare[..n].iter_mut().zip(conn.socket.drain(..n)) {
                *to = from;
            }
            conn.decoder.commit(n);
            progressed = true;
            assert!(conn.decoder.buffer_capacity() <= conn.charge.bytes());
            assert!(budget.used() <= budget.limit());
            loop {
                let now = Instant::now();
                // As the I/O thread reads: repeats first, then the full path.
                rig.dp.deliver_repeats(conn.key, &mut conn.decoder);
                match conn.decoder.next_frame() {
                    Ok(Some(frame)) => {
                        if let Delivery::Blocked(on, _) =
                            rig.dp.handle_conn_frame(conn.key, &frame, true, None, now)
                        {
                            rig.dp.give_up_conn_frame(conn.key, &frame, on);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        rig.dp.fail_conn(conn.key);
                        conn.open = false;
                        break;
                    }
                }
            }
            rig.dp.flush();
            while let Ok(Some(_)) = rig.proc_in.peek() {
                let _ = rig.proc_in.release();
            }
            while rig.dp.take_outbox(conn.key, &mut sent, Instant::now()) == Outbox::Bytes {
                sent.clear();
            }
        }
        if !progressed {
            break;
        }
    }
    let limits = budget.stats();
    assert!(
        limits.memory_high_water <= limits.memory_limit,
        "{limits:?}"
    );
    let stats = rig.dp.stats();
    for conn in &stats.conns {
        assert_eq!(
            conn.accepted,
            conn.delivered + conn.returned.total() + conn.dropped.total(),
            "{conn:?}"
        );
    }
    limits
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
        let _ = rig.dp.take_outbox(rig.conn, &mut sent, Instant::now());
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
