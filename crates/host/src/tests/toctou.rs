//! A proc's ring memory is writable by the proc at any time: the host must
//! route from its own copy of what it validated (the ring helper's finding:
//! a validated `&str` in ring memory can be made invalid UTF-8 afterwards).

use std::time::Instant;

use hostmux_wire::{
    decode_frame, encode_frame_to_vec, rkyv::util::AlignedVec, FrameHeader, HeaderMemo, Limits,
    Sender, PREFIX_LEN,
};

use crate::config::HostConfig;
use crate::dataplane::copy_head;
use crate::dataplane::rig::Rig;

fn proc_frame(from: &str, dest: &str, payload: &[u8]) -> AlignedVec<16> {
    let header = FrameHeader {
        sender: Sender::Proc {
            addr: "",
            name: from,
        },
        ..FrameHeader::data(dest, 77)
    };
    let mut bytes = Vec::new();
    encode_frame_to_vec(&mut bytes, &header, payload, &Limits::default()).unwrap();
    let mut aligned = AlignedVec::new();
    aligned.extend_from_slice(&bytes);
    aligned
}

#[test]
fn routing_reads_a_host_copy_of_the_header_that_a_proc_rewrite_cannot_change() {
    let limits = Limits::default();
    let mut record = proc_frame("a", "bravo", b"payload");
    let mut scratch = AlignedVec::new();
    let mut memo = HeaderMemo::new();
    let (view, prefix) = copy_head(&record, &mut scratch, &mut memo, &limits).unwrap();
    // The proc rewrites the text of the header (destination name first)
    // with bytes that are not UTF-8, after the host validated it. The view
    // does not borrow the record (this compiles), and reads the copy.
    record[PREFIX_LEN..PREFIX_LEN + 5].fill(0xFF);
    assert_eq!(view.dest_name(), "bravo");
    assert_eq!(view.message_id(), 77);
    assert!(matches!(view.sender(), Sender::Proc { name: "a", .. }));
    assert_eq!(&record[prefix.payload_range()], b"payload");
}

#[test]
fn the_header_memo_recognises_repeats_but_not_rewrites() {
    let limits = Limits::default();
    let mut scratch = AlignedVec::new();
    let mut memo = HeaderMemo::new();
    let record = proc_frame("a", "bravo", b"payload");
    copy_head(&record, &mut scratch, &mut memo, &limits).unwrap();
    // The same routing fields with another message id: answered by the memo.
    let mut repeat = record.clone();
    let id_at = PREFIX_LEN + scratch_header_len(&record) - 32;
    repeat[id_at..id_at + 8].copy_from_slice(&78u64.to_le_bytes());
    let (view, _) = copy_head(&repeat, &mut scratch, &mut memo, &limits).unwrap();
    assert_eq!((view.dest_name(), view.message_id()), ("bravo", 78));
    assert_eq!(memo.hits(), 1);
    // A rewritten destination is not a repeat: it is validated in full and
    // refused (not UTF-8, not a proc name).
    let mut rewritten = record.clone();
    rewritten[PREFIX_LEN..PREFIX_LEN + 5].fill(0xFF);
    assert!(copy_head(&rewritten, &mut scratch, &mut memo, &limits).is_err());
    assert_eq!(memo.hits(), 1);
}

/// The archived header length from a frame's prefix.
fn scratch_header_len(frame: &[u8]) -> usize {
    u32::from_le_bytes(frame[4..8].try_into().unwrap()) as usize
}

#[test]
fn proc_to_proc_frames_carry_the_validated_header_and_zero_padding() {
    let mut rig = Rig::new(HostConfig::default());
    let a = rig.add_proc("a", 1 << 16, 1 << 16);
    let mut b_in = rig.add_proc("b", 1 << 16, 1 << 16).inbound;
    let (mut dp, mut a_out) = (rig.dp, a.outbound);

    // Proc a sends 5 payload bytes and leaves garbage in the 11 padding
    // bytes after them (its own ring: it may write anything there).
    let frame = proc_frame("a", "b", b"hello");
    let mut slot = a_out.try_reserve(frame.len()).unwrap();
    slot.copy_from_slice(&frame);
    let end = slot.len();
    slot[end - 11..].fill(0xAA);
    slot.commit();
    a_out.publish().unwrap();
    dp.drain_outbound(a.key, Instant::now());

    let record = b_in.peek().unwrap().expect("the frame reached b");
    let delivered = decode_frame(record, &Limits::default()).expect("canonical frame");
    assert_eq!(delivered.payload(), b"hello");
    assert_eq!(delivered.dest_name(), "b");
    assert!(record[record.len() - 11..].iter().all(|&b| b == 0));
    assert_eq!(record, &frame[..]);
}
