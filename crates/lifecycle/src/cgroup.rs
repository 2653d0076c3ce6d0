//! cgroup v2: one cgroup per proc under a per-manager directory, killed with
//! `cgroup.kill`, and a sweep of directories left by dead managers.
//!
//! Layout: `<unified mount><own cgroup>/hostmux/m<pid>-<starttime>-<seq>/c<n>`;
//! empty proc cgroups are reused by later procs of the same manager, except
//! ones that received `cgroup.kill` (see [`ProcCgroup`]).
//! The unified mount is found in `/proc/self/mountinfo` (never hard-coded:
//! it is `/sys/fs/cgroup` on pure v2 hosts and e.g. `/sys/fs/cgroup/unified`
//! in hybrid mode). A manager directory names its owner by pid *and* start
//! time, so a sweep never mistakes a recycled pid for a live owner.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a sweep or a proc cleanup waits for a killed cgroup to empty.
const EMPTY_WAIT: Duration = Duration::from_secs(2);

static MANAGER_SEQ: AtomicU64 = AtomicU64::new(0);

/// Most empty proc cgroups a manager keeps for reuse.
const POOL_MAX: usize = 256;

/// Empty proc cgroups ready for the next spawn. Creating and destroying a
/// cgroup per proc cost ~0.1 ms of spawn-to-ready (measured: the kernel's
/// asynchronous teardown of the previous cgroup competes with the next
/// spawn); reusing an empty one costs almost nothing.
type Pool = std::sync::Mutex<Vec<PathBuf>>;

/// Where this manager puts its procs' cgroups.
#[derive(Debug)]
pub(crate) struct CgroupRoot {
    manager_dir: PathBuf,
    pool: std::sync::Arc<Pool>,
    next_dir: AtomicU64,
}

/// One proc's cgroup.
#[derive(Debug)]
pub(crate) struct ProcCgroup {
    dir: PathBuf,
    /// `(directory, cgroup.procs)` fds for the spawn: the directory for
    /// `clone3(CLONE_INTO_CGROUP)`, `cgroup.procs` for the child's
    /// `write("0")` where that is not available. Taken by the spawn.
    spawn_fds: Option<(OwnedFd, OwnedFd)>,
    pool: std::sync::Weak<Pool>,
    /// Set once `cgroup.kill` was written. Such a cgroup is never reused:
    /// on this kernel (6.18) a child later placed in it with
    /// `clone3(CLONE_INTO_CGROUP)` is SIGKILLed at birth (observed; the
    /// fork path's pending-kill check compares kill sequence numbers).
    kill_sent: std::sync::atomic::AtomicBool,
    /// Set once the cgroup went back to the pool or was removed.
    released: bool,
}

/// The unified (v2) hierarchy mount point, from `/proc/self/mountinfo`.
pub(crate) fn unified_mount() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <fstype> ..."
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace()
            .nth(4)
            .map(|p| PathBuf::from(unescape_mountinfo(p)))
    })
}

fn unescape_mountinfo(path: &str) -> String {
    path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// This process's cgroup path inside the unified hierarchy (`0::<path>`).
fn own_cgroup() -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_start_matches('/').to_owned())
}

/// Field 22 of `/proc/<pid>/stat`: start time in clock ticks since boot.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// The default `hostmux` base directory for this process, if cgroup v2 is
/// mounted.
pub(crate) fn default_base() -> Option<PathBuf> {
    let mut base = unified_mount()?;
    if let Some(own) = own_cgroup() {
        if !own.is_empty() {
            base.push(own);
        }
    }
    base.push("hostmux");
    Some(base)
}

impl CgroupRoot {
    /// Sets up this manager's directory under `base`, sweeping what dead
    /// managers left there first. `Ok(None)` if `base` is not a usable,
    /// writable cgroup v2 directory with `cgroup.kill` (kernel >= 5.14).
    pub(crate) fn setup(base: &Path) -> Option<(Self, usize)> {
        fs::create_dir_all(base).ok()?;
        let swept = sweep(base);
        let pid = std::process::id();
        let start = process_start_time(pid)?;
        let seq = MANAGER_SEQ.fetch_add(1, Ordering::Relaxed);
        let manager_dir = base.join(format!("m{pid}-{start}-{seq}"));
        fs::create_dir(&manager_dir).ok()?;
        if !manager_dir.join("cgroup.kill").exists() {
            let _ = fs::remove_dir(&manager_dir);
            return None;
        }
        Some((
            Self {
                manager_dir,
                pool: std::sync::Arc::new(Pool::default()),
                next_dir: AtomicU64::new(0),
            },
            swept,
        ))
    }

    /// A cgroup for one proc: an empty one from the pool, or a new one.
    pub(crate) fn create_proc(&self) -> io::Result<ProcCgroup> {
        let reused = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let dir = match reused {
            Some(dir) => dir,
            None => {
                let n = self.next_dir.fetch_add(1, Ordering::Relaxed);
                let dir = self.manager_dir.join(format!("c{n}"));
                fs::create_dir(&dir)?;
                dir
            }
        };
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"));
        let dir_file = procs.and_then(|p| fs::File::open(&dir).map(|d| (p, d)));
        match dir_file {
            Ok((procs, dir_fd)) => Ok(ProcCgroup {
                dir,
                spawn_fds: Some((dir_fd.into(), procs.into())),
                pool: std::sync::Arc::downgrade(&self.pool),
                kill_sent: std::sync::atomic::AtomicBool::new(false),
                released: false,
            }),
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// This manager's directory.
    pub(crate) fn path(&self) -> &Path {
        &self.manager_dir
    }
}

impl Drop for CgroupRoot {
    fn drop(&mut self) {
        for dir in self
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = fs::remove_dir(dir);
        }
        // Succeeds only once every proc cgroup is gone; otherwise the next
        // manager's sweep removes it.
        let _ = fs::remove_dir(&self.manager_dir);
    }
}

impl ProcCgroup {
    /// Hands the spawn its `(directory, cgroup.procs)` fds; the spawn job
    /// must own them until the child is running.
    pub(crate) fn take_spawn_fds(&mut self) -> Option<(OwnedFd, OwnedFd)> {
        self.spawn_fds.take()
    }

