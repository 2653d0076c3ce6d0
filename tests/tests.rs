//! All of hostmux's integration tests, built into one test binary.

mod cli;
mod delivery;
mod demo;
mod errors;
mod io_threads;
mod kubernetes;
mod metrics;
mod names;
mod privilege;
mod readiness;
mod registry;
mod restart;
mod serve;
mod systemd_unit;
mod three_hosts;
