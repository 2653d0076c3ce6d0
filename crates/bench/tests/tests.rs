//! hostmux-bench's integration tests, built into one test binary.

mod bench;
