//! Property tests: random headers and payloads round-trip, and the decoder
//! yields the same frames whatever the chunking of the stream.

use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{
    decode_frame, encode_frame_to_vec, Addr, Flags, FrameDecoder, FrameHeader, FrameKind, Limits,
    ProcId, RoutingHeader, Sender, SenderKind,
};
use proptest::prelude::*;

const NAME: &str = "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}";
const ADDR: &str = "(tcp:[a-z0-9.-]{1,20}:[1-9][0-9]{0,3}|tcp:\\[::1\\]:0|unix:/[a-z/._-]{0,40}|unix:@[a-z/]{1,40})?";

fn owned_header() -> impl Strategy<Value = RoutingHeader> {
    let kind = prop_oneof![
        Just(FrameKind::Data),
        Just(FrameKind::Undeliverable),
        Just(FrameKind::ControlRequest),
        Just(FrameKind::ControlResponse),
    ];
    let sender = prop_oneof![
        Just((SenderKind::Anonymous, String::new(), String::new())),
        NAME.prop_map(|n| (SenderKind::Client, n, String::new())),
        (NAME, ADDR).prop_map(|(n, a)| (SenderKind::Proc, n, a)),
    ];
    (
        any::<u64>(),
        any::<u32>(),
        (any::<bool>(), any::<u8>()),
        kind,
        NAME,
        ADDR,
        sender,
    )
        .prop_map(
            |(
                message_id,
                dest_port,
                (ret, hops),
                kind,
                dest,
                dest_addr,
                (sender_kind, name, addr),
            )| {
                RoutingHeader {
                    message_id,
                    dest_port,
                    flags: if ret {
                        Flags::RETURN_UNDELIVERABLE
                    } else {
                        Flags::NONE
                    }
                    .with_hops(hops),
                    kind,
                    sender_kind,
                    dest_name: dest,
                    dest_addr,
                    sender_name: name,
                    sender_addr: addr,
                }
            },
        )
}

/// Payload bytes from a length and a seed, without generating each byte
/// through proptest (sizes go up to 1 MiB).
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..64, 0usize..=4096, 0usize..=(1 << 20)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn header_and_payload_round_trip(header in owned_header(), len in payload_len(), seed in any::<u8>()) {
        let limits = Limits::default();
        let payload = payload(len, seed);
        let mut out = Vec::new();
        encode_frame_to_vec(&mut out, &header.as_frame_header(), &payload, &limits).unwrap();
        let mut bytes = AlignedVec::<16>::new();
        bytes.extend_from_slice(&out);
        let frame = decode_frame(&bytes, &limits).unwrap();
        prop_assert_eq!(frame.fields(), header.as_frame_header());
        prop_assert_eq!(frame.payload(), &payload[..]);
        prop_assert_eq!(RoutingHeader::from(frame.fields()), header);
    }

    #[test]
    fn chunking_does_not_change_the_frames(
        headers in proptest::collection::vec(owned_header(), 1..8),
        lens in proptest::collection::vec(0usize..3000, 8),
        chunks in proptest::collection::vec(1usize..700, 1..40),
    ) {
        let limits = Limits::default();
        let mut stream = Vec::new();
        for (i, header) in headers.iter().enumerate() {
            encode_frame_to_vec(&mut stream, &header.as_frame_header(), &payload(lens[i], i as u8), &limits).unwrap();
        }
        let mut decoder = FrameDecoder::with_read_chunk(limits, 256);
        let mut frames = Vec::new();
        let mut rest = &stream[..];
        let mut turn = 0;
        while !rest.is_empty() {
            let n = chunks[turn % chunks.len()].min(rest.len());
            turn += 1;
            decoder.feed(&rest[..n]);
            rest = &rest[n..];
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame.as_bytes().to_vec());
            }
        }
        decoder.finish().unwrap();
        let mut whole = Vec::new();
        for frame in &frames {
            whole.extend_from_slice(frame);
        }
        prop_assert_eq!(frames.len(), headers.len());
        prop_assert_eq!(whole, stream);
    }

    #[test]
    fn addr_and_proc_id_text_round_trips(addr in "(tcp:[a-z0-9.-]{1,20}:(0|[1-9][0-9]{0,3})|unix:/[a-z/._-]{0,40}|unix:@[a-z/@]{1,40})", name in NAME) {
        let parsed: Addr = addr.parse().unwrap();
        prop_assert_eq!(parsed.to_string(), addr.clone());
        let id_text = format!("{addr}/{name}");
        let id: ProcId = id_text.parse().unwrap();
        prop_assert_eq!(id.to_string(), id_text);
        prop_assert_eq!(id.addr(), &parsed);
    }

    #[test]
    fn decoder_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        hostmux_wire::fuzzing::wire_decode(&bytes);
        hostmux_wire::fuzzing::wire_header(&bytes);
    }
}

