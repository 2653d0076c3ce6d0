//! `docs/wire.md`'s worked examples are what the encoders write, byte for
//! byte, so the page a client is written from cannot drift from the code.
//!
//! Every hex dump in the page's "Examples" section (lines `NN: ` followed by
//! up to 16 bytes, one fenced block per frame) is parsed out of the page and
//! compared, in order, with the frames built here.

use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{
    decode_frame, encode_frame, encode_hello, encode_hello_ack, encoded_len, is_hello_ack, Flags,
    FrameHeader, FrameKind, Limits, Sender, Undeliverable, UndeliverableReason, HELLO_PORT,
};

/// The frames of the page's "Examples" section, one per fenced block.
fn documented_frames() -> Vec<Vec<u8>> {
    let page = include_str!("../../../docs/wire.md");
    let examples = page
        .split("\n## Examples\n")
        .nth(1)
        .expect("docs/wire.md has an Examples section");
    let mut frames = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in examples.lines() {
        if line.starts_with("```") {
            match current.take() {
                Some(frame) if !frame.is_empty() => frames.push(frame),
                Some(_) => {}
                None => current = Some(Vec::new()),
            }
            continue;
        }
        let Some(frame) = current.as_mut() else {
            continue;
        };
        let Some((offset, bytes)) = line.split_once(": ") else {
            continue;
        };
        if offset.len() != 2 || !offset.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        assert_eq!(
            usize::from_str_radix(offset, 16).unwrap(),
            frame.len(),
            "offset {offset} of an example in docs/wire.md"
        );
        frame.extend(
            bytes
                .split_whitespace()
                .take(16)
                .map(|byte| u8::from_str_radix(byte, 16).expect("a hex byte")),
        );
    }
    frames
}

fn encoded(encode: impl FnOnce(&mut [u8]) -> usize) -> Vec<u8> {
    let mut out = vec![0xEE; 512];
    let len = encode(&mut out);
    out.truncate(len);
    out
}

fn aligned(bytes: &[u8]) -> AlignedVec<16> {
    let mut out = AlignedVec::<16>::with_capacity(bytes.len());
    out.extend_from_slice(bytes);
    out
}

/// The data frame of the first example: to proc `echo`, port 7, id 42,
/// `RETURN_UNDELIVERABLE`, from client `cli`, payload `hello`.
fn data_frame() -> Vec<u8> {
    let header = FrameHeader {
        flags: Flags::RETURN_UNDELIVERABLE,
        dest_port: 7,
        sender: Sender::Client { name: "cli" },
        ..FrameHeader::data("echo", 42)
    };
    encoded(|out| {
        let len = encoded_len(&header, 5);
        encode_frame(&mut out[..len], &header, b"hello", &Limits::default()).unwrap()
    })
}

/// Client `cli`'s hello to a host whose token is `s3cret`.
fn hello() -> Vec<u8> {
    encoded(|out| encode_hello(out, "service", "cli", b"s3cret", &Limits::default()).unwrap())
}

fn hello_ack() -> Vec<u8> {
    encoded(|out| encode_hello_ack(out, "service", "cli", &Limits::default()).unwrap())
}

/// What client `cli` sent (id 42 to proc `nope`, no flags, payload `hi`)
/// and the host's notice about it.
fn request_to_a_missing_proc() -> FrameHeader<'static> {
    FrameHeader {
        sender: Sender::Client { name: "cli" },
        ..FrameHeader::data("nope", 42)
    }
}

fn request_frame() -> Vec<u8> {
    let header = request_to_a_missing_proc();
    encoded(|out| {
        let len = encoded_len(&header, 2);
        encode_frame(&mut out[..len], &header, b"hi", &Limits::default()).unwrap()
    })
}

fn no_such_proc_notice() -> Vec<u8> {
    encoded(|out| {
        Undeliverable::encode_reply(
            out,
            &request_to_a_missing_proc(),
            UndeliverableReason::NoSuchProc,
            Sender::Proc {
                addr: "",
                name: "service",
            },
            &Limits::default(),
        )
        .unwrap()
    })
}

#[test]
fn docs_wire_md_examples_are_the_encoders_bytes() {
    let documented = documented_frames();
    let built = [
        ("data frame", data_frame()),
        ("hello", hello()),
        ("hello ack", hello_ack()),
        ("request to a missing proc", request_frame()),
        ("NoSuchProc notice", no_such_proc_notice()),
    ];
    assert_eq!(
        documented.len(),
        built.len(),
        "docs/wire.md's Examples section has {} hex dumps",
        documented.len()
    );
    for ((what, bytes), shown) in built.iter().zip(&documented) {
        assert_eq!(shown, bytes, "the {what} of docs/wire.md");
    }
}

#[test]
fn the_documented_hello_ack_and_notice_decode_as_the_page_says() {
    let limits = Limits::default();
    let frames = documented_frames();

    let hello = aligned(&frames[1]);
    let hello = decode_frame(&hello, &limits).unwrap();
    assert_eq!(
        hostmux_wire::check_hello(&hello, "service", Some(b"s3cret")),
        Ok("cli")
    );
    assert_eq!(hello.message_id(), 0);
    assert_eq!(hello.flags(), Flags::NONE);

    let ack = aligned(&frames[2]);
    let ack = decode_frame(&ack, &limits).unwrap();
    assert!(is_hello_ack(&ack));
    assert_eq!(ack.dest_name(), "cli");
    assert_eq!(ack.dest_port(), HELLO_PORT);
    assert!(ack.payload().is_empty());

    let request = aligned(&frames[3]);
    let request = decode_frame(&request, &limits).unwrap();
    assert_eq!(request.flags(), Flags::NONE, "no RETURN_UNDELIVERABLE");

    let notice = aligned(&frames[4]);
    let notice = decode_frame(&notice, &limits).unwrap();
    assert_eq!(notice.kind(), FrameKind::Undeliverable);
    assert_eq!(notice.message_id(), 42);
    assert_eq!(notice.dest_name(), "cli");
    assert_eq!(notice.dest_port(), 0);
    assert_eq!(notice.flags(), Flags::TO_CLIENT);
    assert_eq!(
        notice.sender(),
        Sender::Proc {
            addr: "",
            name: "service"
        }
    );
    assert_eq!(
        Undeliverable::decode(notice.payload()).unwrap(),
        Undeliverable {
            original_message_id: 42,
            reason: UndeliverableReason::NoSuchProc
        }
    );
}
