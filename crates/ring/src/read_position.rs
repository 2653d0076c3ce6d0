//! [`ReadPosition`]: a consumer's read position, published by the producer
//! of another ring right before that producer publishes its own index.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::protocol::Storage;
use crate::shm::Region;
use crate::sync::Ordering;

/// The read position of a [`Consumer`](crate::Consumer), shared with the
/// [`Producer`](crate::Producer) of *another* ring
/// ([`Producer::publish_read_position_first`](crate::Producer::publish_read_position_first)),
/// which stores it into this ring's consumer index right before every
/// publication of its own.
///
/// # Why
///
/// A proc answers a frame it read from its inbound ring with a frame in its
/// outbound ring. If the proc dies, its host returns every frame past the
/// inbound ring's *published* consumer index to its sender. The consumer
/// publishes that index in batches (a quarter of the capacity), so without
/// this link an answered frame could be returned too: answered twice. With
/// it, every record the consumer released, and every record
/// [`mark`](ReadPosition::mark)ed as answered, is published as consumed no
/// later than the answer: a frame is answered by the proc or returned by
/// the host, never both. (A proc that dies between the two index stores
/// loses that publication's answers instead: at most once, never twice.)
///
/// # Cost
///
/// Per released record one relaxed store to process-local memory; per
/// publication of the linked producer two relaxed loads and, if the
/// position moved, one release store to the shared index. It wakes no one:
/// the consumer's own publications (batched as before) still wake a
/// producer that sleeps waiting for space.
///
/// Both ends stay in one process and are used from one thread at a time
/// (each end is `&mut self`); the atomics only make the handle `Send + Sync`.
#[derive(Debug, Clone)]
pub struct ReadPosition(pub(crate) Arc<ReadPositionState>);

#[derive(Debug)]
pub(crate) struct ReadPositionState {
    region: Arc<Region>,
    capacity: u64,
    /// The furthest index released or marked (never moves backwards).
    marked: AtomicU64,
    /// The last index stored to the shared consumer index, by either side.
    published: AtomicU64,
}

impl ReadPosition {
    pub(crate) fn new(region: Arc<Region>, published: u64) -> ReadPosition {
        ReadPosition(Arc::new(ReadPositionState {
            capacity: region.capacity(),
            region,
            marked: AtomicU64::new(published),
            published: AtomicU64::new(published),
        }))
    }

    /// Counts the ring up to `index` as consumed at the next publication
    /// of the linked producer: `index` is a
    /// [`Consumer::peeked_end`](crate::Consumer::peeked_end), given once
    /// the record it ends is answered. An index not ahead of the current
    /// position is ignored.
    #[inline]
    pub fn mark(&self, index: u64) {
        self.0.advance(index);
    }
}

impl ReadPositionState {
    /// Whether `index` is ahead of `than` (indices wrap; two indices of one
    /// ring are never more than a capacity apart).
    #[inline]
    fn ahead(&self, index: u64, than: u64) -> bool {
        index != than && index.wrapping_sub(than) <= self.capacity
    }

    #[inline]
    pub(crate) fn advance(&self, index: u64) {
        if self.ahead(index, self.marked.load(Ordering::Relaxed)) {
            self.marked.store(index, Ordering::Relaxed);
        }
    }

    /// The last index stored to the shared consumer index.
    #[inline]
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// The consumer stored `index` itself.
    #[inline]
    pub(crate) fn set_published(&self, index: u64) {
        self.published.store(index, Ordering::Relaxed);
    }

    /// Stores the marked position into the shared consumer index if it is
    /// ahead of what is published (release: the producer of this ring sees
    /// the records' space free only after every read of them).
    #[inline]
    pub(crate) fn publish(&self) {
        let marked = self.marked.load(Ordering::Relaxed);
        if self.ahead(marked, self.published()) {
            self.region.head().store(marked, Ordering::Release);
            self.set_published(marked);
        }
    }
}
