//! Frame codec behaviour through the public API: the documented example
//! bytes, round trips, batch and ring-record decoding, and one test per error
//! kind.

use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{
    decode_frame, encode_frame, encode_frame_head, encode_frame_to_vec, encoded_len, split_frame,
    Flags, FrameDecoder, FrameHeader, FrameKind, FramePrefix, Limits, Sender, Undeliverable,
    UndeliverableReason, WireError, PREFIX_LEN,
};

/// The first example frame of `docs/wire.md` (`tests/wire_md.rs` checks
/// that the page shows these bytes).
fn example_header() -> FrameHeader<'static> {
    FrameHeader {
        flags: Flags::RETURN_UNDELIVERABLE,
        dest_port: 7,
        sender: Sender::Client { name: "cli" },
        ..FrameHeader::data("echo", 42)
    }
}

const EXAMPLE_HEX: &str = "
    50 00 00 00 28 00 00 00 05 00 00 00 68 6d 01 00
    65 63 68 6f 63 6c 69 00 2a 00 00 00 00 00 00 00
    07 00 00 00 01 00 00 01 04 00 00 00 03 00 00 00
    e0 ff ff ff 07 00 00 00 00 00 00 00 00 00 00 00
    68 65 6c 6c 6f 00 00 00 00 00 00 00 00 00 00 00";

fn example_frame() -> AlignedVec<16> {
    let mut out = AlignedVec::<16>::new();
    for byte in EXAMPLE_HEX.split_whitespace() {
        out.push(u8::from_str_radix(byte, 16).unwrap());
    }
    out
}

fn aligned(bytes: &[u8]) -> AlignedVec<16> {
    let mut out = AlignedVec::<16>::with_capacity(bytes.len());
    out.extend_from_slice(bytes);
    out
}

fn encode(header: &FrameHeader<'_>, payload: &[u8]) -> AlignedVec<16> {
    let mut out = AlignedVec::<16>::new();
    out.resize(encoded_len(header, payload.len()), 0xEE);
    let len = encode_frame(&mut out, header, payload, &Limits::default()).unwrap();
    assert_eq!(len, out.len());
    out
}

fn decode_err(bytes: &[u8], limits: Limits) -> WireError {
    let mut decoder = FrameDecoder::new(limits);
    decoder.feed(bytes);
    let err = decoder.next_frame().unwrap_err();
    assert!(decoder.is_poisoned());
    err
}

#[test]
fn encoder_produces_the_documented_example_bytes() {
    assert_eq!(
        &encode(&example_header(), b"hello")[..],
        &example_frame()[..]
    );
    let bytes = example_frame();
    let frame = decode_frame(&bytes, &Limits::default()).unwrap();
    assert_eq!(frame.fields(), example_header());
    assert_eq!(frame.payload(), b"hello");
}

#[test]
fn every_kind_and_sender_round_trips() {
    let senders = [
        Sender::Anonymous,
        Sender::Client { name: "c" },
        Sender::Proc {
            addr: "",
            name: "p",
        },
        Sender::Proc {
            addr: "tcp:[::1]:7000",
            name: "p.2",
        },
    ];
    let kinds = [
        FrameKind::Data,
        FrameKind::Undeliverable,
        FrameKind::ControlRequest,
        FrameKind::ControlResponse,
    ];
    for kind in kinds {
        for sender in senders {
            let header = FrameHeader {
                kind,
                sender,
                dest_addr: "unix:/run/h.sock",
                message_id: u64::MAX,
                dest_port: u32::MAX,
                ..FrameHeader::data("dest_1", 0)
            };
            let bytes = encode(&header, &[1, 2, 3]);
            let frame = decode_frame(&bytes, &Limits::default()).unwrap();
            assert_eq!(frame.fields(), header);
            assert_eq!(frame.kind(), kind);
            assert_eq!(frame.sender(), sender);
            assert_eq!(frame.dest_name_bytes(), b"dest_1");
            assert_eq!(frame.dest_addr(), "unix:/run/h.sock");
            assert_eq!(frame.payload(), &[1, 2, 3]);
            assert_eq!(frame.as_bytes(), &bytes[..]);
        }
    }
}

