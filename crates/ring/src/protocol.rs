//! The index protocol, generic over where its words live.
//!
//! Nothing here knows about `mmap`, futexes or eventfds: a [`Storage`] hands
//! out the header atomics and the record-header words, the cursors decide what
//! to load, validate and store. The shared-memory ring implements [`Storage`]
//! over the mapping; the loom tests implement it over loom atomics on the heap.
//!
//! # Ordering
//!
//! * Producer: payload bytes and record-header words are written with plain or
//!   `Relaxed` stores, then `publish` stores the producer index with `Release`.
//!   The consumer loads that index with `Acquire`, so everything before it is
//!   visible. The consumer index works the same way in reverse: the producer
//!   reuses bytes only after an `Acquire` load shows they were released.
//! * Sleep/wake (a Dekker pair): the sleeper stores its sleep word, issues a
//!   `SeqCst` fence, then re-checks the peer's index; the waker stores its index,
//!   issues a `SeqCst` fence, then loads the sleep word. At least one of them
//!   sees the other's store, so a wake-up is never lost. The waker bumps a
//!   sequence word before waking, and the sleeper waits only while that word
//!   still holds the value it read before announcing (futex semantics).
//!
//! # Validation (hostile peer)
//!
//! Each end keeps its own index locally and never reads it back. The peer's
//! index and every record header are loaded exactly once into a local and
//! checked before use; a failed check poisons the cursor.

use crate::error::RingError;
use crate::layout::{record_size, Word, AWAKE, LEN_MASK, PAD_FLAG, RECORD_ALIGN, SLEEP_FUTEX};
use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// Where a ring's shared words live.
pub(crate) trait Storage {
    /// The producer index (tail), written only by the producer.
    fn tail(&self) -> &AtomicU64;
    /// The consumer index (head), written only by the consumer.
    fn head(&self) -> &AtomicU64;
    /// One of the 32-bit header words.
    fn word(&self, word: Word) -> &AtomicU32;
    /// The record-header word at data offset `pos`. Callers pass a multiple of
    /// [`RECORD_ALIGN`] below the capacity (implementations mask it anyway).
    fn record_word(&self, pos: u64) -> &AtomicU64;
}

/// A reserved place for one record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    /// Padding to write first (0, or the bytes up to the end of the data region).
    pub(crate) pad: u64,
    /// Data offset of the payload.
    pub(crate) payload: u64,
    /// Payload bytes reserved.
    pub(crate) len: u64,
}

/// A record found by the consumer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    /// Data offset of the payload.
    pub(crate) payload: u64,
    /// Payload length.
    pub(crate) len: u64,
}

#[inline]
fn poisoned(poison: Option<&'static str>) -> Result<(), RingError> {
    match poison {
        Some(what) => Err(RingError::corrupted(what)),
        None => Ok(()),
    }
}

/// The producer's private view of the ring.
#[derive(Debug)]
pub(crate) struct ProducerCursor {
    capacity: u64,
    /// Index after the last committed record (local, trusted).
    tail: u64,
    /// Last value stored to the shared producer index.
    published: u64,
    /// Last validated consumer index.
    head_seen: u64,
    poison: Option<&'static str>,
}

impl ProducerCursor {
    pub(crate) fn new(capacity: u64, tail: u64, head: u64) -> Self {
        ProducerCursor {
            capacity,
            tail,
            published: tail,
            head_seen: head,
            poison: None,
        }
    }

    pub(crate) fn max_payload(&self) -> u64 {
        self.capacity - RECORD_ALIGN
    }

