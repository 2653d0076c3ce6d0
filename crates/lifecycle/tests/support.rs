//! Helpers shared by the integration tests.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hostmux_lifecycle::{ProcName, TerminalStatus};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{pidfd_open, Pid, PidfdFlags};

/// Generous slack for a loaded, shared 2-core machine.
pub(crate) const EPSILON: Duration = Duration::from_millis(1500);

pub(crate) fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hostmux-lifecycle-fixture"))
}

/// `Exited { code }` with no captured output.
pub(crate) const fn exited(code: i32) -> TerminalStatus {
    TerminalStatus::Exited { code, output: None }
}

pub(crate) fn name(s: &str) -> ProcName {
    ProcName::new(s).expect("valid proc name")
}

/// A unique temp path for this test process.
pub(crate) fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("hostmux-lifecycle-{}-{tag}", std::process::id()))
}

/// A pidfd for `pid`, or `None` if it is already gone.
pub(crate) fn pidfd(pid: u32) -> Option<OwnedFd> {
    pidfd_open(Pid::from_raw(pid as i32)?, PidfdFlags::empty()).ok()
}

/// Waits up to `limit` for the process behind `fd` to exit. Blocking.
pub(crate) fn exited_within(fd: &OwnedFd, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll on pidfd: {e}"),
        }
    }
}

/// Process state letter from `/proc/<pid>/stat` (`None` once reaped).
pub(crate) fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Children of this process that are zombies and stay zombies: one that
/// is reaped within [`EPSILON`] (a child of a test running in parallel, in
/// the moment between its exit and its reaper's `waitid`) is not counted.
pub(crate) fn zombie_children() -> Vec<u32> {
    let deadline = Instant::now() + EPSILON;
    let mut zombies = zombie_children_now();
    while !zombies.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        zombies.retain(|&pid| proc_state(pid) == Some('Z'));
    }
    zombies
}

fn zombie_children_now() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next();
        let ppid = fields.next();
        if state == Some("Z") && ppid == Some(me.as_str()) {
            zombies.push(pid);
        }
    }
    zombies
}

/// Number of open fds in this process.
pub(crate) fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

const ISOLATED_ENV: &str = "HOSTMUX_LIFECYCLE_ISOLATED";

/// Runs the calling test alone in a fresh copy of the test binary (so fd
/// and zombie counts are not disturbed by tests running in parallel).
/// Returns `true` in the parent, which should then return; `false` inside
/// the isolated copy, which runs the body. `shell_prefix` optionally wraps
/// the copy in `sh -c '<prefix> exec "$0" "$@"'` (e.g. to pre-ignore a signal).
pub(crate) fn run_isolated(test_path: &str, shell_prefix: Option<&str>) -> bool {
    if std::env::var_os(ISOLATED_ENV).is_some() {
        return false;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let test_args = [test_path, "--exact", "--test-threads=1", "--nocapture"];
    let mut cmd = match shell_prefix {
        Some(prefix) => {
            let mut c = std::process::Command::new("sh");
            c.arg("-c")
                .arg(format!("{prefix} exec \"$0\" \"$@\""))
                .arg(&exe);
            c
        }
        None => std::process::Command::new(&exe),
    };
    let out = cmd
        .args(test_args)
        .env(ISOLATED_ENV, "1")
        .output()
        .expect("run isolated test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "isolated run of {test_path} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Counts concurrent holders and records the peak; decrements on drop (so an
/// aborted holder is counted out too).
pub(crate) struct InFlight {
    now: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl InFlight {
    pub(crate) fn enter(
        now: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
        peak: &std::sync::atomic::AtomicUsize,
    ) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let current = now.fetch_add(1, SeqCst) + 1;
        peak.fetch_max(current, SeqCst);
        Self {
            now: std::sync::Arc::clone(now),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
