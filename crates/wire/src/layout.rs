//! The archived routing header read and written by hand, byte by byte.
//!
//! [`ArchivedRoutingHeader`](crate::ArchivedRoutingHeader) is an rkyv type
//! with a fixed, canonical layout (see its docs and `docs/wire.md`): the
//! four strings back to back at offset 0, zero padding to 8, then a 32-byte
//! little-endian root whose `ArchivedBox<str>` points back at offset 0.
//! Because only that one layout is accepted, the header can be checked and
//! read with a handful of fixed-offset loads instead of rkyv's generic
//! validator (subtree claims, a relative-pointer walk), and written with a
//! few copies instead of rkyv's serializer. This is the per-frame hot path
//! of the host and of every proc.
//!
//! The hand-written code must agree with rkyv exactly: the rkyv-based
//! reference implementations (`header::check_header_bytecheck`,
//! `FrameHeader::write_archived_rkyv`) stay in the crate, and tests plus
//! the `wire_header` fuzz target compare the two on every input: the same
//! accept/reject decision, the same fields, the same bytes.

use crate::header::{archived_len_for, check_fields, invalid_header};
use crate::{FrameHeader, FrameKind, Limits, Sender, SenderKind, WireError, HEADER_ROOT_LEN};

/// Offsets inside the 32-byte root.
pub(crate) const MESSAGE_ID: usize = 0;
const DEST_PORT: usize = 8;
const FLAGS: usize = 12;
/// The high byte of the little-endian `flags`: the hop count.
pub(crate) const HOPS: usize = FLAGS + 1;
const KIND: usize = 14;
const SENDER_KIND: usize = 15;
const LENGTHS: usize = 16;
/// The `ArchivedBox<str>`: an `i32` offset relative to this position, then
/// the `u32` text length.
const TEXT_OFFSET: usize = 24;
const TEXT_LEN: usize = 28;
/// Root bytes from here on (flags, kinds, lengths, text pointer) decide
/// validity and routing; the two fields before it (`message_id`,
/// `dest_port`) may take any value.
pub(crate) const ROOT_ROUTING_FIELDS: usize = FLAGS;

/// The two free fields of a root: `message_id` and `dest_port`.
#[inline]
pub(crate) fn message_id_and_port(root: &[u8; HEADER_ROOT_LEN]) -> (u64, u32) {
    let mut id = [0u8; 8];
    id.copy_from_slice(&root[MESSAGE_ID..MESSAGE_ID + 8]);
    (u64::from_le_bytes(id), u32_at(root, DEST_PORT))
}

#[inline]
fn u16_at(root: &[u8; HEADER_ROOT_LEN], at: usize) -> u16 {
    u16::from_le_bytes([root[at], root[at + 1]])
}

#[inline]
fn u32_at(root: &[u8; HEADER_ROOT_LEN], at: usize) -> u32 {
    u32::from_le_bytes([root[at], root[at + 1], root[at + 2], root[at + 3]])
}

#[inline]
fn frame_kind(tag: u8) -> Option<FrameKind> {
    Some(match tag {
        0 => FrameKind::Data,
        1 => FrameKind::Undeliverable,
        2 => FrameKind::ControlRequest,
        3 => FrameKind::ControlResponse,
        _ => return None,
    })
}

#[inline]
fn sender_kind(tag: u8) -> Option<SenderKind> {
    Some(match tag {
        0 => SenderKind::Anonymous,
        1 => SenderKind::Client,
        2 => SenderKind::Proc,
        _ => return None,
    })
}

