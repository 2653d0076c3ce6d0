//! The decoder's lent-chunk mode: frames decoded in place from bytes the
//! decoder does not own (a receive buffer the kernel filled and the caller
//! gives back once its frames are delivered).
//!
//! Why: a reader whose bytes arrive in buffers it must return (io_uring's
//! provided buffers) would otherwise copy every chunk into the decoder
//! before decoding it, and the payload would be copied twice on its way to
//! a proc's ring (chunk, decoder, ring). Here only the partial frame at a
//! chunk's end is copied into the decoder's own buffer (as the decoder's
//! compaction copies a tail), and completed from the next chunk.

use crate::frame::{view_frame, FramePrefix, PREFIX_LEN};
use crate::{FrameDecoder, FrameView, WireError};

/// A chunk of the stream lent to a [`FrameDecoder`] (see
/// [`FrameDecoder::lend`]): yields the same frames, in the same order, as
/// [`FrameDecoder::feed`] of the chunk followed by
/// [`FrameDecoder::next_frame`] would.
///
/// Call order: [`next_frame`](Self::next_frame) (and
/// [`take_repeat`](Self::take_repeat)) until `Ok(None)`, then
/// [`finish`](Self::finish), which copies the partial frame at the chunk's
/// end into the decoder and says how much of the chunk was consumed (all
/// of it, unless a large frame stopped the loan: see
/// [`FrameDecoder::lend`]). Dropping it unfinished is the same as
/// `finish`.
#[derive(Debug)]
pub struct LentChunk<'d, 'c> {
    decoder: &'d mut FrameDecoder,
    chunk: &'c [u8],
    /// Bytes of `chunk` consumed: taken as frames or copied into the
    /// decoder.
    at: usize,
    /// Frames at least this long are not copied past their header.
    large: usize,
    /// A large frame's head is in the decoder: the loan stops here.
    stopped: bool,
    finished: bool,
}

/// A run of frames that repeat the last validated header, taken from the
/// front of a decoder's buffer or of a lent chunk
/// ([`FrameDecoder::run_repeats`], [`LentChunk::run_repeats`]): one type
/// for both, so a caller's fast lane is compiled once.
#[derive(Debug)]
pub struct Repeats<'a> {
    bytes: &'a [u8],
    memo: &'a mut crate::HeaderMemo,
    limits: crate::Limits,
    taken: usize,
}

impl Repeats<'_> {
    /// [`FrameDecoder::take_repeat`] over the run's bytes.
    #[inline]
    pub fn take_repeat<R>(&mut self, take: impl FnOnce(&[u8]) -> Option<R>) -> Option<R> {
        let available = &self.bytes[self.taken..];
        if available.len() < PREFIX_LEN {
            return None;
        }
        let frame_len = self.memo.repeated_frame_len(available, &self.limits)?;
        let taken = take(&available[..frame_len])?;
        self.memo.count_hit();
        self.taken += frame_len;
        Some(taken)
    }
}

impl FrameDecoder {
    /// Runs `run` over the repeats at the front of the buffer; what it
    /// took is consumed. Nothing is taken from a poisoned decoder.
    #[inline]
    pub fn run_repeats<T>(&mut self, run: impl FnOnce(&mut Repeats<'_>) -> T) -> T {
        let end = if self.poisoned.is_some() {
            self.start
        } else {
            self.end
        };
        let mut repeats = Repeats {
            bytes: &self.buf[self.start..end],
            memo: &mut self.memo,
            limits: self.limits,
            taken: 0,
        };
        let out = run(&mut repeats);
        let taken = repeats.taken;
        self.start += taken;
        out
    }

    /// Lends `chunk`, the next bytes of the stream, to the decoder: frames
    /// wholly inside it are handed out of it directly, a partial frame
    /// buffered from earlier is completed from its front (copied), and the
    /// partial frame at its end is copied into the decoder's buffer by
    /// [`LentChunk::finish`].
    ///
    /// A partial frame of at least `large` bytes is copied into the
    /// decoder up to the end of its header and no further: the loan stops
    /// there ([`LentChunk::next_frame`] returns `Ok(None)` and `finish`
    /// reports the rest of the chunk unconsumed), so the caller can move
    /// the payload elsewhere in one copy (the host reads a large frame
    /// straight into a proc's ring, see
    /// [`skip_front_frame`](Self::skip_front_frame)). Once its header is
    /// in, the next loan copies it on like any other (the caller had its
    /// chance): so a loan always makes progress. `usize::MAX` copies every
    /// partial frame whole.
    pub fn lend<'d, 'c>(&'d mut self, chunk: &'c [u8], large: usize) -> LentChunk<'d, 'c> {
        LentChunk {
            decoder: self,
            chunk,
            at: 0,
            large,
            stopped: false,
            finished: false,
        }
    }
}

impl LentChunk<'_, '_> {
    /// Bytes of the chunk not yet consumed.
    pub fn remaining(&self) -> usize {
        self.chunk.len() - self.at
    }

