//! Integration tests for hostmux-lifecycle, all in one binary. Process tests
//! use real child processes of the fixture binary.

mod crash;
mod custom_manager;
mod local;
mod process;
mod support;