/// Validates an archived header region (exactly `header_len` bytes) and
/// returns its fields borrowed from it.
///
/// Accepts exactly what rkyv's bytecheck followed by the canonical-layout
/// and field checks accepts (`header::check_header_bytecheck`, for regions
/// at an 8-byte aligned address): enum tags in range, the text at offset 0
/// and inside the region, string lengths that add up to it, the exact
/// length, zero padding, UTF-8 split on character boundaries, then the
/// field rules of [`FrameHeader::validate`].
#[inline]
pub(crate) fn check_header<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<FrameHeader<'a>, WireError> {
    let len = bytes.len();
    let Some(root) = bytes.last_chunk::<HEADER_ROOT_LEN>() else {
        return Err(invalid_header(format!(
            "header is {len} bytes, shorter than its {HEADER_ROOT_LEN}-byte root"
        )));
    };
    let Some(kind) = frame_kind(root[KIND]) else {
        return Err(invalid_header(format!(
            "unknown frame kind tag {}",
            root[KIND]
        )));
    };
    let Some(sender) = sender_kind(root[SENDER_KIND]) else {
        return Err(invalid_header(format!(
            "unknown sender kind tag {}",
            root[SENDER_KIND]
        )));
    };
    // The text's offset is relative to the offset field itself, which sits
    // at `len - 8`; the canonical text starts at 0.
    let text_offset = i64::from(u32_at(root, TEXT_OFFSET) as i32);
    if text_offset != -((len - HEADER_ROOT_LEN + TEXT_OFFSET) as i64) {
        return Err(invalid_header("header text does not start at offset 0"));
    }
    let text_len = u32_at(root, TEXT_LEN) as usize;
    if text_len > len - HEADER_ROOT_LEN {
        return Err(invalid_header("header text runs into its root"));
    }
    let lengths = [
        usize::from(u16_at(root, LENGTHS)),
        usize::from(u16_at(root, LENGTHS + 2)),
        usize::from(u16_at(root, LENGTHS + 4)),
        usize::from(u16_at(root, LENGTHS + 6)),
    ];
    if lengths.iter().sum::<usize>() != text_len {
        return Err(invalid_header(
            "string lengths do not add up to the text length",
        ));
    }
    let expected = archived_len_for(text_len);
    if len != expected {
        return Err(WireError::HeaderTrailingBytes { len, expected });
    }
    if bytes[text_len..len - HEADER_ROOT_LEN]
        .iter()
        .any(|&b| b != 0)
    {
        return Err(invalid_header("padding before the root is not zero"));
    }
    let Ok(text) = std::str::from_utf8(&bytes[..text_len]) else {
        return Err(invalid_header("header text is not valid UTF-8"));
    };
    // Split the text once; a length that splits a UTF-8 character fails here.
    let mut strings = [""; 4];
    let mut start = 0;
    for (string, len) in strings.iter_mut().zip(lengths) {
        *string = text
            .get(start..start + len)
            .ok_or_else(|| invalid_header("a string length splits a UTF-8 character"))?;
        start += len;
    }
    let [dest_name, dest_addr, sender_name, sender_addr] = strings;
    let flags = u16_at(root, FLAGS);
    let (message_id, dest_port) = message_id_and_port(root);
    check_fields(
        kind,
        flags,
        dest_name,
        dest_addr,
        sender,
        sender_name,
        sender_addr,
        limits,
    )?;
    Ok(FrameHeader {
        kind,
        // check_fields refused unknown bits.
        flags: crate::Flags::from_bits(flags).unwrap_or_default(),
        message_id,
        dest_name,
        dest_port,
        dest_addr,
        sender: Sender::from_parts(sender, sender_name, sender_addr),
    })
}

