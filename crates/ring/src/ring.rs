//! The public ring ends: [`SharedRing`], [`Producer`], [`Reservation`],
//! [`Consumer`], [`Batch`].

use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::doorbell::{futex_wait, futex_wake, Doorbell};
use crate::error::RingError;
use crate::layout::{RECORD_ALIGN, SLEEP_DOORBELL, SLEEP_FUTEX};
use crate::memory::{allocated_bytes, RingMemory};
use crate::protocol::{
    announce_sleep_then_recheck, cancel_sleep, is_waker_closed, take_pending, take_sleeper,
    ProducerCursor, Recheck, Slot, Storage, WakeWords, READABLE, WRITABLE,
};
use crate::read_position::ReadPosition;
use crate::shm::{Region, WriteToken};
use crate::spin::{spin_for_with, PURE_SPIN};
use crate::sync::Ordering;

mod consumer;
mod held;
pub use consumer::{Batch, Consumer};
pub use held::HeldRecord;

#[cfg(doc)]
use crate::spin::spin_for;

/// How long a waiting end polls before it announces that it sleeps: the
/// first [`PURE_SPIN`] with CPU pause hints, the rest yielding the CPU
/// between checks (see [`spin_for`]). Set per end with `set_spin`.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum WaitOutcome {
    /// The condition holds: records to read, or room to write.
    Ready,
    /// The timeout passed first.
    TimedOut,
    /// The peer closed its end (and, for a consumer, nothing is left to read).
    PeerClosed,
}

/// A ring's shared memory before it is split into ends.
///
/// The creating side (the host) calls [`SharedRing::create`], hands the memfd
/// to the peer ([`SharedRing::inheritable_fd`] for a child, or
/// [`SharedRing::memfd`] sent over a Unix socket with `SCM_RIGHTS`), and keeps
/// one end; the peer calls [`SharedRing::attach`] and keeps the other.
#[derive(Debug)]
pub struct SharedRing {
    region: Arc<Region>,
    memfd: OwnedFd,
}

impl SharedRing {
    /// A new ring with `capacity` data bytes (a power of two, 64 KiB to 256 MiB)
    /// in a sealed memfd, mapped shared and pre-faulted
    /// ([`RingMemory::Populated`]; see [`create_with`](SharedRing::create_with)).
    pub fn create(capacity: usize) -> Result<SharedRing, RingError> {
        SharedRing::create_with(capacity, RingMemory::Populated)
    }

    /// A new ring with `capacity` data bytes whose pages are allocated as
    /// `memory` says: all now, or each on first write.
    pub fn create_with(capacity: usize, memory: RingMemory) -> Result<SharedRing, RingError> {
        let (region, memfd) = Region::create(capacity, memory)?;
        Ok(SharedRing {
            region: Arc::new(region),
            memfd,
        })
    }

    /// Map a ring from a memfd another process created. Checks the seals, the
    /// size, the magic, version and capacity in the header. The mapping is
    /// pre-faulted only if the creator populated the ring (every page of the
    /// memfd exists); a ring created [`RingMemory::OnDemand`] stays on demand.
    pub fn attach(memfd: OwnedFd) -> Result<SharedRing, RingError> {
        let region = Region::attach(memfd.as_fd())?;
        Ok(SharedRing {
            region: Arc::new(region),
            memfd,
        })
    }

