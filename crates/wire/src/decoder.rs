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
/// room, so steady-state decoding neither allocates nor copies per frame.
///
/// # Memory
///
/// The buffer is sized by bytes actually received, never by a length a
/// peer announced: a frame larger than the buffer makes it grow only when
/// the bytes already received leave less than a quarter of a read chunk
/// free, and then to at most twice its size or the received bytes plus a
/// read chunk (and never past the announced frame, which was checked
/// against [`Limits`] first). So a peer that announces 16 MiB and sends
/// 64 bytes costs one read chunk, and a buffer is never more than about
/// twice the bytes it holds plus a read chunk. Once the frame at the front
/// fits in a read chunk again (a large frame was consumed), the buffer
/// shrinks back to one read chunk: a stream of frames larger than the read
/// chunk costs an allocation per such frame, smaller frames none. A buffer
/// smaller than the read chunk (after [`set_limits`](Self::set_limits)
/// raised it) grows to one read chunk at the next read.
/// [`planned_capacity`](Self::planned_capacity) says beforehand what the
/// buffer will hold after the next [`spare_capacity_mut`](Self::spare_capacity_mut),
/// so a caller can charge a memory budget before the allocation happens.
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
    /// Bytes committed since the decoder was made.
    received: u64,
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
            received: 0,
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

    /// Current size of the buffer in bytes: the read chunk, or more while a
    /// frame larger than it is being received (see the type's "Memory"
    /// section).
    pub fn buffer_len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of memory the buffer holds (its allocation), for accounting.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The read chunk this decoder was made with (rounded up to 16).
    pub fn read_chunk(&self) -> usize {
        self.read_chunk
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered_len(&self) -> usize {
        self.end - self.start
    }

    /// Bytes of the stream returned as frames so far (its position): it
    /// moves exactly when a frame is consumed, so a caller can tell whether
    /// the partial frame at the front is still the same one.
    pub fn consumed_len(&self) -> u64 {
        self.received - self.buffered_len() as u64
    }

    /// The total length of the frame at the front of the buffer, once its
    /// prefix has arrived and passed the limit checks.
    pub fn pending_frame_len(&self) -> Option<usize> {
        FramePrefix::parse(&self.buf[self.start..self.end], &self.limits)
            .ok()
            .map(|p| p.frame_len())
    }

    /// Changes the limits and read chunk, keeping every buffered byte: a
    /// connection reads its hello under small limits, then the rest of the
    /// stream under the full ones. The buffer adapts at the next
    /// [`spare_capacity_mut`](Self::spare_capacity_mut). A poisoned decoder
    /// stays poisoned.
    pub fn set_limits(&mut self, limits: Limits, read_chunk: usize) {
        self.limits = limits;
        self.read_chunk = read_chunk.max(FRAME_ALIGN).next_multiple_of(FRAME_ALIGN);
    }

    /// The buffer's capacity after the next
    /// [`spare_capacity_mut`](Self::spare_capacity_mut), which grows or
    /// shrinks it to exactly this (see the type's "Memory" section).
    pub fn planned_capacity(&self) -> usize {
        let capacity = self.buf.capacity();
        if self.poisoned.is_some() {
            return capacity;
        }
        let pending = self.end - self.start;
        // The frame at the front must end up contiguous, with room for at
        // least one more byte.
        let need = self
            .pending_frame_len()
            .unwrap_or(PREFIX_LEN)
            .max(pending + 1);
        if capacity > self.read_chunk && need <= self.read_chunk {
            // A large frame is done: back to one read chunk.
            return self.read_chunk;
        }
        if capacity < self.read_chunk {
            // Made with (or set to) a larger read chunk than it holds.
            return self.read_chunk;
        }
        if need > capacity && capacity - pending < self.min_read() {
            let grown = capacity.saturating_mul(2).max(pending + self.read_chunk);
            return grown.min(need).next_multiple_of(FRAME_ALIGN);
        }
        capacity
    }

    /// The smallest spare region worth a read without moving bytes first.
    fn min_read(&self) -> usize {
        (self.read_chunk / 4).max(FRAME_ALIGN)
    }

    /// The free tail of the buffer, to read into; follow with
    /// [`commit`](Self::commit). Makes room first: it moves a partial frame to
    /// the front, and grows or shrinks the buffer to
    /// [`planned_capacity`](Self::planned_capacity). It is empty only when
    /// the decoder is poisoned.
    pub fn spare_capacity_mut(&mut self) -> &mut [u8] {
        if self.poisoned.is_some() {
            return &mut [];
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let pending = self.end - self.start;
        let planned = self.planned_capacity();
        if planned != self.buf.capacity() {
            // An exact allocation, so the capacity is what was planned (and
            // charged) rather than what a growth policy rounds it to.
            let mut buf = AlignedVec::with_capacity(planned);
            buf.extend_from_slice(&self.buf[self.start..self.end]);
            buf.resize(planned, 0);
            self.buf = buf;
            self.start = 0;
            self.end = pending;
            return &mut self.buf[self.end..];
        }
        let need = self
            .pending_frame_len()
            .unwrap_or(PREFIX_LEN)
            .max(pending + 1);
        let cramped =
            self.start + need > self.buf.len() || self.buf.len() - self.end < self.min_read();
        if cramped && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
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
            self.received += n as u64;
        }
    }

    /// Copies `bytes` into the buffer, growing it as
    /// [`spare_capacity_mut`](Self::spare_capacity_mut) does for each read.
    /// Prefer reading into `spare_capacity_mut`: a caller that feeds more
    /// than one frame's worth without taking frames out makes the buffer
    /// hold all of it.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_frame_to_vec, FrameHeader};

    const CHUNK: usize = 64 * 1024;

    fn frame(id: u64, payload_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame_to_vec(
            &mut out,
            &FrameHeader::data("a", id),
            &vec![5; payload_len],
            &Limits::default(),
        )
        .unwrap();
        out
    }

    /// Reads `bytes` as a socket would, `step` bytes at a time, checking
    /// the memory rules after every read; returns the frames' ids.
    fn read_checked(decoder: &mut FrameDecoder, mut bytes: &[u8], step: usize) -> Vec<u64> {
        let mut ids = Vec::new();
        while !bytes.is_empty() {
            let planned = decoder.planned_capacity();
            let spare = decoder.spare_capacity_mut();
            let n = spare.len().min(bytes.len()).min(step);
            spare[..n].copy_from_slice(&bytes[..n]);
            decoder.commit(n);
            bytes = &bytes[n..];
            assert_eq!(decoder.buffer_capacity(), planned, "planned exactly");
            assert!(
                decoder.buffer_capacity() <= 2 * decoder.buffered_len() + CHUNK + FRAME_ALIGN,
                "{} bytes held for {} received",
                decoder.buffer_capacity(),
                decoder.buffered_len()
            );
            while let Some(frame) = decoder.next_frame().unwrap() {
                ids.push(frame.message_id());
            }
        }
        ids
    }

    #[test]
    fn an_announced_length_is_never_allocated_before_its_bytes_arrive() {
        let mut decoder = FrameDecoder::new(Limits::default());
        let big = frame(1, (16 << 20) - 1024);
        // The prefix and a little more: the buffer stays one read chunk.
        let ids = read_checked(&mut decoder, &big[..64], 64);
        assert!(ids.is_empty());
        assert_eq!(decoder.planned_capacity(), CHUNK);
        assert_eq!(decoder.spare_capacity_mut().len(), CHUNK - 64);
        assert_eq!(decoder.buffer_capacity(), CHUNK);
    }

    #[test]
    fn the_buffer_grows_with_received_bytes_and_shrinks_after_a_large_frame() {
        let mut decoder = FrameDecoder::new(Limits::default());
        let mut stream = frame(1, 100);
        stream.extend(frame(2, 3 << 20));
        stream.extend(frame(3, 100));
        let large_end = frame(1, 100).len() + frame(2, 3 << 20).len();
        let ids = read_checked(&mut decoder, &stream[..large_end - 1000], 16 * 1024);
        assert_eq!(ids, [1]);
        assert!(
            decoder.buffer_capacity() >= 3 << 20,
            "holds the large frame"
        );
        let ids = read_checked(&mut decoder, &stream[large_end - 1000..], 16 * 1024);
        assert_eq!(ids, [2, 3]);
        assert_eq!(
            decoder.planned_capacity(),
            CHUNK,
            "shrinks at the next read"
        );
        decoder.spare_capacity_mut();
        assert_eq!(decoder.buffer_capacity(), CHUNK);
    }

    #[test]
    fn small_frames_never_reallocate() {
        let mut decoder = FrameDecoder::new(Limits::default());
        let stream: Vec<u8> = (0..2000).flat_map(|id| frame(id, 1000)).collect();
        let ids = read_checked(&mut decoder, &stream, 7_777);
        assert_eq!(ids.len(), 2000);
        assert_eq!(decoder.buffer_capacity(), CHUNK);
    }

    #[test]
    fn consumed_len_moves_only_when_a_frame_is_taken() {
        let mut decoder = FrameDecoder::new(Limits::default());
        let one = frame(1, 40);
        decoder.feed(&one[..20]);
        assert_eq!(decoder.consumed_len(), 0);
        decoder.feed(&one[20..]);
        assert_eq!(decoder.consumed_len(), 0);
        assert!(decoder.next_frame().unwrap().is_some());
        assert_eq!(decoder.consumed_len(), one.len() as u64);
        assert_eq!(decoder.buffered_len(), 0);
    }

    #[test]
    fn set_limits_keeps_the_buffered_bytes() {
        let hello_limits = crate::hello_limits(&Limits::default());
        let mut decoder = FrameDecoder::with_read_chunk(hello_limits, crate::MAX_HELLO_LEN);
        let mut stream = frame(1, 100);
        let big = frame(2, 100 * 1024);
        stream.extend_from_slice(&big[..1000]);
        decoder.feed(&stream);
        assert_eq!(decoder.next_frame().unwrap().unwrap().message_id(), 1);
        assert_eq!(decoder.buffer_capacity(), crate::MAX_HELLO_LEN);
        decoder.set_limits(Limits::default(), CHUNK);
        assert_eq!(decoder.planned_capacity(), CHUNK);
        decoder.feed(&big[1000..]);
        assert_eq!(decoder.next_frame().unwrap().unwrap().message_id(), 2);
    }
}
