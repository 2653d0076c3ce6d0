//! Validate a routing header once per run of frames that share it.
//!
//! A stream from one client, or the outbound ring of one proc, usually
//! carries runs of frames whose headers differ only in `message_id` (and
//! perhaps `dest_port`): the same destination, the same sender, the same
//! kind and flags. [`HeaderMemo`] keeps a private copy of the last header
//! region that passed full validation; a region that equals it in every
//! byte except those two fields is valid for the same reasons, so it is
//! recognised with one comparison instead of being checked again. Its
//! strings are then borrowed from the memo's copy, which holds the same
//! bytes.
//!
//! The comparison is against the memo's own copy, so a region in shared
//! memory that a peer rewrites concurrently cannot slip through: the caller
//! validates (or compares) a private copy, as `hostmux-host` does for ring
//! records, and writes onwards what it validated.

use crate::frame::{padding_is_zero, FramePrefix, PREFIX_LEN};
use crate::layout::{check_header, ROOT_ROUTING_FIELDS};
use crate::HEADER_ROOT_LEN;
use crate::{Flags, FrameHeader, FrameKind, Limits, Sender, SenderKind, WireError};

/// Largest header region a memo remembers; longer ones are validated every
/// time (names are at most 64 bytes by default, so typical headers are
/// well under this).
pub const HEADER_MEMO_CAPACITY: usize = 256;

/// The last header region that passed validation, to recognise repeats of
/// it cheaply.
///
/// A region equal to the remembered one in every byte but `message_id` and
/// `dest_port` is valid for the same reasons, so [`check`](Self::check)
/// answers it with one comparison and borrows its strings from the memo's
/// own copy. Compare a private copy of untrusted shared memory, not the
/// shared memory itself (as `hostmux-host` does for ring records).
///
/// Allocates its two buffers once, in [`HeaderMemo::new`]; checking never
/// allocates.
#[derive(Debug, Clone)]
pub struct HeaderMemo {
    /// The validated region, byte for byte (empty: nothing remembered).
    region: Vec<u8>,
    /// Its four strings (destination name and address, sender name and
    /// address), each in a buffer of its own so that reading them back
    /// needs no boundary checks.
    strings: [String; 4],
    kind: FrameKind,
    flags: Flags,
    sender_kind: SenderKind,
    /// The limits the region was validated against.
    limits: Limits,
    hits: u64,
}

impl Default for HeaderMemo {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderMemo {
    /// An empty memo with room for a [`HEADER_MEMO_CAPACITY`]-byte header.
    pub fn new() -> Self {
        Self {
            region: Vec::with_capacity(HEADER_MEMO_CAPACITY),
            strings: std::array::from_fn(|_| String::with_capacity(HEADER_MEMO_CAPACITY)),
            kind: FrameKind::Data,
            flags: Flags::NONE,
            sender_kind: SenderKind::Anonymous,
            limits: Limits::DEFAULT,
            hits: 0,
        }
    }

    /// Forgets the remembered header.
    pub fn clear(&mut self) {
        self.region.clear();
    }

    /// How many checks were answered from the memo (for tests and stats).
    pub fn hits(&self) -> u64 {
        self.hits
    }

    pub(crate) fn count_hit(&mut self) {
        self.hits += 1;
    }

