//! [`Slot`]: a frame reserved in an outbound ring, filled in place.

use std::ops::{Deref, DerefMut, Range};

use hostmux_ring::Reservation;
use hostmux_wire::{FramePrefix, Limits, FRAME_ALIGN, PREFIX_LEN};

use crate::outbox::{mark_answered, Answer, SentCounters};

/// A frame reserved in the outbound ring; dereferences to its payload bytes
/// (16-byte aligned). Fill every byte, then commit; the frame is published
/// by the next send, flush or receive call. Dropping the slot without
/// committing abandons the frame.
#[derive(Debug)]
pub struct Slot<'a> {
    pub(crate) reservation: Option<Reservation<'a>>,
    pub(crate) payload: Range<usize>,
    pub(crate) header_len: usize,
    pub(crate) limits: Limits,
    pub(crate) sent: &'a mut SentCounters,
    pub(crate) answer: Option<Answer<'a>>,
}

impl Slot<'_> {
    /// Commits the frame with its whole reserved payload.
    pub fn commit(self) {
        let len = self.payload.len();
        self.commit_len(len);
    }

    /// Commits the frame with only the first `len` payload bytes (clamped to
    /// the reserved length), e.g. after serialising a value of unknown size.
    pub fn commit_len(mut self, len: usize) {
        let Some(mut reservation) = self.reservation.take() else {
            return;
        };
        let len = len.min(self.payload.len());
        // The reserved lengths passed the limits; a shorter payload does too.
        let Ok(prefix) = FramePrefix::for_lengths(self.header_len, len, &self.limits) else {
            return;
        };
        reservation[..PREFIX_LEN].copy_from_slice(&prefix.to_bytes());
        let start = self.payload.start + len;
        let end = self.payload.start + len.next_multiple_of(FRAME_ALIGN);
        reservation[start..end].fill(0);
        reservation.commit_len(prefix.frame_len());
        mark_answered(self.answer);
        self.sent.frames += 1;
        self.sent.bytes += len as u64;
    }
}

impl Deref for Slot<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.reservation {
            Some(r) => &r[self.payload.clone()],
            None => &[],
        }
    }
}

impl DerefMut for Slot<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let payload = self.payload.clone();
        match &mut self.reservation {
            Some(r) => &mut r[payload],
            None => &mut [],
        }
    }
}