    /// The next complete frame, `Ok(None)` when the chunk holds no more
    /// whole frames (or a large frame stopped the loan), or the error that
    /// poisons the decoder.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<FrameView<'_>>, WireError> {
        if let Some(error) = &self.decoder.poisoned {
            return Err(error.clone());
        }
        if self.decoder.buffered_len() > 0 {
            // The partial frame from before first: completed by copying.
            if !self.complete_buffered()? {
                return Ok(None);
            }
            return self.decoder.next_frame();
        }
        let available = &self.chunk[self.at..];
        if available.len() < PREFIX_LEN {
            return Ok(None);
        }
        let limits = self.decoder.limits;
        let prefix = match FramePrefix::parse(available, &limits) {
            Ok(prefix) => prefix,
            Err(error) => return Err(self.poison(error)),
        };
        let frame_len = prefix.frame_len();
        if available.len() < frame_len {
            return Ok(None);
        }
        self.at += frame_len;
        self.decoder.received += frame_len as u64;
        match view_frame(available, prefix, &limits, Some(&mut self.decoder.memo)) {
            Ok(frame) => Ok(Some(frame)),
            Err(error) => {
                self.decoder.poisoned = Some(error.clone());
                Err(error)
            }
        }
    }

    /// [`FrameDecoder::take_repeat`] over the chunk: the fast lane for a
    /// frame wholly inside it that repeats the last validated header.
    /// `None` (nothing consumed) in every other case, including while a
    /// partial frame from before is buffered.
    #[inline]
    pub fn take_repeat<R>(&mut self, take: impl FnOnce(&[u8]) -> Option<R>) -> Option<R> {
        if self.decoder.poisoned.is_some() || self.decoder.buffered_len() > 0 {
            return None;
        }
        let available = &self.chunk[self.at..];
        if available.len() < PREFIX_LEN {
            return None;
        }
        let frame_len = self
            .decoder
            .memo
            .repeated_frame_len(available, &self.decoder.limits)?;
        let taken = take(&available[..frame_len])?;
        self.decoder.memo.count_hit();
        self.at += frame_len;
        self.decoder.received += frame_len as u64;
        Some(taken)
    }

