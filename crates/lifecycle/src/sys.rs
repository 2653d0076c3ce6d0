//! The crate's only `unsafe`: starting a child with
//! `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` and the code it runs before
//! `execve`. (Registering a pidfd with tokio and adopting an inherited fd
//! are `hostmux-boot`'s.)
//!
//! The child code is restricted to async-signal-safe system calls on data
//! prepared before the clone: no allocation, no locks, no writes to shared
//! memory except its own error slot.

use std::cell::UnsafeCell;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt as _};
use std::sync::atomic::{AtomicI32, Ordering};

/// Everything the child needs between `clone` and `execve`, prepared in
/// the parent so the child only reads memory and makes system calls.
#[derive(Debug)]
pub(crate) struct SpawnPlan {
    /// Paths to try with `execve`, in order (one, or the `PATH` candidates).
    candidates: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: Option<CString>,
    /// fds to place at 0, 1, 2 (`None` = leave the inherited one).
    stdio: [Option<RawFd>; 3],
    /// `(fd in the parent, fd number in the child)` pairs.
    fd_moves: Vec<(RawFd, RawFd)>,
    /// The proc's cgroup directory, for `clone3(CLONE_INTO_CGROUP)` (or to
    /// open its `cgroup.procs` where that clone is unavailable).
    cgroup_dir_fd: Option<RawFd>,
    /// Try `clone3(CLONE_INTO_CGROUP)` first (x86_64); when false, go
    /// straight to the `cgroup.procs` fallback.
    clone_into_cgroup: bool,
    parent_pid: libc::pid_t,
    /// Start the child as PID 1 of a new PID namespace.
    new_pid_namespace: bool,
    /// A pidfd of this process, for the child's "parent still alive" check
    /// when it cannot use getppid (inside a new PID namespace it reads 0).
    parent_pidfd: RawFd,
    /// The uid, gid and supplementary groups to switch to before exec
    /// (then also `PR_SET_NO_NEW_PRIVS`); `None` keeps the host's.
    credentials: Option<PlannedCredentials>,
    /// An environment variable the child sets to its own pid just before
    /// exec (`WATCHDOG_PID`: the pid is unknown until the clone).
    own_pid_env: Option<&'static str>,
}

/// Bytes for `NAME=<pid>\0` (a name of at most [`MAX_OWN_PID_ENV_NAME`]
/// bytes and up to 10 digits).
const OWN_PID_ENV_LEN: usize = 32;
/// Longest name [`SpawnPlan::set_own_pid_env`] takes.
const MAX_OWN_PID_ENV_NAME: usize = OWN_PID_ENV_LEN - 12;

/// Credentials the child switches to, prepared so the child only reads.
#[derive(Debug)]
struct PlannedCredentials {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

/// A pidfd of this very process, opened once.
fn own_pidfd() -> io::Result<RawFd> {
    static OWN: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    OWN.get_or_init(|| {
        let me = rustix::process::getpid();
        rustix::process::pidfd_open(me, rustix::process::PidfdFlags::empty()).ok()
    })
    .as_ref()
    .map(std::os::fd::AsRawFd::as_raw_fd)
    .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOSYS))
}

/// Most fds one proc can be handed (extra fds plus the ready pipe). Fixed so
/// the child needs no allocation.
pub(crate) const MAX_EXTRA_FDS: usize = 64;

/// One past the highest signal number on Linux.
const NSIG: libc::c_int = 65;

/// Bytes of stack for the child between clone and exec.
const CHILD_STACK_BYTES: usize = 64 * 1024;

