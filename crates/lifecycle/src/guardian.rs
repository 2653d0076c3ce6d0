//! The guardian: a tiny process outside a manager's cgroup subtree that
//! `cgroup.kill`s the subtree once the host is gone, however it went.
//!
//! When the host is SIGKILLed no host code runs: `PR_SET_PDEATHSIG` kills
//! each proc, but not what the procs started (a grandchild that called
//! `setsid`, a double-forked daemon). The guardian closes that gap without a
//! PID namespace. It is `/bin/sh` running a three-line script, started once
//! per manager (never per spawn) when the manager has a cgroup subtree:
//!
//! - its stdin is the read end of a pipe whose only write end this process
//!   holds (close-on-exec, so no proc ever inherits it). The host never
//!   writes; `read` returns EOF exactly when every copy of the write end is
//!   closed: the host died (any signal, `exit`, a panic) or the guardian was
//!   dropped;
//! - on EOF it writes `1` to `<manager dir>/cgroup.kill`, which kills every
//!   process in the subtree, whatever process group or session it moved to,
//!   and then exits;
//! - it is not a proc: no PDEATHSIG, its own process group (so a terminal's
//!   Ctrl-C or a signal to the host's group does not reach it), SIGHUP,
//!   SIGINT, SIGTERM and SIGQUIT ignored, and it stays in the host's own
//!   cgroup, outside the subtree it kills.
//!
//! The directory is passed as a positional argument (`"$1"`), never
//! interpolated into the script. A manager directory's name is unique to
//! its manager (pid, start time, sequence number), so a guardian never kills
//! procs of another manager, old or new.
//!
//! A guardian that dies while the host lives (someone SIGKILLed it) is
//! replaced: a [`GuardianKeeper`] thread waits on the guardian's pidfd and
//! starts a new one for the same directory at once, so a host killed later
//! still leaves no descendant behind.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

/// How long the keeper waits before it tries again when a guardian could
/// not be started.
const RESTART_RETRY: Duration = Duration::from_secs(1);

/// Keeps one guardian running for a manager directory: starts it, and
/// starts a new one whenever the running one dies while the keeper lives
/// (a watcher thread blocks on the guardian's pidfd, so an idle host spends
/// nothing on it). Dropping the keeper stops the watcher, then drops the
/// guardian (which kills what is left in the subtree and exits).
#[derive(Debug)]
pub(crate) struct GuardianKeeper {
    shared: Arc<KeeperShared>,
    /// Write end of the watcher's stop pipe; closing it stops the watcher.
    stop: Option<OwnedFd>,
    watcher: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct KeeperShared {
    manager_dir: PathBuf,
    current: Mutex<Option<Guardian>>,
    restarts: AtomicU64,
}

impl GuardianKeeper {
    /// Starts a guardian for `manager_dir` and its watcher.
    pub(crate) fn start(manager_dir: &Path) -> io::Result<Self> {
        let guardian = Guardian::start(manager_dir)?;
        let shared = Arc::new(KeeperShared {
            manager_dir: manager_dir.to_owned(),
            current: Mutex::new(Some(guardian)),
            restarts: AtomicU64::new(0),
        });
        let (stop_read, stop_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let watched = Arc::clone(&shared);
        let watcher = std::thread::Builder::new()
            .name("hostmux-guardian-keeper".to_owned())
            .spawn(move || keep(&watched, &stop_read))?;
        Ok(Self {
            shared,
            stop: Some(stop_write),
            watcher: Some(watcher),
        })
    }

    /// The running guardian's pid (`None` while a replacement could not be
    /// started).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.shared.lock().as_ref().map(Guardian::pid)
    }

    /// How many guardians were started to replace dead ones.
    pub(crate) fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }
}

impl KeeperShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Guardian>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for GuardianKeeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        let guardian = self.shared.lock().take();
        drop(guardian);
    }
}

