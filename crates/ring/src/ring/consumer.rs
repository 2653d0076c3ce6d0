//! The reading end of a ring: [`Consumer`] and its [`Batch`] iterator.

use std::sync::Arc;
use std::time::Duration;

use super::{
    arm_doorbell_until, close_and_wake, starting_indices, wait_until, wake_peer, SpinPolicy,
    WaitOutcome,
};
use crate::doorbell::Doorbell;
use crate::error::RingError;
use crate::protocol::{
    cancel_sleep, is_waker_closed, take_pending, ConsumerCursor, Storage, READABLE, WRITABLE,
};
use crate::read_position::ReadPosition;
use crate::shm::Region;
use crate::sync::Ordering;

#[cfg(doc)]
use super::{Producer, DEFAULT_SPIN};
#[cfg(doc)]
use crate::spin::PURE_SPIN;

/// The reading end of a ring.
///
/// Call order: [`peek`](Consumer::peek) a record, use it in place,
/// [`release`](Consumer::release) it; or take several at once with
/// [`batch`](Consumer::batch). Released space is published to the producer in
/// batches (a quarter of the capacity), whenever the ring is found empty,
/// before sleeping, and on [`publish_released`](Consumer::publish_released).
#[derive(Debug)]
pub struct Consumer {
    region: Arc<Region>,
    cursor: ConsumerCursor,
    producer_doorbell: Option<Doorbell>,
    policy: SpinPolicy,
    release_batch: u64,
    /// Shared with another ring's producer, if linked.
    read_position: Option<ReadPosition>,
}

impl Consumer {
    pub(super) fn new(region: Arc<Region>) -> Result<Consumer, RingError> {
        let (head, _) = starting_indices(&region)?;
        Ok(Consumer {
            cursor: ConsumerCursor::new(region.capacity(), head, head),
            release_batch: region.capacity() / 4,
            region,
            producer_doorbell: None,
            policy: SpinPolicy::DEFAULT,
            read_position: None,
        })
    }