#[test]
fn header_and_payload_start_on_16_byte_boundaries() {
    for name_len in 1..=20 {
        let name = "n".repeat(name_len);
        for payload_len in [0, 1, 15, 16, 17] {
            let bytes = encode(&FrameHeader::data(&name, 1), &vec![9; payload_len]);
            assert_eq!(bytes.len() % 16, 0);
            let frame = decode_frame(&bytes, &Limits::default()).unwrap();
            let offset = frame.payload().as_ptr() as usize - bytes.as_ptr() as usize;
            assert_eq!(offset % 16, 0);
            assert_eq!(frame.prefix().payload_offset(), offset);
        }
    }
}

#[test]
fn split_frame_walks_a_batch_buffer() {
    let limits = Limits::default();
    let mut batch = Vec::new();
    for id in 0..5u64 {
        encode_frame_to_vec(
            &mut batch,
            &FrameHeader::data("a", id),
            &vec![0; id as usize * 7],
            &limits,
        )
        .unwrap();
    }
    let batch = aligned(&batch);
    let mut rest: &[u8] = &batch;
    let mut ids = Vec::new();
    while !rest.is_empty() {
        let (frame, tail) = split_frame(rest, &limits).unwrap();
        ids.push(frame.message_id());
        rest = tail;
    }
    assert_eq!(ids, [0, 1, 2, 3, 4]);
}

#[test]
fn encode_frame_head_leaves_the_payload_to_the_caller() {
    let limits = Limits::default();
    let header = FrameHeader::data("big", 3);
    let mut out = AlignedVec::<16>::new();
    out.resize(encoded_len(&header, 100), 0xEE);
    let prefix = encode_frame_head(&mut out, &header, 100, &limits).unwrap();
    out[prefix.payload_range()].fill(0x5A);
    let frame = decode_frame(&out, &limits).unwrap();
    assert_eq!(frame.payload(), &[0x5A; 100][..]);
}

#[test]
fn decoder_reads_into_spare_capacity_and_grows_for_a_large_frame() {
    let limits = Limits::default();
    let mut stream = Vec::new();
    let big = vec![7u8; 300_000];
    encode_frame_to_vec(&mut stream, &FrameHeader::data("a", 1), b"small", &limits).unwrap();
    encode_frame_to_vec(&mut stream, &FrameHeader::data("a", 2), &big, &limits).unwrap();
    encode_frame_to_vec(&mut stream, &FrameHeader::data("a", 3), b"", &limits).unwrap();
    let mut decoder = FrameDecoder::with_read_chunk(limits, 1024);
    let mut socket: &[u8] = &stream;
    let mut seen = Vec::new();
    while !socket.is_empty() {
        let spare = decoder.spare_capacity_mut();
        assert!(!spare.is_empty());
        let n = spare.len().min(socket.len()).min(1000);
        spare[..n].copy_from_slice(&socket[..n]);
        decoder.commit(n);
        socket = &socket[n..];
        while let Some(frame) = decoder.next_frame().unwrap() {
            assert_eq!(frame.as_bytes().as_ptr() as usize % 16, 0);
            seen.push((frame.message_id(), frame.payload().len()));
        }
    }
    decoder.finish().unwrap();
    assert_eq!(seen, [(1, 5), (2, big.len()), (3, 0)]);
}

#[test]
fn decoder_buffer_does_not_grow_with_traffic() {
    let limits = Limits::default();
    let mut stream = Vec::new();
    for id in 0..1000 {
        encode_frame_to_vec(
            &mut stream,
            &FrameHeader::data("a", id),
            &[1; 4000],
            &limits,
        )
        .unwrap();
    }
    let mut decoder = FrameDecoder::with_read_chunk(limits, 16 * 1024);
    let mut socket: &[u8] = &stream;
    let mut frames = 0;
    while !socket.is_empty() {
        let spare = decoder.spare_capacity_mut();
        let n = spare.len().min(socket.len());
        spare[..n].copy_from_slice(&socket[..n]);
        decoder.commit(n);
        socket = &socket[n..];
        while decoder.next_frame().unwrap().is_some() {
            frames += 1;
        }
        assert_eq!(decoder.buffer_len(), 16 * 1024);
    }
    assert_eq!(frames, 1000);
}

