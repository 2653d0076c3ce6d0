//! The child side of the readiness protocol (see [`crate::readiness`]),
//! defined in `hostmux-boot` and re-exported here.
//!
//! A proc spawned by [`ProcessProcManager`](crate::ProcessProcManager) calls
//! [`report_ready`] once it can serve. Children that link only the proc
//! library or nothing of hostmux at all use `hostmux_boot` directly.

pub use hostmux_boot::{proc_name, report_ready, BootError, ReadyChannel};