    /// Data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.region.capacity() as usize
    }

    /// The next record's payload, borrowed in place (16-byte aligned), or
    /// `None` if nothing is published. Peeking again without
    /// [`release`](Consumer::release) returns the same record, reading and
    /// validating its header again; [`peeked`](Consumer::peeked) returns it
    /// without doing either.
    ///
    /// The bytes live in memory the producer can write: treat them as
    /// untrusted input and copy out anything you validate before relying on it.
    #[inline]
    pub fn peek(&mut self) -> Result<Option<&[u8]>, RingError> {
        match self.cursor.peek(&*self.region)? {
            Some(span) => self
                .region
                .bytes(span.payload, span.len)
                .map(Some)
                .ok_or_else(|| RingError::corrupted("record outside the data region")),
            None => {
                self.publish_released()?;
                Ok(None)
            }
        }
    }

    /// The record the last [`peek`](Consumer::peek) returned, as long as it
    /// is not released, without loading or validating anything again (its
    /// header was read once, by that peek). `None` if no record is peeked or
    /// this end is poisoned. Makes no system call, allocates nothing.
    ///
    /// For a caller that looks at a record, decides, and only then takes it
    /// for longer than the first borrow could last.
    #[inline]
    pub fn peeked(&self) -> Option<&[u8]> {
        let span = self.cursor.peeked()?;
        self.region.bytes(span.payload, span.len)
    }

    /// Consume the record returned by the last [`peek`](Consumer::peek)
    /// (no-op if there is none). Publishes the consumed index once a quarter
    /// of the capacity has been released since the last publication.
    #[inline]
    pub fn release(&mut self) -> Result<(), RingError> {
        if self.cursor.release() {
            if let Some(position) = &self.read_position {
                position.0.advance(self.cursor.head());
            }
            if self.cursor.unpublished() >= self.release_batch {
                self.publish_released()?;
            }
        }
        Ok(())
    }

    /// Publish the consumed index now and wake the producer if it waits for space.
    #[inline]
    pub fn publish_released(&mut self) -> Result<(), RingError> {
        let moved = match &self.read_position {
            None => self.cursor.publish(&*self.region),
            Some(position) => {
                // The linked producer may have published further already.
                match self
                    .cursor
                    .publish_over(&*self.region, position.0.published())
                {
                    None => false,
                    Some(stored) => {
                        if stored {
                            position.0.set_published(self.cursor.head());
                        }
                        true
                    }
                }
            }
        };
        if moved {
            wake_peer(&self.region, WRITABLE, self.producer_doorbell.as_ref())?;
        }
        Ok(())
    }

    /// This consumer's read position, to link to the producer of another
    /// ring with [`Producer::publish_read_position_first`] (see
    /// [`ReadPosition`]). From the first call on, releases also advance it
    /// and this consumer's own publications never move the shared index
    /// behind what the link published. Every call returns the same
    /// position.
    pub fn read_position(&mut self) -> ReadPosition {
        let region = &self.region;
        let head = self.cursor.head();
        // Publish first, so the link starts from the shared index.
        self.read_position
            .get_or_insert_with(|| {
                region.head().store(head, Ordering::Release);
                ReadPosition::new(Arc::clone(region), head)
            })
            .clone()
    }

    /// The index after the record the last [`peek`](Consumer::peek)
    /// returned, while it is not released: what
    /// [`ReadPosition::mark`] takes once that record is answered.
    #[inline]
    pub fn peeked_end(&self) -> Option<u64> {
        self.cursor.peeked_end()
    }

    /// An iterator over the published records. Each record it yields counts as
    /// consumed; all yielded slices stay valid until the consumer is used again,
    /// which is when their space can be published back to the producer.
    pub fn batch(&mut self) -> Batch<'_> {
        Batch {
            region: &self.region,
            cursor: &mut self.cursor,
            done: false,
        }
    }

    /// Ring bytes published by the producer, as of the last producer index
    /// this consumer loaded, and not yet consumed here: that index minus the
    /// local consumer index. A record peeked but not released still counts;
    /// records a [`Batch`] yielded do not. Reads no shared memory, makes no
    /// system call, allocates nothing. Same unit as
    /// [`Producer::used`] (headers and padding included), always `0..=capacity`.
    ///
    /// It is a **lower bound** of what the producer has put in: the producer
    /// may have published more since the last load (`peek` loads the producer
    /// index only once it has consumed everything it saw) and its unpublished
    /// commits are invisible. [`refresh_used`](Consumer::refresh_used) loads now.
    #[inline]
    pub fn used(&self) -> usize {
        self.cursor.used() as usize
    }

    /// [`used`](Consumer::used) after loading the producer index once (one
    /// atomic load, validated; no system call, no allocation).
    /// `Err(Corrupted)` if the producer wrote an impossible index (this end
    /// is then poisoned).
    #[inline]
    pub fn refresh_used(&mut self) -> Result<usize, RingError> {
        self.cursor
            .refresh_used(&*self.region)
            .map(|used| used as usize)
    }

    /// Whether a record is published and not yet consumed.
    #[inline]
    pub fn is_readable(&mut self) -> Result<bool, RingError> {
        self.cursor.has_records(&*self.region)
    }

    /// Wait until a record is readable: poll for the spin time (pure spin,
    /// then yielding the CPU between checks; see
    /// [`set_spin`](Consumer::set_spin)), then sleep on the ring's futex word
    /// (the producer wakes it on publish). Publishes released space first.
    pub fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<WaitOutcome, RingError> {
        self.publish_released()?;
        let (cursor, region) = (&mut self.cursor, &*self.region);
        wait_until(region, READABLE, self.policy, timeout, || {
            cursor.has_records(region)
        })
    }

    /// Announce that this consumer will sleep on its doorbell. Returns `true`
    /// if armed (now wait on the doorbell), `false` if records are already
    /// readable or the producer closed (not armed). Publishes released space first.
    pub fn arm_doorbell(&mut self) -> Result<bool, RingError> {
        self.publish_released()?;
        let (cursor, region) = (&mut self.cursor, &*self.region);
        arm_doorbell_until(region, READABLE, || cursor.has_records(region))
    }

    /// Withdraw a sleep announcement made by [`arm_doorbell`](Consumer::arm_doorbell).
    pub fn disarm(&mut self) {
        cancel_sleep(&*self.region, READABLE);
    }

    /// Clear and return the flag the producer sets when it rang this
    /// consumer's doorbell (this ring has records to drain).
    pub fn take_pending(&mut self) -> bool {
        take_pending(&*self.region, READABLE)
    }

    /// The doorbell to ring when the producer waits for space in doorbell mode.
    pub fn set_producer_doorbell(&mut self, doorbell: Option<Doorbell>) {
        self.producer_doorbell = doorbell;
    }

    /// How long [`wait_readable`](Consumer::wait_readable) polls before it
    /// sleeps ([`DEFAULT_SPIN`] unless set): the first part (see
    /// [`set_pure_spin`](Consumer::set_pure_spin)) spins, the rest yields the
    /// CPU between checks. `Duration::ZERO` checks once, then sleeps.
    pub fn set_spin(&mut self, spin: Duration) {
        self.policy.spin = spin;
    }

    /// How much of the spin time [`wait_readable`](Consumer::wait_readable)
    /// spins without yielding the CPU ([`PURE_SPIN`] unless set). Set it to
    /// at least the spin time only when this end has a core to itself: a
    /// pure spin starves a peer scheduled on the same CPU.
    pub fn set_pure_spin(&mut self, pure_spin: Duration) {
        self.policy.pure_spin = pure_spin;
    }

    /// Whether the producer closed its end (flag in shared memory; a dead
    /// producer process is seen through its pidfd instead).
    pub fn is_producer_closed(&self) -> bool {
        is_waker_closed(&*self.region, READABLE)
    }

    /// The protocol violation that poisoned this end, if any.
    pub fn corruption(&self) -> Option<&'static str> {
        self.cursor.poison()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // As for `Producer`: nothing to report to from drop.
        let _ = self.publish_released();
        close_and_wake(&self.region, WRITABLE, self.producer_doorbell.as_ref());
    }
}

/// Records taken in one go from a [`Consumer`]; see [`Consumer::batch`].
/// Yields `Err` once (and then ends) if the ring is corrupted.
#[derive(Debug)]
pub struct Batch<'a> {
    region: &'a Region,
    cursor: &'a mut ConsumerCursor,
    done: bool,
}

impl<'a> Iterator for Batch<'a> {
    type Item = Result<&'a [u8], RingError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.cursor.peek(self.region) {
            Ok(Some(span)) => {
                self.cursor.release();
                let region: &'a Region = self.region;
                Some(
                    region
                        .bytes(span.payload, span.len)
                        .ok_or_else(|| RingError::corrupted("record outside the data region")),
                )
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