#[test]
fn undeliverable_reply_round_trips() {
    let limits = Limits::default();
    let original = FrameHeader {
        sender: Sender::Proc {
            addr: "tcp:10.0.0.1:7000",
            name: "origin",
        },
        ..FrameHeader::data("gone", 99)
    };
    let from = Sender::Proc {
        addr: "",
        name: "hostmux",
    };
    let mut out = AlignedVec::<16>::new();
    out.resize(256, 0);
    let len = Undeliverable::encode_reply(
        &mut out,
        &original,
        UndeliverableReason::ProcExited,
        from,
        &limits,
    )
    .unwrap();
    let frame = decode_frame(&out[..len], &limits).unwrap();
    assert_eq!(frame.kind(), FrameKind::Undeliverable);
    assert_eq!(frame.dest_name(), "origin");
    assert_eq!(frame.dest_addr(), "tcp:10.0.0.1:7000");
    assert_eq!(frame.message_id(), 99);
    assert_eq!(
        Undeliverable::decode(frame.payload()).unwrap(),
        Undeliverable {
            original_message_id: 99,
            reason: UndeliverableReason::ProcExited
        }
    );
    // An anonymous sender gets its notice with an empty destination.
    let anonymous = FrameHeader::data("gone", 5);
    let reply = Undeliverable::reply_header(&anonymous, from);
    assert_eq!(reply.dest_name, "");
    assert!(reply.validate(&limits).is_ok());
    assert!(Undeliverable::decode(&[0xff; 16]).is_err());
}

#[test]
fn undeliverable_reasons_keep_their_codes_hop_limit_is_6_not_a_peer_is_7() {
    let codes: Vec<(UndeliverableReason, u8)> = UndeliverableReason::ALL
        .into_iter()
        .map(|reason| (reason, reason as u8))
        .collect();
    assert_eq!(
        codes,
        [
            (UndeliverableReason::NoSuchProc, 0),
            (UndeliverableReason::NotReady, 1),
            (UndeliverableReason::ProcExited, 2),
            (UndeliverableReason::Overloaded, 3),
            (UndeliverableReason::Oversized, 4),
            (UndeliverableReason::Malformed, 5),
            (UndeliverableReason::HopLimit, 6),
            (UndeliverableReason::NotAPeer, 7),
            (UndeliverableReason::HostUnreachable, 8),
            (UndeliverableReason::LinkFailed, 9),
            (UndeliverableReason::PeerRefused, 10),
        ]
    );
    // Each reason's payload: the id at 0, the code at 8, zero after it.
    for reason in UndeliverableReason::ALL {
        let notice = Undeliverable {
            original_message_id: 0x0102_0304_0506_0708,
            reason,
        };
        let mut payload = AlignedVec::<16>::new();
        payload.extend_from_slice(&notice.to_bytes());
        let mut expected = [0u8; 16];
        expected[..8].copy_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]);
        expected[8] = reason as u8;
        assert_eq!(payload[..], expected, "{reason:?}");
        assert_eq!(Undeliverable::decode(&payload).unwrap(), notice);
    }
    // The first code past the last is refused.
    let mut payload = AlignedVec::<16>::new();
    payload.extend_from_slice(&[0; 16]);
    payload[8] = 11;
    assert!(Undeliverable::decode(&payload).is_err());
    // Every reason reads as a few words.
    assert_eq!(
        UndeliverableReason::NotAPeer.to_string(),
        "not a peer of the host"
    );
}

#[test]
fn the_hop_count_is_the_high_byte_of_flags() {
    // Frame byte 0x24 is the example's `flags` (root at 0x18, flags at root
    // offset 12); its high byte, 0x25, is the hop count.
    let example = example_frame();
    assert_eq!(
        decode_frame(&example, &Limits::default()).unwrap().hops(),
        0
    );
    for hops in [1, 8, 255] {
        let mut bytes = example_frame();
        bytes[0x25] = hops;
        let frame = decode_frame(&bytes, &Limits::default()).unwrap();
        assert_eq!(frame.hops(), hops);
        assert_eq!(frame.flags().hops(), hops);
        let expected = FrameHeader {
            flags: Flags::RETURN_UNDELIVERABLE.with_hops(hops),
            ..example_header()
        };
        assert_eq!(frame.fields(), expected);
        // Canonical: the fields re-encode to the very bytes.
        assert_eq!(&encode(&expected, b"hello")[..], &bytes[..]);
        // The owned header carries it through its flags.
        let owned = hostmux_wire::RoutingHeader::from(frame.fields());
        assert_eq!(owned.flags.hops(), hops);
        assert_eq!(owned.as_frame_header(), expected);
    }
}