#[test]
fn sender_variants_map_to_the_flat_fields() {
    let header = FrameHeader {
        sender: Sender::Proc {
            addr: "unix:@h",
            name: "p",
        },
        ..FrameHeader::data("d", 1)
    };
    let mut out = Vec::new();
    encode_frame_to_vec(&mut out, &header, b"", &Limits::default()).unwrap();
    let mut bytes = AlignedVec::<16>::new();
    bytes.extend_from_slice(&out);
    let frame = decode_frame(&bytes, &Limits::default()).unwrap();
    let flat = RoutingHeader::from(frame.fields());
    assert_eq!(flat.sender_kind, SenderKind::Proc);
    assert_eq!(flat.sender_name, "p");
    assert_eq!(flat.sender_addr, "unix:@h");
}

/// Every frame of `stream` as the plain decoder yields it, then whether
/// the stream ended in an error.
fn decode_plain(stream: &[u8], chunk: usize) -> (Vec<Vec<u8>>, bool) {
    let mut decoder = FrameDecoder::new(Limits::default());
    let mut frames = Vec::new();
    for piece in stream.chunks(chunk) {
        decoder.feed(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame.as_bytes().to_vec()),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

/// The same through `take_repeat` first, as the host reads (repeats are
/// taken without a view; a declined repeat goes through `next_frame`).
fn decode_with_repeats(stream: &[u8], chunk: usize, decline_every: usize) -> (Vec<Vec<u8>>, bool) {
    let mut decoder = FrameDecoder::new(Limits::default());
    let mut frames = Vec::new();
    let mut offered = 0usize;
    for piece in stream.chunks(chunk) {
        decoder.feed(piece);
        loop {
            while decoder
                .take_repeat(|bytes| {
                    offered += 1;
                    (offered % decline_every != 0).then(|| frames.push(bytes.to_vec()))
                })
                .is_some()
            {}
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame.as_bytes().to_vec()),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Taking repeats first yields the same frames, in the same order, and
    /// the same final error, as the plain decoder, whatever the chunking,
    /// declined offers and damage to the stream.
    #[test]
    fn taking_repeats_yields_what_the_plain_decoder_yields(
        picks in proptest::collection::vec((0usize..3, any::<u64>(), 0usize..40), 1..40),
        chunk in 1usize..300,
        decline_every in 2usize..6,
        damage in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
    ) {
        let dests = ["echo", "sink", "echo"];
        let mut stream = Vec::new();
        for (dest, id, len) in picks {
            // Port and hop count vary: a repeat may differ in the port, never in the count.
            let header = FrameHeader {
                dest_port: (id % 3) as u32,
                flags: Flags::NONE.with_hops((id / 3 % 2) as u8),
                ..FrameHeader::data(dests[dest], id)
            };
            encode_frame_to_vec(&mut stream, &header, &payload(len, id as u8), &Limits::default()).unwrap();
        }
        if let Some((at, value)) = damage {
            let at = at.index(stream.len());
            stream[at] = value;
        }
        let plain = decode_plain(&stream, chunk);
        prop_assert_eq!(decode_with_repeats(&stream, chunk, decline_every), plain.clone());
        prop_assert_eq!(decode_with_repeats(&stream, chunk, usize::MAX), plain);
    }
}
