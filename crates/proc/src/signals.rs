//! SIGTERM and SIGINT as stop requests.
//!
//! An OS proc is told to stop twice at once: the host's agent `Stop` and
//! SIGTERM (the lifecycle escalation sends both). Both must lead to the same
//! graceful stop, so [`StopSignals`] turns the signals into a flag the
//! receive loop checks and a pipe it can sleep on (signal-hook's handlers
//! only store an atomic and write one byte: async-signal-safe).

use std::io::Read as _;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::ProcError;

/// Stop requests by signal, for the life of the process.
///
/// The handlers stay installed after the proc is dropped (signal-hook cannot
/// restore the default action safely), so a process that goes on after its
/// proc ends no longer dies of SIGTERM; the host's escalation then ends it
/// with SIGKILL after the grace period.
#[derive(Debug)]
pub(crate) struct StopSignals {
    raised: Arc<AtomicBool>,
    wake: UnixStream,
}

impl StopSignals {
    pub(crate) fn install() -> Result<Self, ProcError> {
        let io = |source| ProcError::Io {
            what: "installing the SIGTERM/SIGINT handlers",
            source,
        };
        let raised = Arc::new(AtomicBool::new(false));
        let (wake, ring) = UnixStream::pair().map_err(io)?;
        wake.set_nonblocking(true).map_err(io)?;
        ring.set_nonblocking(true).map_err(io)?;
        for signal in [SIGTERM, SIGINT] {
            signal_hook::flag::register(signal, raised.clone()).map_err(io)?;
            signal_hook::low_level::pipe::register(signal, ring.try_clone().map_err(io)?)
                .map_err(io)?;
        }
        Ok(Self { raised, wake })
    }

    /// Whether a stop signal arrived. Clears the wake-up bytes.
    pub(crate) fn raised(&self) -> bool {
        if !self.raised.load(Ordering::Acquire) {
            return false;
        }
        let mut buf = [0u8; 16];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        true
    }

    /// Readable once a stop signal arrived.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Another handle to the readable end (for an async registration).
    pub(crate) fn try_clone_fd(&self) -> Result<std::os::fd::OwnedFd, ProcError> {
        self.wake
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| ProcError::Io {
                what: "duplicating the stop-signal pipe",
                source,
            })
    }
}
