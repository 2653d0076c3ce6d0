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
//! Each manager directory has a [`Guardian`] that `cgroup.kill`s it when the
//! host dies; the sweep covers hosts that ran without one.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use crate::guardian::GuardianKeeper;

/// How long a sweep or a proc cleanup waits for a killed cgroup to empty.
const EMPTY_WAIT: Duration = Duration::from_secs(2);

static MANAGER_SEQ: AtomicU64 = AtomicU64::new(0);

/// Most empty proc cgroups a manager keeps for reuse.
const POOL_MAX: usize = 256;

/// Empty proc cgroups a manager creates up front, and tops its pool up to
/// (off the spawn path) when a cgroup had to be removed instead of reused.
const POOL_PREFILL: usize = 8;

/// Empty proc cgroups ready for the next spawn, by number (`c<n>`).
///
/// Creating and destroying a cgroup per proc cost ~0.1 ms of spawn-to-ready
/// (measured: mkdir ~23 µs, rmdir ~20–28 µs, and the kernel's asynchronous
/// teardown of the previous cgroup competing with the next spawn); taking
/// an empty one from the pool costs one `openat` of its directory. The pool
/// keeps names, not open fds, so a manager's fd count does not grow with
/// it.
#[derive(Debug)]
struct Pool {
    manager_dir: PathBuf,
    /// The manager directory, opened once, so a spawn's `openat`/`mkdirat`
    /// resolves one path component instead of the whole cgroupfs path.
    manager_fd: OwnedFd,
    free: Mutex<Vec<u64>>,
    next_dir: AtomicU64,
}

impl Pool {
    fn name(n: u64) -> String {
        format!("c{n}")
    }

    /// Creates a fresh empty proc cgroup and returns its number.
    fn create(&self) -> io::Result<u64> {
        let n = self.next_dir.fetch_add(1, Ordering::Relaxed);
        rustix::fs::mkdirat(
            &self.manager_fd,
            Self::name(n),
            Mode::from_bits_truncate(0o755),
        )?;
        Ok(n)
    }

    fn put(&self, n: u64) -> bool {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < POOL_MAX {
            free.push(n);
            true
        } else {
            false
        }
    }

    /// Tops the pool up to [`POOL_PREFILL`] fresh cgroups. Blocking
    /// filesystem calls: call it off the spawn path.
    fn refill(&self) {
        while self.free.lock().unwrap_or_else(|e| e.into_inner()).len() < POOL_PREFILL {
            match self.create() {
                Ok(n) => {
                    self.put(n);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot pre-create a proc cgroup");
                    return;
                }
            }
        }
    }
}

/// Where this manager puts its procs' cgroups.
#[derive(Debug)]
pub(crate) struct CgroupRoot {
    pool: Arc<Pool>,
    /// Kills the subtree once this process is gone; shared with every
    /// [`ProcCgroup`], so it stays armed while any proc of this manager is
    /// alive, even after the manager was dropped. `None` if `/bin/sh` could
    /// not be started.
    guardian: Option<Arc<GuardianKeeper>>,
}

/// One proc's cgroup.
#[derive(Debug)]
pub(crate) struct ProcCgroup {
    dir: PathBuf,
    number: u64,
    /// The directory (`O_PATH`) for `clone3(CLONE_INTO_CGROUP)`; the spawn
    /// opens `cgroup.procs` from it only where that clone is unavailable.
    /// Taken by the spawn.
    spawn_fd: Option<OwnedFd>,
    pool: Weak<Pool>,
    /// Set once `cgroup.kill` was written. Such a cgroup is never reused:
    /// on this kernel (6.18) a child later placed in it with
    /// `clone3(CLONE_INTO_CGROUP)` is SIGKILLed at birth (observed; the
    /// fork path's pending-kill check compares kill sequence numbers).
    kill_sent: AtomicBool,
    /// Set once the cgroup went back to the pool or was removed.
    released: bool,
    /// Set when it was removed rather than pooled: the pool wants a refill.
    removed: bool,
    /// Keeps the manager's guardian armed while this proc lives.
    _guardian: Option<Arc<GuardianKeeper>>,
}

/// A handle that tops a manager's cgroup pool up later, off the spawn path.
#[derive(Debug)]
pub(crate) struct PoolRefill(Weak<Pool>);

