//! The OS-process manager: every proc is a child process of the host.

mod arm;
mod config;
mod supervisor;

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hostmux_wire::ProcName;
use tokio::sync::Semaphore;

pub use self::config::{ChildFdSlot, ProcessConfig, Readiness};
use crate::cgroup::{self, CgroupRoot, SweepReport};
use crate::credentials::RunAs;
use crate::error::{LifecycleError, ReadyError, TerminateError, WaitError};
use crate::link::Link;
use crate::manager::{PoliteStopHook, ProcHandle, ProcManager, Registry};
use crate::notify::{
    NotifyDir, NotifySocket, NOTIFY_SOCKET_ENV, WATCHDOG_PID_ENV, WATCHDOG_USEC_ENV,
};
use crate::output::{OutputMode, OutputTail, Stream, Tails};
use crate::readiness::{new_nonce, PROC_NAME_ENV, READY_FD_ENV, READY_NONCE_ENV};
use crate::status::{ProcStatus, TerminalStatus};
use crate::sys::{SpawnPlan, MAX_EXTRA_FDS};

/// The host's sd_notify variables, never inherited by a proc.
const HOST_NOTIFY_ENV: [&str; 3] = [NOTIFY_SOCKET_ENV, WATCHDOG_USEC_ENV, WATCHDOG_PID_ENV];

/// Whether and where the manager uses cgroup v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupMode {
    /// Use `<unified mount><own cgroup>/hostmux` if it is writable and the
    /// kernel has `cgroup.kill`; otherwise run without cgroups.
    Auto,
    /// Never use cgroups (process groups and PDEATHSIG only).
    Disabled,
    /// Use this base directory (must be inside a cgroup v2 hierarchy).
    Base(PathBuf),
}

/// Builder for [`ProcessProcManager`].
#[derive(Clone)]
pub struct ProcessProcManagerBuilder {
    polite_stop: Option<PoliteStopHook>,
    cgroups: CgroupMode,
    max_starting: usize,
    cgroup_procs_fallback: bool,
    default_run_as: Option<RunAs>,
    notify_dir: PathBuf,
}

impl std::fmt::Debug for ProcessProcManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessProcManagerBuilder")
            .field("polite_stop", &self.polite_stop.is_some())
            .field("cgroups", &self.cgroups)
            .field("max_starting", &self.max_starting)
            .field("cgroup_procs_fallback", &self.cgroup_procs_fallback)
            .field("default_run_as", &self.default_run_as)
            .field("notify_dir", &self.notify_dir)
            .finish()
    }
}

impl ProcessProcManagerBuilder {
    /// Installs the polite-stop hook run at the start of every terminate.
    pub fn polite_stop(mut self, hook: PoliteStopHook) -> Self {
        self.polite_stop = Some(hook);
        self
    }

    /// Chooses the cgroup policy (default [`CgroupMode::Auto`]).
    pub fn cgroups(mut self, mode: CgroupMode) -> Self {
        self.cgroups = mode;
        self
    }

    /// Caps procs that are spawned but not yet ready (default 64); further
    /// spawns wait for a slot.
    pub fn max_starting(mut self, max: usize) -> Self {
        self.max_starting = max.max(1);
        self
    }

    /// The user procs run as when their config names none
    /// ([`ProcessConfig::run_as`]); default: the host's own user.
    pub fn default_run_as(mut self, run_as: Option<RunAs>) -> Self {
        self.default_run_as = run_as;
        self
    }

