//! Integration tests: in-process procs on real shared-memory rings, real
//! sockets on loopback; every scenario runs on both frontends.

mod support;

mod lifecycle;
mod remote;
mod robustness;
mod routing;
mod stress;