impl PoolRefill {
    /// Pre-creates empty cgroups until the pool holds [`POOL_PREFILL`].
    pub(crate) fn run(self) {
        if let Some(pool) = self.0.upgrade() {
            pool.refill();
        }
    }
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

/// Whether `pid` is a zombie (or dead): exited, not yet reaped. A host
/// killed a moment ago can be one until its parent (often an init that
/// reaps lazily) collects it; its cgroups are then leftovers already.
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rfind(')')
        .and_then(|at| stat[at + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X" | "x"))
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
    pub(crate) fn setup(base: &Path) -> Option<(Self, SweepReport)> {
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
        let manager_fd = match rustix::fs::open(
            &manager_dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(_) => {
                let _ = fs::remove_dir(&manager_dir);
                return None;
            }
        };
        let guardian = match GuardianKeeper::start(&manager_dir) {
            Ok(guardian) => Some(Arc::new(guardian)),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot start the cgroup guardian (/bin/sh); descendants of procs \
                     outlive a SIGKILLed host unless spawned with pid_namespace(true)"
                );
                None
            }
        };
        let pool = Arc::new(Pool {
            manager_dir,
            manager_fd,
            free: Mutex::new(Vec::new()),
            next_dir: AtomicU64::new(0),
        });
        pool.refill();
        Some((Self { pool, guardian }, swept))
    }

    /// A cgroup for one proc: an empty one from the pool (one `openat`), or
    /// a new one.
    pub(crate) fn create_proc(&self) -> io::Result<ProcCgroup> {
        let pooled = self
            .pool
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let number = match pooled {
            Some(n) => n,
            None => self.pool.create()?,
        };
        let name = Pool::name(number);
        let dir = self.pool.manager_dir.join(&name);
        // O_PATH is enough for CLONE_INTO_CGROUP (the kernel only needs the
        // directory's dentry) and skips kernfs's open work.
        match rustix::fs::openat(
            &self.pool.manager_fd,
            &name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(dir_fd) => Ok(ProcCgroup {
                dir,
                number,
                spawn_fd: Some(dir_fd),
                pool: Arc::downgrade(&self.pool),
                kill_sent: AtomicBool::new(false),
                released: false,
                removed: false,
                _guardian: self.guardian.clone(),
            }),
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                Err(e.into())
            }
        }
    }

    /// This manager's directory.
    pub(crate) fn path(&self) -> &Path {
        &self.pool.manager_dir
    }

    /// The pid of this manager's guardian, if it has one.
    pub(crate) fn guardian_pid(&self) -> Option<u32> {
        self.guardian.as_deref().and_then(GuardianKeeper::pid)
    }

    /// How many guardians were started to replace dead ones.
    pub(crate) fn guardian_restarts(&self) -> u64 {
        self.guardian.as_deref().map_or(0, GuardianKeeper::restarts)
    }
}

impl Drop for CgroupRoot {
    fn drop(&mut self) {
        let pool = &self.pool;
        for n in pool
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = fs::remove_dir(pool.manager_dir.join(Pool::name(n)));
        }
        // Succeeds only once every proc cgroup is gone; otherwise the next
        // manager's sweep removes it.
        let _ = fs::remove_dir(&pool.manager_dir);
    }
}

impl ProcCgroup {
    /// Hands the spawn the cgroup's directory fd; the spawn job must own it
    /// until the child is running.
    pub(crate) fn take_spawn_fd(&mut self) -> Option<OwnedFd> {
        self.spawn_fd.take()
    }

