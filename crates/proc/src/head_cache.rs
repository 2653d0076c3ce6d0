//! The proc's cache of its last data frame head, so that repeated sends to
//! one destination neither validate names nor lay the header out again.

use hostmux_wire::{
    encode_frame_head, FramePrefix, Limits, ProcName, FRAME_ALIGN, HEADER_ROOT_LEN, PREFIX_LEN,
};

use crate::dest::Dest;
use crate::lane::pair_lane;
use crate::outbox::data_header;
use crate::ProcError;

/// The head (prefix, archived routing header, padding) of the last data
/// frame this outbox wrote: destination name, address and namespace (proc
/// or client: the `TO_CLIENT` flag), port; kind `Data`, no other flags,
/// this proc as sender. The next data frame with the same
/// destination and port copies it instead of validating both names and
/// laying the header out again: only the message id differs, and it is
/// patched in (and the prefix, if the payload length differs).
///
/// Safe to reuse because a header's bytes are a function of exactly those
/// fields plus the message id, and the bytes were produced (and the names
/// validated) by `hostmux_wire::encode_frame_head`. The cache checks the
/// two layout facts it relies on when it fills (the text starts with the
/// destination name and address; the message id is the root's first
/// eight bytes, little-endian) and stays unused if a future wire layout
/// broke them. A send with another destination refills it (the cost of the
/// old path plus one copy); a failed validation empties it and reports the
/// same typed error as before.
#[derive(Debug)]
pub(crate) struct HeaderCache {
    /// `encode_frame_head` output: the prefix (for `payload_len`), the
    /// archived header at `PREFIX_LEN..PREFIX_LEN + header_len`, zero
    /// padding to the payload offset. Sized once for the largest header
    /// the limits allow.
    head: Box<[u8]>,
    /// Length of the cached header; 0 when nothing is cached.
    header_len: usize,
    /// The payload length the cached prefix describes.
    payload_len: usize,
    dest_name_len: usize,
    dest_addr_len: usize,
    /// The cached head is addressed to a client (`TO_CLIENT`).
    to_client: bool,
    port: u32,
    /// The lane of frames to this destination that answer nothing (the
    /// pair lane of the sender and the destination name; a proc's lane
    /// count never changes, so it stays valid with the head).
    lane: usize,
}

/// A frame head from the [`HeaderCache`]: copy `bytes`, patch the message
/// id at `id_at`, append the payload.
pub(crate) struct CachedHead<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) id_at: usize,
    /// The pair lane of the sender and the destination
    /// ([`pair_lane`](crate::pair_lane)), computed once per fill.
    pub(crate) lane: usize,
}

impl HeaderCache {
    pub(crate) fn new(limits: &Limits) -> Self {
        let room = PREFIX_LEN + limits.max_header_len.next_multiple_of(FRAME_ALIGN);
        Self {
            head: vec![0; room].into_boxed_slice(),
            header_len: 0,
            payload_len: 0,
            dest_name_len: 0,
            dest_addr_len: 0,
            to_client: false,
            port: 0,
            lane: 0,
        }
    }

    /// Encodes the head of a data frame from `sender` to `dest`'s `port`
    /// (validating both names) and remembers it; `false` if the wire
    /// layout is not the one this cache relies on.
    #[cold]
    #[inline(never)]
    fn fill(
        &mut self,
        dest: Dest<'_>,
        port: u32,
        sender: &ProcName,
        limits: &Limits,
        lanes: usize,
    ) -> Result<bool, ProcError> {
        self.header_len = 0;
        const PROBE_ID: u64 = 0x0123_4567_89ab_cdef;
        let header = data_header(dest, port, PROBE_ID, sender);
        let prefix = encode_frame_head(&mut self.head, &header, 0, limits)?;
        let len = prefix.header_len();
        let text = &self.head[PREFIX_LEN..PREFIX_LEN + len];
        let layout_holds = len
            .checked_sub(HEADER_ROOT_LEN)
            .and_then(|at| text.get(at..at + 8))
            .is_some_and(|id| id == PROBE_ID.to_le_bytes())
            && text.starts_with(dest.name.as_bytes())
            && text[dest.name.len()..].starts_with(dest.addr.as_bytes());
        if !layout_holds {
            return Ok(false);
        }
        self.header_len = len;
        self.payload_len = 0;
        self.dest_name_len = dest.name.len();
        self.dest_addr_len = dest.addr.len();
        self.to_client = dest.to_client;
        self.port = port;
        self.lane = pair_lane(sender.as_str(), dest.name, lanes);
        Ok(true)
    }

    #[inline]
    fn holds(&self, dest: Dest<'_>, port: u32) -> bool {
        if self.header_len == 0
            || self.port != port
            || self.to_client != dest.to_client
            || self.dest_name_len != dest.name.len()
            || self.dest_addr_len != dest.addr.len()
        {
            return false;
        }
        let text = &self.head[PREFIX_LEN..PREFIX_LEN + self.header_len];
        let (name, rest) = text.split_at(dest.name.len());
        // One `memcmp` in the common case (no address).
        name == dest.name.as_bytes()
            && (dest.addr.is_empty() || &rest[..dest.addr.len()] == dest.addr.as_bytes())
    }

    /// The head of a data frame from `sender` to `dest`'s `port` with a
    /// `payload_len` payload, encoded (and the names validated) on a miss,
    /// and its lane among `lanes`.
    /// `None` if the payload length breaks the limits or the wire layout is
    /// not the one this cache relies on: then encode the frame (which
    /// reports the error the encoder always reported).
    #[inline]
    pub(crate) fn head(
        &mut self,
        dest: Dest<'_>,
        port: u32,
        sender: &ProcName,
        payload_len: usize,
        limits: &Limits,
        lanes: usize,
    ) -> Result<Option<CachedHead<'_>>, ProcError> {
        if !self.holds(dest, port) && !self.fill(dest, port, sender, limits, lanes)? {
            return Ok(None);
        }
        if self.payload_len != payload_len {
            let Ok(prefix) = FramePrefix::for_lengths(self.header_len, payload_len, limits) else {
                return Ok(None);
            };
            self.head[..PREFIX_LEN].copy_from_slice(&prefix.to_bytes());
            self.payload_len = payload_len;
        }
        let payload_offset = PREFIX_LEN + self.header_len.next_multiple_of(FRAME_ALIGN);
        Ok(Some(CachedHead {
            bytes: &self.head[..payload_offset],
            id_at: PREFIX_LEN + self.header_len - HEADER_ROOT_LEN,
            lane: self.lane,
        }))
    }
}