    /// Data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.region.capacity() as usize
    }

    /// The largest record payload this ring accepts (capacity minus the 16-byte record header).
    pub fn max_payload(&self) -> usize {
        self.capacity() - RECORD_ALIGN as usize
    }

    /// Bytes of memory the ring's memfd holds now, header included (its
    /// `st_blocks`; pages are counted once however many processes map
    /// them). A populated ring holds all of its pages; an on-demand one
    /// those written so far.
    pub fn resident_bytes(&self) -> Result<u64, RingError> {
        let stat = rustix::fs::fstat(&self.memfd).map_err(|e| RingError::os("fstat", e))?;
        Ok(allocated_bytes(&stat))
    }

    /// The memfd (close-on-exec), e.g. to send over a Unix socket.
    pub fn memfd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    /// A duplicate of the memfd *without* close-on-exec, for a child process
    /// to inherit (pass its number to the child, or `dup2` it to a fixed fd).
    pub fn inheritable_fd(&self) -> Result<OwnedFd, RingError> {
        rustix::io::dup(&self.memfd).map_err(|e| RingError::os("dup", e))
    }

    /// Keep the producing end.
    pub fn into_producer(self) -> Result<Producer, RingError> {
        Producer::new(self.region)
    }

    /// Keep the consuming end.
    pub fn into_consumer(self) -> Result<Consumer, RingError> {
        Consumer::new(self.region)
    }

    /// Both ends in this process (threads, tests).
    pub fn split(self) -> Result<(Producer, Consumer), RingError> {
        let consumer = Consumer::new(self.region.clone())?;
        Ok((Producer::new(self.region)?, consumer))
    }

    /// The shared region (tests reach in to play a hostile peer).
    #[cfg(test)]
    pub(crate) fn region(&self) -> Arc<Region> {
        self.region.clone()
    }

    /// Both ends over a heap region with the shared layout (tests, fuzzing).
    /// Capacity may be as small as 32 bytes.
    pub(crate) fn heap_pair(
        capacity: usize,
    ) -> Result<(Producer, Consumer, Arc<Region>), RingError> {
        let region = Arc::new(Region::heap(capacity)?);
        Ok((
            Producer::new(region.clone())?,
            Consumer::new(region.clone())?,
            region,
        ))
    }
}

/// Indices found in the header when an end starts: trusted only as far as
/// they are consistent (a peer that attaches trusts the ring's creator).
fn starting_indices(region: &Region) -> Result<(u64, u64), RingError> {
    let head = region.head().load(Ordering::Acquire);
    let tail = region.tail().load(Ordering::Acquire);
    if tail.wrapping_sub(head) > region.capacity()
        || head % RECORD_ALIGN != 0
        || tail % RECORD_ALIGN != 0
    {
        return Err(RingError::corrupted(
            "ring indices inconsistent when the end was opened",
        ));
    }
    Ok((head, tail))
}

fn remaining(deadline: Option<Instant>) -> Option<Option<Duration>> {
    match deadline {
        None => Some(None),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                None
            } else {
                Some(Some(left))
            }
        }
    }
}

/// How long a wait polls before it sleeps, and how much of that without yielding.
#[derive(Clone, Copy, Debug)]
struct SpinPolicy {
    spin: Duration,
    pure_spin: Duration,
}

impl SpinPolicy {
    const DEFAULT: SpinPolicy = SpinPolicy {
        spin: DEFAULT_SPIN,
        pure_spin: PURE_SPIN,
    };
}

/// The one blocking wait both ends use: poll `ready` per `policy`, then
/// sleep on the futex word of `words` until `ready` holds, the waker closes
/// or `timeout` passes. Each round announces the sleep, re-checks after the
/// `SeqCst` fence (see [`announce_sleep_then_recheck`]), waits on the futex
/// only while the sequence word still holds the value read before the
/// announcement, and withdraws the announcement after waking.
fn wait_until(
    region: &Region,
    words: WakeWords,
    policy: SpinPolicy,
    timeout: Option<Duration>,
    mut ready: impl FnMut() -> Result<bool, RingError>,
) -> Result<WaitOutcome, RingError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let spin = policy.spin.min(timeout.unwrap_or(Duration::MAX));
    if spin_for_with(policy.pure_spin, spin, &mut ready)? {
        return Ok(WaitOutcome::Ready);
    }
    loop {
        let seen = match announce_sleep_then_recheck(region, words, SLEEP_FUTEX, &mut ready)? {
            Recheck::Sleep(seen) => seen,
            Recheck::Ready => return Ok(WaitOutcome::Ready),
            Recheck::WakerClosed => return Ok(WaitOutcome::PeerClosed),
        };
        let Some(left) = remaining(deadline) else {
            cancel_sleep(region, words);
            return Ok(WaitOutcome::TimedOut);
        };
        let waited = futex_wait(region.word(words.seq), seen, left);
        cancel_sleep(region, words);
        waited?;
    }
}

