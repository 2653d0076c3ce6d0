//! SIGTERM and SIGINT as stop requests.
//!
//! An OS proc is told to stop twice at once: the host's agent `Stop` and
//! SIGTERM (the lifecycle escalation sends both). Both must lead to the same
//! graceful stop, so [`StopSignals`] turns the signals into a flag the
//! receive loop checks and a pipe it can sleep on (signal-hook's handlers
//! only store an atomic and write one byte: async-signal-safe).

use std::io::{Read as _, Write as _};
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
///
/// An in-process proc has no signals of its own (they are its host
/// process's); [`StopSignals::in_process`] gives it the same flag and pipe
/// with no handler installed, raised only through a [`StopHandle`].
#[derive(Debug)]
pub(crate) struct StopSignals {
    raised: Arc<AtomicBool>,
    wake: UnixStream,
    /// The writing end, for [`StopHandle`]s.
    ring: UnixStream,
}

impl StopSignals {
    pub(crate) fn install() -> Result<Self, ProcError> {
        let io = |source| ProcError::Io {
            what: "installing the SIGTERM/SIGINT handlers",
            source,
        };
        let signals = Self::in_process()?;
        for signal in [SIGTERM, SIGINT] {
            signal_hook::flag::register(signal, signals.raised.clone()).map_err(io)?;
            signal_hook::low_level::pipe::register(signal, signals.ring.try_clone().map_err(io)?)
                .map_err(io)?;
        }
        Ok(signals)
    }

    /// The flag and the pipe without signal handlers: stop requests come
    /// only from [`StopHandle`]s.
    pub(crate) fn in_process() -> Result<Self, ProcError> {
        let io = |source| ProcError::Io {
            what: "creating the stop-request pipe",
            source,
        };
        let raised = Arc::new(AtomicBool::new(false));
        let (wake, ring) = UnixStream::pair().map_err(io)?;
        wake.set_nonblocking(true).map_err(io)?;
        ring.set_nonblocking(true).map_err(io)?;
        Ok(Self { raised, wake, ring })
    }

    /// A handle that raises the flag from any thread.
    pub(crate) fn handle(&self) -> Result<StopHandle, ProcError> {
        let ring = self.ring.try_clone().map_err(|source| ProcError::Io {
            what: "duplicating the stop-request pipe",
            source,
        })?;
        Ok(StopHandle {
            raised: self.raised.clone(),
            ring,
        })
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

/// Asks a [`Proc`](crate::Proc) to stop from another thread, the way
/// SIGTERM or the agent's `Stop` do: its stop hook runs once and its
/// receive calls report [`Recv::Stopped`](crate::Recv::Stopped) once the
/// inbound ring is drained. Made by [`Proc::stop_handle`](crate::Proc::stop_handle).
#[derive(Debug)]
pub struct StopHandle {
    raised: Arc<AtomicBool>,
    ring: UnixStream,
}

impl StopHandle {
    /// Requests the stop (idempotent) and wakes a proc asleep in a receive.
    pub fn stop(&self) {
        self.raised.store(true, Ordering::Release);
        // A full pipe already holds a wake-up; nothing else can fail that
        // the flag does not cover.
        let _ = (&self.ring).write(&[1]);
    }
}
