//! Proves that encoding and decoding allocate nothing per frame, with a
//! global allocator that counts the allocations of the current thread.

use hostmux_testkit::allocations_during;
use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{
    decode_frame, encode_frame, encode_frame_to_vec, FrameDecoder, FrameHeader, Limits, Sender,
    Undeliverable, UndeliverableReason,
};

#[global_allocator]
static ALLOCATOR: hostmux_testkit::CountingAllocator = hostmux_testkit::CountingAllocator;

const FRAMES: u64 = 1000;

#[test]
fn encode_and_decode_allocate_nothing_per_frame() {
    let limits = Limits::default();
    let payload = vec![0xA5u8; 4096];
    let header = FrameHeader {
        dest_port: 3,
        sender: Sender::Proc {
            addr: "tcp:127.0.0.1:7000",
            name: "sender",
        },
        ..FrameHeader::data("echo", 0)
    };
    let frame_len = hostmux_wire::encoded_len(&header, payload.len());
    let mut out = AlignedVec::<16>::new();
    out.resize(frame_len, 0);
    let mut stream: Vec<u8> = Vec::with_capacity(frame_len * FRAMES as usize);
    let mut decoder = FrameDecoder::with_read_chunk(limits, 64 * 1024);
    // Warm up: let the decoder size its buffer once.
    decoder.spare_capacity_mut();

    let mut seen = 0u64;
    let count = allocations_during(|| {
        for id in 0..FRAMES {
            let header = FrameHeader {
                message_id: id,
                ..header
            };
            let len = encode_frame(&mut out, &header, &payload, &limits).unwrap();
            let frame = decode_frame(&out[..len], &limits).unwrap();
            assert_eq!(frame.message_id(), id);
            encode_frame_to_vec(&mut stream, &header, &payload, &limits).unwrap();
        }
        // Feed the stream in socket-sized reads and decode it.
        let mut socket: &[u8] = &stream;
        while !socket.is_empty() {
            let spare = decoder.spare_capacity_mut();
            let n = spare.len().min(socket.len()).min(16 * 1024);
            spare[..n].copy_from_slice(&socket[..n]);
            decoder.commit(n);
            socket = &socket[n..];
            while let Some(frame) = decoder.next_frame().unwrap() {
                assert_eq!(frame.dest_name(), "echo");
                seen += 1;
            }
        }
        let mut notice = [0u8; 256];
        for _ in 0..FRAMES {
            Undeliverable::encode_reply(
                &mut notice,
                &header,
                UndeliverableReason::Overloaded,
                Sender::Anonymous,
                &limits,
            )
            .unwrap();
        }
    });
    assert_eq!(seen, FRAMES);
    assert_eq!(count, 0, "{count} allocations for {FRAMES} frames");
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the test above against a counter that never counts.
    let count = allocations_during(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert_eq!(count, 1);
}
