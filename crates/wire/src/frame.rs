//! The frame: 16-byte prefix, archived routing header, payload, padding.
//!
//! ```text
//! offset 0                16               16+H'             16+H'+P'
//!        | prefix (16 B)  | header (H B)+pad | payload (P B)+pad |
//! H' = H rounded up to 16, P' = P rounded up to 16, frame_len = 16 + H' + P'
//! ```
//!
//! Every frame is a multiple of 16 bytes long and its header and payload start
//! at 16-byte offsets, so in any buffer whose start is 16-byte aligned every
//! frame, header and payload is 16-byte aligned too.

use std::ops::Range;

use crate::header::{FrameHeader, Sender};
use crate::layout::check_header;
use crate::memo::HeaderMemo;
use crate::{Flags, FrameKind, Limits, WireError};

/// Length of the fixed frame prefix.
pub const PREFIX_LEN: usize = 16;
/// Alignment of frames, headers and payloads, and granularity of frame lengths.
pub const FRAME_ALIGN: usize = 16;
/// The two magic bytes at prefix offset 12 (`"hm"`).
pub const MAGIC: [u8; 2] = *b"hm";
/// The protocol version at prefix offset 14.
pub const VERSION: u8 = 1;

pub(crate) const fn align16(n: usize) -> usize {
    (n + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// The decoded 16-byte frame prefix.
///
/// Layout (all integers little-endian): `frame_len: u32` at 0, `header_len:
/// u32` at 4, `payload_len: u32` at 8, magic `b"hm"` at 12, version `1` at 14,
/// a reserved zero byte at 15.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePrefix {
    header_len: u32,
    payload_len: u32,
}

impl FramePrefix {
    /// Parses and checks a prefix against `limits`. Needs at least 16 bytes;
    /// reads only the first 16. This is the check that happens before the
    /// decoder buffers the rest of a frame.
    #[inline]
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Self, WireError> {
        let Some(prefix) = bytes.first_chunk::<PREFIX_LEN>() else {
            return Err(WireError::Truncated {
                needed: PREFIX_LEN,
                available: bytes.len(),
            });
        };
        let word = |at: usize| {
            u32::from_le_bytes([prefix[at], prefix[at + 1], prefix[at + 2], prefix[at + 3]])
        };
        let (frame_len, header_len, payload_len) = (word(0), word(4), word(8));
        if prefix[12..14] != MAGIC {
            return Err(WireError::MalformedPrefix {
                reason: "magic bytes are not \"hm\"",
            });
        }
        if prefix[14] != VERSION {
            return Err(WireError::MalformedPrefix {
                reason: "unsupported protocol version",
            });
        }
        if prefix[15] != 0 {
            return Err(WireError::MalformedPrefix {
                reason: "reserved byte is not zero",
            });
        }
        let max_frame = limits.max_frame_len.min(u32::MAX as usize);
        if frame_len as usize > max_frame {
            return Err(WireError::FrameTooLong {
                len: frame_len as usize,
                max: max_frame,
            });
        }
        if frame_len as usize % FRAME_ALIGN != 0 {
            return Err(WireError::Misaligned {
                what: "frame length",
                value: frame_len as usize,
                align: FRAME_ALIGN,
            });
        }
        if header_len as usize > limits.max_header_len {
            return Err(WireError::HeaderTooLong {
                len: header_len as usize,
                max: limits.max_header_len,
            });
        }
        if header_len as usize % crate::HEADER_ALIGN != 0 {
            return Err(WireError::Misaligned {
                what: "header length",
                value: header_len as usize,
                align: crate::HEADER_ALIGN,
            });
        }
        let this = Self {
            header_len,
            payload_len,
        };
        // u64 arithmetic: both lengths may be near u32::MAX.
        let implied = PREFIX_LEN as u64
            + align16(header_len as usize) as u64
            + (payload_len as u64).next_multiple_of(FRAME_ALIGN as u64);
        if implied != u64::from(frame_len) {
            return Err(WireError::MalformedPrefix {
                reason: "frame length disagrees with header and payload lengths",
            });
        }
        Ok(this)
    }

    /// The prefix for a frame with these lengths, checked against `limits`.
    #[inline]
    pub fn for_lengths(
        header_len: usize,
        payload_len: usize,
        limits: &Limits,
    ) -> Result<Self, WireError> {
        if header_len > limits.max_header_len {
            return Err(WireError::HeaderTooLong {
                len: header_len,
                max: limits.max_header_len,
            });
        }
        let max_frame = limits.max_frame_len.min(u32::MAX as usize);
        let frame_len = PREFIX_LEN
            .saturating_add(align16(header_len))
            .saturating_add(payload_len.saturating_add(FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1));
        if frame_len > max_frame {
            return Err(WireError::FrameTooLong {
                len: frame_len,
                max: max_frame,
            });
        }
        Ok(Self {
            header_len: header_len as u32,
            payload_len: payload_len as u32,
        })
    }

    /// Total frame length: prefix, header, payload and padding.
    #[inline]
    pub fn frame_len(&self) -> usize {
        PREFIX_LEN + align16(self.header_len as usize) + align16(self.payload_len as usize)
    }

    /// Length of the archived header (without padding).
    #[inline]
    pub fn header_len(&self) -> usize {
        self.header_len as usize
    }

    /// Length of the payload (without padding).
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.payload_len as usize
    }

    /// Offset of the payload from the start of the frame (a multiple of 16).
    #[inline]
    pub fn payload_offset(&self) -> usize {
        PREFIX_LEN + align16(self.header_len as usize)
    }

    /// Byte range of the payload within the frame.
    #[inline]
    pub fn payload_range(&self) -> Range<usize> {
        self.payload_offset()..self.payload_offset() + self.payload_len()
    }

    /// The 16 prefix bytes.
    #[inline]
    pub fn to_bytes(&self) -> [u8; PREFIX_LEN] {
        let mut out = [0; PREFIX_LEN];
        out[0..4].copy_from_slice(&(self.frame_len() as u32).to_le_bytes());
        out[4..8].copy_from_slice(&self.header_len.to_le_bytes());
        out[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        out[12..14].copy_from_slice(&MAGIC);
        out[14] = VERSION;
        out
    }
}

/// The exact encoded length of a frame with this header and payload length.
#[inline]
pub fn encoded_len(header: &FrameHeader<'_>, payload_len: usize) -> usize {
    PREFIX_LEN + align16(header.archived_len()) + align16(payload_len)
}

/// Writes the prefix, archived header and all padding of a frame into the
/// start of `out`, leaving the payload bytes (`prefix.payload_range()`) for the
/// caller to fill, e.g. straight from a socket. Allocates nothing.
#[inline]
pub fn encode_frame_head(
    out: &mut [u8],
    header: &FrameHeader<'_>,
    payload_len: usize,
    limits: &Limits,
) -> Result<FramePrefix, WireError> {
    header.validate(limits)?;
    let header_len = header.archived_len();
    let prefix = FramePrefix::for_lengths(header_len, payload_len, limits)?;
    let frame_len = prefix.frame_len();
    let Some(out) = out.get_mut(..frame_len) else {
        return Err(WireError::BufferTooSmall {
            needed: frame_len,
            available: out.len(),
        });
    };
    out[..PREFIX_LEN].copy_from_slice(&prefix.to_bytes());
    header.write_archived(&mut out[PREFIX_LEN..PREFIX_LEN + header_len])?;
    out[PREFIX_LEN + header_len..prefix.payload_offset()].fill(0);
    out[prefix.payload_range().end..].fill(0);
    Ok(prefix)
}

/// Encodes a whole frame into the start of `out` and returns its length.
/// Allocates nothing.
#[inline]
pub fn encode_frame(
    out: &mut [u8],
    header: &FrameHeader<'_>,
    payload: &[u8],
    limits: &Limits,
) -> Result<usize, WireError> {
    let prefix = encode_frame_head(out, header, payload.len(), limits)?;
    out[prefix.payload_range()].copy_from_slice(payload);
    Ok(prefix.frame_len())
}

/// Appends a whole frame to `out` and returns its byte range there. Allocates
/// only when `out` must grow; reuse the vector to encode without allocating.
/// Frame boundaries stay at multiples of 16 from the vector's start if they
/// were before.
pub fn encode_frame_to_vec(
    out: &mut Vec<u8>,
    header: &FrameHeader<'_>,
    payload: &[u8],
    limits: &Limits,
) -> Result<Range<usize>, WireError> {
    let start = out.len();
    let frame_len = encoded_len(header, payload.len());
    // Check limits first so a hostile length never reaches `resize`.
    header.validate(limits)?;
    FramePrefix::for_lengths(header.archived_len(), payload.len(), limits)?;
    out.resize(start + frame_len, 0);
    match encode_frame(&mut out[start..], header, payload, limits) {
        Ok(len) => Ok(start..start + len),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// A validated frame borrowed from a buffer: the header's fields (strings
/// borrowed from the archived header in place) plus the payload slice.
/// Nothing is copied or allocated to produce it.
#[derive(Debug, Clone, Copy)]
pub struct FrameView<'a> {
    bytes: &'a [u8],
    header: FrameHeader<'a>,
    prefix: FramePrefix,
    repeats_previous_header: bool,
}

impl<'a> FrameView<'a> {
    /// The whole frame, prefix and padding included: what to copy into a ring
    /// slot or onto another connection unchanged.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The frame's prefix.
    pub fn prefix(&self) -> FramePrefix {
        self.prefix
    }

    /// The header's fields, borrowed from the frame.
    #[inline]
    pub fn fields(&self) -> FrameHeader<'a> {
        self.header
    }

    /// True if the header was recognised by a [`HeaderMemo`] as repeating
    /// the one it validated last (every byte the same but `message_id` and
    /// `dest_port`). From a [`FrameDecoder`](crate::FrameDecoder) that means:
    /// the same destination, sender, kind and flags as the frame before it
    /// on this stream, so a caller may reuse a routing decision it made for
    /// that frame (while its own state is unchanged). Always false for
    /// frames decoded without a memo.
    #[inline]
    pub fn repeats_previous_header(&self) -> bool {
        self.repeats_previous_header
    }

    /// The opaque payload (16-byte aligned if the frame is).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.prefix.payload_range()]
    }

    /// What the frame carries.
    #[inline]
    pub fn kind(&self) -> FrameKind {
        self.header.kind
    }

    /// The flag bits and hop count.
    #[inline]
    pub fn flags(&self) -> Flags {
        self.header.flags
    }

    /// The hop count: how many times hosts have forwarded the frame over a
    /// link so far ([`Flags::hops`]).
    #[inline]
    pub fn hops(&self) -> u8 {
        self.header.flags.hops()
    }

    /// The sender's message id.
    #[inline]
    pub fn message_id(&self) -> u64 {
        self.header.message_id
    }

    /// The destination proc name, for routing-table lookups.
    #[inline]
    pub fn dest_name(&self) -> &'a str {
        self.header.dest_name
    }

    /// The destination proc name as bytes.
    #[inline]
    pub fn dest_name_bytes(&self) -> &'a [u8] {
        self.header.dest_name.as_bytes()
    }

    /// The port inside the destination proc.
    #[inline]
    pub fn dest_port(&self) -> u32 {
        self.header.dest_port
    }

    /// The destination host address; empty means the receiving host.
    #[inline]
    pub fn dest_addr(&self) -> &'a str {
        self.header.dest_addr
    }

    /// Who sent the frame.
    #[inline]
    pub fn sender(&self) -> Sender<'a> {
        self.header.sender
    }
}