    /// [`FrameDecoder::run_repeats`] over the chunk: nothing while a
    /// partial frame from before is buffered (it comes first).
    #[inline]
    pub fn run_repeats<T>(&mut self, run: impl FnOnce(&mut Repeats<'_>) -> T) -> T {
        let end = if self.decoder.poisoned.is_some() || self.decoder.buffered_len() > 0 {
            self.at
        } else {
            self.chunk.len()
        };
        let mut repeats = Repeats {
            bytes: &self.chunk[self.at..end],
            memo: &mut self.decoder.memo,
            limits: self.decoder.limits,
            taken: 0,
        };
        let out = run(&mut repeats);
        let taken = repeats.taken;
        self.at += taken;
        self.decoder.received += taken as u64;
        out
    }

    /// Ends the loan: copies what is left of the chunk (at most one
    /// partial frame, or a large frame's head) into the decoder and
    /// returns how many bytes of the chunk were consumed. Less than the
    /// chunk's length only when a large frame stopped the loan: the rest
    /// starts with that frame's payload and is the stream's next bytes.
    pub fn finish(mut self) -> usize {
        self.end()
    }

    fn end(&mut self) -> usize {
        if self.finished {
            return self.at;
        }
        self.finished = true;
        if self.decoder.poisoned.is_some() {
            // Nothing more is decoded: the rest is dropped as `feed` would.
            self.at = self.chunk.len();
            return self.at;
        }
        if !self.stopped {
            // Copies up to a large frame's header end, or everything.
            let _ = self.complete_buffered();
            if !self.stopped && self.at < self.chunk.len() {
                let rest = &self.chunk[self.at..];
                let head = self
                    .head_of_large(rest)
                    .unwrap_or(rest.len())
                    .min(rest.len());
                self.decoder.feed(&rest[..head]);
                self.at += head;
                self.stopped = head < rest.len();
            }
        }
        self.at
    }

    /// How much of `front` (the start of a frame) to copy if it begins a
    /// frame of at least `large` bytes: its prefix and header. `None` if
    /// it is not large, or its prefix is not all there or is bad (the
    /// decoder reports that).
    fn head_of_large(&self, front: &[u8]) -> Option<usize> {
        let prefix = FramePrefix::parse(front, &self.decoder.limits).ok()?;
        (prefix.frame_len() >= self.large).then(|| prefix.payload_offset())
    }

    /// Copies bytes from the chunk into the decoder's partial frame: up to
    /// its end, or (a large frame) up to its header's end. True if the
    /// frame is whole now.
    fn complete_buffered(&mut self) -> Result<bool, WireError> {
        let buffered = self.decoder.buffered_len();
        if buffered == 0 || self.stopped {
            return Ok(false);
        }
        if buffered < PREFIX_LEN {
            let n = (PREFIX_LEN - buffered).min(self.remaining());
            self.take_into_decoder(n);
            if self.decoder.buffered_len() < PREFIX_LEN {
                return Ok(false);
            }
        }
        let limits = self.decoder.limits;
        let prefix = match FramePrefix::parse(self.decoder.front_bytes(), &limits) {
            Ok(prefix) => prefix,
            Err(error) => return Err(self.poison(error)),
        };
        let buffered = self.decoder.buffered_len();
        let mut want = prefix.frame_len();
        if want >= self.large && buffered < prefix.payload_offset() {
            want = prefix.payload_offset();
        }
        let n = want.saturating_sub(buffered).min(self.remaining());
        self.take_into_decoder(n);
        if self.decoder.buffered_len() == prefix.frame_len() {
            return Ok(true);
        }
        if self.decoder.buffered_len() == want && want < prefix.frame_len() {
            self.stopped = true;
        }
        Ok(false)
    }

    fn take_into_decoder(&mut self, n: usize) {
        let bytes = &self.chunk[self.at..self.at + n];
        self.decoder.feed(bytes);
        self.at += n;
    }

    fn poison(&mut self, error: WireError) -> WireError {
        self.decoder.poisoned = Some(error.clone());
        error
    }
}

impl Drop for LentChunk<'_, '_> {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use crate::{encode_frame_to_vec, FrameDecoder, FrameHeader, Limits};

    fn stream() -> Vec<u8> {
        let mut out = Vec::new();
        for (id, len) in [(1u64, 0usize), (2, 5), (3, 100), (4, 17), (5, 3000), (6, 1)] {
            let dest = if id == 4 { "b" } else { "a" };
            encode_frame_to_vec(
                &mut out,
                &FrameHeader::data(dest, id),
                &vec![id as u8; len],
                &Limits::default(),
            )
            .unwrap();
        }
        out
    }

    /// Frames (id, payload) by lending `pieces` one after another, the fast
    /// lane tried first as the host does.
    fn lent(pieces: &[&[u8]], large: usize) -> Vec<(u64, Vec<u8>)> {
        let mut decoder = FrameDecoder::new(Limits::default());
        let mut out = Vec::new();
        for piece in pieces {
            let mut rest: &[u8] = piece;
            loop {
                let mut chunk = decoder.lend(rest, large);
                loop {
                    // The fast lane first, as the host runs it.
                    let repeats = chunk.run_repeats(|run| {
                        std::iter::from_fn(|| run.take_repeat(|bytes| Some(bytes.to_vec())))
                            .collect::<Vec<_>>()
                    });
                    out.extend(repeats.iter().map(|frame| decoded(frame)));
                    match chunk.next_frame().unwrap() {
                        Some(frame) => out.push((frame.message_id(), frame.payload().to_vec())),
                        None => break,
                    }
                }
                let used = chunk.finish();
                if used == rest.len() {
                    break;
                }
                // A large frame stopped the loan: its payload goes around
                // the decoder (as into a ring), then the rest is lent.
                let len = decoder.pending_frame_len().unwrap();
                let head = decoder.buffered_len();
                let tail = (len - head).min(rest.len() - used);
                let mut whole = decoder.front_bytes().to_vec();
                whole.extend_from_slice(&rest[used..used + tail]);
                if whole.len() == len {
                    assert!(decoder.skip_front_frame(len));
                    out.push(decoded(&whole));
                } else {
                    decoder.feed(&rest[used..used + tail]);
                }
                rest = &rest[used + tail..];
            }
        }
        decoder.finish().unwrap();
        out
    }