/// The watcher: waits for the guardian to die or the keeper to stop; a dead
/// guardian is reaped and replaced.
fn keep(shared: &KeeperShared, stop: &OwnedFd) {
    loop {
        let pidfd = shared
            .lock()
            .as_ref()
            .and_then(|guardian| guardian.pidfd.as_ref()?.try_clone().ok());
        let retry = rustix::time::Timespec {
            tv_sec: RESTART_RETRY.as_secs() as i64,
            tv_nsec: 0,
        };
        let mut fds = vec![PollFd::new(stop, PollFlags::IN)];
        if let Some(pidfd) = &pidfd {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
        }
        // Without a guardian (or a pidfd to watch it by), look again later.
        let timeout = pidfd.is_none().then_some(&retry);
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::error!(error = %e, "cgroup guardian keeper cannot wait; it stops");
                return;
            }
        }
        if !fds[0].revents().is_empty() {
            return; // the keeper was dropped
        }
        let guardian_died = fds.get(1).is_some_and(|fd| !fd.revents().is_empty());
        let mut current = shared.lock();
        if guardian_died {
            if let Some(dead) = current.take() {
                tracing::warn!(
                    pid = dead.pid(),
                    cgroup = %shared.manager_dir.display(),
                    "the cgroup guardian died while the host runs; starting a new one"
                );
                drop(dead); // reaps it
            }
        }
        if current.is_some() {
            continue;
        }
        match Guardian::start(&shared.manager_dir) {
            Ok(guardian) => {
                tracing::info!(pid = guardian.pid(), "new cgroup guardian running");
                shared.restarts.fetch_add(1, Ordering::Relaxed);
                *current = Some(guardian);
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "cannot start a new cgroup guardian; trying again in a second"
                );
            }
        }
    }
}

/// The guardian's program: a POSIX shell, using builtins only.
const SHELL: &str = "/bin/sh";

/// Ignore polite and terminal signals, block until stdin reports EOF (the
/// host never writes to it), then kill the subtree named by `$1`.
const SCRIPT: &str = "trap '' HUP INT TERM QUIT\n\
                      while read -r _; do :; done\n\
                      echo 1 >\"$1/cgroup.kill\"\n";

/// `$0` of the script: what `ps` shows after `/bin/sh -c <script>`.
const ARGV0: &str = "hostmux-guardian";

/// How long a dropped guardian may take to see EOF and exit before it is
/// SIGKILLed (it normally takes about a millisecond).
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// A running guardian for one manager directory. Dropping it closes the
/// pipe (so the guardian kills what is left in the subtree, normally
/// nothing) and reaps it, waiting a bounded time.
#[derive(Debug)]
pub(crate) struct Guardian {
    /// The pipe's only write end; closing it is the guardian's trigger.
    trigger: Option<OwnedFd>,
    child: Child,
    /// The guardian's pidfd (readable once it exited), for the keeper;
    /// `None` on kernels without pidfds.
    pidfd: Option<OwnedFd>,
}

impl Guardian {
    /// Starts a guardian for the cgroup subtree at `manager_dir`.
    pub(crate) fn start(manager_dir: &Path) -> io::Result<Self> {
        let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let child = Command::new(SHELL)
            .arg("-c")
            .arg(SCRIPT)
            .arg(ARGV0)
            .arg(manager_dir)
            .env_clear()
            .current_dir("/")
            // std places it at fd 0 without close-on-exec and closes the
            // parent's copy when the Command is dropped (below).
            .stdin(Stdio::from(read_end))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        // Our unreaped child: its pid cannot have been reused.
        let pidfd = rustix::process::Pid::from_raw(child.id() as i32).and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        });
        Ok(Self {
            trigger: Some(write_end),
            child,
            pidfd,
        })
    }

    /// The guardian's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        drop(self.trigger.take());
        if !exits_within(&self.child, EXIT_WAIT) {
            tracing::warn!(
                pid = self.child.id(),
                "cgroup guardian did not exit after its pipe closed; killing it"
            );
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Waits up to `limit` for `child` (not yet reaped) to exit, on its pidfd.
fn exits_within(child: &Child, limit: Duration) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) else {
        return false;
    };
    let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        // Without a pidfd (pre-5.3 kernel), a blocking wait could hang.
        return false;
    };
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}