    /// Where procs' sd_notify sockets go (see [`crate::notify`]): the
    /// manager makes its own directory (mode 0711) in here on first use and
    /// removes it when dropped. Default: the system's temporary directory.
    /// A socket path must fit `sun_path` (107 bytes), so keep this short.
    pub fn notify_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.notify_dir = dir.into();
        self
    }

    /// Testing only, not part of the API: children enter their cgroup by
    /// writing its `cgroup.procs` themselves, the fallback for kernels or
    /// architectures without `clone3(CLONE_INTO_CGROUP)`, even where that
    /// clone is available, so tests can cover the fallback on any machine.
    #[doc(hidden)]
    pub fn force_cgroup_procs_fallback(mut self) -> Self {
        self.cgroup_procs_fallback = true;
        self
    }

    /// Builds the manager. With cgroups enabled this sweeps cgroups left by
    /// managers whose process is gone (killing what is inside) and starts
    /// the manager's cgroup guardian (one `/bin/sh` process).
    pub fn build(self) -> ProcessProcManager {
        let base = match &self.cgroups {
            CgroupMode::Auto => cgroup::default_base(),
            CgroupMode::Disabled => None,
            CgroupMode::Base(path) => Some(path.clone()),
        };
        let (cgroups, swept) = match base.as_deref().and_then(CgroupRoot::setup) {
            Some((root, swept)) => (Some(root), swept),
            None => {
                if self.cgroups != CgroupMode::Disabled {
                    tracing::info!("cgroup v2 delegation unavailable; using process groups only");
                }
                (None, SweepReport::default())
            }
        };
        ProcessProcManager {
            inner: Arc::new(ManagerInner {
                polite_stop: self.polite_stop,
                cgroups,
                sweep_at_start: swept,
                starting: Arc::new(Semaphore::new(self.max_starting)),
                max_starting: self.max_starting,
                cgroup_procs_fallback: self.cgroup_procs_fallback,
                default_run_as: self.default_run_as,
                notify_dir: NotifyDir::new(self.notify_dir),
                starting_now: Arc::new(AtomicUsize::new(0)),
                starting_peak: Arc::new(AtomicUsize::new(0)),
                registry: Registry::new(),
                next_seq: AtomicU64::new(0),
            }),
        }
    }
}

/// The production manager: each proc is an OS child process in its own
/// process group (and cgroup where delegated), forked from a dedicated
/// thread with `PR_SET_PDEATHSIG(SIGKILL)`, signalled only through its pidfd
/// and reaped by exactly one supervisor task.
///
/// Must be used inside a tokio runtime with I/O and time enabled.
/// Dropping the manager does not stop procs; dropping the runtime does
/// (each supervisor kills and reaps its proc when dropped).
///
/// With cgroups, the manager also runs a guardian process
/// ([`guardian_pid`](Self::guardian_pid)) that `cgroup.kill`s its subtree
/// once this process is gone, so even a SIGKILLed host leaves no proc
/// descendant behind.
#[derive(Clone, Debug)]
pub struct ProcessProcManager {
    inner: Arc<ManagerInner>,
}

pub(crate) struct ManagerInner {
    polite_stop: Option<PoliteStopHook>,
    cgroups: Option<CgroupRoot>,
    sweep_at_start: SweepReport,
    starting: Arc<Semaphore>,
    max_starting: usize,
    /// See [`ProcessProcManagerBuilder::force_cgroup_procs_fallback`].
    cgroup_procs_fallback: bool,
    /// See [`ProcessProcManagerBuilder::default_run_as`].
    default_run_as: Option<RunAs>,
    /// See [`ProcessProcManagerBuilder::notify_dir`].
    notify_dir: NotifyDir,
    starting_now: Arc<AtomicUsize>,
    starting_peak: Arc<AtomicUsize>,
    /// Live procs by name; `None` while a spawn of that name is under way.
    registry: Registry<(u64, Option<ProcessHandle>)>,
    next_seq: AtomicU64,
}

impl std::fmt::Debug for ManagerInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerInner")
            .field("cgroups", &self.cgroups)
            .field("max_starting", &self.max_starting)
            .finish_non_exhaustive()
    }
}

impl ManagerInner {
    /// Forgets `name` if it still refers to spawn `seq`.
    pub(crate) fn forget(&self, name: &ProcName, seq: u64) {
        let mut registry = self.registry.lock();
        if registry.get(name).is_some_and(|(s, _)| *s == seq) {
            registry.remove(name);
        }
    }
}

impl Default for ProcessProcManager {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl ProcessProcManager {
    /// A builder with defaults: no polite-stop hook, [`CgroupMode::Auto`],
    /// at most 64 procs starting at once.
    pub fn builder() -> ProcessProcManagerBuilder {
        ProcessProcManagerBuilder {
            polite_stop: None,
            cgroups: CgroupMode::Auto,
            max_starting: 64,
            cgroup_procs_fallback: false,
            default_run_as: None,
            notify_dir: std::env::temp_dir(),
        }
    }