    fn decoded(bytes: &[u8]) -> (u64, Vec<u8>) {
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(bytes);
        let view = crate::decode_frame(&aligned, &Limits::default()).unwrap();
        (view.message_id(), view.payload().to_vec())
    }

    fn fed(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut decoder = FrameDecoder::new(Limits::default());
        decoder.feed(bytes);
        let mut out = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            out.push((frame.message_id(), frame.payload().to_vec()));
        }
        out
    }

    #[test]
    fn frames_split_at_every_position_match_feed() {
        let bytes = stream();
        let expected = fed(&bytes);
        assert_eq!(expected.len(), 6);
        for large in [usize::MAX, 1024, 16] {
            for cut in 0..=bytes.len() {
                let (a, b) = bytes.split_at(cut);
                assert_eq!(
                    lent(&[a, b], large),
                    expected,
                    "cut at {cut}, large {large}"
                );
            }
            for step in [1, 3, 16, 17, 100, 999] {
                let pieces: Vec<&[u8]> = bytes.chunks(step).collect();
                assert_eq!(lent(&pieces, large), expected, "step {step}, large {large}");
            }
        }
    }

    #[test]
    fn whole_frames_are_read_in_place_and_only_the_tail_is_copied() {
        let bytes = stream();
        let cut = bytes.len() - 40;
        let mut decoder = FrameDecoder::new(Limits::default());
        let mut chunk = decoder.lend(&bytes[..cut], usize::MAX);
        let start = bytes.as_ptr() as usize;
        let mut ids = Vec::new();
        while let Some(frame) = chunk.next_frame().unwrap() {
            let at = frame.as_bytes().as_ptr() as usize;
            assert!(
                (start..start + cut).contains(&at),
                "borrowed from the chunk"
            );
            ids.push(frame.message_id());
        }
        assert_eq!(chunk.finish(), cut);
        assert_eq!(ids, [1, 2, 3, 4, 5]);
        assert!(decoder.buffered_len() < 64, "only the tail was copied");
        assert_eq!(
            decoder.consumed_len(),
            (cut - decoder.buffered_len()) as u64
        );
    }

    #[test]
    fn a_large_frame_stops_the_loan_at_its_header() {
        let bytes = stream();
        let expected = fed(&bytes);
        assert_eq!(expected[4].1.len(), 3000, "frame 5 is large at 1024");
        // Cut inside frame 5 (a large frame wholly inside a chunk is
        // handed out of it like any other).
        let cut = bytes.len() - 1000;
        let mut decoder = FrameDecoder::new(Limits::default());
        let mut chunk = decoder.lend(&bytes[..cut], 1024);
        let mut ids = Vec::new();
        while let Some(frame) = chunk.next_frame().unwrap() {
            ids.push(frame.message_id());
        }
        let used = chunk.finish();
        assert_eq!(ids, [1, 2, 3, 4]);
        assert!(used < cut);
        let len = decoder.pending_frame_len().unwrap();
        assert!(len >= 3000);
        // Its prefix and header are in, no payload byte.
        let head = decoder.buffered_len();
        assert!(head < 200, "{head}");
        assert_eq!(&bytes[used - head..used], decoder.front_bytes());
    }

    #[test]
    fn an_error_poisons_the_decoder() {
        let mut decoder = FrameDecoder::new(Limits::default());
        let garbage = [0xAB; 64];
        let mut chunk = decoder.lend(&garbage, usize::MAX);
        assert!(chunk.next_frame().is_err());
        assert!(chunk.next_frame().is_err());
        drop(chunk);
        assert!(decoder.is_poisoned());
    }
}