    /// If this cgroup was removed rather than pooled, a handle to top the
    /// pool up again; run it once the proc's status is published.
    pub(crate) fn refill_needed(&self) -> Option<PoolRefill> {
        self.removed.then(|| PoolRefill(self.pool.clone()))
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
        if matches!(self.state(), Some(CgroupState::Empty)) {
            return self.release();
        }
        let _ = self.kill();
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

    /// Reads `cgroup.events` (and `cgroup.stat` for child cgroups).
    fn state(&self) -> Option<CgroupState> {
        let events = fs::read_to_string(self.dir.join("cgroup.events")).ok()?;
        if flag(&events, "populated")? {
            return Some(CgroupState::Populated);
        }
        let has_children = fs::read_to_string(self.dir.join("cgroup.stat"))
            .ok()
            .and_then(|stat| field(&stat, "nr_descendants").map(|n| n != "0"))
            .unwrap_or(true);
        // A frozen cgroup or one the proc gave child cgroups is not reused.
        if flag(&events, "frozen").unwrap_or(false) || has_children {
            Some(CgroupState::Unusable)
        } else {
            Some(CgroupState::Empty)
        }
    }

    fn release(&mut self) -> bool {
        if self.kill_sent.load(Ordering::Relaxed) {
            return self.remove();
        }
        if self
            .pool
            .upgrade()
            .is_some_and(|pool| pool.put(self.number))
        {
            self.released = true;
            return true;
        }
        self.remove()
    }

    fn remove(&mut self) -> bool {
        self.released = fs::remove_dir(&self.dir).is_ok();
        self.removed = self.released;
        self.released
    }
}

/// The value of `key` in a cgroup `key value` file.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim())
    })
}

/// A boolean `key 0|1` field.
fn flag(text: &str, key: &str) -> Option<bool> {
    field(text, key).map(|v| v == "1")
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

/// What a start-up sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SweepReport {
    /// Proc cgroups removed.
    pub(crate) cgroups: usize,
    /// Processes that were still inside them and were killed.
    pub(crate) killed: Vec<u32>,
}

/// Removes manager directories under `base` whose owner process is gone,
/// killing anything still inside them, and logs what it killed: the count
/// at WARN, each pid at INFO.
pub(crate) fn sweep(base: &Path) -> SweepReport {
    let mut report = SweepReport::default();
    let Ok(entries) = fs::read_dir(base) else {
        return report;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, start)) = parse_manager_dir(&name.to_string_lossy()) else {
            continue;
        };
        if process_start_time(pid) == Some(start) && !is_zombie(pid) {
            continue; // the owner is alive
        }
        let dir = entry.path();
        if let Ok(procs) = fs::read_dir(&dir) {
            for proc_dir in procs.flatten().filter(|e| e.path().is_dir()) {
                let path = proc_dir.path();
                let before = report.killed.len();
                members(&path, &mut report.killed);
                let _ = kill_dir(&path);
                for &killed in &report.killed[before..] {
                    tracing::info!(
                        pid = killed,
                        cgroup = %path.display(),
                        "start-up sweep killed a process a dead host left behind"
                    );
                }
                let deadline = Instant::now() + EMPTY_WAIT;
                while fs::remove_dir(&path).is_err() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                report.cgroups += 1;
            }
        }
        let _ = fs::remove_dir(&dir);
    }
    if !report.killed.is_empty() {
        tracing::warn!(
            killed = report.killed.len(),
            cgroups = report.cgroups,
            base = %base.display(),
            "start-up sweep killed processes left by dead hosts (their guardians were gone too)"
        );
    }
    report
}

/// Appends the pids in the cgroup at `dir` and in its descendants.
fn members(dir: &Path, pids: &mut Vec<u32>) {
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(children) = fs::read_dir(dir) {
        for child in children.flatten().filter(|e| e.path().is_dir()) {
            members(&child.path(), pids);
        }
    }
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
    fn cgroup_key_value_fields_parse_exactly() {
        let events = "populated 0\nfrozen 1\n";
        assert_eq!(flag(events, "populated"), Some(false));
        assert_eq!(flag(events, "frozen"), Some(true));
        assert_eq!(flag(events, "froze"), None);
        let stat = "nr_descendants 2\nnr_dying_descendants 0\n";
        assert_eq!(field(stat, "nr_descendants"), Some("2"));
        assert_eq!(field(stat, "nr_dying_descendants"), Some("0"));
    }

    #[test]
    fn own_start_time_is_readable() {
        assert!(process_start_time(std::process::id()).is_some());
        assert!(!is_zombie(std::process::id()));
    }

    #[test]
    fn an_unreaped_child_counts_as_dead_for_the_sweep() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped: still in /proc, with its start time.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_zombie(pid) {
            assert!(Instant::now() < deadline, "{pid} never became a zombie");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(process_start_time(pid).is_some());
        child.wait().unwrap();
    }
}