    pub(crate) fn poison(&self) -> Option<&'static str> {
        self.poison
    }

    #[inline]
    pub(crate) fn has_unpublished(&self) -> bool {
        self.tail != self.published
    }

    #[inline]
    fn free(&self) -> u64 {
        self.capacity - self.used()
    }

    /// Ring bytes committed (published or not) and not yet known to be
    /// released: local tail minus the last validated consumer index. Never
    /// more than the capacity (every commit was checked against it).
    #[inline]
    pub(crate) fn used(&self) -> u64 {
        self.tail.wrapping_sub(self.head_seen)
    }

    /// [`used`](Self::used) after loading the consumer index once (validated
    /// like every other load; a violation poisons the cursor).
    #[inline]
    pub(crate) fn refresh_used<S: Storage>(&mut self, storage: &S) -> Result<u64, RingError> {
        poisoned(self.poison)?;
        self.refresh_head(storage)?;
        Ok(self.used())
    }

    fn fail(&mut self, what: &'static str) -> RingError {
        self.poison = Some(what);
        RingError::corrupted(what)
    }

    /// Load the consumer index once and check it lies between the last value
    /// seen and the last published producer index.
    #[inline]
    pub(crate) fn refresh_head<S: Storage>(&mut self, storage: &S) -> Result<(), RingError> {
        let head = storage.head().load(Ordering::Acquire);
        let moved = head.wrapping_sub(self.head_seen);
        let allowed = self.published.wrapping_sub(self.head_seen);
        if moved > allowed {
            return Err(self.fail("consumer index outside the range the producer published"));
        }
        if head % RECORD_ALIGN != 0 {
            return Err(self.fail("consumer index not a multiple of 16"));
        }
        self.head_seen = head;
        Ok(())
    }

    /// Padding and total bytes a record of `len` payload bytes needs at the current tail.
    #[inline]
    fn placement(&self, len: u64) -> (u64, u64) {
        let record = record_size(len).unwrap_or(u64::MAX);
        let pos = self.tail & (self.capacity - 1);
        let to_end = self.capacity - pos;
        let pad = if record <= to_end { 0 } else { to_end };
        (pad, pad + record)
    }

    #[inline]
    fn check_len(&self, len: usize) -> Result<u64, RingError> {
        let len64 = len as u64;
        if len64 > self.max_payload() {
            return Err(RingError::TooLarge {
                len,
                max: self.max_payload() as usize,
                capacity: self.capacity as usize,
            });
        }
        Ok(len64)
    }

    /// Whether a record of `len` bytes fits now (refreshing the consumer index).
    #[inline]
    pub(crate) fn fits<S: Storage>(&mut self, storage: &S, len: usize) -> Result<bool, RingError> {
        poisoned(self.poison)?;
        let len = self.check_len(len)?;
        let (_, need) = self.placement(len);
        if need <= self.free() {
            return Ok(true);
        }
        self.refresh_head(storage)?;
        Ok(need <= self.free())
    }

    /// Reserve room for `len` payload bytes. On `Full` with a wrap pending, the
    /// padding is committed so the record can start at offset 0 once the
    /// consumer catches up (otherwise a record larger than the room left before
    /// the end could wait forever on an empty ring).
    #[inline]
    pub(crate) fn reserve<S: Storage>(
        &mut self,
        storage: &S,
        len: usize,
    ) -> Result<Slot, RingError> {
        poisoned(self.poison)?;
        let len = self.check_len(len)?;
        let (pad, need) = self.placement(len);
        if need > self.free() {
            self.refresh_head(storage)?;
            if need > self.free() {
                if pad > 0 && pad <= self.free() {
                    storage
                        .record_word(self.tail & (self.capacity - 1))
                        .store(PAD_FLAG, Ordering::Relaxed);
                    self.tail = self.tail.wrapping_add(pad);
                }
                return Err(RingError::Full);
            }
        }
        let start = self.tail.wrapping_add(pad) & (self.capacity - 1);
        Ok(Slot {
            pad,
            payload: start + RECORD_ALIGN,
            len,
        })
    }

    /// Commit `len <= slot.len` bytes of a reservation (local until `publish`).
    #[inline]
    pub(crate) fn commit<S: Storage>(&mut self, storage: &S, slot: &Slot, len: u64) {
        debug_assert!(len <= slot.len);
        let len = len.min(slot.len);
        if slot.pad > 0 {
            storage
                .record_word(self.tail & (self.capacity - 1))
                .store(PAD_FLAG, Ordering::Relaxed);
        }
        storage
            .record_word(slot.payload - RECORD_ALIGN)
            .store(len, Ordering::Relaxed);
        let record = record_size(len).unwrap_or(0);
        self.tail = self.tail.wrapping_add(slot.pad + record);
    }

    /// Store the producer index if it moved. Returns whether it did.
    #[inline]
    pub(crate) fn publish<S: Storage>(&mut self, storage: &S) -> bool {
        if self.tail == self.published {
            return false;
        }
        storage.tail().store(self.tail, Ordering::Release);
        self.published = self.tail;
        true
    }
}