/// Writes `header` in archived form into `out`, which must be exactly
/// [`FrameHeader::archived_len`] bytes (the caller checked it) and whose
/// fields passed [`FrameHeader::validate`] (so every string length fits a
/// `u16` and the whole header an `i32` offset). Produces the very bytes
/// rkyv's serializer does.
#[inline]
pub(crate) fn write_header(header: &FrameHeader<'_>, out: &mut [u8]) {
    let strings = [
        header.dest_name,
        header.dest_addr,
        header.sender.name(),
        header.sender.addr(),
    ];
    let mut at = 0;
    let mut lengths = [0u8; 8];
    for (index, string) in strings.iter().enumerate() {
        out[at..at + string.len()].copy_from_slice(string.as_bytes());
        at += string.len();
        lengths[2 * index..2 * index + 2].copy_from_slice(&(string.len() as u16).to_le_bytes());
    }
    let root_at = out.len() - HEADER_ROOT_LEN;
    out[at..root_at].fill(0);
    let root = &mut out[root_at..];
    root[MESSAGE_ID..MESSAGE_ID + 8].copy_from_slice(&header.message_id.to_le_bytes());
    root[DEST_PORT..DEST_PORT + 4].copy_from_slice(&header.dest_port.to_le_bytes());
    root[FLAGS..FLAGS + 2].copy_from_slice(&header.flags.bits().to_le_bytes());
    root[KIND] = header.kind as u8;
    root[SENDER_KIND] = header.sender.kind() as u8;
    root[LENGTHS..LENGTHS + 8].copy_from_slice(&lengths);
    let text_offset = -((root_at + TEXT_OFFSET) as i64) as i32;
    root[TEXT_OFFSET..TEXT_OFFSET + 4].copy_from_slice(&text_offset.to_le_bytes());
    root[TEXT_LEN..TEXT_LEN + 4].copy_from_slice(&(at as u32).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::fuzzing::wire_header;
    use crate::{Flags, FrameHeader, FrameKind, Sender};

    /// Hop counts: mostly the small ones hosts write, sometimes any.
    fn hops() -> impl Strategy<Value = u8> {
        prop_oneof![Just(0u8), 1u8..=crate::DEFAULT_MAX_HOPS, any::<u8>()]
    }

    /// Headers of every kind and sender shape, hop count, with ASCII and non-ASCII
    /// addresses (a Unix path may hold any UTF-8).
    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        let name = "[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}";
        let addr = prop_oneof![
            Just(String::new()),
            "tcp:[a-z0-9.-]{1,12}:[1-9][0-9]{0,3}",
            "unix:/[a-zé€/._-]{0,20}",
        ];
        let kind = (0u8..4).prop_map(|tag| match tag {
            0 => FrameKind::Data,
            1 => FrameKind::Undeliverable,
            2 => FrameKind::ControlRequest,
            _ => FrameKind::ControlResponse,
        });
        (
            any::<u64>(),
            any::<u32>(),
            (any::<bool>(), hops()),
            kind,
            name,
            addr.clone(),
            0u8..3,
            name,
            addr,
        )
            .prop_map(
                |(
                    message_id,
                    dest_port,
                    (ret, hops),
                    kind,
                    dest,
                    dest_addr,
                    sender,
                    name,
                    addr,
                )| {
                    let header = FrameHeader {
                        kind,
                        flags: if ret {
                            Flags::RETURN_UNDELIVERABLE
                        } else {
                            Flags::NONE
                        }
                        .with_hops(hops),
                        message_id,
                        dest_name: &dest,
                        dest_port,
                        dest_addr: &dest_addr,
                        sender: match sender {
                            0 => Sender::Anonymous,
                            1 => Sender::Client { name: &name },
                            _ => Sender::Proc {
                                addr: &addr,
                                name: &name,
                            },
                        },
                    };
                    let mut bytes = vec![0u8; header.archived_len()];
                    header.write_archived_rkyv(&mut bytes).unwrap();
                    bytes
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Valid headers: both validators accept with the same fields and
        /// both encoders reproduce the bytes (`wire_header` asserts it).
        #[test]
        fn hand_written_layout_agrees_with_rkyv_on_valid_headers(bytes in header_bytes()) {
            wire_header(&bytes);
            let limits = crate::Limits { max_name_len: 64, max_header_len: 512, ..crate::Limits::default() };
            prop_assert!(super::check_header(&bytes, &limits).is_ok());
        }

        /// Damaged headers: one to three bytes changed, or the region cut
        /// or extended; the validators must still agree.
        #[test]
        fn hand_written_validator_agrees_with_bytecheck_on_damaged_headers(
            bytes in header_bytes(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            resize in prop_oneof![Just(0isize), -9isize..9],
        ) {
            let original = bytes.clone();
            let mut bytes = bytes;
            for (at, value) in edits {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            let new_len = (bytes.len() as isize + resize).max(0) as usize;
            bytes.resize(new_len, 0);
            wire_header(&bytes);
            // A memo that remembers the undamaged header must answer for the
            // damaged one exactly as a full check does.
            let limits = crate::Limits { max_name_len: 64, max_header_len: 512, ..crate::Limits::default() };
            let mut memo = crate::HeaderMemo::new();
            prop_assert!(memo.check(&original, &limits).is_ok());
            let direct = super::check_header(&bytes, &limits);
            let memoised = memo.check(&bytes, &limits);
            prop_assert_eq!(direct.is_ok(), memoised.is_ok());
            if let (Ok(direct), Ok(memoised)) = (direct, memoised) {
                prop_assert_eq!(direct, memoised);
            }
        }

        /// Arbitrary bytes, mostly rejected by both.
        #[test]
        fn hand_written_validator_agrees_with_bytecheck_on_garbage(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            wire_header(&bytes);
        }
    }
}
