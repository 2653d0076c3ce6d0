//! cgroup v2: one cgroup per proc under a per-manager directory, killed with
//! `cgroup.kill`, and a sweep of directories left by dead managers.
//!
//! Layout: `<unified mount><own cgroup>/hostmux/m<pid>-<starttime>-<seq>/<proc>-<n>`.
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

/// Where this manager puts its procs' cgroups.
#[derive(Debug)]
pub(crate) struct CgroupRoot {
    manager_dir: PathBuf,
}

/// One proc's cgroup.
#[derive(Debug)]
pub(crate) struct ProcCgroup {
    dir: PathBuf,
    /// `(directory, cgroup.procs)` fds for the spawn: the directory for
    /// `clone3(CLONE_INTO_CGROUP)`, `cgroup.procs` for the child's
    /// `write("0")` where that is not available. Taken by the spawn.
    spawn_fds: Option<(OwnedFd, OwnedFd)>,
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
        Some((Self { manager_dir }, swept))
    }

    /// Creates the cgroup for one proc.
    pub(crate) fn create_proc(&self, name: &str, seq: u64) -> io::Result<ProcCgroup> {
        let dir = self.manager_dir.join(format!("{name}-{seq}"));
        fs::create_dir(&dir)?;
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"));
        let dir_file = procs.and_then(|p| fs::File::open(&dir).map(|d| (p, d)));
        match dir_file {
            Ok((procs, dir_fd)) => Ok(ProcCgroup {
                dir,
                spawn_fds: Some((dir_fd.into(), procs.into())),
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
        kill_dir(&self.dir)
    }

    /// Kills what is left and removes the cgroup, waiting a bounded time for
    /// it to empty. Returns whether it was removed.
    pub(crate) async fn kill_and_remove(&self) -> bool {
        let _ = self.kill();
        let deadline = Instant::now() + EMPTY_WAIT;
        let mut pause = Duration::from_micros(200);
        loop {
            if fs::remove_dir(&self.dir).is_ok() {
                return true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(cgroup = %self.dir.display(), "cgroup did not empty after cgroup.kill");
                return false;
            }
            // Killed tasks leave within microseconds to milliseconds; back
            // off instead of spinning.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Synchronous variant for `Drop` paths.
    pub(crate) fn kill_and_remove_blocking(&self) {
        let _ = self.kill();
        let deadline = Instant::now() + EMPTY_WAIT;
        while fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for ProcCgroup {
    fn drop(&mut self) {
        // Normally already removed by `kill_and_remove`; this catches a spawn
        // that was cancelled before its supervisor existed (an empty cgroup
        // goes at once, a populated one is left to the next sweep).
        let _ = fs::remove_dir(&self.dir);
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