/// The consumer's private view of the ring.
#[derive(Debug)]
pub(crate) struct ConsumerCursor {
    capacity: u64,
    /// Index after the last consumed record (local, trusted).
    head: u64,
    /// Last value stored to the shared consumer index.
    published: u64,
    /// Last validated producer index.
    tail_seen: u64,
    /// Size of the record returned by the last `peek`, 0 if none.
    peeked: u64,
    /// Payload length of that record (meaningful while `peeked != 0`).
    peeked_len: u64,
    poison: Option<&'static str>,
}

impl ConsumerCursor {
    pub(crate) fn new(capacity: u64, head: u64, tail: u64) -> Self {
        ConsumerCursor {
            capacity,
            head,
            published: head,
            tail_seen: tail,
            peeked: 0,
            peeked_len: 0,
            poison: None,
        }
    }

    pub(crate) fn poison(&self) -> Option<&'static str> {
        self.poison
    }

    fn fail(&mut self, what: &'static str) -> RingError {
        self.poison = Some(what);
        RingError::corrupted(what)
    }

    /// Load the producer index once and check it did not move backwards, is at
    /// most one capacity ahead of the consumer, and is 16-byte aligned.
    #[inline]
    pub(crate) fn refresh_tail<S: Storage>(&mut self, storage: &S) -> Result<(), RingError> {
        let tail = storage.tail().load(Ordering::Acquire);
        // Indices only grow; a "negative" step is a move backwards.
        if (tail.wrapping_sub(self.tail_seen) as i64) < 0 {
            return Err(self.fail("producer index moved backwards"));
        }
        if tail.wrapping_sub(self.head) > self.capacity {
            return Err(self.fail("producer index more than one capacity ahead of the consumer"));
        }
        if tail % RECORD_ALIGN != 0 {
            return Err(self.fail("producer index not a multiple of 16"));
        }
        self.tail_seen = tail;
        Ok(())
    }

    /// Whether unconsumed bytes are published (refreshing the producer index).
    #[inline]
    pub(crate) fn has_records<S: Storage>(&mut self, storage: &S) -> Result<bool, RingError> {
        poisoned(self.poison)?;
        if self.head != self.tail_seen {
            return Ok(true);
        }
        self.refresh_tail(storage)?;
        Ok(self.head != self.tail_seen)
    }

    /// The next record, without consuming it. Padding is skipped (consumed).
    #[inline]
    pub(crate) fn peek<S: Storage>(&mut self, storage: &S) -> Result<Option<Span>, RingError> {
        poisoned(self.poison)?;
        let mask = self.capacity - 1;
        // An honest producer puts at most one padding record before a real one;
        // a bound keeps a hostile one from making this loop long.
        for _ in 0..3 {
            if self.head == self.tail_seen {
                self.refresh_tail(storage)?;
                if self.head == self.tail_seen {
                    self.peeked = 0;
                    return Ok(None);
                }
            }
            let available = self.tail_seen.wrapping_sub(self.head);
            let pos = self.head & mask;
            // Read once: everything below uses this local copy.
            let header = storage.record_word(pos).load(Ordering::Relaxed);
            if header & PAD_FLAG != 0 {
                if header != PAD_FLAG {
                    return Err(self.fail("padding record header has stray bits set"));
                }
                let skip = self.capacity - pos;
                if skip > available {
                    return Err(self.fail("padding record runs past the producer index"));
                }
                self.head = self.head.wrapping_add(skip);
                continue;
            }
            if header & !LEN_MASK != 0 {
                return Err(self.fail("record header has reserved bits set"));
            }
            let len = header & LEN_MASK;
            let record = record_size(len).unwrap_or(u64::MAX);
            if record > self.capacity - pos {
                return Err(self.fail("record length runs past the end of the data region"));
            }
            if record > available {
                return Err(self.fail("record length runs past the producer index"));
            }
            self.peeked = record;
            self.peeked_len = len;
            return Ok(Some(Span {
                payload: pos + RECORD_ALIGN,
                len,
            }));
        }
        Err(self.fail("padding records repeat without a record between them"))
    }

    /// The record the last `peek` returned, while it is not released, from
    /// what that peek validated (nothing is loaded again). `None` if there
    /// is none or the cursor is poisoned.
    #[inline]
    pub(crate) fn peeked(&self) -> Option<Span> {
        if self.peeked == 0 || self.poison.is_some() {
            return None;
        }
        Some(Span {
            payload: (self.head & (self.capacity - 1)) + RECORD_ALIGN,
            len: self.peeked_len,
        })
    }

    /// Consume the record returned by the last `peek` (local until `publish`).
    /// Returns false if there was none.
    #[inline]
    pub(crate) fn release(&mut self) -> bool {
        if self.peeked == 0 {
            return false;
        }
        self.head = self.head.wrapping_add(self.peeked);
        self.peeked = 0;
        true
    }

    /// Ring bytes the producer published (as last validated) that this
    /// consumer has not consumed: last validated producer index minus the
    /// local consumer index. A record peeked but not released still counts.
    /// Never more than the capacity (`refresh_tail` checks it).
    #[inline]
    pub(crate) fn used(&self) -> u64 {
        self.tail_seen.wrapping_sub(self.head)
    }

    /// [`used`](Self::used) after loading the producer index once (validated;
    /// a violation poisons the cursor).
    #[inline]
    pub(crate) fn refresh_used<S: Storage>(&mut self, storage: &S) -> Result<u64, RingError> {
        poisoned(self.poison)?;
        self.refresh_tail(storage)?;
        Ok(self.used())
    }

    /// Bytes consumed but not yet published.
    #[inline]
    pub(crate) fn unpublished(&self) -> u64 {
        self.head.wrapping_sub(self.published)
    }

    /// Store the consumer index if it moved. Returns whether it did.
    #[inline]
    pub(crate) fn publish<S: Storage>(&mut self, storage: &S) -> bool {
        if self.head == self.published {
            return false;
        }
        storage.head().store(self.head, Ordering::Release);
        self.published = self.head;
        true
    }

    /// The local consumer index (after the last released record).
    #[inline]
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// The index after the record returned by the last `peek`, if it is
    /// not released yet.
    #[inline]
    pub(crate) fn peeked_end(&self) -> Option<u64> {
        (self.peeked != 0).then(|| self.head.wrapping_add(self.peeked))
    }

    /// [`publish`](Self::publish) when someone else (a linked read
    /// position) may already have stored `floor`, an index at or ahead of
    /// this one: the shared index never moves backwards. Returns `None` if
    /// the local index did not move since the last publication, else
    /// whether it was stored (`Some(true)`) or already covered by `floor`
    /// (`Some(false)`); in both `Some` cases the producer may be waiting
    /// for the space.
    #[inline]
    pub(crate) fn publish_over<S: Storage>(&mut self, storage: &S, floor: u64) -> Option<bool> {
        if self.head == self.published {
            return None;
        }
        self.published = self.head;
        // `floor` behind `head` (a "negative" step): store.
        let store = floor.wrapping_sub(self.head) > self.capacity;
        if store {
            storage.head().store(self.head, Ordering::Release);
        }
        Some(store)
    }
}

