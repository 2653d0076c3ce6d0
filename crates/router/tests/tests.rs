//! Integration tests for `hostmux-router`, built into one test binary.
//!
//! The binary's global allocator counts heap calls made on a thread while
//! that thread has armed it (see `alloc_free`); everything else passes
//! straight to the system allocator.

mod alloc_free;
mod concurrent;
mod model;
mod semantics;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations on threads that armed it; otherwise the system allocator.
struct CountingAllocator;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static DEALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note(counter: &'static std::thread::LocalKey<Cell<u64>>) {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = counter.try_with(|count| count.set(count.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counting touches only const-initialised thread-locals, which
// never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCATIONS);
        // SAFETY: forwarded contract of `GlobalAlloc::alloc`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCATIONS);
        // SAFETY: forwarded contract of `GlobalAlloc::alloc_zeroed`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(&ALLOCATIONS);
        // SAFETY: forwarded contract of `GlobalAlloc::realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(&DEALLOCATIONS);
        // SAFETY: forwarded contract of `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Heap calls made by one thread while counting was armed.
#[derive(Debug, PartialEq, Eq)]
struct HeapCalls {
    /// `alloc`, `alloc_zeroed` and `realloc` calls.
    allocations: u64,
    /// `dealloc` calls.
    deallocations: u64,
}

/// Runs `f` with counting armed on this thread and returns its heap calls.
fn heap_calls_during(f: impl FnOnce()) -> HeapCalls {
    ALLOCATIONS.with(|count| count.set(0));
    DEALLOCATIONS.with(|count| count.set(0));
    ARMED.with(|armed| armed.set(true));
    f();
    ARMED.with(|armed| armed.set(false));
    HeapCalls {
        allocations: ALLOCATIONS.with(Cell::get),
        deallocations: DEALLOCATIONS.with(Cell::get),
    }
}

/// No heap calls at all.
const NO_HEAP_CALLS: HeapCalls = HeapCalls {
    allocations: 0,
    deallocations: 0,
};

/// A valid proc name; panics on an invalid literal (a bug in the test).
fn name(text: &str) -> hostmux_wire::ProcName {
    hostmux_wire::ProcName::new(text).expect("test names are valid")
}
