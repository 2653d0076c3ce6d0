//! hostmux-testkit: test support shared by the workspace's crates; a
//! dev-dependency only, never published. Besides the counting allocator
//! below, [`facility`] decides what a test does on a machine that lacks
//! io_uring, cgroups, root, `systemd-analyze` or network namespaces: fail,
//! unless `HOSTMUX_TEST_SKIP` names the facility.
//!
//! # The job
//!
//! Prove that a hot path allocates nothing per message. [`CountingAllocator`]
//! forwards every call to the system allocator and counts, per thread, the
//! heap calls made while counting is armed; [`heap_calls_during`] arms it
//! around a closure, [`start_counting`] until [`Counting::stop`]. A test
//! binary installs it once:
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: hostmux_testkit::CountingAllocator = hostmux_testkit::CountingAllocator;
//!
//! fn main() {
//!     let mut buffer = Vec::with_capacity(64);
//!     let calls = hostmux_testkit::heap_calls_during(|| {
//!         buffer.clear();
//!         buffer.extend_from_slice(b"a hot path that reuses its buffer");
//!     });
//!     assert_eq!(calls, hostmux_testkit::HeapCalls::NONE);
//!     assert_eq!(hostmux_testkit::allocations_during(|| drop(vec![0u8; 8])), 1);
//! }
//! ```
//!
//! # Invariants
//!
//! * Counts are per thread, so tests running in parallel on other threads
//!   do not add to them, and only calls made while armed count (setting up
//!   the closure's captures outside it does not).
//! * The allocator itself never allocates: its counters are
//!   const-initialised thread-local `Cell`s.
//!
//! This is the workspace's only unsafe code outside `hostmux-ring`,
//! `hostmux-lifecycle`'s and `hostmux-proc`'s system-call modules: the
//! `GlobalAlloc` impl, which forwards to [`System`] unchanged.
#![deny(missing_docs)]

pub mod facility;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static DEALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// A global allocator that forwards to [`System`] and counts the heap calls
/// of the current thread while [`heap_calls_during`] has armed it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

fn note(counter: &'static std::thread::LocalKey<Cell<u64>>) {
    // `try_with`: a thread being torn down may free memory after its
    // thread-locals are gone; such calls are not counted.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = counter.try_with(|count| count.set(count.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments and
// returns its result unchanged; the bookkeeping only touches const-initialised
// thread-local `Cell`s, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCATIONS);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCATIONS);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(&ALLOCATIONS);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(&DEALLOCATIONS);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Heap calls made by one thread while counting was armed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapCalls {
    /// `alloc`, `alloc_zeroed` and `realloc` calls.
    pub allocations: u64,
    /// `dealloc` calls.
    pub deallocations: u64,
}

impl HeapCalls {
    /// No heap calls at all.
    pub const NONE: HeapCalls = HeapCalls {
        allocations: 0,
        deallocations: 0,
    };
}

/// Counting armed on this thread, from [`start_counting`] until
/// [`stop`](Counting::stop) (or drop).
#[derive(Debug)]
#[must_use = "counting stops when this is dropped"]
pub struct Counting {
    before: HeapCalls,
    was_armed: bool,
    /// Per thread: not `Send`.
    _thread: std::marker::PhantomData<*const ()>,
}

fn so_far() -> HeapCalls {
    HeapCalls {
        allocations: ALLOCATIONS.with(Cell::get),
        deallocations: DEALLOCATIONS.with(Cell::get),
    }
}

/// Arms counting on this thread; the heap calls made until
/// [`Counting::stop`] are counted (a nested counting counts into both).
pub fn start_counting() -> Counting {
    let before = so_far();
    let was_armed = ARMED.with(|armed| armed.replace(true));
    Counting {
        before,
        was_armed,
        _thread: std::marker::PhantomData,
    }
}

impl Counting {
    /// Disarms counting and returns the heap calls made since
    /// [`start_counting`] (all zero unless [`CountingAllocator`] is the
    /// global allocator).
    pub fn stop(self) -> HeapCalls {
        let now = so_far();
        HeapCalls {
            allocations: now.allocations - self.before.allocations,
            deallocations: now.deallocations - self.before.deallocations,
        }
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        ARMED.with(|armed| armed.set(self.was_armed));
    }
}

/// Runs `f` with counting armed on this thread and returns the heap calls
/// it made (all zero unless [`CountingAllocator`] is the global allocator).
pub fn heap_calls_during(f: impl FnOnce()) -> HeapCalls {
    let counting = start_counting();
    f();
    counting.stop()
}

/// How many allocations (`alloc`, `alloc_zeroed`, `realloc`) `f` made on
/// this thread.
pub fn allocations_during(f: impl FnOnce()) -> u64 {
    heap_calls_during(f).allocations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOCATOR: CountingAllocator = CountingAllocator;

    #[test]
    fn counts_this_threads_heap_calls_while_armed() {
        let calls = heap_calls_during(|| drop(std::hint::black_box(vec![1u8; 64])));
        assert_eq!(
            calls,
            HeapCalls {
                allocations: 1,
                deallocations: 1
            }
        );
        // Another thread's allocations do not count here.
        let calls = heap_calls_during(|| {
            std::thread::scope(|scope| {
                scope.spawn(|| drop(std::hint::black_box(vec![0u8; 4096])));
            })
        });
        let spawned = std::thread::scope(|scope| {
            scope
                .spawn(|| heap_calls_during(|| drop(std::hint::black_box(vec![0u8; 64]))))
                .join()
                .unwrap()
        });
        assert_eq!(spawned.allocations, 1);
        // Spawning allocates on this thread, but the vector is the other's.
        assert!(calls.allocations < 20, "{calls:?}");
        assert_eq!(heap_calls_during(|| {}), HeapCalls::NONE);
    }
}
