//! The child side of the readiness protocol (see [`crate::readiness`]).
//!
//! A proc spawned by [`ProcessProcManager`](crate::ProcessProcManager) calls
//! [`report_ready`] once it can serve. Safe code; the one fd adoption goes
//! through the crate's `sys` module.

use std::io::Write as _;
use std::sync::atomic::AtomicBool;

use crate::error::LifecycleError;
use crate::readiness::{ready_record, NONCE_HEX_LEN, PROC_NAME_ENV, READY_FD_ENV, READY_NONCE_ENV};

static READY_FD_CLAIMED: AtomicBool = AtomicBool::new(false);

/// Tells the manager this proc is ready: writes the ready record to the
/// inherited pipe and closes it.
///
/// Call once; a second call fails with [`LifecycleError::ReadyEnv`].
pub fn report_ready() -> Result<(), LifecycleError> {
    let fd_text = env_var(READY_FD_ENV)?;
    let fd: i32 = fd_text.parse().map_err(|_| LifecycleError::ReadyEnv {
        var: READY_FD_ENV,
        reason: "not a decimal fd number",
    })?;
    let nonce = env_var(READY_NONCE_ENV)?;
    if nonce.len() != NONCE_HEX_LEN || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LifecycleError::ReadyEnv {
            var: READY_NONCE_ENV,
            reason: "not 32 hex digits",
        });
    }
    let owned = crate::sys::adopt_inherited_fd(fd, &READY_FD_CLAIMED).map_err(|_| {
        LifecycleError::ReadyEnv {
            var: READY_FD_ENV,
            reason: "not an open inherited fd, or readiness already reported",
        }
    })?;
    let mut pipe = std::fs::File::from(owned);
    pipe.write_all(&ready_record(&nonce))
        .map_err(|source| LifecycleError::Io {
            what: "writing the ready record",
            source,
        })?;
    Ok(())
}

/// The proc's name as given by its manager, if it was spawned by one.
pub fn proc_name() -> Option<String> {
    std::env::var(PROC_NAME_ENV).ok()
}

fn env_var(var: &'static str) -> Result<String, LifecycleError> {
    std::env::var(var).map_err(|_| LifecycleError::ReadyEnv {
        var,
        reason: "not set",
    })
}