/// The words one direction of waiting uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WakeWords {
    /// The sleeper's announcement.
    pub(crate) sleep: Word,
    /// The futex word the sleeper waits on.
    pub(crate) seq: Word,
    /// Set when the waker rang a doorbell for this ring.
    pub(crate) pending: Word,
    /// Set when the waker's end closes (it will never wake the sleeper again).
    pub(crate) waker_closed: Word,
}

/// The consumer waits for records (the producer wakes it).
pub(crate) const READABLE: WakeWords = WakeWords {
    sleep: Word::ConsumerSleep,
    seq: Word::ReadableSeq,
    pending: Word::ReadablePending,
    waker_closed: Word::ProducerClosed,
};

/// The producer waits for space (the consumer wakes it).
pub(crate) const WRITABLE: WakeWords = WakeWords {
    sleep: Word::ProducerSleep,
    seq: Word::WritableSeq,
    pending: Word::WritablePending,
    waker_closed: Word::ConsumerClosed,
};

/// Whether the end that wakes this direction's sleeper has closed.
pub(crate) fn is_waker_closed<S: Storage>(storage: &S, words: WakeWords) -> bool {
    storage.word(words.waker_closed).load(Ordering::Acquire) != 0
}

/// What [`announce_sleep_then_recheck`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recheck {
    /// Still not ready and the waker is open: the announcement stands; sleep
    /// while the sequence word holds this value, then [`cancel_sleep`].
    Sleep(u32),
    /// The condition holds (announcement withdrawn).
    Ready,
    /// The condition does not hold and the waker closed (announcement withdrawn).
    WakerClosed,
}

