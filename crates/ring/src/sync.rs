//! Atomics used by the index protocol: `std` normally, `loom` under `cfg(loom)`.
//!
//! Only the protocol core ([`crate::protocol`]) goes through this shim; the
//! shared-memory storage hands out `std` atomics and is compiled out under loom.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
