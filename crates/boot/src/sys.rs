//! The crate's only `unsafe`: taking ownership of a descriptor number this
//! process inherited across `execve`, and registering an owned descriptor
//! with tokio's reactor.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, PoisonError};

/// Serialises the check-and-mark in [`adopt_inherited`], so two threads
/// adopting the same number cannot both see it unmarked.
static ADOPTION: Mutex<()> = Mutex::new(());

/// Takes ownership of fd `fd`, which a manager left open in this process
/// across `execve` and announced by number (usually in a boot variable).
///
/// The number must be above 2 (stdio is never a boot fd), open, and not
/// close-on-exec: a descriptor that crossed `execve` never has that flag,
/// while one this process opened itself has it (Rust's standard library and
/// `rustix` set it on every descriptor they create). Adoption sets the flag,
/// so the proc's own children do not inherit the fd, and that flag is also
/// the claim: adopting the same number again fails while the first owner
/// lives, and a closed number fails with `EBADF`. No two [`OwnedFd`]s for
/// one descriptor can come out of this function.
///
/// # Errors
///
/// - `EBADF`: `fd` is 0, 1, 2, negative, or not open;
/// - `EBUSY`: `fd` is close-on-exec: this process opened it, or it was
///   adopted already;
/// - any error of `fcntl(2)` setting the flag.
pub fn adopt_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let _claim = ADOPTION.lock().unwrap_or_else(PoisonError::into_inner);
    // SAFETY: F_GETFD only reads the descriptor flags of a number; on a
    // number that is not open it fails with EBADF and has no effect.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::FD_CLOEXEC != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    // SAFETY: F_SETFD only changes the close-on-exec flag of `fd`, which is
    // open (checked above, under the lock, and nothing in this function
    // closes it); no memory is touched.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open and was not close-on-exec, so it crossed
    // `execve` from the manager rather than being opened by code of this
    // process (which opens everything close-on-exec); its number was handed
    // to this process for exactly this adoption. Setting close-on-exec
    // under `ADOPTION` marks it adopted, so this is the only `OwnedFd`
    // created for it here, and a later call for the same number fails.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers `fd` with the current tokio runtime's reactor for `interest`.
/// On failure the fd comes back with the error.
#[cfg(feature = "tokio")]
pub(crate) fn register(
    fd: OwnedFd,
    interest: tokio::io::Interest,
) -> Result<tokio::io::unix::AsyncFd<OwnedFd>, (OwnedFd, io::Error)> {
    // SAFETY: an `OwnedFd` is an open descriptor that nothing else closes,
    // and the `AsyncFd` owns it for its whole life: it stays open and refers
    // to the same open file until the `AsyncFd` is dropped or gives it back,
    // and `as_raw_fd` on an `OwnedFd` always returns the same number.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }
        .map_err(|e| e.into_parts())
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd as _, IntoRawFd as _};

    use super::*;

    /// A descriptor shaped like an inherited one: open, not close-on-exec.
    /// Its number is given up, as the manager's copy is after `execve`.
    fn inherited_like() -> RawFd {
        let (read, write) = rustix::pipe::pipe().unwrap();
        drop(read);
        rustix::io::fcntl_setfd(&write, rustix::io::FdFlags::empty()).unwrap();
        write.into_raw_fd()
    }

    fn errno(result: io::Result<OwnedFd>) -> i32 {
        result.unwrap_err().raw_os_error().unwrap()
    }

    #[test]
    fn an_inherited_fd_is_adopted_once_and_made_close_on_exec() {
        let fd = inherited_like();
        let owned = adopt_inherited(fd).unwrap();
        assert_eq!(owned.as_raw_fd(), fd);
        let flags = rustix::io::fcntl_getfd(&owned).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        assert_eq!(errno(adopt_inherited(fd)), libc::EBUSY);
        drop(owned);
    }

    #[test]
    fn stdio_and_negative_numbers_are_refused() {
        for fd in [-1, 0, 1, 2] {
            assert_eq!(errno(adopt_inherited(fd)), libc::EBADF, "fd {fd}");
        }
    }

    #[test]
    fn a_number_that_is_not_open_is_refused() {
        // Above any fd limit, so never open (a freshly closed number could
        // be reused by another test thread meanwhile).
        assert_eq!(errno(adopt_inherited(1 << 30)), libc::EBADF);
    }

    #[test]
    fn a_descriptor_this_process_opened_is_refused() {
        let (read, _write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        assert_eq!(errno(adopt_inherited(read.as_raw_fd())), libc::EBUSY);
        // Still owned once, by `read`: its flags are intact.
        assert!(rustix::io::fcntl_getfd(&read).is_ok());
    }
}