/// The sleeper's half of the Dekker pair, shared by every way of sleeping
/// (futex or doorbell, producer or consumer): [`announce_sleep`] in `mode`
/// (its `SeqCst` fence orders the announcement before what follows), then
/// re-check `ready` against the peer's index, then the waker's closed flag.
/// Unless the result is [`Recheck::Sleep`] (including when `ready` fails),
/// the announcement is withdrawn before returning.
#[inline]
pub(crate) fn announce_sleep_then_recheck<S: Storage>(
    storage: &S,
    words: WakeWords,
    mode: u32,
    ready: impl FnOnce() -> Result<bool, RingError>,
) -> Result<Recheck, RingError> {
    let seen = announce_sleep(storage, words, mode);
    let recheck = match ready() {
        Ok(false) if !is_waker_closed(storage, words) => return Ok(Recheck::Sleep(seen)),
        Ok(false) => Ok(Recheck::WakerClosed),
        Ok(true) => Ok(Recheck::Ready),
        Err(e) => Err(e),
    };
    cancel_sleep(storage, words);
    recheck
}

/// Announce that this side is about to sleep in `mode`. Returns the sequence
/// value to wait on. The caller must re-check its condition afterwards and
/// call [`cancel_sleep`] if it is already met.
fn announce_sleep<S: Storage>(storage: &S, words: WakeWords, mode: u32) -> u32 {
    let seen = storage.word(words.seq).load(Ordering::Acquire);
    storage.word(words.sleep).store(mode, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    seen
}

/// Withdraw a sleep announcement.
pub(crate) fn cancel_sleep<S: Storage>(storage: &S, words: WakeWords) {
    storage.word(words.sleep).store(AWAKE, Ordering::Relaxed);
}

/// After storing an index: if the peer announced it sleeps, claim the wake-up,
/// bump the sequence word, mark the ring pending for doorbell sleepers, and
/// return the sleep mode (the caller then issues the futex wake or rings the
/// doorbell). `None` means nobody sleeps: no system call needed.
#[inline]
pub(crate) fn take_sleeper<S: Storage>(storage: &S, words: WakeWords) -> Option<u32> {
    fence(Ordering::SeqCst);
    let sleep = storage.word(words.sleep);
    if sleep.load(Ordering::Relaxed) == AWAKE {
        return None;
    }
    let mode = sleep.swap(AWAKE, Ordering::Acquire);
    if mode == AWAKE {
        return None;
    }
    if mode != SLEEP_FUTEX {
        storage.word(words.pending).store(1, Ordering::Release);
    }
    storage.word(words.seq).fetch_add(1, Ordering::Release);
    Some(mode)
}

/// Clear and return this side's pending flag (set by the peer's doorbell ring).
pub(crate) fn take_pending<S: Storage>(storage: &S, words: WakeWords) -> bool {
    let pending = storage.word(words.pending);
    pending.load(Ordering::Relaxed) != 0 && pending.swap(0, Ordering::Acquire) != 0
}
