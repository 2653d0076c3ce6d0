//! hostmux-ring: single-producer single-consumer rings of variable-length
//! records in shared memory, one per direction between the host and a proc.
//!
//! # The job
//!
//! Carry whole wire frames between two processes without copying them again:
//! the producer reserves room, writes the frame in place and commits; the
//! consumer reads it in place (16-byte aligned, so `rkyv::access` works on it)
//! and releases it. Wake-ups cost no system call while traffic flows.
//!
//! # Main types
//!
//! * [`SharedRing`]: a sealed memfd mapped `MAP_SHARED`, with a validated
//!   header; created by the host, attached by the child from the fd.
//! * [`RingMemory`]: whether a ring's pages are allocated at creation
//!   (`MAP_POPULATE`: no page faults ever) or on first write (an idle ring
//!   holds one page); the attaching side follows the creator's choice.
//! * [`Producer`] / [`Reservation`]: `try_reserve` → write → `commit`, then one
//!   `publish` for any number of commits. [`HeldRecord`] (`Producer::hold`):
//!   a reservation that borrows nothing and owns the mapping, filled across
//!   awaits (a socket read straight into the ring), then `commit_held`.
//! * [`Consumer`] / [`Batch`]: `peek` → use → `release`, or a batch iterator.
//! * [`ReadPosition`]: a consumer's read position that the producer of
//!   another ring publishes right before its own index, so an answer is
//!   never visible before the record it answers is consumed.
//! * [`Doorbell`]: an eventfd many rings can share, so one thread (or one
//!   io_uring/epoll registration) waits for all procs' rings.
//! * [`spin_for`]: the polling policy every wait uses before it sleeps (pure
//!   spin for [`PURE_SPIN`], then `sched_yield` between checks), exported for
//!   callers that poll several rings.
//! * `used()` / `refresh_used()` on both ends: ring occupancy in bytes, for
//!   per-proc gauges (see [`Producer::used`] for what the number means).
//! * [`send_fds`] / [`recv_fds`]: pass memfds and doorbells over a Unix socket
//!   (a child can also inherit them: [`SharedRing::inheritable_fd`]).
//!
//! # Invariants
//!
//! * Records start at 16-byte aligned offsets and never wrap: a padding record
//!   fills the end of the data region instead.
//! * Producer and consumer indices sit on separate 128-byte lines; each end
//!   owns its index and never reads it back from shared memory.
//! * The host treats everything the child can write as hostile: every index
//!   and record header is loaded once into a local and validated; a violation
//!   yields [`RingError::Corrupted`] and poisons that end. Nothing panics,
//!   reads or writes outside the mapping, or loops unboundedly on bad input.
//!   The child validates the same way (it costs nothing) but may trust the host.
//!
//! # Key design decision: wake only announced sleepers
//!
//! A futex or eventfd wake costs about 9 µs on the target machines, a 4 KiB
//! copy about 28 ns. So a waiting end polls briefly ([`spin_for`]: a pure
//! spin of [`PURE_SPIN`], then yielding the CPU between checks so a peer
//! scheduled on the same CPU can run), then *announces* in the
//! shared header that it sleeps (and how: futex or doorbell); the other end
//! checks that word after each index publication (a `SeqCst` fence on both
//! sides makes this a Dekker pair, so no wake-up is lost) and makes a system
//! call only when someone sleeps. Index publication itself is batched on both
//! sides. The protocol is generic over its storage so loom checks it on the
//! heap (`RUSTFLAGS="--cfg loom" cargo test -p hostmux-ring --release --lib loom`).
//!
//! # Example
//!
//! ```
//! use hostmux_ring::SharedRing;
//!
//! let ring = SharedRing::create(64 * 1024)?;
//! // A real host passes `ring.inheritable_fd()?` to the child, which calls
//! // `SharedRing::attach(fd)?.into_consumer()?`. Here both ends stay local.
//! let (mut producer, mut consumer) = ring.split()?;
//!
//! let mut slot = producer.try_reserve(5)?;
//! slot.copy_from_slice(b"hello");
//! slot.commit();
//! producer.publish()?;
//!
//! let record = consumer.peek()?.expect("published");
//! assert_eq!(record, b"hello");
//! assert_eq!(record.as_ptr() as usize % 16, 0);
//! consumer.release()?;
//! assert!(consumer.peek()?.is_none());
//! # Ok::<(), hostmux_ring::RingError>(())
//! ```
#![deny(missing_docs)]
// `unsafe` lives in `shm` alone (the mapping and its raw accesses).
#![deny(unsafe_code)]
// Under loom only the protocol core is built; the shared-memory half is not.
#![cfg_attr(loom, allow(dead_code))]

mod error;
mod layout;
#[cfg(not(loom))]
mod memory;
mod protocol;
mod sync;

#[cfg(not(loom))]
mod doorbell;
#[cfg(not(loom))]
mod passing;
#[cfg(not(loom))]
mod read_position;
#[cfg(not(loom))]
mod ring;
#[cfg(not(loom))]
#[allow(unsafe_code)]
mod shm;
#[cfg(not(loom))]
mod spin;

#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;

pub use error::RingError;
pub use layout::{MAX_CAPACITY, MIN_CAPACITY};

#[cfg(not(loom))]
pub use doorbell::Doorbell;
#[cfg(not(loom))]
pub use memory::RingMemory;
#[cfg(not(loom))]
pub use passing::{recv_fds, send_fds, MAX_PASSED_FDS};
#[cfg(not(loom))]
pub use read_position::ReadPosition;
#[cfg(not(loom))]
pub use ring::{
    Batch, Consumer, HeldRecord, Producer, Reservation, SharedRing, WaitOutcome, DEFAULT_SPIN,
};
#[cfg(not(loom))]
pub use spin::{spin_for, spin_for_with, PURE_SPIN};
