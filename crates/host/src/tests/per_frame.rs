//! A repeatable per-frame workload of the host's client → ring path for
//! instruction counting (`valgrind --tool=callgrind`): batches of 64 B
//! frames from one client, decoded and routed into a proc's inbound ring,
//! one flush per batch (as per socket read), the proc releasing each batch.
//! Ignored by default: it measures, the assertions only check that every
//! frame arrived.

use std::time::Instant;

use hostmux_wire::{encode_frame_to_vec, Flags, FrameDecoder, FrameHeader, Sender};

use crate::config::HostConfig;
use crate::dataplane::rig::Rig;
use crate::dataplane::{Dataplane, Delivery, Drain, ProcKey};

/// Frames per simulated socket read.
const BATCH: usize = 256;
/// Simulated reads (`HOSTMUX_PER_FRAME_READS` overrides).
const READS: usize = 4_000;

/// As the I/O thread after its doorbell fired: drains every proc whose
/// outbound ring has records, each until it is idle.
fn drain_signalled(dp: &mut Dataplane, to_drain: &mut Vec<ProcKey>) {
    let now = Instant::now();
    to_drain.clear();
    dp.poll_doorbell(to_drain);
    for &key in to_drain.iter() {
        while dp.drain_outbound(key, now) == Drain::More {}
    }
}

fn reads() -> usize {
    std::env::var("HOSTMUX_PER_FRAME_READS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(READS)
}

#[test]
#[ignore = "instruction-count workload; run under callgrind"]
fn stress_per_frame_client_to_ring() {
    let reads = reads();
    let mut rig = Rig::new(HostConfig::default());
    let limits = HostConfig::default().limits;
    let echo = rig.add_proc("echo", 1 << 20, 1 << 16);
    let conn = rig.add_conn("client");
    let (mut dp, mut proc_in) = (rig.dp, echo.inbound);

    let mut batch = Vec::new();
    for id in 0..BATCH as u64 {
        let header = FrameHeader {
            sender: Sender::Client { name: "client" },
            ..FrameHeader::data("echo", id)
        };
        encode_frame_to_vec(&mut batch, &header, &[7; 64], &limits).unwrap();
    }
    let mut decoder = FrameDecoder::with_read_chunk(limits, batch.len());
    let mut received = 0u64;
    for _ in 0..reads {
        decoder.feed(&batch);
        // As the I/O thread: one clock read per socket read.
        let now = Instant::now();
        loop {
            dp.deliver_repeats(conn, &mut decoder);
            let Some(frame) = decoder.next_frame().unwrap() else {
                break;
            };
            let delivery = dp.handle_conn_frame(conn, &frame, true, None, now);
            assert_eq!(delivery, Delivery::Done);
        }
        dp.flush();
        while proc_in.peek().unwrap().is_some() {
            proc_in.release().unwrap();
            received += 1;
        }
    }
    assert_eq!(received, (reads * BATCH) as u64);
    let stats = dp.stats();
    assert_eq!(stats.conns[0].delivered, received);
    assert_eq!(stats.procs[0].frames_in, received);
}

/// The reply direction: a proc's batch of 64 B replies drained from its
/// outbound ring (header copied and validated from host memory, routed)
/// into the client's reply queue, which its writer then takes.
#[test]
#[ignore = "instruction-count workload; run under callgrind"]
fn stress_per_frame_ring_to_client() {
    let reads = reads();
    let mut rig = Rig::new(HostConfig::default());
    let limits = HostConfig::default().limits;
    let echo = rig.add_proc("echo", 1 << 16, 1 << 20);
    let conn = rig.add_conn("client");
    let (mut dp, mut proc_out) = (rig.dp, echo.outbound);

    let reply = FrameHeader {
        // To the client `client` (its own namespace).
        flags: Flags::TO_CLIENT,
        sender: Sender::Proc {
            addr: "",
            name: "echo",
        },
        ..FrameHeader::data("client", 1)
    };
    let len = hostmux_wire::encoded_len(&reply, 64);
    let mut to_drain = Vec::with_capacity(8);
    let mut written = Vec::with_capacity(1 << 20);
    let mut sent = 0u64;
    for _ in 0..reads {
        for _ in 0..BATCH {
            let mut slot = proc_out.try_reserve(len).unwrap();
            hostmux_wire::encode_frame(&mut slot, &reply, &[7; 64], &limits).unwrap();
            slot.commit();
        }
        proc_out.publish().unwrap();
        drain_signalled(&mut dp, &mut to_drain);
        assert_eq!(
            dp.take_outbox(conn, &mut written, Instant::now()),
            crate::dataplane::Outbox::Bytes
        );
        sent += (written.len() / len) as u64;
        // Byte-exact: every frame in the queue decodes to the reply sent.
        for frame in written.chunks_exact(len) {
            let mut aligned = hostmux_wire::rkyv::util::AlignedVec::<16>::new();
            aligned.extend_from_slice(frame);
            let view = hostmux_wire::decode_frame(&aligned, &limits).unwrap();
            assert_eq!(view.payload(), &[7; 64]);
            assert_eq!(view.dest_name(), "client");
        }
        written.clear();
    }
    assert_eq!(sent, (reads * BATCH) as u64);
    let stats = dp.stats();
    assert_eq!(stats.conns[0].frames_out, sent);
}

/// Proc to proc: batches of 64 B frames from one proc's outbound ring
/// drained into another proc's inbound ring (runs of repeated headers: the
/// drain's fast lane), one flush per batch, the receiver releasing each
/// batch. The sender's records are copied in from one encoded frame, so
/// the harness adds little.
#[test]
#[ignore = "instruction-count workload; run under callgrind"]
fn stress_per_frame_proc_to_proc() {
    let reads = reads();
    let mut rig = Rig::new(HostConfig::default());
    let limits = HostConfig::default().limits;
    let pinger = rig.add_proc("pinger", 1 << 16, 1 << 20);
    let counter = rig.add_proc("counter", 1 << 20, 1 << 16);
    let (mut dp, mut out, mut counter_in) = (rig.dp, pinger.outbound, counter.inbound);
    let header = FrameHeader {
        sender: Sender::Proc {
            addr: "",
            name: "pinger",
        },
        ..FrameHeader::data("counter", 1)
    };
    let mut frame = Vec::new();
    encode_frame_to_vec(&mut frame, &header, &[7; 64], &limits).unwrap();
    let mut to_drain = Vec::with_capacity(8);
    let mut received = 0u64;
    for _ in 0..reads {
        for _ in 0..BATCH {
            let mut slot = out.try_reserve(frame.len()).unwrap();
            slot.copy_from_slice(&frame);
            slot.commit();
        }
        out.publish().unwrap();
        drain_signalled(&mut dp, &mut to_drain);
        while counter_in.peek().unwrap().is_some() {
            counter_in.release().unwrap();
            received += 1;
        }
    }
    assert_eq!(received, (reads * BATCH) as u64);
    let stats = dp.stats();
    let counted = stats.proc("counter").unwrap();
    assert_eq!(counted.frames_in, received);
}
