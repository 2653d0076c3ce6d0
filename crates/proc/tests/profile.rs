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

use hostmux_proc::{boot_from, BatchRecv};
use hostmux_wire::{encode_frame, encoded_len, Flags, FrameHeader, Sender};

use crate::support::{TestHost, PATIENCE};

const PAYLOAD: [u8; 64] = [0x5a; 64];
/// Frames per host turn: the host drains or fills this many at once.
const CHUNK: u64 = 1024;

fn frames() -> u64 {
    std::env::var("HOSTMUX_PROFILE_FRAMES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}

/// Drains whatever the proc published; returns the record count.
fn drain(host: &mut TestHost) -> u64 {
    let mut n = 0;
    for _ in host.from_proc.batch() {
        n += 1;
    }
    host.from_proc.publish_released().unwrap();
    n
}

#[test]
#[ignore = "profiling loop for callgrind"]
fn profile_send_64_byte_frames() {
    let (mut host, params) = TestHost::local("pinger", 1 << 20, false);
    let mut proc = boot_from(params).unwrap();
    let total = frames();
    let mut seen = 0;
    let mut sent = 0;
    while sent < total {
        let n = CHUNK.min(total - sent);
        for _ in 0..n {
            proc.outbox().send("counter", 1, &PAYLOAD).unwrap();
        }
        sent += n;
        seen += drain(&mut host);
    }
    assert_eq!(seen, total);
}

#[test]
#[ignore = "profiling loop for callgrind"]
fn profile_send_batch_64_byte_frames() {
    let (mut host, params) = TestHost::local("pinger", 1 << 20, false);
    let mut proc = boot_from(params).unwrap();
    let total = frames();
    let mut seen = 0;
    let mut sent = 0;
    while sent < total {
        let n = 128.min(total - sent);
        let mut batch = proc.outbox().batch();
        for _ in 0..n {
            batch.send("counter", 1, &PAYLOAD).unwrap();
        }
        batch.publish().unwrap();
        sent += n;
        seen += drain(&mut host);
    }
    assert_eq!(seen, total);
}

#[test]
#[ignore = "profiling loop for callgrind"]
fn profile_recv_batch_64_byte_frames() {
    let (mut host, params) = TestHost::local("counter", 1 << 20, false);
    let mut proc = boot_from(params).unwrap();
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
            match proc.recv_batch(256, PATIENCE, |m| {
                assert_eq!(m.payload().len(), PAYLOAD.len());
            }) {
                Ok(BatchRecv::Delivered(k)) => got += k as u64,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(got, total);
}