    /// This manager's cgroup directory, if cgroups are in use.
    pub fn cgroup_dir(&self) -> Option<&Path> {
        self.inner.cgroups.as_ref().map(CgroupRoot::path)
    }

    /// The pid of this manager's cgroup guardian: a small process (outside
    /// the manager's cgroup subtree, not a proc) that `cgroup.kill`s the
    /// subtree when this host process is gone, however it died, so procs'
    /// descendants do not outlive a SIGKILLed host. `None` without cgroups
    /// (see [`cgroup_dir`](Self::cgroup_dir)) or if `/bin/sh` could not be
    /// started; descendants then need [`ProcessConfig::pid_namespace`].
    pub fn guardian_pid(&self) -> Option<u32> {
        self.inner
            .cgroups
            .as_ref()
            .and_then(CgroupRoot::guardian_pid)
    }

    /// The user procs run as when their config names none.
    pub fn default_run_as(&self) -> Option<&RunAs> {
        self.inner.default_run_as.as_ref()
    }

    /// How many leftover proc cgroups the start-up sweep removed.
    pub fn swept_at_start(&self) -> usize {
        self.inner.sweep_at_start.cgroups
    }

    /// The processes the start-up sweep found in leftover proc cgroups
    /// (and their descendants' cgroups) and killed; each is logged at INFO,
    /// their count at WARN.
    pub fn swept_pids_at_start(&self) -> &[u32] {
        &self.inner.sweep_at_start.killed
    }

    /// How many guardians this manager started to replace one that died
    /// while it ran (see [`guardian_pid`](Self::guardian_pid)).
    pub fn guardian_restarts(&self) -> u64 {
        self.inner
            .cgroups
            .as_ref()
            .map_or(0, CgroupRoot::guardian_restarts)
    }

