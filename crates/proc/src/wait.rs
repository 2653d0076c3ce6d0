//! Spinning, and async waits: an eventfd (the proc doorbell) or the stop-signal pipe
//! registered with tokio's reactor.
//!
//! Async receives and sends sleep in the ring protocol's doorbell mode: the
//! proc announces in the ring that it sleeps on its doorbell, and the host
//! rings that eventfd after it publishes (or frees space). No thread blocks
//! and nothing is spawned: the eventfd is an ordinary `AsyncFd`.

use std::os::fd::OwnedFd;

use hostmux_ring::Doorbell;
use tokio::io::unix::AsyncFd;

use crate::ProcError;

/// Pure spinning for this long, then spinning with `sched_yield`.
pub const PURE_SPIN: std::time::Duration = std::time::Duration::from_micros(2);

/// Spins up to `spin` until `ready()` holds; returns whether it did.
///
/// For the first [`PURE_SPIN`] it checks between CPU pause hints, then it
/// yields the CPU between checks. The yield matters when the peer was woken
/// onto this CPU (the scheduler tends to place a woken task on its waker's
/// CPU): a pure spin keeps the peer from running for the whole spin time,
/// so an idle-to-busy round trip would pay both sides' spins (measured here:
/// 49 µs with pure spinning, 10 µs with yields; `docs/benchmarks.md`).
pub fn spin_for(
    spin: std::time::Duration,
    mut ready: impl FnMut() -> Result<bool, ProcError>,
) -> Result<bool, ProcError> {
    let started = std::time::Instant::now();
    loop {
        if ready()? {
            return Ok(true);
        }
        let elapsed = started.elapsed();
        if elapsed >= spin {
            return Ok(false);
        }
        if elapsed < PURE_SPIN {
            for _ in 0..8 {
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ProcError {
    move |source| ProcError::Io { what, source }
}

/// The proc doorbell, registered with the current tokio runtime.
#[derive(Debug)]
pub(crate) struct AsyncDoorbell {
    fd: AsyncFd<Doorbell>,
}

impl AsyncDoorbell {
    /// Registers a copy of `doorbell`. Must run inside a tokio runtime.
    pub(crate) fn new(doorbell: &Doorbell) -> Result<Self, ProcError> {
        let copy = doorbell
            .try_clone()
            .map_err(ProcError::ring("proc doorbell"))?;
        let fd = crate::sys::register_readable(copy)
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
        let fd = crate::sys::register_readable(fd)
            .map_err(io("registering the stop-signal pipe with tokio"))?;
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