/// Checks alignment of a frame's memory address: the header and payload are
/// accessed in place, so the frame must start on a 16-byte boundary.
#[inline]
fn check_address(bytes: &[u8]) -> Result<(), WireError> {
    let addr = bytes.as_ptr() as usize;
    if addr % FRAME_ALIGN != 0 {
        return Err(WireError::Misaligned {
            what: "frame buffer address",
            value: addr,
            align: FRAME_ALIGN,
        });
    }
    Ok(())
}

/// True if `region[used..]` is all zero, where `region` is a multiple of 16
/// long and the padding (`region.len() - used`) is shorter than 16 bytes:
/// one 16-byte load instead of a byte loop.
#[inline]
fn tail_is_zero(region: &[u8], used: usize) -> bool {
    let padding = region.len() - used;
    if padding == 0 {
        return true;
    }
    let Some(last) = region.last_chunk::<FRAME_ALIGN>() else {
        return false;
    };
    let used_in_last = FRAME_ALIGN - padding;
    u128::from_le_bytes(*last) >> (8 * used_in_last) == 0
}

/// True if the padding after the header and after the payload of the
/// frame `bytes` (exactly `prefix.frame_len()` long) is all zero.
#[inline]
pub(crate) fn padding_is_zero(bytes: &[u8], prefix: FramePrefix) -> bool {
    let header_end = PREFIX_LEN + prefix.header_len();
    tail_is_zero(&bytes[..prefix.payload_offset()], header_end)
        && tail_is_zero(bytes, prefix.payload_range().end)
}