#[test]
fn set_frame_hops_rewrites_one_byte_in_place() {
    let limits = Limits::default();
    let mut bytes = example_frame();
    hostmux_wire::set_frame_hops(&mut bytes, 3, &limits).unwrap();
    let mut expected = example_frame();
    expected[0x25] = 3;
    assert_eq!(bytes[..], expected[..]);
    let frame = decode_frame(&bytes, &limits).unwrap();
    assert_eq!(frame.hops(), 3);
    assert!(frame.flags().contains(Flags::RETURN_UNDELIVERABLE));
    // In a batch buffer it changes only the first frame.
    let mut batch = aligned(&[&example_frame()[..], &example_frame()[..]].concat());
    hostmux_wire::set_frame_hops(&mut batch, 9, &limits).unwrap();
    let (first, rest) = split_frame(&batch, &limits).unwrap();
    assert_eq!(
        (first.hops(), decode_frame(rest, &limits).unwrap().hops()),
        (9, 0)
    );
    // A cut frame or a broken prefix is refused and left as it was.
    let mut cut = aligned(&example_frame()[..64]);
    assert!(matches!(
        hostmux_wire::set_frame_hops(&mut cut, 1, &limits),
        Err(WireError::Truncated { .. })
    ));
    assert_eq!(cut[..], example_frame()[..64]);
    let mut bad = example_frame();
    bad[12] = b'x';
    assert!(matches!(
        hostmux_wire::set_frame_hops(&mut bad, 1, &limits),
        Err(WireError::MalformedPrefix { .. })
    ));
}

// ---- one test per error kind -------------------------------------------

#[test]
fn error_truncated_at_end_of_stream() {
    let bytes = example_frame();
    let mut decoder = FrameDecoder::new(Limits::default());
    decoder.feed(&bytes[..40]);
    assert!(decoder.next_frame().unwrap().is_none());
    assert_eq!(
        decoder.finish(),
        Err(WireError::Truncated {
            needed: 80,
            available: 40
        })
    );
    let mut decoder = FrameDecoder::new(Limits::default());
    decoder.feed(&bytes[..5]);
    assert!(matches!(
        decoder.finish(),
        Err(WireError::Truncated {
            needed: 16,
            available: 5
        })
    ));
    assert!(matches!(
        decode_frame(&bytes[..64], &Limits::default()),
        Err(WireError::Truncated {
            needed: 80,
            available: 64
        })
    ));
}

#[test]
fn error_frame_over_the_limit_is_reported_from_the_prefix_alone() {
    let limits = Limits {
        max_frame_len: 64,
        ..Limits::default()
    };
    // Only the 16-byte prefix is fed: the check happens before buffering.
    let err = decode_err(&example_frame()[..PREFIX_LEN], limits);
    assert_eq!(err, WireError::FrameTooLong { len: 80, max: 64 });
    let mut out = [0u8; 256];
    assert!(matches!(
        encode_frame(&mut out, &example_header(), &[0; 100], &limits),
        Err(WireError::FrameTooLong { .. })
    ));
}

#[test]
fn error_header_over_the_limit() {
    let limits = Limits {
        max_header_len: 32,
        ..Limits::default()
    };
    let err = decode_err(&example_frame(), limits);
    assert_eq!(err, WireError::HeaderTooLong { len: 40, max: 32 });
}