/// Announce a doorbell sleep unless `ready` already holds or the waker
/// closed. Returns whether the announcement stands (the caller now waits on
/// its doorbell).
fn arm_doorbell_until(
    region: &Region,
    words: WakeWords,
    ready: impl FnOnce() -> Result<bool, RingError>,
) -> Result<bool, RingError> {
    let recheck = announce_sleep_then_recheck(region, words, SLEEP_DOORBELL, ready)?;
    Ok(matches!(recheck, Recheck::Sleep(_)))
}

/// What an end does when dropped, after publishing its index: raise its
/// closed flag and wake the peer if it sleeps, so the peer sees the close.
fn close_and_wake(region: &Region, words: WakeWords, doorbell: Option<&Doorbell>) {
    region.word(words.waker_closed).store(1, Ordering::Release);
    // Errors cannot be reported from drop; the peer also sees the closed
    // flag on its next check and, for a dead process, its pidfd.
    let _ = wake_peer(region, words, doorbell);
}

/// Wake the peer if it announced that it sleeps (see `protocol::take_sleeper`).
#[inline]
fn wake_peer(
    region: &Region,
    words: WakeWords,
    doorbell: Option<&Doorbell>,
) -> Result<(), RingError> {
    let Some(mode) = take_sleeper(region, words) else {
        return Ok(());
    };
    // Unknown modes (only a hostile peer writes them) get both kinds of wake.
    if mode != SLEEP_DOORBELL || doorbell.is_none() {
        futex_wake(region.word(words.seq));
    }
    if mode != SLEEP_FUTEX {
        if let Some(doorbell) = doorbell {
            doorbell.ring()?;
        }
    }
    Ok(())
}

/// The writing end of a ring.
///
/// Call order: [`try_reserve`](Producer::try_reserve), write into the
/// [`Reservation`], [`commit`](Reservation::commit); repeat; then
/// [`publish`](Producer::publish) once to make every commit visible with one
/// index store. Dropping the producer publishes and marks the ring closed.
#[derive(Debug)]
pub struct Producer {
    region: Arc<Region>,
    token: WriteToken,
    cursor: ProducerCursor,
    consumer_doorbell: Option<Doorbell>,
    policy: SpinPolicy,
    /// Published right before this producer's own index.
    read_position_first: Option<ReadPosition>,
}

impl Producer {
    fn new(region: Arc<Region>) -> Result<Producer, RingError> {
        let token = region
            .take_write_token()
            .ok_or_else(|| RingError::corrupted("ring already has a producer in this process"))?;
        let (head, tail) = starting_indices(&region)?;
        Ok(Producer {
            cursor: ProducerCursor::new(region.capacity(), tail, head),
            region,
            token,
            consumer_doorbell: None,
            policy: SpinPolicy::DEFAULT,
            read_position_first: None,
        })
    }