    /// Names of the live procs.
    pub fn live_procs(&self) -> Vec<ProcName> {
        let registry = self.inner.registry.lock();
        registry
            .iter()
            .filter(|(_, (_, h))| h.is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The most procs that were ever starting (spawned, not yet ready or
    /// terminal) at once; never above the builder's `max_starting`.
    pub fn starting_peak(&self) -> usize {
        self.inner.starting_peak.load(Ordering::Relaxed)
    }

    /// The configured cap on procs starting at once.
    pub fn max_starting(&self) -> usize {
        self.inner.max_starting
    }

    async fn spawn_proc(
        &self,
        name: ProcName,
        config: ProcessConfig,
    ) -> Result<ProcessHandle, LifecycleError> {
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        {
            let mut registry = self.inner.registry.lock();
            if registry.contains_key(&name) {
                return Err(LifecycleError::ProcExists(name));
            }
            registry.insert(name.clone(), (seq, None));
        }
        // Released on every path, including a cancelled spawn future.
        let reservation = Reservation {
            inner: &self.inner,
            name: name.clone(),
            seq,
        };
        let result = self.spawn_reserved(name, seq, config).await;
        if let Ok(handle) = &result {
            reservation.publish(handle);
        }
        result
    }

    async fn spawn_reserved(
        &self,
        name: ProcName,
        seq: u64,
        config: ProcessConfig,
    ) -> Result<ProcessHandle, LifecycleError> {
        let io = |what: &'static str| move |source| LifecycleError::Io { what, source };
        let permit = Arc::clone(&self.inner.starting)
            .acquire_owned()
            .await
            .map_err(|_| LifecycleError::SpawnerGone)?;
        let starting =
            StartingGuard::enter(&self.inner.starting_now, &self.inner.starting_peak, permit);

        let ProcessConfig {
            program,
            args,
            env,
            env_clear,
            current_dir,
            stdout,
            stderr,
            fds,
            readiness,
            ready_timeout,
            watchdog,
            use_cgroup,
            pid_namespace,
            run_as,
        } = config;
        let run_as = run_as.or_else(|| self.inner.default_run_as.clone());
        if let Some(run_as) = &run_as {
            run_as.check_permitted()?;
        }

        // The child's environment: the host's (unless cleared), then the
        // run-as user's USER, LOGNAME and HOME, then the config's, then the
        // protocol variables; later entries win.
        let mut child_env: Vec<(OsString, OsString)> = if env_clear {
            Vec::new()
        } else {
            // The host's own sd_notify variables (it may run under systemd)
            // are its own: a proc gets its socket below, or none.
            std::env::vars_os()
                .filter(|(key, _)| !HOST_NOTIFY_ENV.iter().any(|var| key == var))
                .collect()
        };
        let mut set_env = |key: OsString, value: OsString| {
            child_env.retain(|(k, _)| *k != key);
            child_env.push((key, value));
        };
        // Another user's login variables, which the config may override.
        if let Some((login, home)) = run_as.as_ref().and_then(RunAs::login) {
            set_env("USER".into(), login.into());
            set_env("LOGNAME".into(), login.into());
            set_env("HOME".into(), home.into());
        }
        for (key, value) in env {
            set_env(key, value);
        }
        set_env(PROC_NAME_ENV.into(), name.as_str().into());

        // fds the child gets; all ours are close-on-exec, and these are kept
        // open until the spawn returned.
        let invalid = |reason: String| LifecycleError::InvalidConfig {
            name: name.clone(),
            reason,
        };
        let mut keep_open: Vec<OwnedFd> = Vec::with_capacity(fds.len() + 4);
        let mut moves: Vec<(RawFd, RawFd)> = Vec::with_capacity(fds.len() + 1);
        let mut taken: Vec<RawFd> = Vec::new();
        for (_, slot) in &fds {
            if let ChildFdSlot::Fixed(n) = slot {
                if *n <= 2 || taken.contains(n) {
                    return Err(invalid(format!("fd slot {n} is stdio or used twice")));
                }
                taken.push(*n);
            }
        }
        let mut next_free = 3;
        let mut pick_free = |taken: &mut Vec<RawFd>| {
            while taken.contains(&next_free) {
                next_free += 1;
            }
            taken.push(next_free);
            next_free
        };
        let mut ready_pipe = None;
        let mut nonce = None;
        if readiness == Readiness::Protocol {
            let (read_end, write_end) = new_pipe("creating the ready pipe")?;
            let target = pick_free(&mut taken);
            moves.push((write_end.as_raw_fd(), target));
            keep_open.push(write_end);
            let fresh = new_nonce();
            set_env(READY_FD_ENV.into(), target.to_string().into());
            set_env(READY_NONCE_ENV.into(), fresh.clone().into());
            ready_pipe = Some(read_end);
            nonce = Some(fresh);
        }
        let notify = if readiness == Readiness::Notify || !watchdog.is_zero() {
            let uid = run_as
                .as_ref()
                .map_or_else(|| rustix::process::geteuid().as_raw(), RunAs::uid);
            let socket = NotifySocket::bind(&self.inner.notify_dir, uid)
                .map_err(io("creating the proc's sd_notify socket"))?;
            set_env(NOTIFY_SOCKET_ENV.into(), socket.env_value());
            if !watchdog.is_zero() {
                set_env(
                    WATCHDOG_USEC_ENV.into(),
                    watchdog.as_micros().to_string().into(),
                );
            }
            Some(socket)
        } else {
            None
        };
        // Several fds in one variable make a comma-separated list.
        let mut announced: Vec<(String, String)> = Vec::new();
        for (fd, slot) in fds {
            let target = match slot {
                ChildFdSlot::Fixed(n) => n,
                ChildFdSlot::Env(var) => {
                    let n = pick_free(&mut taken);
                    match announced.iter_mut().find(|(v, _)| *v == var) {
                        Some((_, list)) => {
                            list.push(',');
                            list.push_str(&n.to_string());
                        }
                        None => announced.push((var, n.to_string())),
                    }
                    n
                }
            };
            moves.push((fd.as_raw_fd(), target));
            keep_open.push(fd);
        }
        for (var, list) in announced {
            set_env(var.into(), list.into());
        }
        if moves.len() > MAX_EXTRA_FDS {
            return Err(invalid(format!(
                "{} fds to pass exceed the limit of {MAX_EXTRA_FDS}",
                moves.len()
            )));
        }

        if !watchdog.is_zero() {
            // The child adds WATCHDOG_PID itself (`set_own_pid_env` below).
            child_env.retain(|(key, _)| key != WATCHDOG_PID_ENV);
        }
        let mut plan = SpawnPlan::new(&program, &args, &child_env, current_dir.as_deref())
            .map_err(|_| invalid("program, an argument, env or cwd contains a NUL byte".into()))?;
        // Read-write: the same opener serves stdin and the `Null` outputs
        // (a read-only one made every write of the child fail with EBADF).
        let dev_null = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(io("opening /dev/null"))
        };
        let stdin = dev_null()?;
        plan.set_stdio(0, stdin.as_raw_fd());
        keep_open.push(stdin);
        let mut captures: Vec<(Stream, usize, OwnedFd)> = Vec::new();
        for (index, mode) in [&stdout, &stderr].into_iter().enumerate() {
            let child_end = match mode {
                OutputMode::Inherit => None,
                OutputMode::Null => Some(dev_null()?),
                OutputMode::File(path) => Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map(OwnedFd::from)
                        .map_err(io("opening an output file"))?,
                ),
                OutputMode::Capture { max_bytes } => {
                    let (read_end, write_end) = new_pipe("creating an output pipe")?;
                    let stream = [Stream::Stdout, Stream::Stderr][index];
                    captures.push((stream, *max_bytes, read_end));
                    Some(write_end)
                }
            };
            if let Some(fd) = child_end {
                plan.set_stdio(index + 1, fd.as_raw_fd());
                keep_open.push(fd);
            }
        }
        for (source, target) in moves {
            plan.move_fd(source, target);
        }

        let mut proc_cgroup = match (&self.inner.cgroups, use_cgroup) {
            (Some(root), true) => Some(root.create_proc().map_err(io("creating the proc cgroup"))?),
            _ => None,
        };
        // Every fd number in the plan must stay open until the child runs:
        // the spawn job owns them (a cancelled spawn future must not close
        // them while the spawner thread still uses the numbers).
        if let Some(dir_fd) = proc_cgroup.as_mut().and_then(|cg| cg.take_spawn_fd()) {
            plan.enter_cgroup(dir_fd.as_raw_fd(), !self.inner.cgroup_procs_fallback);
            keep_open.push(dir_fd);
        }

        if let Some(run_as) = &run_as {
            plan.set_credentials(run_as.uid(), run_as.gid(), run_as.groups());
        }
        plan.set_new_pid_namespace(pid_namespace);
        if !watchdog.is_zero() {
            plan.set_own_pid_env(WATCHDOG_PID_ENV);
        }
        // The supervisor is armed on the spawner thread right after the
        // clone, so the ready pipe is watched while the child starts up;
        // arming it here instead waited for this task to be woken first,
        // which on a loaded machine often came after the ready record.
        let arming = arm::Arming {
            name: name.clone(),
            seq,
            nonce,
            readiness,
            ready_timeout,
            watchdog,
            ready_pipe,
            notify,
            captures,
            cgroup: proc_cgroup,
            polite_stop: self.inner.polite_stop.clone(),
            starting,
            manager: Arc::downgrade(&self.inner),
            runtime: tokio::runtime::Handle::current(),
        };
        let armed = crate::spawner::on_spawner_thread(move || {
            let mut spawned = crate::sys::spawn(&plan);
            if plan.new_pid_namespace()
                && spawned.as_ref().is_err_and(|e| {
                    matches!(
                        e.raw_os_error(),
                        Some(libc::EPERM | libc::EINVAL | libc::ENOSPC)
                    )
                })
            {
                tracing::warn!("no permission for a new PID namespace; spawning without one");
                plan.set_new_pid_namespace(false);
                spawned = crate::sys::spawn(&plan);
            }
            let in_namespace = plan.new_pid_namespace();
            // The child has its copies; close ours (incl. the ready pipe's
            // write end, so its EOF means "the child closed it").
            drop(keep_open);
            arming.arm(spawned, in_namespace)
        })
        .await?;
        match armed {
            Ok(mut unclaimed) => Ok(unclaimed.claim()),
            Err(arm::ArmFailure { error, cgroup }) => {
                if let Some(mut cg) = cgroup {
                    cg.kill_and_release().await;
                }
                Err(match error {
                    arm::ArmError::Spawn(source) => LifecycleError::Spawn {
                        name,
                        program,
                        source,
                    },
                    arm::ArmError::Register { what, source } => LifecycleError::Io { what, source },
                })
            }
        }
    }
}

/// A name reserved for a spawn under way.
struct Reservation<'a> {
    inner: &'a ManagerInner,
    name: ProcName,
    seq: u64,
}

impl Reservation<'_> {
    /// Publishes the handle, but only if the reservation is still there: a
    /// proc that already finished has had its supervisor forget it.
    fn publish(&self, handle: &ProcessHandle) {
        let mut registry = self.inner.registry.lock();
        if let Some(entry) = registry.get_mut(&self.name).filter(|(s, _)| *s == self.seq) {
            entry.1 = Some(handle.clone());
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut registry = self.inner.registry.lock();
        if registry
            .get(&self.name)
            .is_some_and(|(s, h)| *s == self.seq && h.is_none())
        {
            registry.remove(&self.name);
        }
    }
}

/// Counts a proc as "starting" and holds its start permit until dropped.
#[derive(Debug)]
pub(crate) struct StartingGuard {
    now: Arc<AtomicUsize>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl StartingGuard {
    fn enter(
        now: &Arc<AtomicUsize>,
        peak: &AtomicUsize,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        let current = now.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(current, Ordering::SeqCst);
        Self {
            now: Arc::clone(now),
            _permit: permit,
        }
    }
}

impl Drop for StartingGuard {
    fn drop(&mut self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn new_pipe(what: &'static str) -> Result<(OwnedFd, OwnedFd), LifecycleError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| LifecycleError::Io {
        what,
        source: e.into(),
    })
}

/// Handle to one OS proc. Cheap to clone; all clones see the same state.
#[derive(Clone, Debug)]
pub struct ProcessHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    link: Link,
    pid: u32,
    in_pid_namespace: bool,
    tails: Option<Arc<Tails>>,
}

impl ProcessHandle {
    /// The captured output tails, if stdout or stderr was
    /// [`OutputMode::Capture`]: a snapshot of what was read so far while
    /// the proc runs (`complete == false`), and once it is terminal the same
    /// final tail its [`TerminalStatus`] carries.
    pub fn output_tail(&self) -> Option<OutputTail> {
        let tails = self.inner.tails.as_ref()?;
        match self.inner.link.status() {
            ProcStatus::Terminal(status) => status.output().cloned(),
            _ => Some(tails.snapshot(false)),
        }
    }