    /// Kills every process in the cgroup (including escaped grandchildren).
    pub(crate) fn kill(&self) -> io::Result<()> {
        self.kill_sent.store(true, Ordering::Relaxed);
        kill_dir(&self.dir)
    }

    /// Kills what is left, waits a bounded time for the cgroup to empty,
    /// then returns it to the manager's pool (if it is a clean, empty leaf
    /// and the pool has room) or removes it. Returns whether it was released.
    pub(crate) async fn kill_and_release(&mut self) -> bool {
        // Kill only if something is left: an empty, never-killed cgroup can
        // be reused.
        if !matches!(self.state(), Some(CgroupState::Empty)) {
            let _ = self.kill();
        }
        let deadline = Instant::now() + EMPTY_WAIT;
        let mut pause = Duration::from_micros(100);
        loop {
            match self.state() {
                Some(CgroupState::Empty) => return self.release(),
                Some(CgroupState::Unusable) => return self.remove(),
                _ if Instant::now() >= deadline => {
                    tracing::warn!(cgroup = %self.dir.display(), "cgroup did not empty after cgroup.kill");
                    return false;
                }
                _ => {}
            }
            // Killed tasks leave within microseconds to milliseconds; back
            // off instead of spinning.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Synchronous variant for `Drop` paths: kill, wait, remove.
    pub(crate) fn kill_and_remove_blocking(&mut self) {
        let _ = self.kill();
        let deadline = Instant::now() + EMPTY_WAIT;
        while !self.remove() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Reads `cgroup.events` (and checks for child cgroups).
    fn state(&self) -> Option<CgroupState> {
        let events = fs::read_to_string(self.dir.join("cgroup.events")).ok()?;
        let field = |key: &str| {
            events
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim() == "1")
        };
        if field("populated ")? {
            return Some(CgroupState::Populated);
        }
        let has_children = fs::read_dir(&self.dir)
            .map(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().is_dir())))
            .unwrap_or(true);
        // A frozen cgroup or one the proc gave child cgroups is not reused.
        if field("frozen ").unwrap_or(false) || has_children {
            Some(CgroupState::Unusable)
        } else {
            Some(CgroupState::Empty)
        }
    }

    fn release(&mut self) -> bool {
        if self.kill_sent.load(Ordering::Relaxed) {
            return self.remove();
        }
        if let Some(pool) = self.pool.upgrade() {
            let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOL_MAX {
                pool.push(self.dir.clone());
                self.released = true;
                return true;
            }
        }
        self.remove()
    }

    fn remove(&mut self) -> bool {
        self.released = fs::remove_dir(&self.dir).is_ok();
        self.released
    }
}

/// What `cgroup.events` says about a proc cgroup.
enum CgroupState {
    Populated,
    Empty,
    Unusable,
}

impl Drop for ProcCgroup {
    fn drop(&mut self) {
        // Normally already released by `kill_and_release`; this catches a
        // spawn that was cancelled before its supervisor existed (an empty
        // cgroup goes at once, a populated one is left to the next sweep).
        if !self.released {
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

fn kill_dir(dir: &Path) -> io::Result<()> {
    fs::write(dir.join("cgroup.kill"), b"1")
}

/// Removes manager directories under `base` whose owner process is gone,
/// killing anything still inside them. Returns the number of proc cgroups
/// removed.
pub(crate) fn sweep(base: &Path) -> usize {
    let Ok(entries) = fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, start)) = parse_manager_dir(&name.to_string_lossy()) else {
            continue;
        };
        if process_start_time(pid) == Some(start) {
            continue; // the owner is alive
        }
        let dir = entry.path();
        if let Ok(procs) = fs::read_dir(&dir) {
            for proc_dir in procs.flatten().filter(|e| e.path().is_dir()) {
                let path = proc_dir.path();
                let _ = kill_dir(&path);
                let deadline = Instant::now() + EMPTY_WAIT;
                while fs::remove_dir(&path).is_err() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                removed += 1;
            }
        }
        let _ = fs::remove_dir(&dir);
    }
    removed
}

fn parse_manager_dir(name: &str) -> Option<(u32, u64)> {
    let mut parts = name.strip_prefix('m')?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    Some((pid, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_dir_names_round_trip_and_reject_strangers() {
        assert_eq!(parse_manager_dir("m123-456-0"), Some((123, 456)));
        assert_eq!(parse_manager_dir("m123-456"), None);
        assert_eq!(parse_manager_dir("x123-456-0"), None);
        assert_eq!(parse_manager_dir("cgroup.procs"), None);
    }

    #[test]
    fn own_start_time_is_readable() {
        assert!(process_start_time(std::process::id()).is_some());
    }
}