    /// Data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.region.capacity() as usize
    }

    /// Publish `position` (another ring's consumer index) right before each
    /// publication of this producer's index, every path included (an
    /// explicit [`publish`](Producer::publish), a full ring, a wait, drop);
    /// see [`ReadPosition`]. `None` unlinks.
    pub fn publish_read_position_first(&mut self, position: Option<ReadPosition>) {
        self.read_position_first = position;
    }

    /// The largest payload [`try_reserve`](Producer::try_reserve) accepts.
    pub fn max_payload(&self) -> usize {
        self.cursor.max_payload() as usize
    }

    /// Ring bytes in flight as this producer last saw them: its own index
    /// (every committed record, published or not) minus the last consumer
    /// index it loaded and validated. Reads no shared memory, makes no system
    /// call, allocates nothing.
    ///
    /// The unit is ring bytes, comparable with [`capacity`](Producer::capacity):
    /// each record counts its 16-byte header and its payload rounded up to 16,
    /// plus any padding record written to skip the end of the data region.
    /// Always `0..=capacity`.
    ///
    /// It is an **upper bound** of what the consumer still holds, stale in
    /// two ways because both indices are published in batches:
    ///
    /// * this producer loads the consumer index only when its cached view
    ///   says a record does not fit (and in [`refresh_used`](Producer::refresh_used),
    ///   [`is_writable`](Producer::is_writable) when full, the waits); between
    ///   loads `used()` only grows with commits and can approach the capacity
    ///   even though the consumer emptied the ring long ago;
    /// * the consumer publishes its index once a quarter of the capacity is
    ///   released, when it finds the ring empty, before it sleeps and on
    ///   [`Consumer::publish_released`]; so even a fresh load can lag behind
    ///   the consumer's real progress by up to a quarter of the capacity.
    ///
    /// For a gauge or a high-water mark use [`refresh_used`](Producer::refresh_used).
    #[inline]
    pub fn used(&self) -> usize {
        self.cursor.used() as usize
    }

    /// [`used`](Producer::used) after loading the consumer index once (one
    /// atomic load of the consumer's cache line, validated like every other
    /// load; no system call, no allocation). Still an upper bound by at most
    /// the consumer's unpublished releases (under a quarter of the capacity
    /// while the consumer is busy, 0 once it found the ring empty or sleeps).
    /// `Err(Corrupted)` if the consumer wrote an impossible index (this end is
    /// then poisoned, as for any other violation).
    #[inline]
    pub fn refresh_used(&mut self) -> Result<usize, RingError> {
        self.cursor
            .refresh_used(&*self.region)
            .map(|used| used as usize)
    }

    /// Reserve `len` payload bytes, 16-byte aligned, contiguous (a record never
    /// wraps). `Err(Full)` is transient: unpublished commits are published so
    /// the consumer can make room, then wait with
    /// [`wait_writable`](Producer::wait_writable). `Err(TooLarge)` is permanent.
    /// `Err(Corrupted)` means the consumer broke the protocol.
    ///
    /// While a record is held ([`hold`](Producer::hold)) every reservation
    /// is refused with `Full`: records are published in order, and the
    /// held one is not committed yet.
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<Reservation<'_>, RingError> {
        if self.region.is_held() {
            self.publish()?;
            return Err(RingError::Full);
        }
        let slot = match self.cursor.reserve(&*self.region, len) {
            Ok(slot) => slot,
            Err(RingError::Full) => {
                if self.cursor.has_unpublished() {
                    self.publish()?;
                }
                return Err(RingError::Full);
            }
            Err(e) => return Err(e),
        };
        let Producer {
            region,
            token,
            cursor,
            ..
        } = self;
        let bytes = region
            .bytes_mut(token, slot.payload, slot.len)
            .ok_or_else(|| RingError::corrupted("reserved record outside the data region"))?;
        Ok(Reservation {
            bytes,
            cursor,
            region,
            slot,
        })
    }

    /// Make every committed record visible to the consumer with one index
    /// store, and wake the consumer only if it announced that it sleeps.
    #[inline]
    pub fn publish(&mut self) -> Result<(), RingError> {
        if let Some(first) = &self.read_position_first {
            if self.cursor.has_unpublished() {
                first.0.publish();
            }
        }
        if self.cursor.publish(&*self.region) {
            wake_peer(&self.region, READABLE, self.consumer_doorbell.as_ref())?;
        }
        Ok(())
    }

    /// Whether a record of `len` bytes fits now (never while a record is
    /// held).
    #[inline]
    pub fn is_writable(&mut self, len: usize) -> Result<bool, RingError> {
        Ok(!self.region.is_held() && self.cursor.fits(&*self.region, len)?)
    }

    /// Wait until a record of `len` bytes fits: poll for the spin time (pure
    /// spin, then yielding the CPU between checks; see
    /// [`set_spin`](Producer::set_spin)), then sleep on the ring's futex word
    /// (the consumer wakes it when it publishes released space). Publishes
    /// pending commits first.
    pub fn wait_writable(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<WaitOutcome, RingError> {
        self.publish()?;
        let (cursor, region) = (&mut self.cursor, &*self.region);
        wait_until(region, WRITABLE, self.policy, timeout, || {
            Ok(!region.is_held() && cursor.fits(region, len)?)
        })
    }

    /// Announce that this producer will sleep on its doorbell until `len`
    /// bytes fit. Returns `true` if armed (now wait on the doorbell), `false`
    /// if the record already fits or the consumer closed (not armed). While
    /// a record is held nothing fits: the holder, not the consumer, ends
    /// that wait, and must wake whoever armed meanwhile.
    pub fn arm_doorbell(&mut self, len: usize) -> Result<bool, RingError> {
        self.publish()?;
        let (cursor, region) = (&mut self.cursor, &*self.region);
        arm_doorbell_until(region, WRITABLE, || {
            Ok(!region.is_held() && cursor.fits(region, len)?)
        })
    }

    /// Withdraw a sleep announcement made by [`arm_doorbell`](Producer::arm_doorbell).
    pub fn disarm(&mut self) {
        cancel_sleep(&*self.region, WRITABLE);
    }

    /// Clear and return the flag the consumer sets when it rang this
    /// producer's doorbell because space became available.
    pub fn take_pending(&mut self) -> bool {
        take_pending(&*self.region, WRITABLE)
    }

    /// The doorbell to ring when the consumer sleeps in doorbell mode
    /// (otherwise the futex word is used).
    pub fn set_consumer_doorbell(&mut self, doorbell: Option<Doorbell>) {
        self.consumer_doorbell = doorbell;
    }

    /// How long [`wait_writable`](Producer::wait_writable) polls before it
    /// sleeps ([`DEFAULT_SPIN`] unless set): the first part (see
    /// [`set_pure_spin`](Producer::set_pure_spin)) spins, the rest yields the
    /// CPU between checks. `Duration::ZERO` checks once, then sleeps.
    pub fn set_spin(&mut self, spin: Duration) {
        self.policy.spin = spin;
    }

    /// How much of the spin time [`wait_writable`](Producer::wait_writable)
    /// spins without yielding the CPU ([`PURE_SPIN`] unless set). Set it to
    /// at least the spin time only when this end has a core to itself: a
    /// pure spin starves a peer scheduled on the same CPU.
    pub fn set_pure_spin(&mut self, pure_spin: Duration) {
        self.policy.pure_spin = pure_spin;
    }

    /// Whether the consumer closed its end (a flag in shared memory: a peer
    /// that died without closing is seen through its pidfd, not here).
    pub fn is_consumer_closed(&self) -> bool {
        is_waker_closed(&*self.region, WRITABLE)
    }

    /// The protocol violation that poisoned this end, if any.
    pub fn corruption(&self) -> Option<&'static str> {
        self.cursor.poison()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // Errors cannot be reported from drop (see `close_and_wake`).
        let _ = self.publish();
        close_and_wake(&self.region, READABLE, self.consumer_doorbell.as_ref());
    }
}

/// Room for one record, written in place. Dereferences to the reserved bytes
/// (16-byte aligned). Dropping it without [`commit`](Reservation::commit)
/// abandons it.
#[derive(Debug)]
pub struct Reservation<'a> {
    bytes: &'a mut [u8],
    cursor: &'a mut ProducerCursor,
    region: &'a Region,
    slot: Slot,
}

impl Reservation<'_> {
    /// Gives up the borrow, keeping the reserved slot (for a
    /// [`HeldRecord`], which reserves through `try_reserve`).
    fn into_slot(self) -> Slot {
        self.slot
    }

    /// Commit the whole reservation (visible after [`Producer::publish`]).
    #[inline]
    pub fn commit(self) {
        let len = self.slot.len;
        self.cursor.commit(self.region, &self.slot, len);
    }

    /// Commit only the first `len` bytes (clamped to the reserved length),
    /// e.g. after reading a frame of unknown size straight into the ring.
    #[inline]
    pub fn commit_len(self, len: usize) {
        let len = (len as u64).min(self.slot.len);
        self.cursor.commit(self.region, &self.slot, len);
    }
}

impl Deref for Reservation<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl DerefMut for Reservation<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        self.bytes
    }
}
