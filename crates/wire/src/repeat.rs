//! Re-encoding a run of frames whose headers differ only in message id and
//! port: the header is validated and written once, then each frame is its
//! copied head with two fields and a length patched, and its payload.
//!
//! A host forwarding a client's stream to another host rewrites every
//! frame's header (the sender names this host, the hop count goes up). The
//! frames of a run to one destination repeat their header except for
//! `message_id` and `dest_port` (what [`crate::HeaderMemo`] recognises), so
//! their rewritten headers repeat too: [`RepeatedHead`] keeps the encoded
//! head of the first and patches it for the next, skipping the validation
//! and the field-by-field writing of [`crate::encode_frame_to_vec`]. The
//! bytes are exactly those `encode_frame_to_vec` writes (tests compare the
//! two).

use std::ops::Range;

use crate::frame::align16;
use crate::{FrameHeader, FramePrefix, Limits, WireError, HEADER_ROOT_LEN, PREFIX_LEN};

/// The encoded head (prefix, archived header, header padding) of a frame,
/// validated once, to encode frames with the same header but any message
/// id, port and payload.
///
/// ```
/// use hostmux_wire::{encode_frame_to_vec, FrameHeader, Limits, RepeatedHead};
///
/// let limits = Limits::default();
/// let mut head = RepeatedHead::new();
/// head.set(&FrameHeader::data("echo", 1), &limits)?;
/// let mut fast = Vec::new();
/// head.encode_to_vec(&mut fast, 42, 7, b"hi", &limits)?;
/// let mut slow = Vec::new();
/// let header = FrameHeader { dest_port: 7, ..FrameHeader::data("echo", 42) };
/// encode_frame_to_vec(&mut slow, &header, b"hi", &limits)?;
/// assert_eq!(fast, slow);
/// # Ok::<(), hostmux_wire::WireError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct RepeatedHead {
    /// Prefix, archived header and its padding (empty: not set).
    bytes: Vec<u8>,
    /// The archived header's length, without padding.
    header_len: usize,
}

/// Offsets of the two free fields inside the header's 32-byte root.
const ROOT_MESSAGE_ID: usize = 0;
const ROOT_DEST_PORT: usize = 8;

impl RepeatedHead {
    /// An unset head.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates `header` against `limits` and keeps its encoding (its
    /// message id and port are replaced by each
    /// [`encode_to_vec`](Self::encode_to_vec)). Reuses the buffer: allocates
    /// only when a longer header than ever before is set. On error the head
    /// is unset.
    pub fn set(&mut self, header: &FrameHeader<'_>, limits: &Limits) -> Result<(), WireError> {
        self.clear();
        header.validate(limits)?;
        let header_len = header.archived_len();
        let prefix = FramePrefix::for_lengths(header_len, 0, limits)?;
        let head_len = prefix.payload_offset();
        self.bytes.resize(head_len, 0);
        self.bytes[..PREFIX_LEN].copy_from_slice(&prefix.to_bytes());
        if let Err(error) =
            header.write_archived(&mut self.bytes[PREFIX_LEN..PREFIX_LEN + header_len])
        {
            self.clear();
            return Err(error);
        }
        self.header_len = header_len;
        Ok(())
    }