#[test]
fn error_header_fails_bytecheck() {
    // Point the text's relative offset past the end of the header.
    let mut bytes = example_frame();
    bytes[48..52].copy_from_slice(&100i32.to_le_bytes());
    let err = decode_err(&bytes, Limits::default());
    assert!(matches!(err, WireError::InvalidHeader { .. }), "{err}");
    // An out-of-range enum tag for the frame kind.
    let mut bytes = example_frame();
    bytes[38] = 9;
    assert!(matches!(
        decode_err(&bytes, Limits::default()),
        WireError::InvalidHeader { .. }
    ));
}

#[test]
fn error_header_fails_semantic_checks() {
    // Unknown flag bits (3-7), with and without a hop count.
    for (flags, hops) in [(0x80, 0), (0x08, 0), (0x0b, 4)] {
        let mut bytes = example_frame();
        bytes[36] = flags;
        bytes[37] = hops;
        let err = decode_err(&bytes, Limits::default());
        assert!(err.to_string().contains("unknown flag bits"), "{err}");
    }
    // A '/' in the destination name (valid UTF-8, invalid proc name).
    let mut bytes = example_frame();
    bytes[17] = b'/';
    let err = decode_err(&bytes, Limits::default());
    assert!(err.to_string().contains("dest_name"), "{err}");
    // A name over the configured name limit.
    let limits = Limits {
        max_name_len: 3,
        ..Limits::default()
    };
    assert!(matches!(
        decode_err(&example_frame(), limits),
        WireError::InvalidHeader { .. }
    ));
    // Non-zero padding after the payload.
    let mut bytes = example_frame();
    bytes[79] = 1;
    assert!(matches!(
        decode_err(&bytes, Limits::default()),
        WireError::InvalidHeader { .. }
    ));
}

#[test]
fn error_header_layout_not_canonical() {
    // String lengths that do not add up to the text length.
    let mut bytes = example_frame();
    bytes[40] = 5; // dest_name_len
    let err = decode_err(&bytes, Limits::default());
    assert!(err.to_string().contains("add up"), "{err}");
    // Text that does not start at the header's first byte.
    let mut bytes = example_frame();
    bytes[48..52].copy_from_slice(&(-31i32).to_le_bytes());
    bytes[52] = 6; // text length
    bytes[44] = 2; // sender_name_len
    let err = decode_err(&bytes, Limits::default());
    assert!(err.to_string().contains("offset 0"), "{err}");
}

#[test]
fn error_misaligned_lengths_and_addresses() {
    let mut bytes = example_frame();
    bytes[0] = 0x51; // frame_len 81
    assert_eq!(
        decode_err(&bytes, Limits::default()),
        WireError::Misaligned {
            what: "frame length",
            value: 81,
            align: 16
        }
    );
    let mut bytes = example_frame();
    bytes[4] = 0x29; // header_len 41
    assert!(matches!(
        decode_err(&bytes, Limits::default()),
        WireError::Misaligned {
            what: "header length",
            ..
        }
    ));
    let mut shifted = AlignedVec::<16>::new();
    shifted.push(0);
    shifted.extend_from_slice(&example_frame());
    assert!(matches!(
        decode_frame(&shifted[1..], &Limits::default()),
        Err(WireError::Misaligned {
            what: "frame buffer address",
            ..
        })
    ));
}

#[test]
fn error_trailing_bytes_in_header() {
    // Move the root 8 bytes later into the header padding and announce a
    // 48-byte header: the text stays valid but 8 bytes are unused.
    let original = example_frame();
    let mut bytes = original.clone();
    bytes[4] = 48; // header_len
    bytes[24..32].fill(0);
    bytes[32..64].copy_from_slice(&original[24..56]);
    let offset = i32::from_le_bytes(bytes[56..60].try_into().unwrap()) - 8;
    bytes[56..60].copy_from_slice(&offset.to_le_bytes());
    assert_eq!(
        decode_err(&bytes, Limits::default()),
        WireError::HeaderTrailingBytes {
            len: 48,
            expected: 40
        }
    );
}

#[test]
fn error_trailing_bytes_after_a_ring_record() {
    let mut bytes = example_frame();
    bytes.extend_from_slice(&[0; 16]);
    assert_eq!(
        decode_frame(&bytes, &Limits::default()).unwrap_err(),
        WireError::TrailingBytes {
            len: 96,
            frame_len: 80
        }
    );
}

