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

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

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
        Ok(Self {
            trigger: Some(write_end),
            child,
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
