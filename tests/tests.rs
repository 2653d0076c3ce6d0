//! All of hostmux's integration tests, built into one test binary.

mod bench;
mod cli;
mod delivery;
mod demo;
mod kubernetes;
mod names;
mod privilege;
mod readiness;
mod registry;
mod serve;
mod systemd_unit;
mod three_hosts;
