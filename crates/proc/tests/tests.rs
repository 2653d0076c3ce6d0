//! Integration tests of hostmux-proc: in-process procs and real child
//! processes, with the test playing the host.

mod alloc_free;
mod answers;
mod lanes;
mod local;
mod process;
mod profile;
mod sending;
mod support;

#[global_allocator]
static ALLOCATOR: hostmux_testkit::CountingAllocator = hostmux_testkit::CountingAllocator;