    /// Forgets the head.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.header_len = 0;
    }

    /// Whether a head is set.
    pub fn is_set(&self) -> bool {
        !self.bytes.is_empty()
    }

    /// The encoded length of a frame with this head and a payload of
    /// `payload_len` bytes (0 if no head is set).
    #[inline]
    pub fn encoded_len(&self, payload_len: usize) -> usize {
        if self.bytes.is_empty() {
            return 0;
        }
        self.bytes.len() + align16(payload_len)
    }

    /// Appends the frame with this head, `message_id`, `dest_port` and
    /// `payload` to `out`, exactly as [`crate::encode_frame_to_vec`] would
    /// encode the header it was set from with those fields, and returns its
    /// byte range there. Checks only the frame length against `limits` (the
    /// header was validated by [`set`](Self::set)). Allocates only when
    /// `out` must grow.
    #[inline(always)]
    pub fn encode_to_vec(
        &self,
        out: &mut Vec<u8>,
        message_id: u64,
        dest_port: u32,
        payload: &[u8],
        limits: &Limits,
    ) -> Result<Range<usize>, WireError> {
        if self.bytes.is_empty() {
            return Err(crate::header::invalid_header("no repeated head is set"));
        }
        let prefix = FramePrefix::for_lengths(self.header_len, payload.len(), limits)?;
        let start = out.len();
        let head_len = self.bytes.len();
        out.extend_from_slice(&self.bytes);
        let head = &mut out[start..start + head_len];
        head[..PREFIX_LEN].copy_from_slice(&prefix.to_bytes());
        let root = PREFIX_LEN + self.header_len - HEADER_ROOT_LEN;
        head[root + ROOT_MESSAGE_ID..root + ROOT_MESSAGE_ID + 8]
            .copy_from_slice(&message_id.to_le_bytes());
        head[root + ROOT_DEST_PORT..root + ROOT_DEST_PORT + 4]
            .copy_from_slice(&dest_port.to_le_bytes());
        out.extend_from_slice(payload);
        let end = start + prefix.frame_len();
        out.resize(end, 0);
        Ok(start..end)
    }

    /// [`encode_to_vec`](Self::encode_to_vec) with the message id, port and
    /// payload of `frame`: a whole encoded frame (its prefix checked against
    /// `limits`, its header validated before, e.g. by the decoder whose
    /// [`take_repeat`](crate::FrameDecoder::take_repeat) handed it out).
    // Always: on the fast lane's hot path in two instantiations (a
    // decoder's buffer and a lent chunk), where the inliner stops taking
    // it and the call costs about 45 instructions a frame (callgrind).
    #[inline(always)]
    pub fn reencode_to_vec(
        &self,
        out: &mut Vec<u8>,
        frame: &[u8],
        limits: &Limits,
    ) -> Result<Range<usize>, WireError> {
        let prefix = FramePrefix::parse(frame, limits)?;
        let (Some(root), Some(payload)) = (
            (PREFIX_LEN + prefix.header_len())
                .checked_sub(HEADER_ROOT_LEN)
                .filter(|&root| root >= PREFIX_LEN)
                .and_then(|root| frame.get(root..root + HEADER_ROOT_LEN)),
            frame.get(prefix.payload_range()),
        ) else {
            return Err(WireError::Truncated {
                needed: prefix.frame_len(),
                available: frame.len(),
            });
        };
        let mut id = [0u8; 8];
        id.copy_from_slice(&root[ROOT_MESSAGE_ID..ROOT_MESSAGE_ID + 8]);
        let mut port = [0u8; 4];
        port.copy_from_slice(&root[ROOT_DEST_PORT..ROOT_DEST_PORT + 4]);
        self.encode_to_vec(
            out,
            u64::from_le_bytes(id),
            u32::from_le_bytes(port),
            payload,
            limits,
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{decode_frame, encode_frame_to_vec, Flags, FrameKind, Sender};

    fn header<'a>(
        dest: &'a str,
        addr: &'a str,
        sender: Sender<'a>,
        flags: Flags,
        kind: FrameKind,
    ) -> FrameHeader<'a> {
        FrameHeader {
            dest_addr: addr,
            sender,
            flags,
            kind,
            ..FrameHeader::data(dest, 0)
        }
    }

    proptest! {
        #[test]
        fn repeated_heads_encode_exactly_what_the_encoder_writes(
            dest in "[a-z][a-z0-9_-]{0,40}",
            sender_name in "[a-z][a-z0-9]{0,20}",
            port in 1u16..,
            hops in 0u8..8,
            ids in proptest::collection::vec(any::<u64>(), 1..4),
            ports in proptest::collection::vec(any::<u32>(), 1..4),
            payload_lens in proptest::collection::vec(0usize..200, 1..4),
        ) {
            let limits = Limits::default();
            let addr = format!("tcp:127.0.0.1:{port}");
            let sender = Sender::Proc { addr: "tcp:10.0.0.1:7000", name: &sender_name };
            let flags = Flags::NONE.with(Flags::FROM_CLIENT).with_hops(hops);
            let base = header(&dest, &addr, sender, flags, FrameKind::Data);
            let mut head = RepeatedHead::new();
            head.set(&base, &limits).unwrap();
            let mut fast = Vec::new();
            let mut slow = Vec::new();
            for ((id, dest_port), len) in ids.iter().zip(ports.iter().cycle()).zip(payload_lens.iter().cycle()) {
                let payload = vec![0xa5; *len];
                let range = head.encode_to_vec(&mut fast, *id, *dest_port, &payload, &limits).unwrap();
                prop_assert_eq!(range.len(), head.encoded_len(*len));
                let each = FrameHeader { message_id: *id, dest_port: *dest_port, ..base };
                let original = encode_frame_to_vec(&mut slow, &each, &payload, &limits).unwrap();
                // The same frame, taken apart again from its bytes.
                let mut again = Vec::new();
                head.reencode_to_vec(&mut again, &slow[original.clone()], &limits).unwrap();
                prop_assert_eq!(&again[..], &slow[original]);
            }
            prop_assert_eq!(&fast, &slow);
        }
    }

    #[test]
    fn an_invalid_header_is_refused_and_leaves_the_head_unset() {
        let limits = Limits::default();
        let mut head = RepeatedHead::new();
        head.set(&FrameHeader::data("echo", 1), &limits).unwrap();
        let bad = header(
            "echo",
            "tcp:nowhere",
            Sender::Anonymous,
            Flags::NONE,
            FrameKind::Data,
        );
        assert!(head.set(&bad, &limits).is_err());
        assert!(!head.is_set());
        assert!(head
            .encode_to_vec(&mut Vec::new(), 1, 0, b"", &limits)
            .is_err());
    }

    #[test]
    fn a_payload_past_the_frame_limit_is_refused() {
        let limits = Limits {
            max_frame_len: 256,
            ..Limits::default()
        };
        let mut head = RepeatedHead::new();
        head.set(&FrameHeader::data("echo", 1), &limits).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            head.encode_to_vec(&mut out, 1, 0, &[0; 512], &limits),
            Err(WireError::FrameTooLong { .. })
        ));
        assert!(out.is_empty());
        let range = head
            .encode_to_vec(&mut out, 9, 0, &[1; 16], &limits)
            .unwrap();
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&out[range]);
        let frame = decode_frame(&aligned, &limits).unwrap();
        assert_eq!(frame.message_id(), 9);
        assert_eq!(frame.payload(), &[1; 16]);
    }
}
