//! Spinning (the ring crate's policy), and async waits: an eventfd (the proc doorbell) or the stop-signal pipe
//! registered with tokio's reactor.
//!
//! Async receives and sends sleep in the ring protocol's doorbell mode: the
//! proc announces in the ring that it sleeps on its doorbell, and the host
//! rings that eventfd after it publishes (or frees space). No thread blocks
//! and nothing is spawned: the eventfd is an ordinary `AsyncFd`.

use std::os::fd::OwnedFd;

use hostmux_boot::reactor::Registered;
use hostmux_ring::Doorbell;
use tokio::io::unix::AsyncFd;

use crate::ProcError;

/// The proc polls the way the ring's own waits do: spin with pause hints
/// for [`PURE_SPIN`], then yield the CPU between checks. The yield matters
/// when the peer was woken onto this CPU: a pure spin keeps it from running
/// (an idle-to-busy round trip measured 49 µs with pure spinning, 10 µs with
/// yields; `docs/benchmarks.md`).
pub use hostmux_ring::{spin_for, PURE_SPIN};

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ProcError {
    move |source| ProcError::Io { what, source }
}

/// The proc doorbell, registered with the current tokio runtime.
#[derive(Debug)]
pub(crate) struct AsyncDoorbell {
    fd: Registered<Doorbell>,
}

impl AsyncDoorbell {
    /// Registers a copy of `doorbell`. Must run inside a tokio runtime.
    pub(crate) fn new(doorbell: &Doorbell) -> Result<Self, ProcError> {
        let copy = doorbell
            .try_clone()
            .map_err(ProcError::ring("proc doorbell"))?;
        let fd = Registered::for_reading(copy)
            .map_err(io("registering the proc doorbell with tokio"))?;
        Ok(Self { fd })
    }

    /// Waits until the doorbell rang, and resets it.
    pub(crate) async fn wait(&self) -> Result<(), ProcError> {
        loop {
            let mut guard = self
                .fd
                .readable()
                .await
                .map_err(io("waiting on the proc doorbell"))?;
            let rung = guard
                .get_inner()
                .drain()
                .map_err(ProcError::ring("proc doorbell"))?;
            if rung > 0 {
                return Ok(());
            }
            guard.clear_ready();
        }
    }
}

/// A readable-when-signalled fd (the stop-signal pipe), registered with tokio.
#[derive(Debug)]
pub(crate) struct AsyncSignal {
    fd: AsyncFd<OwnedFd>,
}

impl AsyncSignal {
    pub(crate) fn new(fd: OwnedFd) -> Result<Self, ProcError> {
        let fd = hostmux_boot::reactor::register_readable(fd)
            .map_err(|e| io("registering the stop-signal pipe with tokio")(e.into()))?;
        Ok(Self { fd })
    }

    /// Resolves once the pipe is readable (a stop signal arrived). The
    /// caller drains it through [`crate::signals::StopSignals::raised`].
    pub(crate) async fn wait(&self) -> Result<(), ProcError> {
        let mut guard = self
            .fd
            .readable()
            .await
            .map_err(io("waiting on the stop-signal pipe"))?;
        guard.clear_ready();
        Ok(())
    }
}