    /// Validates the archived header `region` exactly as the decoder does
    /// and returns its fields; if `region` repeats the remembered header
    /// except for `message_id` and `dest_port`, the answer comes from the
    /// memo without validating again. A region that passes is remembered
    /// (if it fits in [`HEADER_MEMO_CAPACITY`]).
    #[inline]
    pub fn check<'a>(
        &'a mut self,
        region: &'a [u8],
        limits: &Limits,
    ) -> Result<FrameHeader<'a>, WireError> {
        self.check_repeat(region, limits).map(|(header, _)| header)
    }

    /// [`check`](Self::check), also saying whether the region repeated the
    /// remembered header (answered from the memo).
    #[inline]
    pub(crate) fn check_repeat<'a>(
        &'a mut self,
        region: &'a [u8],
        limits: &Limits,
    ) -> Result<(FrameHeader<'a>, bool), WireError> {
        if self.repeats(region, limits) {
            self.hits += 1;
            let root = region
                .last_chunk::<HEADER_ROOT_LEN>()
                .expect("a repeat is as long as the remembered region");
            return Ok((self.fields(root), true));
        }
        let header = check_header(region, limits)?;
        if region.len() > HEADER_MEMO_CAPACITY {
            self.region.clear();
            return Ok((header, false));
        }
        self.remember(region, &header, limits);
        let root = region
            .last_chunk::<HEADER_ROOT_LEN>()
            .expect("a valid header has a root");
        Ok((self.fields(root), false))
    }

    /// True if `region` equals the remembered region in every byte but the
    /// root's `message_id` and `dest_port`, under the same limits.
    #[inline]
    pub(crate) fn repeats(&self, region: &[u8], limits: &Limits) -> bool {
        let len = self.region.len();
        if len == 0 || region.len() != len || *limits != self.limits {
            return false;
        }
        let routing = len - HEADER_ROOT_LEN + ROOT_ROUTING_FIELDS;
        same_bytes(&region[routing..], &self.region[routing..])
            && same_bytes(
                &region[..len - HEADER_ROOT_LEN],
                &self.region[..len - HEADER_ROOT_LEN],
            )
    }

    /// The length of the frame at the start of `bytes` if it is a whole
    /// frame whose header repeats the remembered one (every byte but
    /// `message_id` and `dest_port`, under the same limits) and whose
    /// padding is zero: such a frame is valid for the same reasons as the
    /// one remembered, with the same destination, sender, kind and flags.
    /// `None` in every other case (the caller then validates in full).
    ///
    /// Like every memo answer it is about the bytes it was given: call it on
    /// a private copy, never on memory a peer can rewrite (a ring reader
    /// copies the record first, then asks).
    ///
    /// ```
    /// use hostmux_wire::rkyv::util::AlignedVec;
    /// use hostmux_wire::{decode_frame_memo, encode_frame_to_vec, FrameHeader, HeaderMemo, Limits};
    ///
    /// let limits = Limits::default();
    /// let encode = |id, payload: &[u8]| {
    ///     let mut bytes = Vec::new();
    ///     encode_frame_to_vec(&mut bytes, &FrameHeader::data("echo", id), payload, &limits)?;
    ///     let mut aligned = AlignedVec::<16>::new();
    ///     aligned.extend_from_slice(&bytes);
    ///     Ok::<_, hostmux_wire::WireError>(aligned)
    /// };
    /// let (first, second) = (encode(1, b"ping")?, encode(2, b"pong!")?);
    /// let mut memo = HeaderMemo::new();
    /// assert_eq!(memo.repeated_frame_len(&second, &limits), None); // nothing remembered yet
    /// decode_frame_memo(&first, &limits, &mut memo)?;
    /// assert_eq!(memo.repeated_frame_len(&second, &limits), Some(second.len()));
    /// # Ok::<(), hostmux_wire::WireError>(())
    /// ```
    #[inline]
    pub fn repeated_frame_len(&self, bytes: &[u8], limits: &Limits) -> Option<usize> {
        let prefix = FramePrefix::parse(bytes, limits).ok()?;
        let frame = bytes.get(..prefix.frame_len())?;
        let region = &frame[PREFIX_LEN..PREFIX_LEN + prefix.header_len()];
        (self.repeats(region, limits) && padding_is_zero(frame, prefix)).then_some(frame.len())
    }

    fn remember(&mut self, region: &[u8], header: &FrameHeader<'_>, limits: &Limits) {
        self.region.clear();
        self.region.extend_from_slice(region);
        let strings = [
            header.dest_name,
            header.dest_addr,
            header.sender.name(),
            header.sender.addr(),
        ];
        // Each fits: together they are shorter than the region.
        for (kept, string) in self.strings.iter_mut().zip(strings) {
            kept.clear();
            kept.push_str(string);
        }
        self.kind = header.kind;
        self.flags = header.flags;
        self.sender_kind = header.sender.kind();
        self.limits = *limits;
    }

    /// The remembered header's fields with `message_id` and `dest_port`
    /// read from `root`.
    #[inline]
    fn fields(&self, root: &[u8; HEADER_ROOT_LEN]) -> FrameHeader<'_> {
        let [dest_name, dest_addr, sender_name, sender_addr] = &self.strings;
        let (message_id, dest_port) = crate::layout::message_id_and_port(root);
        FrameHeader {
            kind: self.kind,
            flags: self.flags,
            message_id,
            dest_name,
            dest_port,
            dest_addr,
            sender: Sender::from_parts(self.sender_kind, sender_name, sender_addr),
        }
    }
}

