//! Integration tests for `hostmux-router`, built into one test binary.
//!
//! The binary's global allocator counts heap calls made on a thread while
//! that thread has armed it (see `alloc_free`); everything else passes
//! straight to the system allocator.

mod alloc_free;
mod concurrent;
mod model;
mod semantics;

use hostmux_testkit::{heap_calls_during, HeapCalls};

#[global_allocator]
static ALLOCATOR: hostmux_testkit::CountingAllocator = hostmux_testkit::CountingAllocator;

/// No heap calls at all.
const NO_HEAP_CALLS: HeapCalls = HeapCalls::NONE;

/// A valid proc name; panics on an invalid literal (a bug in the test).
fn name(text: &str) -> hostmux_wire::ProcName {
    hostmux_wire::ProcName::new(text).expect("test names are valid")
}