impl SpawnPlan {
    /// Prepares a plan. `program` without a slash is looked up in `PATH`
    /// (from `envp`'s `PATH` if set there, else the host's).
    pub(crate) fn new(
        program: &std::path::Path,
        args: &[std::ffi::OsString],
        env: &[(std::ffi::OsString, std::ffi::OsString)],
        cwd: Option<&std::path::Path>,
    ) -> io::Result<Self> {
        let cstring = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
        };
        let program_bytes = program.as_os_str().as_bytes();
        let candidates = if program_bytes.contains(&b'/') {
            vec![cstring(program_bytes)?]
        } else {
            let path = env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var_os("PATH"))
                .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
            let mut found = Vec::new();
            for dir in path.as_bytes().split(|&b| b == b':') {
                let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
                let mut full = dir.to_vec();
                full.push(b'/');
                full.extend_from_slice(program_bytes);
                found.push(cstring(&full)?);
            }
            found
        };
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(cstring(program_bytes)?);
        for arg in args {
            argv.push(cstring(arg.as_bytes())?);
        }
        let mut envp = Vec::with_capacity(env.len());
        for (key, value) in env {
            let mut kv = key.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(value.as_bytes());
            envp.push(cstring(&kv)?);
        }
        let cwd = match cwd {
            Some(dir) => Some(cstring(dir.as_os_str().as_bytes())?),
            None => None,
        };
        Ok(Self {
            candidates,
            argv,
            envp,
            cwd,
            stdio: [None; 3],
            fd_moves: Vec::new(),
            cgroup_dir_fd: None,
            clone_into_cgroup: true,
            parent_pid: std::process::id() as libc::pid_t,
            new_pid_namespace: false,
            parent_pidfd: own_pidfd()?,
            credentials: None,
            own_pid_env: None,
        })
    }

    /// Makes the child add `name=<its own pid>` to its environment (as its
    /// PID namespace sees it) just before exec. `name` must not be in the
    /// plan's environment already.
    pub(crate) fn set_own_pid_env(&mut self, name: &'static str) {
        assert!(name.len() <= MAX_OWN_PID_ENV_NAME && !name.contains('='));
        self.own_pid_env = Some(name);
    }

    /// Makes the child switch to `uid`, `gid` and exactly `groups` as its
    /// supplementary groups, and set `PR_SET_NO_NEW_PRIVS`, before exec.
    pub(crate) fn set_credentials(&mut self, uid: u32, gid: u32, groups: &[u32]) {
        self.credentials = Some(PlannedCredentials {
            uid,
            gid,
            groups: groups.to_vec(),
        });
    }

    /// Places `fd` at stdin (0), stdout (1) or stderr (2) of the child.
    pub(crate) fn set_stdio(&mut self, target: usize, fd: RawFd) {
        self.stdio[target] = Some(fd);
    }

    /// Places `fd` at number `target` in the child.
    pub(crate) fn move_fd(&mut self, fd: RawFd, target: RawFd) {
        self.fd_moves.push((fd, target));
    }

    /// Starts the child as PID 1 of its own PID namespace: when it dies the
    /// kernel kills everything left in the namespace.
    pub(crate) fn set_new_pid_namespace(&mut self, on: bool) {
        self.new_pid_namespace = on;
    }

    /// Whether the child gets its own PID namespace.
    pub(crate) fn new_pid_namespace(&self) -> bool {
        self.new_pid_namespace
    }

    /// Makes the child enter the cgroup whose directory fd is `dir_fd`: at
    /// birth with `clone3(CLONE_INTO_CGROUP)` where available and
    /// `clone_into` is set, else by writing the cgroup's `cgroup.procs`
    /// itself before exec.
    pub(crate) fn enter_cgroup(&mut self, dir_fd: RawFd, clone_into: bool) {
        self.cgroup_dir_fd = Some(dir_fd);
        self.clone_into_cgroup = clone_into;
    }
}

/// What the child reads (the plan) and writes (its failure, and its pid
/// for `own_pid_env`) in the memory it shares with the suspended parent.
struct ChildArgs<'a> {
    plan: &'a SpawnPlan,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    high_base: RawFd,
    /// `cgroup.procs` of the proc's cgroup, opened for writing, when the
    /// child must enter it itself (`CLONE_INTO_CGROUP` unavailable).
    cgroup_procs_fd: Option<RawFd>,
    errno: AtomicI32,
    /// `NAME=` and room for the pid's digits, which the child writes (the
    /// only plan memory it writes besides `errno`), with the digits' offset.
    own_pid_env: Option<(&'a UnsafeCell<[u8; OWN_PID_ENV_LEN]>, usize)>,
}

