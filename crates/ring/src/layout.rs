//! Byte layout of a ring's shared memory: header lines, record headers, limits.
//!
//! ```text
//! offset   line            fields (little endian, naturally aligned)
//!   0      identity        magic u64, version u32, header_len u32, capacity u64
//! 128      producer line   tail u64 (published producer index), producer_sleep u32
//! 256      consumer line   head u64 (published consumer index), consumer_sleep u32
//! 384      wake line       readable_seq u32, writable_seq u32, readable_pending u32,
//!                          writable_pending u32, producer_closed u32, consumer_closed u32
//! 512      data            `capacity` bytes of records
//! ```
//!
//! Lines are 128 bytes apart so the producer's and consumer's hot words never
//! share a cache line (or an adjacent-line prefetch pair).

/// Magic number at offset 0: `b"HMXRING\0"` read as a little-endian `u64`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"HMXRING\0");
/// Layout version; bumped on any incompatible change.
pub(crate) const VERSION: u32 = 1;
/// Distance between header lines.
pub(crate) const LINE: usize = 128;
/// Bytes before the data region.
pub(crate) const HEADER_LEN: usize = 4 * LINE;

pub(crate) const OFF_MAGIC: usize = 0;
pub(crate) const OFF_VERSION: usize = 8;
pub(crate) const OFF_HEADER_LEN: usize = 12;
pub(crate) const OFF_CAPACITY: usize = 16;

/// The 32-bit words of the header that the protocol uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Word {
    /// How the producer waits for space: 0 awake, [`SLEEP_FUTEX`], [`SLEEP_DOORBELL`].
    ProducerSleep,
    /// How the consumer waits for records.
    ConsumerSleep,
    /// Futex word the consumer sleeps on; bumped by the producer's wake.
    ReadableSeq,
    /// Futex word the producer sleeps on; bumped by the consumer's wake.
    WritableSeq,
    /// Set by the producer when it rang the consumer's doorbell.
    ReadablePending,
    /// Set by the consumer when it rang the producer's doorbell.
    WritablePending,
    /// Non-zero once the producer closed its end.
    ProducerClosed,
    /// Non-zero once the consumer closed its end.
    ConsumerClosed,
}

impl Word {
    /// Offset of the word from the start of the shared memory.
    #[inline]
    pub(crate) const fn offset(self) -> usize {
        match self {
            Word::ProducerSleep => LINE + 8,
            Word::ConsumerSleep => 2 * LINE + 8,
            Word::ReadableSeq => 3 * LINE,
            Word::WritableSeq => 3 * LINE + 4,
            Word::ReadablePending => 3 * LINE + 8,
            Word::WritablePending => 3 * LINE + 12,
            Word::ProducerClosed => 3 * LINE + 16,
            Word::ConsumerClosed => 3 * LINE + 20,
        }
    }
}

/// Offset of the producer index (tail).
pub(crate) const OFF_TAIL: usize = LINE;
/// Offset of the consumer index (head).
pub(crate) const OFF_HEAD: usize = 2 * LINE;

/// Sleep-word value: awake.
pub(crate) const AWAKE: u32 = 0;
/// Sleep-word value: asleep on the futex word.
pub(crate) const SLEEP_FUTEX: u32 = 1;
/// Sleep-word value: asleep on a doorbell (eventfd).
pub(crate) const SLEEP_DOORBELL: u32 = 2;

/// Records start at multiples of this; record headers are this long.
pub(crate) const RECORD_ALIGN: u64 = 16;
/// Bit 63 of a record header marks padding that runs to the end of the data region.
pub(crate) const PAD_FLAG: u64 = 1 << 63;
/// Low 32 bits of a record header: payload length.
pub(crate) const LEN_MASK: u64 = 0xffff_ffff;

/// Smallest capacity of a shared-memory ring (64 KiB).
pub const MIN_CAPACITY: usize = 64 << 10;
/// Largest capacity of a shared-memory ring (256 MiB).
pub const MAX_CAPACITY: usize = 256 << 20;

/// Size of a record holding `len` payload bytes: header plus payload, rounded
/// up to [`RECORD_ALIGN`]. `None` if it overflows.
#[inline]
pub(crate) fn record_size(len: u64) -> Option<u64> {
    len.checked_add(RECORD_ALIGN + RECORD_ALIGN - 1)
        .map(|n| n & !(RECORD_ALIGN - 1))
}