/// Validates the frame at the start of `bytes` (length already known to be
/// at least `prefix.frame_len()`), through `memo` if given.
#[inline]
pub(crate) fn view_frame<'a>(
    bytes: &'a [u8],
    prefix: FramePrefix,
    limits: &Limits,
    memo: Option<&'a mut HeaderMemo>,
) -> Result<FrameView<'a>, WireError> {
    let bytes = &bytes[..prefix.frame_len()];
    let header_end = PREFIX_LEN + prefix.header_len();
    let region = &bytes[PREFIX_LEN..header_end];
    let (header, repeats_previous_header) = match memo {
        Some(memo) => memo.check_repeat(region, limits)?,
        None => (check_header(region, limits)?, false),
    };
    if !padding_is_zero(bytes, prefix) {
        return Err(WireError::InvalidHeader {
            reason: "frame padding after the header or payload is not zero".to_owned(),
        });
    }
    Ok(FrameView {
        bytes,
        header,
        prefix,
        repeats_previous_header,
    })
}

/// The message id of an encoded frame, read from its header's fixed root
/// without validating the header again (decode the frame first: this is
/// for a frame already known valid, such as a repeat of a decoded
/// header: the prefix is not checked again, only the bounds). `None` if
/// the header is not all there.
///
/// ```
/// use hostmux_wire::{encode_frame_to_vec, frame_message_id, FrameHeader, Limits};
///
/// let limits = Limits::default();
/// let mut bytes = Vec::new();
/// encode_frame_to_vec(&mut bytes, &FrameHeader::data("echo", 42), b"hi", &limits)?;
/// assert_eq!(frame_message_id(&bytes), Some(42));
/// # Ok::<(), hostmux_wire::WireError>(())
/// ```
#[inline]
pub fn frame_message_id(frame: &[u8]) -> Option<u64> {
    let header_len = u32::from_le_bytes(frame.get(4..8)?.try_into().ok()?) as usize;
    let header_end = PREFIX_LEN.checked_add(header_len)?;
    let root = header_end
        .checked_sub(crate::HEADER_ROOT_LEN)
        .filter(|&root| root >= PREFIX_LEN)?;
    let id = frame.get(root..root + 8)?;
    Some(u64::from_le_bytes(id.try_into().ok()?))
}