/// Starts the child described by `plan` with
/// `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`: like `posix_spawn`, the
/// parent's memory is shared rather than copied (no page-table copy, no
/// copy-on-write faults in a busy multi-threaded host), and the calling
/// thread resumes once the child has exec'd or failed. The child: default
/// dispositions for every signal, its own process group, its cgroup, its
/// stdio and fds, the plan's user, groups and `PR_SET_NO_NEW_PRIVS` (if
/// any), `PR_SET_PDEATHSIG(SIGKILL)` (bound to this thread, which must
/// outlive it; set after the credential change, which clears it), an exit
/// if its parent already changed, its working directory (entered as the
/// new user), an empty signal mask, then `execve`.
///
/// Returns the pid and a pidfd obtained atomically with the clone.
pub(crate) fn spawn(plan: &SpawnPlan) -> io::Result<(libc::pid_t, OwnedFd)> {
    if plan.fd_moves.len() > MAX_EXTRA_FDS {
        return Err(io::Error::from_raw_os_error(libc::EMFILE));
    }
    let null_terminated = |strings: &[CString]| {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect::<Vec<_>>()
    };
    let argv = null_terminated(&plan.argv);
    let own_pid_env = plan.own_pid_env.map(|name| {
        let mut buf = [0u8; OWN_PID_ENV_LEN];
        buf[..name.len()].copy_from_slice(name.as_bytes());
        buf[name.len()] = b'=';
        (UnsafeCell::new(buf), name.len() + 1)
    });
    let mut envp = null_terminated(&plan.envp);
    if let Some((buf, _)) = &own_pid_env {
        // Before the terminating null pointer.
        envp.insert(
            envp.len() - 1,
            buf.get().cast::<libc::c_char>().cast_const(),
        );
    }
    let high_base = plan
        .fd_moves
        .iter()
        .map(|&(_, target)| target)
        .max()
        .unwrap_or(2)
        .max(2)
        + 1;
    let mut args = ChildArgs {
        plan,
        argv: &argv,
        envp: &envp,
        high_base,
        cgroup_procs_fd: None,
        errno: AtomicI32::new(0),
        own_pid_env: own_pid_env.as_ref().map(|(buf, at)| (buf, *at)),
    };
    let mut stack = vec![0u8; CHILD_STACK_BYTES];
    // The stack grows down on every Linux target Rust supports; align the
    // top to 16 bytes as the ABIs require.
    let stack_top = {
        let end = stack.as_mut_ptr() as usize + stack.len();
        (end & !15) as *mut libc::c_void
    };
    let mut pidfd: libc::c_int = -1;

    // SAFETY: sigset_t is plain data; sigfillset initialises it. Blocking
    // every signal on this thread keeps the host's signal handlers from
    // running in the child while it shares our memory; the child resets
    // dispositions before it unblocks. The old mask is restored below.
    let mut old_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; pointers are to live locals.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old_mask);
    }
    let namespace_flag = if plan.new_pid_namespace {
        libc::CLONE_NEWPID
    } else {
        0
    };
    // First choice: clone3 with CLONE_INTO_CGROUP, so the kernel places the
    // child in its cgroup at birth instead of the child writing
    // `cgroup.procs` (which takes the cgroup threadgroup lock for writing
    // and serialises against every fork, exec and exit on the machine).
    let mut pid = -1;
    let mut clone_error = io::Error::from_raw_os_error(libc::ENOSYS);
    #[cfg(target_arch = "x86_64")]
    if let Some(dir_fd) = plan.cgroup_dir_fd.filter(|_| plan.clone_into_cgroup) {
        let clone_args = CloneArgs {
            flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | namespace_flag) as u64
                | CLONE_INTO_CGROUP,
            pidfd: &mut pidfd as *mut libc::c_int as u64,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.as_mut_ptr() as u64,
            stack_size: (stack_top as usize - stack.as_mut_ptr() as usize) as u64,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: dir_fd as u64,
        };
        // SAFETY: see `clone3_vfork`; `clone_args` describes `stack`, which
        // outlives the call (CLONE_VFORK suspends us until exec or exit),
        // and `args` is valid for the same reason.
        let ret = unsafe { clone3_vfork(&clone_args, &args as *const ChildArgs<'_> as usize) };
        if ret >= 0 {
            pid = ret as libc::pid_t;
        } else {
            clone_error = io::Error::from_raw_os_error((-ret) as i32);
        }
    }
    // Fallback (other arches, old kernels, no cgroup, or forced): glibc's
    // clone; the child enters its cgroup by writing `cgroup.procs`, opened
    // here.
    let mut cgroup_procs = None;
    let mut can_enter_cgroup = true;
    if pid < 0 {
        if let Some(dir_fd) = plan.cgroup_dir_fd {
            // SAFETY: `dir_fd` is the plan's cgroup directory fd, which the
            // spawn job keeps open for the whole spawn; the borrow ends
            // before this function returns.
            let dir = unsafe { std::os::fd::BorrowedFd::borrow_raw(dir_fd) };
            let opened = rustix::fs::openat(
                dir,
                "cgroup.procs",
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            );
            match opened {
                Ok(fd) => {
                    args.cgroup_procs_fd = Some(std::os::fd::AsRawFd::as_raw_fd(&fd));
                    cgroup_procs = Some(fd);
                }
                Err(e) => {
                    clone_error = e.into();
                    can_enter_cgroup = false;
                }
            }
        }
    }
    if pid < 0 && can_enter_cgroup {
        // SAFETY: `child_main` runs on `stack`, which outlives the call
        // because CLONE_VFORK suspends this thread until the child execs or
        // exits. The child only reads `args` (valid for the same reason) and
        // writes its atomic `errno` and its `own_pid_env` digits; it makes
        // raw system calls and never returns into Rust code of the parent. `pidfd` receives the
        // CLONE_PIDFD result.
        pid = unsafe {
            libc::clone(
                child_main,
                stack_top,
                libc::CLONE_VM
                    | libc::CLONE_VFORK
                    | libc::CLONE_PIDFD
                    | libc::SIGCHLD
                    | namespace_flag,
                &args as *const ChildArgs<'_> as *mut libc::c_void,
                &mut pidfd as *mut libc::c_int,
            )
        };
        if pid < 0 {
            clone_error = io::Error::last_os_error();
        }
    }
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut());
    }
    drop(stack);
    drop(cgroup_procs);
    if pid < 0 {
        return Err(clone_error);
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a new pidfd for the child
    // in `pidfd`; nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let errno = args.errno.load(Ordering::Acquire);
    if errno != 0 {
        // The child failed before exec and is exiting: reap it now.
        let _ = rustix::process::waitid(
            rustix::process::WaitId::PidFd(pidfd.as_fd()),
            rustix::process::WaitIdOptions::EXITED,
        );
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok((pid, pidfd))
}

/// The child between clone and exec. Async-signal-safe system calls only,
/// no allocation, no locks, reads of prepared data only.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the suspended parent passed to clone;
    // it stays valid until this child execs or exits.
    let args = unsafe { &*(arg as *const ChildArgs<'_>) };
    let fail = |errno: libc::c_int| -> libc::c_int {
        args.errno.store(errno.max(1), Ordering::Release);
        // SAFETY: _exit ends the child without running any parent state
        // (no atexit handlers, no stdio flush).
        unsafe { libc::_exit(127) }
    };
    let last_errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    };
    let plan = args.plan;
    // SAFETY: raw system calls on prepared values; see each comment.
    unsafe {
        // Default disposition for every signal. The raw syscall, not libc's
        // wrapper: glibc refuses to touch its reserved signals (32, 33), yet
        // an ignored disposition on them survives exec like any other. An
        // all-zero kernel sigaction is SIG_DFL, no flags, empty mask.
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
        if libc::setpgid(0, 0) != 0 {
            return fail(last_errno());
        }
        if let Some(fd) = args.cgroup_procs_fd {
            // "0" means the writing process.
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return fail(last_errno());
            }
        }
        for (target, fd) in plan.stdio.iter().enumerate() {
            if let Some(fd) = *fd {
                let target = target as RawFd;
                let placed = if fd == target {
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, target)
                };
                if placed < 0 {
                    return fail(last_errno());
                }
            }
        }
        // Two passes so a target number never clobbers a source still to be
        // moved: lift every source above all targets, then place each
        // (dup2 clears close-on-exec on the target).
        let mut lifted = [0 as RawFd; MAX_EXTRA_FDS];
        for (slot, &(source, _)) in plan.fd_moves.iter().enumerate() {
            let fd = libc::fcntl(source, libc::F_DUPFD_CLOEXEC, args.high_base);
            if fd < 0 {
                return fail(last_errno());
            }
            lifted[slot] = fd;
        }
        for (slot, &(_, target)) in plan.fd_moves.iter().enumerate() {
            if libc::dup2(lifted[slot], target) < 0 {
                return fail(last_errno());
            }
        }
        // Another user: supplementary groups, then gid, then uid (after the
        // uid change the others are no longer permitted). Raw system calls:
        // glibc's wrappers would broadcast the change to every thread of
        // the process whose memory this child shares (the host's).
        if let Some(creds) = &plan.credentials {
            if libc::syscall(
                libc::SYS_setgroups,
                creds.groups.len() as libc::c_long,
                creds.groups.as_ptr(),
            ) != 0
            {
                return fail(last_errno());
            }
            let gid = creds.gid as libc::c_long;
            if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
                return fail(last_errno());
            }
            let uid = creds.uid as libc::c_long;
            if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
                return fail(last_errno());
            }
            // No set-user-ID binary or file capability can give it back.
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
                return fail(last_errno());
            }
        }
        // After the credential change, which clears the death signal.
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return fail(last_errno());
        }
        // The parent may have died before prctl; then no death signal will
        // ever come, so refuse to run. Inside a new PID namespace getppid()
        // is 0, so ask the parent's pidfd (readable once it exited).
        if plan.new_pid_namespace {
            let mut parent = libc::pollfd {
                fd: plan.parent_pidfd,
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&mut parent, 1, 0) != 0 {
                return fail(libc::ESRCH);
            }
        } else if libc::getppid() != plan.parent_pid {
            return fail(libc::ESRCH);
        }
        if let Some(dir) = &plan.cwd {
            if libc::chdir(dir.as_ptr()) != 0 {
                return fail(last_errno());
            }
        }
        // Whatever else this process holds without close-on-exec (a
        // library's fd, one the host inherited) stays out of the proc: it
        // inherits its stdio and the placed fds only.
        let mut kept = [0 as RawFd; MAX_EXTRA_FDS];
        for (slot, &(_, target)) in plan.fd_moves.iter().enumerate() {
            kept[slot] = target;
        }
        if let Err(errno) = hostmux_boot::close_on_exec_except(&kept[..plan.fd_moves.len()]) {
            return fail(errno);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if let Some((buf, at)) = args.own_pid_env {
            // The buffer lives in the parent's frame, which is suspended
            // (CLONE_VFORK) until this child execs or exits, and nothing
            // else touches it: this is its only writer. `at + 10` digits
            // and the NUL fit (`MAX_OWN_PID_ENV_NAME`).
            let env_entry: &mut [u8; OWN_PID_ENV_LEN] = &mut *buf.get();
            crate::notify::write_decimal(&mut env_entry[at..], libc::getpid() as u32);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // Like execvp: keep searching past ENOENT/ENOTDIR/EACCES, report
        // EACCES if any candidate had it.
        let mut saw_eacces = false;
        let mut errno = libc::ENOENT;
        for candidate in &plan.candidates {
            libc::execve(candidate.as_ptr(), args.argv.as_ptr(), args.envp.as_ptr());
            errno = last_errno();
            match errno {
                libc::EACCES => saw_eacces = true,
                libc::ENOENT | libc::ENOTDIR => {}
                _ => break,
            }
        }
        fail(if saw_eacces && errno != libc::ENOEXEC {
            libc::EACCES
        } else {
            errno
        })
    }
}

