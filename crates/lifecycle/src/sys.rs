//! The crate's only `unsafe`: the code that runs in the forked child before
//! `exec`, and adopting an inherited fd number on the child side.
//!
//! Everything in the `pre_exec` closure is restricted to async-signal-safe
//! system calls on data prepared before the fork: no allocation, no locks.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// What the forked child does to itself between `fork` and `exec`, beyond
/// what `std` already does (stdio, cwd, env, process group).
#[derive(Debug, Clone)]
pub(crate) struct ChildSetup {
    /// The pid of this (the parent) process; the child exits if its parent
    /// is already someone else.
    pub(crate) parent_pid: libc::pid_t,
    /// `cgroup.procs` of the proc's cgroup, opened for writing in the parent.
    pub(crate) cgroup_procs_fd: Option<RawFd>,
    /// `(fd in the parent, fd number in the child)` pairs.
    pub(crate) fd_moves: Vec<(RawFd, RawFd)>,
}

/// Installs the pre-exec steps: clean signal mask and dispositions,
/// `PR_SET_PDEATHSIG(SIGKILL)`, parent check, cgroup entry, fd placement.
///
/// The fds named in `setup` must stay open until `cmd.spawn()` returns.
pub(crate) fn install_pre_exec(cmd: &mut Command, setup: ChildSetup) {
    let high_base = setup
        .fd_moves
        .iter()
        .map(|&(_, target)| target)
        .max()
        .unwrap_or(2)
        .max(2)
        + 1;
    // SAFETY: the closure runs in the child after fork. It only calls
    // async-signal-safe functions (sigprocmask, rt_sigaction, prctl, getppid,
    // write, fcntl, dup2) on values captured before the fork, and it does
    // not allocate: the io::Error values are built from raw OS error codes.
    unsafe {
        cmd.pre_exec(move || {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The raw syscall, not libc's wrapper: glibc refuses to touch the
            // signals it reserves (32, 33), yet an ignored disposition on
            // them is inherited across exec like any other. An all-zero
            // kernel sigaction is SIG_DFL with no flags and an empty mask.
            let default_action = [0u64; 4];
            for signal in 1..NSIG {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        signal as libc::c_long,
                        default_action.as_ptr(),
                        std::ptr::null_mut::<u64>(),
                        8 as libc::c_long,
                    );
                }
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then no death
            // signal will ever come, so refuse to run.
            if libc::getppid() != setup.parent_pid {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            if let Some(fd) = setup.cgroup_procs_fd {
                // "0" means the writing process.
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Two passes so a target number never clobbers a source that is
            // still to be moved: first lift every source above all targets,
            // then place each (dup2 clears close-on-exec on the target).
            let mut lifted = [0 as RawFd; MAX_EXTRA_FDS];
            for (slot, &(source, _)) in setup.fd_moves.iter().enumerate() {
                let fd = libc::fcntl(source, libc::F_DUPFD_CLOEXEC, high_base);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                lifted[slot] = fd;
            }
            for (slot, &(_, target)) in setup.fd_moves.iter().enumerate() {
                if libc::dup2(lifted[slot], target) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// One past the highest signal number on Linux.
const NSIG: libc::c_int = 65;

/// Most fds one proc can be handed (extra fds plus the ready pipe). Fixed so
/// the pre-exec code needs no allocation.
pub(crate) const MAX_EXTRA_FDS: usize = 64;

/// Adopts an fd number this process inherited (e.g. `HOSTMUX_READY_FD`).
///
/// Checks that the number is open and not one of stdio, and takes it at most
/// once per process (`claimed` guards that), so no two owners can exist.
pub(crate) fn adopt_inherited_fd(
    fd: RawFd,
    claimed: &std::sync::atomic::AtomicBool,
) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only queries flags of a descriptor number; it is
    // harmless on any number and fails with EBADF if it is not open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if claimed.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: `fd` is open (checked above), was placed in this process by
    // the manager for this purpose, and the `claimed` flag ensures this is
    // the only OwnedFd ever created for it in this process.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers a pidfd with the tokio reactor for readability (process exit).
pub(crate) fn register_pidfd(pidfd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid open descriptor, and the AsyncFd owns it
    // for its whole life: nothing else can close or replace it, and
    // `as_raw_fd` on an OwnedFd always returns the same number.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)
}