/// Sets the hop count of the encoded frame at the start of `frame` in
/// place: the one byte a host changes when it forwards a frame over a link
/// to another host, without re-encoding it (see [`Flags::hops`]). Any hop
/// count is valid, so a frame that decoded before still decodes, with only
/// its hop count changed, and stays canonical.
///
/// Checks the prefix against `limits` and that the whole frame is there;
/// it does not validate the header again (decode the frame first).
///
/// ```
/// use hostmux_wire::rkyv::util::AlignedVec;
/// use hostmux_wire::{decode_frame, encode_frame_to_vec, set_frame_hops, FrameHeader, Limits};
///
/// let limits = Limits::default();
/// let mut bytes = Vec::new();
/// encode_frame_to_vec(&mut bytes, &FrameHeader::data("echo", 1), b"hi", &limits)?;
/// let mut frame = AlignedVec::<16>::new();
/// frame.extend_from_slice(&bytes);
/// let hops = decode_frame(&frame, &limits)?.hops();
/// set_frame_hops(&mut frame, hops + 1, &limits)?;
/// assert_eq!(decode_frame(&frame, &limits)?.hops(), 1);
/// # Ok::<(), hostmux_wire::WireError>(())
/// ```
pub fn set_frame_hops(frame: &mut [u8], hops: u8, limits: &Limits) -> Result<(), WireError> {
    let root = header_root_offset(frame, limits)?;
    frame[root + crate::layout::HOPS] = hops;
    Ok(())
}

