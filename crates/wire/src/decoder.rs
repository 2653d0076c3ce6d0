//! The incremental frame decoder for byte streams.

use rkyv::util::AlignedVec;

use crate::frame::{view_frame, FramePrefix, FRAME_ALIGN, PREFIX_LEN};
use crate::{FrameView, HeaderMemo, Limits, WireError};

/// Default buffer size, and the smallest spare region offered for a read.
pub const DEFAULT_READ_CHUNK: usize = 64 * 1024;

/// Splits a byte stream fed in arbitrary chunks into validated frames.
///
/// The decoder owns one 16-byte-aligned buffer. Bytes go in either by
/// copying ([`feed`](Self::feed)) or, to save that copy, by reading from the
/// socket straight into [`spare_capacity_mut`](Self::spare_capacity_mut) and
/// then calling [`commit`](Self::commit). Frames come out of
/// [`next_frame`](Self::next_frame), borrowed from the buffer; call it until it
/// returns `Ok(None)`, then read more. At end of stream call
/// [`finish`](Self::finish) to learn whether a frame was cut short.
///
/// Frames are consumed from the front; the unconsumed tail (at most one
/// partial frame) is moved to the front only when the buffer runs out of
/// room, so steady-state decoding neither allocates nor copies per frame. The
/// buffer grows only to hold a single frame larger than it, and a frame's
/// announced length is checked against [`Limits`] before that happens.
///
/// Headers go through a [`HeaderMemo`]: in a run of frames that differ only
/// in message id and port, each header after the first is recognised
/// rather than validated again.
///
/// After the first error the decoder is poisoned: it ignores further input and
/// returns that error again from every call. It never panics on any input.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Always fully initialised; `len()` is the buffer's usable size.
    buf: AlignedVec<FRAME_ALIGN>,
    /// First unconsumed byte; always a multiple of 16.
    start: usize,
    /// End of the bytes received so far.
    end: usize,
    read_chunk: usize,
    limits: Limits,
    memo: HeaderMemo,
    poisoned: Option<WireError>,
}

impl FrameDecoder {
    /// A decoder with the default buffer size.
    pub fn new(limits: Limits) -> Self {
        Self::with_read_chunk(limits, DEFAULT_READ_CHUNK)
    }

    /// A decoder whose buffer starts at `read_chunk` bytes (rounded up to 16)
    /// and which offers at least that much spare room per read.
    pub fn with_read_chunk(limits: Limits, read_chunk: usize) -> Self {
        let read_chunk = read_chunk.max(FRAME_ALIGN).next_multiple_of(FRAME_ALIGN);
        let mut buf = AlignedVec::with_capacity(read_chunk);
        buf.resize(read_chunk, 0);
        Self {
            buf,
            start: 0,
            end: 0,
            read_chunk,
            limits,
            memo: HeaderMemo::new(),
            poisoned: None,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// True once an error has been returned.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Current size of the buffer in bytes: the read chunk, or the largest
    /// single frame seen if that was larger. It does not grow with traffic.
    pub fn buffer_len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered_len(&self) -> usize {
        self.end - self.start
    }

    /// The total length of the frame at the front of the buffer, once its
    /// prefix has arrived and passed the limit checks.
    pub fn pending_frame_len(&self) -> Option<usize> {
        FramePrefix::parse(&self.buf[self.start..self.end], &self.limits)
            .ok()
            .map(|p| p.frame_len())
    }

    /// The free tail of the buffer, to read into; follow with
    /// [`commit`](Self::commit). Makes room first: it moves a partial frame to
    /// the front or grows the buffer to fit a large announced frame. It is
    /// empty only when the decoder is poisoned.
    pub fn spare_capacity_mut(&mut self) -> &mut [u8] {
        if self.poisoned.is_some() {
            return &mut [];
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let pending = self.end - self.start;
        // The frame at the front must fit contiguously, with room for at
        // least one more byte.
        let need = self
            .pending_frame_len()
            .unwrap_or(PREFIX_LEN)
            .max(pending + 1);
        let min_read = (self.read_chunk / 4).max(FRAME_ALIGN);
        let cramped = self.start + need > self.buf.len() || self.buf.len() - self.end < min_read;
        if cramped && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
        }
        if need > self.buf.len() {
            self.buf.resize(need.next_multiple_of(FRAME_ALIGN), 0);
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes written into the slice from
    /// [`spare_capacity_mut`](Self::spare_capacity_mut) as received.
    ///
    /// # Panics
    ///
    /// If `n` is larger than that slice: a bug in the caller, not bad input.
    pub fn commit(&mut self, n: usize) {
        assert!(
            n <= self.buf.len() - self.end,
            "commit({n}) exceeds the spare capacity"
        );
        if self.poisoned.is_none() {
            self.end += n;
        }
    }

    /// Copies `bytes` into the buffer. Prefer reading into
    /// [`spare_capacity_mut`](Self::spare_capacity_mut), which bounds the
    /// buffer's size; `feed` grows it to hold all of `bytes`.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.poisoned.is_none() {
            let spare = self.spare_capacity_mut();
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            self.commit(n);
            bytes = &bytes[n..];
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the
    /// error that poisons the decoder.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<FrameView<'_>>, WireError> {
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        let available = &self.buf[self.start..self.end];
        if available.len() < PREFIX_LEN {
            return Ok(None);
        }
        let prefix = match FramePrefix::parse(available, &self.limits) {
            Ok(prefix) => prefix,
            Err(error) => {
                self.poisoned = Some(error.clone());
                return Err(error);
            }
        };
        if available.len() < prefix.frame_len() {
            return Ok(None);
        }
        let frame_start = self.start;
        self.start += prefix.frame_len();
        match view_frame(
            &self.buf[frame_start..],
            prefix,
            &self.limits,
            Some(&mut self.memo),
        ) {
            Ok(frame) => Ok(Some(frame)),
            Err(error) => {
                self.poisoned = Some(error.clone());
                Err(error)
            }
        }
    }

    /// The fast lane for runs of frames to one destination: if the next
    /// frame is complete and its header repeats the last validated one
    /// (every byte but `message_id` and `dest_port`, see [`HeaderMemo`]),
    /// with zero padding, hands its bytes to `take`; if `take` returns
    /// `Some`, the frame is consumed. Returns `None` without consuming
    /// anything in every other case (not a repeat, incomplete, malformed,
    /// poisoned, or `take` declined): then [`next_frame`](Self::next_frame)
    /// deals with the frame, and reports any error. A frame taken here is
    /// exactly one `next_frame` would have yielded with
    /// [`FrameView::repeats_previous_header`] set, without building the
    /// view.
    #[inline]
    pub fn take_repeat<R>(&mut self, take: impl FnOnce(&[u8]) -> Option<R>) -> Option<R> {
        if self.poisoned.is_some() {
            return None;
        }
        let available = &self.buf[self.start..self.end];
        if available.len() < PREFIX_LEN {
            return None;
        }
        let frame_len = self.memo.repeated_frame_len(available, &self.limits)?;
        let taken = take(&available[..frame_len])?;
        self.memo.count_hit();
        self.start += frame_len;
        Some(taken)
    }

    /// Call at end of stream: fails with [`WireError::Truncated`] if a partial
    /// frame is buffered, or with the poisoning error.
    pub fn finish(&self) -> Result<(), WireError> {
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        let available = self.end - self.start;
        if available == 0 {
            return Ok(());
        }
        Err(WireError::Truncated {
            needed: self.pending_frame_len().unwrap_or(PREFIX_LEN),
            available,
        })
    }
}