/// `struct clone_args` of `clone3(2)`, version 2 (with `cgroup`).
#[cfg(target_arch = "x86_64")]
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

#[cfg(target_arch = "x86_64")]
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3` for a `CLONE_VM | CLONE_VFORK` child on its own stack. Returns
/// the child's pid or `-errno` in the parent; the child continues on the new
/// stack in [`clone3_child_entry`] with `child_args` and never returns here.
///
/// # Safety
///
/// `clone_args` must describe a stack that stays valid until the child has
/// exec'd or exited (guaranteed by CLONE_VFORK if it lives across this
/// call), and `child_args` must point to a `ChildArgs` valid as long.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_vfork(clone_args: &CloneArgs, child_args: usize) -> i64 {
    let ret: i64;
    // SAFETY: per the function contract. The parent path touches no stack;
    // in the child the kernel has switched rsp to the top of the new stack
    // (16-byte aligned, so `call` leaves the callee the ABI alignment) and
    // `clone3_child_entry` never returns.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call {entry}",
            "ud2",
            "2:",
            entry = sym clone3_child_entry,
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") clone_args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") child_args,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Where a `clone3_vfork` child starts: run the pre-exec steps, never return.
#[cfg(target_arch = "x86_64")]
extern "C" fn clone3_child_entry(arg: *mut libc::c_void) -> ! {
    let code = child_main(arg);
    // SAFETY: ends the child without touching parent state.
    unsafe { libc::_exit(code) }
}

/// Registers a pidfd with the tokio reactor for readability (process exit).
/// On failure the pidfd is handed back, so the caller can still reap.
pub(crate) fn register_pidfd(
    pidfd: OwnedFd,
) -> Result<tokio::io::unix::AsyncFd<OwnedFd>, (OwnedFd, io::Error)> {
    hostmux_boot::reactor::register_readable(pidfd).map_err(|e| e.into_parts())
}

/// A user's passwd entry: what `initgroups` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    pub(crate) name: CString,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: std::path::PathBuf,
}

/// Which passwd entry to look up.
pub(crate) enum UserKey<'a> {
    Name(&'a str),
    Uid(u32),
}

/// Grows a lookup buffer on `ERANGE` up to this size.
const MAX_LOOKUP_BUFFER: usize = 1 << 20;

/// The passwd entry of a user (NSS: `/etc/passwd`, LDAP, ...), `Ok(None)`
/// if there is none.
pub(crate) fn passwd_entry(key: UserKey<'_>) -> io::Result<Option<PasswdEntry>> {
    let name = match key {
        UserKey::Name(name) => {
            Some(CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?)
        }
        UserKey::Uid(_) => None,
    };
    let mut buffer = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: passwd is plain data that getpw*_r fills in.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local or to `buffer`, whose
        // length is passed; the reentrant variants touch nothing else.
        let ret = unsafe {
            match (&name, &key) {
                (Some(name), _) => libc::getpwnam_r(
                    name.as_ptr(),
                    &mut entry,
                    buffer.as_mut_ptr(),
                    buffer.len(),
                    &mut found,
                ),
                (None, UserKey::Uid(uid)) => libc::getpwuid_r(
                    *uid,
                    &mut entry,
                    buffer.as_mut_ptr(),
                    buffer.len(),
                    &mut found,
                ),
                (None, UserKey::Name(_)) => unreachable!("names were converted above"),
            }
        };
        if ret == libc::ERANGE && buffer.len() < MAX_LOOKUP_BUFFER {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if found.is_null() {
            // "Not found" is ret 0 or one of the errnos glibc documents for it.
            return match ret {
                0 | libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => Ok(None),
                errno => Err(io::Error::from_raw_os_error(errno)),
            };
        }
        // SAFETY: on success `pw_name` and `pw_dir` point to NUL-terminated
        // strings in `buffer`, which is still alive.
        let (user, home) = unsafe {
            (
                std::ffi::CStr::from_ptr(entry.pw_name).to_owned(),
                std::ffi::CStr::from_ptr(entry.pw_dir).to_bytes().to_vec(),
            )
        };
        return Ok(Some(PasswdEntry {
            name: user,
            uid: entry.pw_uid,
            gid: entry.pw_gid,
            home: std::ffi::OsString::from_vec(home).into(),
        }));
    }
}

/// The gid of the group called `name`, `Ok(None)` if there is none.
pub(crate) fn group_id(name: &str) -> io::Result<Option<u32>> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buffer = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: group is plain data that getgrnam_r fills in.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: pointers to live locals and to `buffer` with its length.
        let ret = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if ret == libc::ERANGE && buffer.len() < MAX_LOOKUP_BUFFER {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if found.is_null() {
            return match ret {
                0 | libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => Ok(None),
                errno => Err(io::Error::from_raw_os_error(errno)),
            };
        }
        return Ok(Some(entry.gr_gid));
    }
}

/// `user`'s supplementary groups as `initgroups(user, gid)` would set
/// them: every group that lists the user, plus `gid`.
pub(crate) fn group_list(user: &std::ffi::CStr, gid: u32) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: `groups` has room for `count` entries; getgrouplist
        // writes at most that many and stores the number it needs in
        // `count`.
        let ret =
            unsafe { libc::getgrouplist(user.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if ret >= 0 {
            groups.truncate(count.max(0) as usize);
            return Ok(groups);
        }
        let needed = (count.max(0) as usize).max(groups.len() * 2);
        if needed > 65536 {
            return Err(io::Error::from_raw_os_error(libc::ERANGE));
        }
        groups.resize(needed, 0);
    }
}