#[test]
fn error_malformed_prefix() {
    for (at, value, reason) in [
        (12, b'x', "magic"),
        (14, 2, "version"),
        (15, 1, "reserved"),
        (8, 100, "disagrees"),
    ] {
        let mut bytes = example_frame();
        bytes[at] = value;
        let err = decode_err(&bytes, Limits::default());
        assert!(
            matches!(err, WireError::MalformedPrefix { reason: r } if r.contains(reason)),
            "{err}"
        );
    }
}

#[test]
fn error_buffer_too_small_for_encoding() {
    let mut out = [0u8; 79];
    assert_eq!(
        encode_frame(&mut out, &example_header(), b"hello", &Limits::default()),
        Err(WireError::BufferTooSmall {
            needed: 80,
            available: 79
        })
    );
}

#[test]
fn encoder_refuses_headers_the_decoder_would_reject() {
    let limits = Limits::default();
    let mut out = vec![0u8; 1024];
    for bad in [
        FrameHeader::data("", 1),
        FrameHeader::data("a b", 1),
        FrameHeader {
            dest_addr: "nope",
            ..FrameHeader::data("a", 1)
        },
        FrameHeader {
            sender: Sender::Client { name: "" },
            ..FrameHeader::data("a", 1)
        },
    ] {
        assert!(
            encode_frame(&mut out, &bad, b"", &limits).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn decoder_stays_poisoned_after_an_error() {
    let mut bytes = example_frame();
    bytes[12] = 0;
    let mut decoder = FrameDecoder::new(Limits::default());
    decoder.feed(&bytes);
    let first = decoder.next_frame().unwrap_err();
    decoder.feed(&example_frame());
    assert_eq!(decoder.next_frame().unwrap_err(), first);
    assert_eq!(decoder.finish().unwrap_err(), first);
    assert!(decoder.spare_capacity_mut().is_empty());
}

#[test]
fn prefix_parse_reports_lengths() {
    let prefix = FramePrefix::parse(&example_frame(), &Limits::default()).unwrap();
    assert_eq!(
        (
            prefix.frame_len(),
            prefix.header_len(),
            prefix.payload_len(),
            prefix.payload_offset()
        ),
        (80, 40, 5, 64)
    );
    assert_eq!(prefix.to_bytes()[..], example_frame()[..16]);
}

#[test]
fn the_decoder_flags_frames_whose_header_repeats_the_previous_one() {
    let limits = Limits::default();
    let mut stream = Vec::new();
    let headers = [
        FrameHeader::data("echo", 1),
        FrameHeader::data("echo", 2), // only the id differs: a repeat
        FrameHeader {
            dest_port: 5,
            ..FrameHeader::data("echo", 3)
        }, // the port may differ too
        FrameHeader::data("sink", 4), // another destination
        FrameHeader {
            flags: Flags::RETURN_UNDELIVERABLE,
            ..FrameHeader::data("sink", 5)
        }, // other flags
        FrameHeader {
            flags: Flags::RETURN_UNDELIVERABLE,
            ..FrameHeader::data("sink", 6)
        },
        FrameHeader {
            flags: Flags::RETURN_UNDELIVERABLE.with_hops(1),
            ..FrameHeader::data("sink", 7)
        }, // another hop count
        FrameHeader {
            flags: Flags::RETURN_UNDELIVERABLE.with_hops(1),
            ..FrameHeader::data("sink", 8)
        },
        FrameHeader {
            flags: Flags::RETURN_UNDELIVERABLE,
            ..FrameHeader::data("sink", 9)
        }, // back to hop count 0
    ];
    for header in &headers {
        encode_frame_to_vec(&mut stream, header, b"x", &limits).unwrap();
    }
    let mut decoder = FrameDecoder::new(limits);
    decoder.feed(&stream);
    let mut seen = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        seen.push((frame.message_id(), frame.repeats_previous_header()));
        assert_eq!(frame.fields(), headers[seen.len() - 1]);
    }
    assert_eq!(
        seen,
        [
            (1, false),
            (2, true),
            (3, true),
            (4, false),
            (5, false),
            (6, true),
            (7, false),
            (8, true),
            (9, false)
        ]
    );
}