    /// Whether the proc runs as PID 1 of its own PID namespace (asked for
    /// with [`ProcessConfig::pid_namespace`] and permitted).
    pub fn in_pid_namespace(&self) -> bool {
        self.inner.in_pid_namespace
    }
}

impl ProcHandle for ProcessHandle {
    fn name(&self) -> &ProcName {
        &self.inner.link.name
    }

    fn pid(&self) -> Option<u32> {
        Some(self.inner.pid)
    }

    fn status(&self) -> ProcStatus {
        self.inner.link.status()
    }

    async fn ready(&self) -> Result<(), ReadyError> {
        self.inner.link.ready().await
    }

    async fn wait(&self) -> Result<TerminalStatus, WaitError> {
        self.inner.link.wait().await
    }

    async fn terminate(&self, grace: Duration) -> Result<TerminalStatus, TerminateError> {
        self.inner.link.terminate(grace).await
    }

    async fn kill(&self) -> Result<TerminalStatus, TerminateError> {
        self.inner.link.kill().await
    }

    fn status_text(&self) -> Option<String> {
        self.inner.link.status_text()
    }
}

impl ProcManager for ProcessProcManager {
    type Handle = ProcessHandle;
    type Config = ProcessConfig;

    async fn spawn(
        &self,
        name: ProcName,
        config: ProcessConfig,
    ) -> Result<ProcessHandle, LifecycleError> {
        self.spawn_proc(name, config).await
    }

    fn get(&self, name: &ProcName) -> Option<ProcessHandle> {
        let registry = self.inner.registry.lock();
        registry.get(name).and_then(|(_, h)| h.clone())
    }

    fn procs(&self) -> Vec<ProcessHandle> {
        let registry = self.inner.registry.lock();
        registry.values().filter_map(|(_, h)| h.clone()).collect()
    }
}
