//! Helpers shared by the integration tests.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hostmux_lifecycle::{
    PoliteStopHook, ProcHandle, ProcManager, ProcName, ProcessConfig, ProcessHandle,
    ProcessProcManager, Readiness, TerminalStatus, TerminateError,
};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{pidfd_open, Pid, PidfdFlags};

pub(crate) use hostmux_testkit::facility::{missing, Facility};

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
    children()
        .into_iter()
        .filter(|&(_, state)| state == 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

/// This process's children with their state letters, from `/proc`.
pub(crate) fn children() -> Vec<(u32, char)> {
    let me = std::process::id().to_string();
    let mut children = Vec::new();
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
        let state = fields.next().and_then(|s| s.chars().next());
        let ppid = fields.next();
        if let (Some(state), true) = (state, ppid == Some(me.as_str())) {
            children.push((pid, state));
        }
    }
    children
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
///
/// The test is found by the name of the calling thread: libtest runs every
/// test on a thread named after its path (`process::spawn::…`), so call
/// this first thing in the test, before any `.await`.
pub(crate) fn run_isolated(shell_prefix: Option<&str>) -> bool {
    if std::env::var_os(ISOLATED_ENV).is_some() {
        return false;
    }
    let thread = std::thread::current();
    let test_path = thread
        .name()
        .filter(|name| name.contains("::"))
        .unwrap_or_else(|| panic!("run_isolated called off a test thread ({thread:?})"));
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

/// Polls `done` every 2 ms until it holds; panics with `what()` once
/// `limit` has passed without it.
pub(crate) async fn wait_until(
    limit: Duration,
    mut done: impl FnMut() -> bool,
    what: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{}", what());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The cgroup v2 path of `pid` (a number or `self`), from the `0::` line of
/// `/proc/<pid>/cgroup`.
pub(crate) fn cgroup_of(pid: impl std::fmt::Display) -> PathBuf {
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let own = membership
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("{pid} is in no cgroup v2: {membership:?}"));
    PathBuf::from(own)
}

/// Reads the pid a fixture wrote to `path` and removes the file.
pub(crate) fn take_pid_file(path: &Path) -> u32 {
    let pid = std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = std::fs::remove_file(path);
    pid
}

/// What a [`TerminationLog`] saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Termination {
    /// The polite-stop hook was called for this proc: its termination began.
    Began(String, Instant),
    /// The hook's future was dropped: the proc was reaped.
    Ended(String, Instant),
}

/// A polite-stop hook that brackets every proc's termination: the hook's
/// call (at the start of the escalation, before SIGTERM) is its beginning,
/// and the drop of the future it returns (which never completes, so it is
/// dropped only once the proc is reaped) is its end. It keeps the events in
/// order and the peak number of procs between the two.
#[derive(Debug, Default)]
pub(crate) struct TerminationLog {
    state: Mutex<LogState>,
}

#[derive(Debug, Default)]
struct LogState {
    events: Vec<Termination>,
    in_flight: usize,
    peak: usize,
}

impl TerminationLog {
    /// The hook and the log it writes to.
    pub(crate) fn hook() -> (PoliteStopHook, Arc<TerminationLog>) {
        let log = Arc::new(TerminationLog::default());
        let writer = Arc::clone(&log);
        let hook: PoliteStopHook = Arc::new(move |name| {
            let guard = writer.begin(name.as_str());
            Box::pin(async move {
                let _ends_on_drop = guard;
                std::future::pending::<()>().await;
            })
        });
        (hook, log)
    }

    fn begin(self: &Arc<Self>, name: &str) -> EndOnDrop {
        let mut state = self.lock();
        state.in_flight += 1;
        state.peak = state.peak.max(state.in_flight);
        state
            .events
            .push(Termination::Began(name.to_owned(), Instant::now()));
        EndOnDrop {
            log: Arc::clone(self),
            name: name.to_owned(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every event so far, in order.
    pub(crate) fn events(&self) -> Vec<Termination> {
        self.lock().events.clone()
    }

    /// The most procs that were terminating at once.
    pub(crate) fn peak(&self) -> usize {
        self.lock().peak
    }

    /// When `name`'s termination began; panics if it never did.
    pub(crate) fn began(&self, name: &str) -> Instant {
        self.find(|e| matches!(e, Termination::Began(n, _) if n == name))
            .unwrap_or_else(|| panic!("{name}'s polite stop never ran: {:?}", self.events()))
    }

    /// When `name`'s termination ended; panics if it never did.
    pub(crate) fn ended(&self, name: &str) -> Instant {
        self.find(|e| matches!(e, Termination::Ended(n, _) if n == name))
            .unwrap_or_else(|| panic!("{name}'s termination never ended: {:?}", self.events()))
    }

    fn find(&self, wanted: impl Fn(&Termination) -> bool) -> Option<Instant> {
        self.lock()
            .events
            .iter()
            .find(|e| wanted(e))
            .map(|e| match e {
                Termination::Began(_, at) | Termination::Ended(_, at) => *at,
            })
    }

    /// Asserts that each of `names` began and ended exactly once, and
    /// nothing else was logged.
    pub(crate) fn assert_each_once(&self, names: &[String]) {
        let events = self.events();
        let mut began: Vec<&str> = Vec::new();
        let mut ended: Vec<&str> = Vec::new();
        for event in &events {
            match event {
                Termination::Began(n, _) => began.push(n),
                Termination::Ended(n, _) => ended.push(n),
            }
        }
        began.sort_unstable();
        ended.sort_unstable();
        let mut expected: Vec<&str> = names.iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(began, expected, "polite stops run: {events:?}");
        assert_eq!(ended, expected, "terminations ended: {events:?}");
    }
}

/// Logs the end of one proc's termination when the hook's future drops.
struct EndOnDrop {
    log: Arc<TerminationLog>,
    name: String,
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        let mut state = self.log.lock();
        state.in_flight -= 1;
        let name = std::mem::take(&mut self.name);
        state.events.push(Termination::Ended(name, Instant::now()));
    }
}

// --- OS-process manager -------------------------------------------------

/// Killed with SIGKILL, no core, no captured output.
pub(crate) const SIGKILLED: TerminalStatus = TerminalStatus::Signaled {
    signal: libc::SIGKILL,
    core_dumped: false,
    output: None,
};

/// The fixture binary in `mode` (further arguments may follow).
pub(crate) fn fixture_mode(mode: &str) -> ProcessConfig {
    ProcessConfig::new(fixture()).arg(mode)
}

/// `sh -c script`, ready as soon as it is spawned.
pub(crate) fn shell(script: &str) -> ProcessConfig {
    ProcessConfig::new("sh")
        .args(["-c", script])
        .readiness(Readiness::OnSpawn)
}

/// A shell that ignores SIGTERM and then execs `sleep`: only SIGKILL ends it.
/// Spawn it with [`spawn_until_sleeping`].
pub(crate) fn term_ignorer() -> ProcessConfig {
    shell("trap '' TERM; exec sleep 1000")
}

/// A polite-stop hook that counts its calls.
pub(crate) fn counting_hook() -> (PoliteStopHook, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let hook: PoliteStopHook = Arc::new(move |_name| {
        counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    });
    (hook, calls)
}

/// Spawns `config` as `proc_name`; a spawn error fails the test.
pub(crate) async fn spawn(
    manager: &ProcessProcManager,
    proc_name: &str,
    config: ProcessConfig,
) -> ProcessHandle {
    manager
        .spawn(name(proc_name), config)
        .await
        .unwrap_or_else(|e| panic!("spawn {proc_name}: {e}"))
}

/// Spawns `config` as `proc_name` and waits until it reported ready.
pub(crate) async fn spawn_ready(
    manager: &ProcessProcManager,
    proc_name: &str,
    config: ProcessConfig,
) -> ProcessHandle {
    let proc = spawn(manager, proc_name, config).await;
    proc.ready()
        .await
        .unwrap_or_else(|e| panic!("{proc_name} never became ready: {e}"));
    proc
}

/// Spawns `config` as `proc_name` and waits for its terminal status.
pub(crate) async fn run_to_exit(
    manager: &ProcessProcManager,
    proc_name: &str,
    config: ProcessConfig,
) -> (ProcessHandle, TerminalStatus) {
    let proc = spawn(manager, proc_name, config).await;
    let status = proc
        .wait()
        .await
        .unwrap_or_else(|e| panic!("wait for {proc_name}: {e}"));
    (proc, status)
}

/// Spawns a shell that ends in `exec sleep` (like [`term_ignorer`]) and
/// waits until it has exec'd `sleep`: until then a SIGTERM might reach the
/// shell before its trap is set.
pub(crate) async fn spawn_until_sleeping(
    manager: &ProcessProcManager,
    proc_name: &str,
    config: ProcessConfig,
) -> ProcessHandle {
    let proc = spawn(manager, proc_name, config).await;
    wait_for_comm(proc.pid().unwrap(), "sleep").await;
    proc
}

/// Waits (bounded) until `/proc/<pid>/comm` reads `comm`.
pub(crate) async fn wait_for_comm(pid: u32, comm: &str) {
    let comm_is =
        || std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm);
    wait_until(Duration::from_secs(5), comm_is, || {
        format!("proc {pid} never became {comm}")
    })
    .await;
}

/// A descendant of a proc (not our child), watched through a pidfd.
/// Dropped, it is sent SIGKILL through that pidfd, so a test that fails
/// while it lives leaves no stray process holding the harness's output.
pub(crate) struct Descendant {
    pub(crate) pid: u32,
    pub(crate) pidfd: OwnedFd,
}

impl Descendant {
    /// Asserts that it exits within `limit` (it is to die with its proc);
    /// `what` names it in the failure.
    pub(crate) fn assert_dies_within(&self, limit: Duration, what: &str) {
        assert!(
            exited_within(&self.pidfd, limit),
            "{what} {} survived",
            self.pid
        );
    }
}

impl Drop for Descendant {
    fn drop(&mut self) {
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
    }
}

/// Spawns the fixture in `mode` (`setsid-grandchild`, `double-fork`),
/// which starts a descendant, writes its pid to a file and reports ready;
/// returns the proc and the descendant.
pub(crate) async fn spawn_with_descendant(
    manager: &ProcessProcManager,
    proc_name: &str,
    config: ProcessConfig,
) -> (ProcessHandle, Descendant) {
    let pidfile = temp_path(proc_name);
    let proc = spawn_ready(manager, proc_name, config.arg(&pidfile)).await;
    let pid = take_pid_file(&pidfile);
    let pidfd =
        pidfd(pid).unwrap_or_else(|| panic!("descendant {pid} of {proc_name} already gone"));
    // Checked before the guard exists, which would SIGKILL it: the pid is
    // the fixture's sleeper, not some other process.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        cmdline.split(|&b| b == 0).any(|arg| arg == b"sleeper"),
        "pid {pid} from {proc_name} is not a fixture sleeper: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    (proc, Descendant { pid, pidfd })
}

/// The manager's cgroup directory. Where this machine delegates no cgroup
/// v2 the calling test fails, unless `HOSTMUX_TEST_SKIP` names `cgroup`:
/// then this says so on stderr and returns `None` (the test returns).
pub(crate) fn cgroup_dir_or_skip(manager: &ProcessProcManager) -> Option<PathBuf> {
    let dir = manager.cgroup_dir().map(Path::to_path_buf);
    if dir.is_none() {
        missing(
            Facility::Cgroup,
            "no writable cgroup v2 subtree with cgroup.kill",
        );
    }
    dir
}

/// Runs one short proc to its exit, so state the manager creates lazily
/// (spawner thread, reactor registrations) exists, and returns this
/// process's fd count afterwards: the baseline for leak checks.
pub(crate) async fn warm_up(manager: &ProcessProcManager) -> usize {
    let warm = spawn(manager, "warm", fixture_mode("ready-exit").arg("0")).await;
    warm.wait().await.unwrap();
    fd_count()
}

/// The terminal status a terminate ended with, whether this call or an
/// earlier exit made the proc terminal.
pub(crate) fn terminal_either_way(
    terminated: Result<TerminalStatus, TerminateError>,
) -> TerminalStatus {
    match terminated {
        Ok(status) | Err(TerminateError::AlreadyTerminated(status)) => status,
        Err(e) => panic!("terminate: {e}"),
    }
}

/// The `NOTIFY_SOCKET` in `pid`'s environment. Polled until [`EPSILON`]:
/// the spawn returns once the child has exec'd, slightly before the
/// kernel publishes the new environment in `/proc/<pid>/environ`.
pub(crate) fn notify_socket_of(pid: u32) -> PathBuf {
    let deadline = Instant::now() + EPSILON;
    loop {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let found = environ
            .split(|b| *b == 0)
            .find_map(|var| var.strip_prefix(b"NOTIFY_SOCKET="))
            .map(|path| PathBuf::from(String::from_utf8_lossy(path).into_owned()));
        if let Some(path) = found {
            return path;
        }
        assert!(
            Instant::now() < deadline,
            "no NOTIFY_SOCKET in the environment of pid {pid}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
