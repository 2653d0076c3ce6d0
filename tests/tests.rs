//! All of hostmux's integration tests, built into one test binary.

mod cli;
mod demo;
mod serve;
