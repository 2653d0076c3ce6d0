//! Wake-up primitives: the futex word inside each ring and the [`Doorbell`]
//! (an eventfd many rings can share).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::thread::futex;

use crate::error::RingError;

fn timespec(timeout: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec::try_from(timeout).unwrap_or(rustix::time::Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    })
}

/// Sleep while `word == expected`, at most `timeout` (`None`: no limit).
/// Returns on a wake, a changed value, a signal or the timeout alike; callers
/// re-check their condition. Shared (not private) futex: the peer is another process.
pub(crate) fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> Result<(), RingError> {
    let ts = timeout.map(timespec);
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(()) | Err(Errno::AGAIN) | Err(Errno::INTR) | Err(Errno::TIMEDOUT) => Ok(()),
        Err(e) => Err(RingError::os("futex wait", e)),
    }
}

/// Wake every sleeper on `word`. A failure can only mean a bad address, which
/// the mapping rules out, so it is ignored.
pub(crate) fn futex_wake(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

/// An eventfd that wakes one waiter for many rings.
///
/// The waiting side (typically the host) creates it and hands a copy to every
/// peer that may need to wake it ([`Doorbell::inheritable_fd`] for a child, or
/// send [`AsFd::as_fd`] over a Unix socket). The fd is non-blocking, so it can
/// be registered with epoll, io_uring or an async runtime's reactor: it
/// becomes readable when any ring rings it. After it is readable, the waiter
/// calls [`Doorbell::drain`], then for each ring clears its pending flag,
/// drains the ring, re-arms it, and only then sleeps again (see `docs/ring.md`).
///
/// A peer holding the fd can also read it and so swallow a wake-up meant for
/// another ring; a waiter that serves mutually distrusting peers should bound
/// its sleep with a timeout sweep or give each peer its own doorbell.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
}

impl Doorbell {
    /// A new non-blocking, close-on-exec eventfd with a zero count.
    pub fn new() -> Result<Doorbell, RingError> {
        let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| RingError::os("eventfd", e))?;
        Ok(Doorbell { fd })
    }

    /// Adopt an eventfd received from elsewhere (inherited or passed over a
    /// socket). It is switched to non-blocking mode.
    pub fn from_fd(fd: OwnedFd) -> Result<Doorbell, RingError> {
        let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| RingError::os("fcntl(F_GETFL)", e))?;
        rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)
            .map_err(|e| RingError::os("fcntl(F_SETFL)", e))?;
        Ok(Doorbell { fd })
    }

    /// Another handle to the same eventfd (close-on-exec).
    pub fn try_clone(&self) -> Result<Doorbell, RingError> {
        let fd = self.fd.try_clone().map_err(|e| RingError::Os {
            op: "dup",
            source: e,
        })?;
        Ok(Doorbell { fd })
    }

    /// A duplicate of the fd *without* close-on-exec, for a child to inherit.
    pub fn inheritable_fd(&self) -> Result<OwnedFd, RingError> {
        rustix::io::dup(&self.fd).map_err(|e| RingError::os("dup", e))
    }

    /// Add one to the count, making the fd readable. A saturated count (only a
    /// peer writing huge values can cause it) already means readable, so
    /// `EAGAIN` is not an error.
    pub fn ring(&self) -> Result<(), RingError> {
        match rustix::io::write(&self.fd, &1u64.to_ne_bytes()) {
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(RingError::os("eventfd write", e)),
        }
    }

    /// Reset the count to zero and return it (0 if it was not rung).
    pub fn drain(&self) -> Result<u64, RingError> {
        let mut buf = [0u8; 8];
        match rustix::io::read(&self.fd, &mut buf) {
            Ok(8) => Ok(u64::from_ne_bytes(buf)),
            Ok(_) => Err(RingError::corrupted("eventfd returned a short read")),
            Err(Errno::AGAIN) => Ok(0),
            Err(e) => Err(RingError::os("eventfd read", e)),
        }
    }

    /// Block until the doorbell is readable or `timeout` passes (`None`: no
    /// limit). Returns whether it is readable. Does not drain it.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, RingError> {
        let ts = timeout.map(timespec);
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(n) => Ok(n > 0),
            Err(Errno::INTR) => Ok(false),
            Err(e) => Err(RingError::os("poll", e)),
        }
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
