//! Sans-IO per-frame cost loops for callgrind (ignored; they measure, they
//! do not check speed). The test plays a host that does as little as
//! possible: on the send side it only releases the proc's records, on the
//! receive side it copies one pre-encoded frame into the inbound ring.
//!
//! ```text
//! cargo test -p hostmux-proc --release --test tests profile_ --no-run
//! HOSTMUX_PROFILE_FRAMES=100000 valgrind --tool=callgrind \
//!     target/release/deps/tests-* --ignored --exact profile::profile_send_64_byte_frames
//! ```
//!
//! Run with two frame counts; the difference in instructions divided by
//! the difference in frames is the per-frame cost without the setup.

use hostmux_proc::{boot_from, BatchRecv, Proc};
use hostmux_wire::{encode_frame, encoded_len, Flags, FrameHeader, Sender};

use crate::support::{TestHost, PATIENCE};

const PAYLOAD: [u8; 64] = [0x5a; 64];
/// Frames per host turn: the host drains or fills this many at once.
const CHUNK: u64 = 1024;

/// Lanes of the `profile_recv_lanes_*` loops (`HOSTMUX_PROFILE_LANES`,
/// default 1): frames arrive on lane 0 only, the other lanes stay empty,
/// so the loop measures what a proc's receive pays for every lane it has
/// (a host with that many I/O threads) when traffic comes on one.
fn lanes() -> usize {
    std::env::var("HOSTMUX_PROFILE_LANES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

fn frames() -> u64 {
    std::env::var("HOSTMUX_PROFILE_FRAMES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}

/// An in-process proc named `name` on 1 MiB rings, and its host.
fn host_and_proc(name: &str) -> (TestHost, Proc) {
    let (host, params) = TestHost::local(name, 1 << 20, false);
    (host, boot_from(params).unwrap())
}

/// Sends [`frames`] frames, `chunk` per host turn (`send(proc, n)` sends
/// `n`), the host draining the outbound ring after each turn.
fn send_all(chunk: u64, mut send: impl FnMut(&mut Proc, u64)) {
    let (mut host, mut proc) = host_and_proc("pinger");
    let total = frames();
    let (mut sent, mut seen) = (0, 0);
    while sent < total {
        let n = chunk.min(total - sent);
        send(&mut proc, n);
        sent += n;
        for _ in host.from_proc.batch() {
            seen += 1;
        }
        host.from_proc.publish_released().unwrap();
    }
    assert_eq!(seen, total);
}

/// Receives [`frames`] frames the host delivers [`CHUNK`] at a time;
/// `receive(proc)` takes what it can (the ring holds at least one frame)
/// and returns how many it took.
fn receive_all(receive: impl FnMut(&mut Proc) -> u64) {
    let (host, proc) = host_and_proc("counter");
    receive_on(host, proc, receive);
}

/// [`receive_all`] for a proc with [`lanes`] lanes, every frame on lane 0.
fn receive_all_lanes(receive: impl FnMut(&mut Proc) -> u64) {
    let (mut hosts, params) = TestHost::local_lanes("counter", 1 << 20, lanes());
    let proc = boot_from(params).unwrap();
    receive_on(hosts.swap_remove(0), proc, receive);
}

fn receive_on(mut host: TestHost, mut proc: Proc, mut receive: impl FnMut(&mut Proc) -> u64) {
    // The frame a host delivers from proc "pinger", encoded once.
    let header = FrameHeader {
        dest_port: 1,
        flags: Flags::RETURN_UNDELIVERABLE,
        sender: Sender::Proc {
            addr: "",
            name: "pinger",
        },
        ..FrameHeader::data("counter", 7)
    };
    let len = encoded_len(&header, PAYLOAD.len());
    #[repr(C, align(16))]
    struct Aligned([u8; 256]);
    let mut frame = Aligned([0; 256]);
    encode_frame(&mut frame.0, &header, &PAYLOAD, &host.limits).unwrap();
    let frame = &frame.0[..len];
    let total = frames();
    let (mut put, mut got) = (0, 0u64);
    while got < total {
        let n = CHUNK.min(total - put);
        for _ in 0..n {
            let mut slot = host.to_proc.try_reserve(len).unwrap();
            slot.copy_from_slice(frame);
            slot.commit();
        }
        host.to_proc.publish().unwrap();
        put += n;
        while got < put {
            got += receive(&mut proc);
        }
    }
    assert_eq!(got, total);
}

#[test]
#[ignore = "profiling loop for callgrind"]
fn profile_send_64_byte_frames() {
    send_all(CHUNK, |proc, n| {
        for _ in 0..n {
            proc.outbox().send("counter", 1, &PAYLOAD).unwrap();
        }
    });
}

#[test]
#[ignore = "profiling loop for callgrind"]
fn profile_send_batch_64_byte_frames() {
    send_all(128, |proc, n| {
        let mut batch = proc.outbox().batch();
        for _ in 0..n {
            batch.send("counter", 1, &PAYLOAD).unwrap();
        }
        batch.publish().unwrap();
    });
}

#[test]
#[ignore = "profiling loop for callgrind"]
fn profile_recv_64_byte_frames() {
    receive_all(|proc| {
        let message = proc.recv().unwrap().expect("a frame is waiting");
        assert_eq!(message.payload().len(), PAYLOAD.len());
        1
    });
}

#[test]
#[ignore = "profiling loop for callgrind"]
fn profile_recv_batch_64_byte_frames() {
    receive_all(|proc| {
        match proc.recv_batch(256, PATIENCE, |m| {
            assert_eq!(m.payload().len(), PAYLOAD.len());
        }) {
            Ok(BatchRecv::Delivered(k)) => k as u64,
            other => panic!("unexpected {other:?}"),
        }
    });
}

#[test]
#[ignore = "profiling loop for callgrind"]
fn profile_recv_lanes_64_byte_frames() {
    receive_all_lanes(|proc| {
        let message = proc.recv().unwrap().expect("a frame is waiting");
        assert_eq!(message.payload().len(), PAYLOAD.len());
        1
    });
}

#[test]
#[ignore = "profiling loop for callgrind"]
fn profile_recv_batch_lanes_64_byte_frames() {
    receive_all_lanes(|proc| {
        match proc.recv_batch(256, PATIENCE, |m| {
            assert_eq!(m.payload().len(), PAYLOAD.len());
        }) {
            Ok(BatchRecv::Delivered(k)) => k as u64,
            other => panic!("unexpected {other:?}"),
        }
    });
}
