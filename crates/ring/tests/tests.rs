//! Integration tests with real processes: the test binary re-executes itself
//! as the peer (see `peer`), and receives or sends ring memfds and doorbells
//! over a Unix socket, as a host and its proc would.

mod alloc_free;
mod memory;
mod peer;
mod records;
mod two_process;

#[global_allocator]
static ALLOCATOR: hostmux_testkit::CountingAllocator = hostmux_testkit::CountingAllocator;
