//! The crate's only `unsafe`: taking ownership of a descriptor number this
//! process inherited across `execve`, registering an owned descriptor with
//! tokio's reactor, wiping boot variables from the initial environment
//! block, and (for a spawner, between `clone` and `execve`) marking every
//! descriptor a child is not meant to inherit close-on-exec.

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

/// Marks every descriptor from 3 up close-on-exec, except the numbers in
/// `keep`: after `execve` the new program holds only its stdio and `keep`.
///
/// For a spawner's child between `clone`/`fork` and `execve`: the host may
/// hold descriptors without the flag (a library that opened one without
/// `O_CLOEXEC`, or one inherited from the host's own parent), and a proc must
/// not receive them. Only the child's descriptor table changes (a
/// `CLONE_VM` child without `CLONE_FILES` has its own). Async-signal-safe:
/// system calls only, no allocation, no locks; `keep` is read in place.
///
/// Uses `close_range(CLOSE_RANGE_CLOEXEC)` (Linux 5.11) for each gap
/// between kept numbers. Where the kernel lacks it, falls back to
/// `fcntl(F_SETFD)` on every number below the soft `RLIMIT_NOFILE` (a
/// descriptor above a limit lowered after it was opened is then missed).
///
/// # Errors
///
/// The errno of a failing `close_range`, `getrlimit` or `fcntl`.
pub fn close_on_exec_except(keep: &[RawFd]) -> Result<(), i32> {
    let mut low: RawFd = 3;
    loop {
        let next_kept = keep.iter().copied().filter(|&fd| fd >= low).min();
        match next_kept {
            Some(fd) if fd == low => low += 1,
            Some(fd) => {
                mark_close_on_exec(low as libc::c_uint, (fd - 1) as libc::c_uint)?;
                low = fd + 1;
            }
            None => return mark_close_on_exec(low as libc::c_uint, libc::c_uint::MAX),
        }
    }
}

/// Marks descriptors `first..=last` close-on-exec (see
/// [`close_on_exec_except`]).
fn mark_close_on_exec(first: libc::c_uint, last: libc::c_uint) -> Result<(), i32> {
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    };
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on the
    // descriptors in the range; it closes nothing and touches no memory.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            last,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return Ok(());
    }
    let failure = errno();
    // ENOSYS: no close_range (< 5.9); EINVAL: no CLOSE_RANGE_CLOEXEC (< 5.11).
    if failure != libc::ENOSYS && failure != libc::EINVAL {
        return Err(failure);
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into `limit`, which is valid
    // for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(errno());
    }
    let end = limit.rlim_cur.min(u64::from(last) + 1);
    for fd in u64::from(first)..end {
        let fd = fd as RawFd;
        // SAFETY: F_GETFD reads the flags of a number; on a number that is
        // not open it fails with EBADF and has no effect.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            // SAFETY: F_SETFD only sets the close-on-exec flag of `fd`,
            // which is open (F_GETFD succeeded); no memory is touched.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
                return Err(errno());
            }
        }
    }
    Ok(())
}

/// Overwrites with NUL bytes every `NAME=value` string whose `NAME` is in
/// `names` inside this process's initial environment block: the bytes the
/// kernel placed on the stack at `execve` and shows as `/proc/self/environ`
/// (removing a variable with `unsetenv` only drops libc's pointer to them).
/// Call it after removing those variables from the environment.
/// Best effort: without a readable `/proc/self` nothing is wiped.
pub(crate) fn wipe_initial_environment(names: &[&str]) {
    let Some((start, end)) = initial_environment_range() else {
        return;
    };
    let Ok(block) = std::fs::read("/proc/self/environ") else {
        return;
    };
    if end.checked_sub(start) != Some(block.len()) {
        return;
    }
    let mut offset = 0;
    for entry in block.split(|&b| b == 0) {
        let named = names.iter().any(|name| {
            entry.len() > name.len()
                && entry.starts_with(name.as_bytes())
                && entry[name.len()] == b'='
        });
        if named {
            // SAFETY: `start..end` is this process's initial environment
            // block as the kernel reports it: strings it copied onto the
            // main thread's stack at execve, mapped and writable for the
            // life of the process. `offset + entry.len() <= block.len() ==
            // end - start`, so the write stays inside it. No Rust value
            // refers to these bytes, and the caller removed the variable
            // from libc's `environ`, the only pointer to the string; no
            // other code writes this block.
            unsafe { std::ptr::write_bytes((start + offset) as *mut u8, 0, entry.len()) };
        }
        offset += entry.len() + 1;
    }
}

/// `(env_start, env_end)` from `/proc/self/stat` (fields 50 and 51, see
/// proc_pid_stat(5)).
fn initial_environment_range() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 2, the command name, may hold spaces and parentheses: count
    // fields after its closing parenthesis, which is field 3's start.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(50 - 3);
    let start = fields.next()?.parse().ok()?;
    let end = fields.next()?.parse().ok()?;
    (start > 0 && end > start).then_some((start, end))
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
    fn every_fd_but_the_kept_ones_becomes_close_on_exec() {
        const ISOLATED: &str = "HOSTMUX_BOOT_TEST_ISOLATED";
        if std::env::var_os(ISOLATED).is_none() {
            // The function changes every fd of the process (other tests
            // here make inherited-like fds): run alone in a fresh copy.
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "sys::tests::every_fd_but_the_kept_ones_becomes_close_on_exec",
                    "--nocapture",
                ])
                .env(ISOLATED, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.contains("1 passed"),
                "{}\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        let open: Vec<OwnedFd> = (0..6)
            .map(|_| {
                let fd = inherited_like();
                // SAFETY: `inherited_like` gave up its ownership of `fd`,
                // an open descriptor nothing else owns.
                unsafe { OwnedFd::from_raw_fd(fd) }
            })
            .collect();
        let cloexec = |fd: &OwnedFd| {
            rustix::io::fcntl_getfd(fd)
                .unwrap()
                .contains(rustix::io::FdFlags::CLOEXEC)
        };
        assert!(open.iter().all(|fd| !cloexec(fd)));
        // Keep the second and the fifth, plus numbers that are not open
        // and stdio (which is never touched).
        let keep = [open[1].as_raw_fd(), open[4].as_raw_fd(), 1, 1 << 20];
        close_on_exec_except(&keep).unwrap();
        for (i, fd) in open.iter().enumerate() {
            assert_eq!(cloexec(fd), i != 1 && i != 4, "fd {}", fd.as_raw_fd());
        }
        let stdio_flags = [
            rustix::io::fcntl_getfd(std::io::stdin()),
            rustix::io::fcntl_getfd(std::io::stdout()),
            rustix::io::fcntl_getfd(std::io::stderr()),
        ];
        for (number, flags) in stdio_flags.into_iter().enumerate() {
            // Not open at all is fine; open must stay inheritable.
            if let Ok(flags) = flags {
                assert!(!flags.contains(rustix::io::FdFlags::CLOEXEC), "fd {number}");
            }
        }
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
