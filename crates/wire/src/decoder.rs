//! The incremental frame decoder for byte streams.

use rkyv::util::AlignedVec;

use crate::frame::{view_frame, FramePrefix, FRAME_ALIGN, PREFIX_LEN};

#[path = "decoder_lent.rs"]
mod lent;
use crate::{FrameView, HeaderMemo, Limits, WireError};
pub use lent::{LentChunk, Repeats};

/// Default buffer size, and the smallest spare region offered for a read.
pub const DEFAULT_READ_CHUNK: usize = 64 * 1024;

/// Reads in a row that must not need a buffer grown for a large frame
/// before it shrinks back to one read chunk (see [`FrameDecoder`]'s
/// "Memory" section). Counted in reads, not time: in a stream of large
/// frames every read continues or completes one (even a read that brings
/// exactly one whole frame into an empty buffer), so the count never
/// starts; a reader that switched to small frames gets there after a few
/// reads.
pub const SHRINK_AFTER_UNNEEDED_READS: u32 = 8;

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
/// 64 bytes costs one read chunk, and while a frame is being received the
/// buffer is never more than about twice the bytes it holds plus a read
/// chunk.
///
/// A buffer grown for a large frame is kept after that frame: a stream of
/// large frames reuses it, with no allocation (and no fresh pages to
/// fault in) per frame. It shrinks back to one read chunk once
/// [`SHRINK_AFTER_UNNEEDED_READS`] reads in a row did not need it (none
/// of them took a frame larger than a read chunk out, or started inside
/// one), or at the next read after
/// [`shrink_at_next_read`](Self::shrink_at_next_read) asked for it (a host
/// does when its memory budget is short). So a connection that goes back
/// to small frames returns the memory after a few reads; one that falls
/// silent right after a large frame keeps its buffer until it reads again
/// (its owner can ask for the shrink then, and keeps the buffer charged
/// meanwhile). A buffer smaller than the read
/// chunk (after [`set_limits`](Self::set_limits) raised it) grows to one
/// read chunk at the next read.
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
    /// Reads in a row that started with a grown buffer they did not need.
    unneeded_reads: u32,
    /// Where the frame at the front was when the last read began: the
    /// bytes stay in place until the next read, so its length tells
    /// whether that read needed the grown buffer (without a check per
    /// frame).
    read_front: usize,
    /// `received` when `unneeded_reads` was last updated: it counts reads,
    /// not calls of `spare_capacity_mut`.
    counted_at: u64,
    /// The owner asked for the grown buffer back at the next read.
    shrink_requested: bool,
    /// The most the next read may take ([`FrameDecoder::cap_next_read`]);
    /// `usize::MAX` when not capped.
    read_cap: usize,
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
            unneeded_reads: 0,
            read_front: 0,
            counted_at: 0,
            shrink_requested: false,
            read_cap: usize::MAX,
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
    /// frame larger than it is being received or a grown buffer is kept
    /// (see the type's "Memory" section).
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
        let need = self.front_need();
        if capacity > self.read_chunk && need <= self.read_chunk {
            // A grown buffer this read does not need: kept for the next
            // large frame, until enough reads in a row went without it.
            if self.shrink_requested || self.unneeded_reads_now() >= SHRINK_AFTER_UNNEEDED_READS {
                return self.read_chunk;
            }
            return capacity;
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

    /// Asks for a grown buffer back: the next
    /// [`spare_capacity_mut`](Self::spare_capacity_mut) shrinks it to one
    /// read chunk if the frame at the front fits in one (else the request
    /// lapses). For an owner whose memory is short.
    pub fn shrink_at_next_read(&mut self) {
        self.shrink_requested = true;
    }

    /// True while the buffer is larger than a read chunk although the
    /// frame at the front, if any, fits in one: a kept buffer that
    /// [`shrink_at_next_read`](Self::shrink_at_next_read) would give back.
    pub fn holds_unneeded_buffer(&self) -> bool {
        self.poisoned.is_none()
            && self.buf.capacity() > self.read_chunk
            && self.front_need() <= self.read_chunk
    }

    /// `unneeded_reads` once the read about to start is counted: the first
    /// call of [`spare_capacity_mut`](Self::spare_capacity_mut) since the
    /// last read counts it (unneeded if it starts with a grown buffer it
    /// does not need and the last read took no large frame out), later
    /// calls do not.
    fn unneeded_reads_now(&self) -> u32 {
        if self.received == self.counted_at {
            self.unneeded_reads
        } else if self.holds_unneeded_buffer() && !self.last_read_began_a_large_frame() {
            self.unneeded_reads.saturating_add(1)
        } else {
            0
        }
    }

    /// True if the frame at the front when the last read began is larger
    /// than a read chunk: that read needed the grown buffer even if it
    /// completed the frame (a host behind its socket reads one whole
    /// large frame into an empty buffer at a time).
    fn last_read_began_a_large_frame(&self) -> bool {
        self.buf
            .get(self.read_front..self.end)
            .and_then(|front| FramePrefix::parse(front, &self.limits).ok())
            .is_some_and(|prefix| prefix.frame_len() > self.read_chunk)
    }

    /// The contiguous room the frame at the front needs: its whole length
    /// once its prefix is in, with room for at least one more byte.
    fn front_need(&self) -> usize {
        self.pending_frame_len()
            .unwrap_or(PREFIX_LEN)
            .max(self.end - self.start + 1)
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
        // Planned and counted before anything moves (the count looks at
        // where the last read began).
        let planned = self.planned_capacity();
        self.unneeded_reads = self.unneeded_reads_now();
        self.counted_at = self.received;
        self.shrink_requested = false;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let pending = self.end - self.start;
        if planned != self.buf.capacity() {
            // An exact allocation, so the capacity is what was planned (and
            // charged) rather than what a growth policy rounds it to.
            let mut buf = AlignedVec::with_capacity(planned);
            buf.extend_from_slice(&self.buf[self.start..self.end]);
            buf.resize(planned, 0);
            self.buf = buf;
            self.unneeded_reads = 0;
            self.start = 0;
            self.end = pending;
            self.read_front = 0;
            let stop = self.end.saturating_add(self.read_cap).min(self.buf.len());
            return &mut self.buf[self.end..stop];
        }
        let need = self.front_need();
        let cramped =
            self.start + need > self.buf.len() || self.buf.len() - self.end < self.min_read();
        if cramped && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
        }
        self.read_front = self.start;
        let stop = self.end.saturating_add(self.read_cap).min(self.buf.len());
        &mut self.buf[self.end..stop]
    }

    /// Caps the next read ([`spare_capacity_mut`](Self::spare_capacity_mut)
    /// until the next [`commit`](Self::commit)) at `max` bytes (at least
    /// 16). For an owner that reads the rest of a large frame around the
    /// decoder (straight into its destination): after one, the next
    /// frame's head is read alone, so that little of a next large frame's
    /// payload lands in the buffer (from where it would be copied).
    ///
    /// ```
    /// use hostmux_wire::{FrameDecoder, Limits};
    /// let mut decoder = FrameDecoder::new(Limits::default());
    /// decoder.cap_next_read(4096);
    /// assert_eq!(decoder.spare_capacity_mut().len(), 4096);
    /// decoder.commit(100);
    /// assert!(decoder.spare_capacity_mut().len() > 4096, "one read only");
    /// ```
    pub fn cap_next_read(&mut self, max: usize) {
        self.read_cap = max.max(FRAME_ALIGN);
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
        self.read_cap = usize::MAX;
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

    /// The bytes received and not yet taken as frames: the front of the
    /// frame at the front, if it is partial (see
    /// [`skip_front_frame`](Self::skip_front_frame)).
    pub fn front_bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Takes the partial frame at the front as consumed although its last
    /// bytes never came through this decoder: the caller read them from
    /// the stream into other memory (the host reads a large frame's
    /// payload straight into a ring). `frame_len` is the frame's whole
    /// length; everything buffered must belong to it. The header memo is
    /// forgotten: the next frame is validated in full, never taken for a
    /// repeat of a header the decoder did not see last. Returns false
    /// (nothing changed) if the buffered bytes are not a prefix of one
    /// frame of `frame_len` bytes, or the decoder is poisoned.
    pub fn skip_front_frame(&mut self, frame_len: usize) -> bool {
        let buffered = self.end - self.start;
        if self.poisoned.is_some()
            || buffered > frame_len
            || self.pending_frame_len() != Some(frame_len)
        {
            return false;
        }
        self.received += (frame_len - buffered) as u64;
        self.start = self.end;
        self.memo.clear();
        true
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
            let kept = decoder.buffer_capacity();
            let planned = decoder.planned_capacity();
            let spare = decoder.spare_capacity_mut();
            let n = spare.len().min(bytes.len()).min(step);
            spare[..n].copy_from_slice(&bytes[..n]);
            decoder.commit(n);
            bytes = &bytes[n..];
            assert_eq!(decoder.buffer_capacity(), planned, "planned exactly");
            // Growth follows received bytes; a buffer may only be kept.
            assert!(
                decoder.buffer_capacity() <= 2 * decoder.buffered_len() + CHUNK + FRAME_ALIGN
                    || decoder.buffer_capacity() == kept,
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
    fn the_buffer_grows_with_received_bytes_and_is_kept_after_a_large_frame() {
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
        let grown = decoder.buffer_capacity();
        let ids = read_checked(&mut decoder, &stream[large_end - 1000..], 16 * 1024);
        assert_eq!(ids, [2, 3]);
        assert!(decoder.holds_unneeded_buffer());
        assert_eq!(decoder.planned_capacity(), grown, "kept for the next read");
        decoder.shrink_at_next_read();
        assert_eq!(decoder.planned_capacity(), CHUNK, "given back on request");
        decoder.spare_capacity_mut();
        assert_eq!(decoder.buffer_capacity(), CHUNK);
        assert!(!decoder.holds_unneeded_buffer());
    }

    /// The regression behind 0.1-0.3 GB/s at 1 MiB: a buffer regrown from
    /// one read chunk for every large frame (fresh pages each time).
    #[test]
    fn a_run_of_large_frames_reuses_one_buffer() {
        let mut decoder = FrameDecoder::new(Limits::default());
        let stream: Vec<u8> = (0..40).flat_map(|id| frame(id, 1 << 20)).collect();
        let frame_len = stream.len() / 40;
        // The first frame grows the buffer; from then on it stays put.
        let ids = read_checked(&mut decoder, &stream[..frame_len], 64 * 1024);
        assert_eq!(ids, [0]);
        let grown = (decoder.buffer_capacity(), decoder.buf.as_ptr());
        assert!(grown.0 >= frame_len);
        // Reads of exactly one whole frame each into the empty buffer (a
        // host that lags behind its socket), more than the shrink count.
        // (A shrink and regrowth can end at the same size and address, so
        // the plan before every read is what shows that none happens.)
        let mut at = frame_len;
        for _ in 0..2 * SHRINK_AFTER_UNNEEDED_READS {
            assert_eq!(decoder.planned_capacity(), grown.0, "kept before the read");
            let spare = decoder.spare_capacity_mut();
            spare[..frame_len].copy_from_slice(&stream[at..at + frame_len]);
            decoder.commit(frame_len);
            at += frame_len;
            assert_eq!(
                decoder.next_frame().unwrap().unwrap().message_id(),
                (at / frame_len - 1) as u64
            );
            assert_eq!(decoder.buffered_len(), 0);
            assert_eq!((decoder.buffer_capacity(), decoder.buf.as_ptr()), grown);
        }
        // Reads of other sizes, including ones straddling two frames.
        for (round, step) in [frame_len, 200_000, 64 * 1024, 7_777]
            .into_iter()
            .cycle()
            .enumerate()
        {
            if at == stream.len() {
                break;
            }
            let end = (at + frame_len + round * 1000).min(stream.len());
            read_checked(&mut decoder, &stream[at..end], step);
            at = end;
            assert_eq!(
                (decoder.buffer_capacity(), decoder.buf.as_ptr()),
                grown,
                "the same allocation after {at} bytes"
            );
        }
        assert_eq!(
            decoder.consumed_len(),
            stream.len() as u64,
            "every frame out"
        );
    }

    #[test]
    fn a_kept_buffer_shrinks_after_enough_reads_of_small_frames() {
        let mut decoder = FrameDecoder::new(Limits::default());
        let large = frame(0, 1 << 20);
        read_checked(&mut decoder, &large, 64 * 1024);
        let grown = decoder.buffer_capacity();
        assert!(grown > CHUNK);
        let small: Vec<u8> = (1..=100).flat_map(|id| frame(id, 100)).collect();
        let per_read = small.len() / 50;
        let mut reads = 0;
        let mut fed = 0;
        while decoder.buffer_capacity() == grown {
            let spare = decoder.spare_capacity_mut();
            let n = spare.len().min(per_read);
            spare[..n].copy_from_slice(&small[fed..fed + n]);
            decoder.commit(n);
            fed += n;
            reads += 1;
            while decoder.next_frame().unwrap().is_some() {}
        }
        // Counted from the first read after the large frame.
        assert_eq!(reads, SHRINK_AFTER_UNNEEDED_READS as usize + 1);
        assert_eq!(decoder.buffer_capacity(), CHUNK);
        // A large frame in between starts the count again: one read per
        // small frame, one short of the count on either side of it.
        let mut decoder = FrameDecoder::new(Limits::default());
        read_checked(&mut decoder, &large, 64 * 1024);
        let below = SHRINK_AFTER_UNNEEDED_READS as u64 - 1;
        let smalls =
            |ids: std::ops::Range<u64>| -> Vec<u8> { ids.flat_map(|id| frame(id, 100)).collect() };
        let small_len = frame(0, 100).len();
        read_checked(&mut decoder, &smalls(0..below), small_len);
        read_checked(&mut decoder, &large, 64 * 1024);
        read_checked(&mut decoder, &smalls(0..below), small_len);
        assert_eq!(decoder.buffer_capacity(), grown, "still kept");
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
    fn a_skipped_front_frame_counts_as_consumed_and_forgets_the_memo() {
        let mut decoder = FrameDecoder::new(Limits::default());
        let (small, large) = (frame(1, 8), frame(2, 4096));
        decoder.feed(&small);
        decoder.feed(&small);
        assert!(decoder.next_frame().unwrap().is_some());
        assert!(decoder
            .next_frame()
            .unwrap()
            .unwrap()
            .repeats_previous_header());
        decoder.feed(&large[..100]);
        assert!(decoder.next_frame().unwrap().is_none());
        assert_eq!(decoder.front_bytes(), &large[..100]);
        assert!(!decoder.skip_front_frame(large.len() + 16));
        assert!(decoder.skip_front_frame(large.len()));
        assert_eq!(decoder.buffered_len(), 0);
        assert_eq!(
            decoder.consumed_len(),
            (2 * small.len() + large.len()) as u64
        );
        decoder.feed(&small);
        let next = decoder.next_frame().unwrap().unwrap();
        assert!(!next.repeats_previous_header());
        assert_eq!(next.message_id(), 1);
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
