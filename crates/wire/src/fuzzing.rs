//! Fuzz entry points, called by the one-line targets in `fuzz/fuzz_targets/`.
//!
//! Each takes arbitrary bytes, must never panic on them, and checks an
//! oracle where one exists: anything the decoder accepts re-encodes to the
//! very same bytes (the encoding is canonical).

use rkyv::util::AlignedVec;

use crate::frame::FRAME_ALIGN;
use crate::{encode_frame, ControlRequest, FrameDecoder, Limits};

/// Limits small enough that the fuzzer explores the limit checks.
fn fuzz_limits() -> Limits {
    Limits {
        max_frame_len: 64 * 1024,
        max_header_len: 512,
        max_name_len: 64,
    }
}

/// The first byte picks a chunk size; the rest is a byte stream fed to a
/// [`FrameDecoder`] in chunks of that size. Every frame it yields must
/// re-encode to identical bytes.
pub fn wire_decode(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let limits = fuzz_limits();
    let chunk = usize::from(chunk).max(1);
    let mut decoder = FrameDecoder::with_read_chunk(limits, 64);
    let mut scratch = vec![0u8; limits.max_frame_len];
    // The lent-chunk mode must yield the very same frames (and the same
    // error, if any) as `feed`.
    let lent = lent_frames(stream, chunk, limits);
    let mut frames = Vec::new();
    let mut failed = false;
    'pieces: for piece in stream.chunks(chunk) {
        decoder.feed(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let len = encode_frame(&mut scratch, &frame.fields(), frame.payload(), &limits)
                        .expect("a decoded frame re-encodes");
                    assert_eq!(
                        &scratch[..len],
                        frame.as_bytes(),
                        "encoding is not canonical"
                    );
                    frames.push(frame.as_bytes().to_vec());
                }
                Ok(None) => break,
                Err(_) => {
                    assert!(decoder.is_poisoned());
                    failed = true;
                    break 'pieces;
                }
            }
        }
    }
    if !failed {
        failed = decoder.finish().is_err();
    }
    assert_eq!(lent, (frames, failed), "lent chunks and feed disagree");
}

/// The frames (and whether the stream failed) of `stream` lent to a
/// decoder `chunk` bytes at a time ([`FrameDecoder::lend`]).
fn lent_frames(stream: &[u8], chunk: usize, limits: Limits) -> (Vec<Vec<u8>>, bool) {
    let mut decoder = FrameDecoder::with_read_chunk(limits, 64);
    let mut frames = Vec::new();
    for piece in stream.chunks(chunk) {
        let mut lent = decoder.lend(piece, usize::MAX);
        loop {
            match lent.next_frame() {
                Ok(Some(frame)) => frames.push(frame.as_bytes().to_vec()),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
        assert_eq!(
            lent.finish(),
            piece.len(),
            "a loan without a large frame takes all"
        );
    }
    (frames, decoder.finish().is_err())
}

/// Arbitrary bytes as an archived routing header region. The hand-written
/// validator must agree with the rkyv/bytecheck reference (same decision,
/// same fields), and an accepted header must re-archive to identical bytes
/// through both the hand-written and the rkyv encoder.
pub fn wire_header(data: &[u8]) {
    let mut aligned = AlignedVec::<FRAME_ALIGN>::with_capacity(data.len());
    aligned.extend_from_slice(data);
    let limits = fuzz_limits();
    let fast = crate::layout::check_header(&aligned, &limits);
    let reference = crate::header::check_header_bytecheck(&aligned, &limits);
    match (&fast, &reference) {
        (Ok(fast), Ok(reference)) => {
            assert_eq!(fast, reference, "validators read different fields")
        }
        (Err(_), Err(_)) => {}
        _ => panic!("validators disagree: hand-written {fast:?}, bytecheck {reference:?}"),
    }
    // Through a memo: the first check validates, the second is answered
    // from the memo; both must match the direct check.
    let mut memo = crate::HeaderMemo::new();
    for _ in 0..2 {
        let memoised = memo.check(&aligned, &limits);
        match (&fast, &memoised) {
            (Ok(fast), Ok(memoised)) => assert_eq!(fast, memoised, "the memo reads other fields"),
            (Err(_), Err(_)) => {}
            _ => panic!("the memo disagrees: direct {fast:?}, memo {memoised:?}"),
        }
    }
    if let Ok(fields) = fast {
        let mut again = vec![0u8; fields.archived_len()];
        fields
            .write_archived(&mut again)
            .expect("a valid header re-archives");
        assert_eq!(&again[..], &aligned[..], "header encoding is not canonical");
        again.fill(0xEE);
        fields
            .write_archived_rkyv(&mut again)
            .expect("a valid header re-archives through rkyv");
        assert_eq!(
            &again[..],
            &aligned[..],
            "hand-written and rkyv encoders differ"
        );
    }
}

/// Arbitrary bytes as a control request payload.
pub fn control_request(data: &[u8]) {
    if let Ok(request) = ControlRequest::decode(data, &fuzz_limits()) {
        let bytes = request.to_bytes().expect("a decoded request re-encodes");
        let again = ControlRequest::decode(&bytes, &fuzz_limits()).expect("and decodes again");
        assert_eq!(again, request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameHeader;

    fn sample_stream() -> Vec<u8> {
        let mut stream = vec![7u8]; // chunk size
        for id in 0..3 {
            encode_frame_to_vec_for_test(&mut stream, id);
        }
        stream
    }

    fn encode_frame_to_vec_for_test(out: &mut Vec<u8>, id: u64) {
        crate::encode_frame_to_vec(
            out,
            &FrameHeader::data("echo", id),
            b"payload",
            &fuzz_limits(),
        )
        .unwrap();
    }

    #[test]
    fn entry_points_accept_valid_and_garbage_input() {
        wire_decode(&sample_stream());
        wire_decode(&[
            3, 0xff, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ]);
        wire_decode(&[]);
        let mut header = vec![0u8; FrameHeader::data("echo", 1).archived_len()];
        FrameHeader::data("echo", 1)
            .write_archived(&mut header)
            .unwrap();
        wire_header(&header);
        let at_hop_3 = FrameHeader {
            flags: crate::Flags::RETURN_UNDELIVERABLE.with_hops(3),
            ..FrameHeader::data("echo", 1)
        };
        let mut header = vec![0u8; at_hop_3.archived_len()];
        at_hop_3.write_archived(&mut header).unwrap();
        wire_header(&header);
        wire_header(&[0xAB; 48]);
        control_request(&ControlRequest::List.to_bytes().unwrap());
        control_request(&[1, 2, 3]);
    }
}