/// `a == b` for short slices of equal length, 8 bytes at a time (header
/// regions are a few dozen bytes: a `memcmp` call costs more than the
/// comparison).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    if len < 8 {
        return a == b;
    }
    // Whole words, then the last 8 bytes as one more word (overlapping the
    // previous one when the length is not a multiple of 8): no byte loop
    // and no `memcmp` call for the tail.
    let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().expect("8 bytes"));
    let mut differ = word(&a[len - 8..]) ^ word(&b[len - 8..]);
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        differ |= word(x) ^ word(y);
    }
    differ == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameHeader;

    fn archived(header: &FrameHeader<'_>) -> Vec<u8> {
        let mut bytes = vec![0u8; header.archived_len()];
        header.write_archived(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn repeats_differing_only_in_id_and_port_hit_the_memo() {
        let limits = Limits::DEFAULT;
        let mut memo = HeaderMemo::new();
        let sender = Sender::Proc {
            addr: "",
            name: "pinger",
        };
        let first = FrameHeader {
            sender,
            ..FrameHeader::data("counter", 1)
        };
        let again = FrameHeader {
            dest_port: 9,
            ..FrameHeader::data("counter", 2)
        };
        let again = FrameHeader { sender, ..again };
        let bytes = archived(&first);
        assert_eq!(memo.check(&bytes, &limits).unwrap(), first);
        assert_eq!(memo.hits(), 0);
        let bytes = archived(&again);
        assert_eq!(memo.check(&bytes, &limits).unwrap(), again);
        assert_eq!(memo.hits(), 1);
    }

    #[test]
    fn any_other_difference_is_validated_again() {
        let limits = Limits::DEFAULT;
        let mut memo = HeaderMemo::new();
        let base = FrameHeader::data("counter", 1);
        memo.check(&archived(&base), &limits).unwrap();
        let others = [
            FrameHeader::data("counteR", 1),
            FrameHeader {
                flags: Flags::RETURN_UNDELIVERABLE,
                ..base
            },
            FrameHeader {
                flags: Flags::NONE.with_hops(1),
                ..base
            },
            FrameHeader {
                kind: FrameKind::ControlRequest,
                ..base
            },
            FrameHeader {
                sender: Sender::Client { name: "c" },
                ..base
            },
        ];
        for other in others {
            assert_eq!(memo.check(&archived(&other), &limits).unwrap(), other);
        }
        assert_eq!(memo.hits(), 0);
        // Different limits: the name no longer fits, and the memo must not
        // answer for the old limits.
        memo.check(&archived(&base), &limits).unwrap();
        let tight = Limits {
            max_name_len: 3,
            ..limits
        };
        assert!(memo.check(&archived(&base), &tight).is_err());
    }

    #[test]
    fn a_different_hop_count_is_not_a_repeat() {
        let limits = Limits::DEFAULT;
        let mut memo = HeaderMemo::new();
        let at_hop = |hops, id| FrameHeader {
            flags: Flags::RETURN_UNDELIVERABLE.with_hops(hops),
            ..FrameHeader::data("counter", id)
        };
        // Each answer carries its own frame's count, whatever the memo held.
        for (hops, id, hit) in [(0, 1, false), (0, 2, true), (1, 3, false), (1, 4, true)] {
            let header = at_hop(hops, id);
            let hits = memo.hits();
            let region = archived(&header);
            let (fields, repeated) = memo.check_repeat(&region, &limits).unwrap();
            assert_eq!((fields, repeated), (header, hit), "hops {hops}, id {id}");
            assert_eq!(fields.flags.hops(), hops);
            assert_eq!(memo.hits(), hits + u64::from(hit));
        }
        // A hop count other than the memo's, in a copy of the remembered
        // region, is validated in full and read from the region.
        let mut region = archived(&at_hop(1, 5));
        let hops_at = region.len() - HEADER_ROOT_LEN + 13;
        region[hops_at] = 200;
        assert!(!memo.repeats(&region, &limits));
        assert_eq!(memo.check(&region, &limits).unwrap(), at_hop(200, 5));
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let base: Vec<u8> = (0..40).collect();
        for len in 0..40 {
            assert!(same_bytes(&base[..len], &base[..len]));
            for at in 0..len {
                let mut other = base[..len].to_vec();
                other[at] ^= 0x40;
                assert!(!same_bytes(&base[..len], &other), "len {len}, byte {at}");
            }
        }
        assert!(!same_bytes(&base[..3], &base[..4]));
    }

    #[test]
    fn a_damaged_repeat_is_refused() {
        let limits = Limits::DEFAULT;
        let mut memo = HeaderMemo::new();
        let bytes = archived(&FrameHeader::data("counter", 1));
        memo.check(&bytes, &limits).unwrap();
        let mut bad = bytes.clone();
        bad[0] = b'.'; // the name may not start with '.'
        assert!(memo.check(&bad, &limits).is_err());
        let mut bad = bytes.clone();
        let kind_at = bad.len() - HEADER_ROOT_LEN + 14;
        bad[kind_at] = 9;
        assert!(memo.check(&bad, &limits).is_err());
        // The memo still knows the good one.
        memo.check(&bytes, &limits).unwrap();
        assert_eq!(memo.hits(), 1);
    }
}