/// Where the message id of the encoded frame at the start of `frame` is
/// (8 bytes, little-endian): a client that sends one encoded frame many
/// times writes a fresh id there each time instead of encoding it again
/// (docs/wire.md: a fresh id per frame that may be answered). Any id is
/// valid, so the frame still decodes, with only its id changed.
///
/// Checks the prefix against `limits` and that the whole frame is there;
/// it does not validate the header again (encode or decode it first).
///
/// ```
/// use hostmux_wire::{encode_frame_to_vec, frame_message_id, frame_message_id_offset};
/// use hostmux_wire::{FrameHeader, Limits};
///
/// let limits = Limits::default();
/// let mut bytes = Vec::new();
/// encode_frame_to_vec(&mut bytes, &FrameHeader::data("echo", 1), b"hi", &limits)?;
/// let at = frame_message_id_offset(&bytes, &limits)?;
/// bytes[at..at + 8].copy_from_slice(&77u64.to_le_bytes());
/// assert_eq!(frame_message_id(&bytes), Some(77));
/// # Ok::<(), hostmux_wire::WireError>(())
/// ```
pub fn frame_message_id_offset(frame: &[u8], limits: &Limits) -> Result<usize, WireError> {
    Ok(header_root_offset(frame, limits)? + crate::layout::MESSAGE_ID)
}

/// Where the header's fixed root starts in the whole encoded frame at the
/// start of `frame` (prefix checked against `limits`).
fn header_root_offset(frame: &[u8], limits: &Limits) -> Result<usize, WireError> {
    let prefix = FramePrefix::parse(frame, limits)?;
    if frame.len() < prefix.frame_len() {
        return Err(WireError::Truncated {
            needed: prefix.frame_len(),
            available: frame.len(),
        });
    }
    (PREFIX_LEN + prefix.header_len())
        .checked_sub(crate::HEADER_ROOT_LEN)
        .filter(|&root| root >= PREFIX_LEN)
        .ok_or_else(|| crate::header::invalid_header("header is shorter than its root"))
}

/// Decodes and validates exactly one frame occupying all of `bytes`, e.g. one
/// record of a shared-memory ring. `bytes` must start on a 16-byte boundary.
#[inline]
pub fn decode_frame<'a>(bytes: &'a [u8], limits: &Limits) -> Result<FrameView<'a>, WireError> {
    decode_frame_inner(bytes, limits, None)
}

/// [`decode_frame`] that validates the header through `memo`: a header
/// that repeats the previous one except for its message id and port is
/// recognised without validating it again (see [`HeaderMemo`]). The
/// frame's strings then borrow from the memo.
#[inline]
pub fn decode_frame_memo<'a>(
    bytes: &'a [u8],
    limits: &Limits,
    memo: &'a mut HeaderMemo,
) -> Result<FrameView<'a>, WireError> {
    decode_frame_inner(bytes, limits, Some(memo))
}

#[inline]
fn decode_frame_inner<'a>(
    bytes: &'a [u8],
    limits: &Limits,
    memo: Option<&'a mut HeaderMemo>,
) -> Result<FrameView<'a>, WireError> {
    let (frame, rest) = split_frame_inner(bytes, limits, memo)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes {
            len: bytes.len(),
            frame_len: frame.as_bytes().len(),
        });
    }
    Ok(frame)
}

/// Decodes the first frame of a batch buffer and returns it with the bytes
/// after it. `bytes` must start on a 16-byte boundary; the rest then does too.
#[inline]
pub fn split_frame<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<(FrameView<'a>, &'a [u8]), WireError> {
    split_frame_inner(bytes, limits, None)
}

#[inline]
fn split_frame_inner<'a>(
    bytes: &'a [u8],
    limits: &Limits,
    memo: Option<&'a mut HeaderMemo>,
) -> Result<(FrameView<'a>, &'a [u8]), WireError> {
    check_address(bytes)?;
    let prefix = FramePrefix::parse(bytes, limits)?;
    if bytes.len() < prefix.frame_len() {
        return Err(WireError::Truncated {
            needed: prefix.frame_len(),
            available: bytes.len(),
        });
    }
    let frame = view_frame(bytes, prefix, limits, memo)?;
    Ok((frame, &bytes[prefix.frame_len()..]))
}
