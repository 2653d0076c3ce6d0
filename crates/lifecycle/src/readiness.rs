//! The readiness protocol shared by the manager and the child, defined in
//! `hostmux-boot` and re-exported here.
//!
//! At spawn the manager creates a pipe, places its write end in the child at
//! the fd number in [`READY_FD_ENV`], and puts a fresh 128-bit nonce (32
//! lowercase hex digits) in [`READY_NONCE_ENV`] and the proc's name in
//! [`PROC_NAME_ENV`]. When ready, the child writes exactly one record:
//!
//! ```text
//! hostmux-ready <nonce>\n        (47 bytes, one write(2), < PIPE_BUF so atomic)
//! ```
//!
//! and closes the fd. The manager reads the pipe: the exact record → ready;
//! EOF before it → the proc died (or gave up its pipe) before ready, which
//! fails at once; anything else → protocol violation, the proc is killed.
//! The format and its check are [`hostmux_boot::readiness`]; the child side
//! is [`hostmux_boot::report_ready`] (also [`crate::child::report_ready`]).

pub use hostmux_boot::env::{PROC_NAME_ENV, READY_FD_ENV, READY_NONCE_ENV};
pub use hostmux_boot::readiness::{NONCE_HEX_LEN, READY_RECORD_LEN, READY_RECORD_PREFIX};

pub(crate) use hostmux_boot::readiness::{check_record, new_nonce, RecordCheck};
