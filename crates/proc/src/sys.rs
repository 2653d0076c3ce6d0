//! The crate's only `unsafe` code: adopting descriptors the host left open
//! in this process, by number, and registering owned fds with tokio.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of inherited fd `fd`.
///
/// Callers must adopt each number at most once per process: the boot code
/// holds the process-wide boot claim and checks that the numbers it adopts
/// are distinct.
pub(crate) fn adopt_inherited(fd: RawFd) -> std::io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only reads the flags of a descriptor number; on a
    // number that is not open it fails with EBADF and has no effect.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked above), it was placed in this process
    // by the host for the proc library, and callers adopt every number at
    // most once (see above), so this is the only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers `fd` with the current tokio runtime for readability.
pub(crate) fn register_readable<T>(fd: T) -> std::io::Result<tokio::io::unix::AsyncFd<T>>
where
    T: std::os::fd::AsRawFd + std::os::fd::AsFd,
{
    // SAFETY: callers pass owning types (`Doorbell`, `OwnedFd`): the fd stays
    // open and is not replaced for as long as the `AsyncFd` owns the value,
    // and `as_raw_fd` returns the same number throughout.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}
