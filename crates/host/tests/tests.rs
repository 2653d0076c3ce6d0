//! Integration tests: in-process procs on real shared-memory rings, real
//! sockets on loopback (every such scenario runs on both frontends), and
//! real OS procs (hostmux-proc's binaries, see `bins`).

mod support;

mod bins;
mod booted;
mod clients;
mod control;
mod crash;
mod custom_manager;
mod exactly_once;
mod half_close;
mod identity;
mod lifecycle;
mod links;
mod memory_budget;
mod metrics;
mod multishot;
mod names;
mod process;
mod registry;
mod remote;
mod restart;
mod ring_memory;
mod robustness;
mod roles;
mod routing;
mod stress;
mod threads;
mod tls;
mod zero_copy;
