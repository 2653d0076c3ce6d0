//! What one OS proc is spawned with.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use crate::credentials::RunAs;
use crate::output::OutputMode;

/// Where an extra fd lands in the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildFdSlot {
    /// At exactly this fd number (must be > 2).
    Fixed(RawFd),
    /// At a number the manager picks, announced to the child in this
    /// environment variable as a decimal string. Several fds announced in
    /// one variable give a comma-separated list, in the order they were
    /// added (`10,13,16`).
    Env(String),
}

/// How the manager learns that a proc is ready. Every mode is bounded by
/// [`ProcessConfig::ready_timeout`], and a proc that ends before it is
/// ready fails `ready()` at once with its terminal status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The child speaks the readiness protocol (see [`crate::readiness`]),
    /// e.g. through [`crate::child::report_ready`].
    Protocol,
    /// Ready as soon as `execve` succeeded; for programs that do not speak
    /// any protocol. No ready fd or nonce is passed. A failed exec is still
    /// a spawn error: the spawn returns only once the child has exec'd or
    /// reported why it could not.
    OnSpawn,
    /// systemd's `sd_notify` protocol: the proc gets `NOTIFY_SOCKET` and is
    /// ready when it sends `READY=1` (see [`crate::notify`]).
    Notify,
    /// Ready once a TCP connection to this address succeeds (tried again
    /// with a short backoff, 10 ms doubling to 250 ms).
    Tcp(SocketAddr),
}

/// Spawn configuration of one OS proc. Build with [`ProcessConfig::new`] and
/// the chained setters.
#[derive(Debug)]
#[non_exhaustive]
pub struct ProcessConfig {
    /// The program to execute (looked up in `PATH` if it has no slash).
    pub program: PathBuf,
    /// Arguments after the program name.
    pub args: Vec<OsString>,
    /// Extra environment variables (added to the host's environment unless
    /// `env_clear`).
    pub env: Vec<(OsString, OsString)>,
    /// Start from an empty environment.
    pub env_clear: bool,
    /// Working directory; the host's if `None`.
    pub current_dir: Option<PathBuf>,
    /// Destination of stdout.
    pub stdout: OutputMode,
    /// Destination of stderr.
    pub stderr: OutputMode,
    /// Extra fds to pass (ring memfds, a doorbell eventfd, ...). The
    /// manager closes its copies after the spawn.
    pub fds: Vec<(OwnedFd, ChildFdSlot)>,
    /// How readiness is learned.
    pub readiness: Readiness,
    /// Time from spawn to the ready record before the proc is killed and
    /// `ready()` fails; `Duration::ZERO` disables the limit.
    pub ready_timeout: Duration,
    /// The sd_notify watchdog interval (`Duration::ZERO`: none). When set,
    /// the proc gets `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` whatever its
    /// readiness mode; once it is ready it must send `WATCHDOG=1` at least
    /// this often, or it is terminated (SIGTERM, SIGKILL after
    /// [`WATCHDOG_STOP_GRACE`](crate::notify::WATCHDOG_STOP_GRACE)) and
    /// ends `Failed` with a reason that names the watchdog.
    pub watchdog: Duration,
    /// Put the proc in its own cgroup if the manager has cgroups enabled.
    pub use_cgroup: bool,
    /// Start the proc as PID 1 of its own PID namespace, where permitted
    /// (needs CAP_SYS_ADMIN; falls back to no namespace otherwise). Then the
    /// kernel kills the proc's whole tree when it dies, even if the host was
    /// SIGKILLed. Costs: as a namespace init the proc ignores signals it has
    /// no handler for (SIGTERM with the default action does nothing, so a
    /// terminate escalates to SIGKILL after the grace), and it inherits the
    /// duty to reap orphans inside its namespace.
    pub pid_namespace: bool,
    /// The user, group and supplementary groups to run as (needs root or
    /// `CAP_SETUID` + `CAP_SETGID`); the child also gets
    /// `PR_SET_NO_NEW_PRIVS`. `None`: the manager's default
    /// ([`ProcessProcManagerBuilder::default_run_as`](crate::ProcessProcManagerBuilder::default_run_as)),
    /// else the host's own user.
    pub run_as: Option<RunAs>,
}

impl ProcessConfig {
    /// Defaults: no args, inherited env, stdout and stderr inherited, no
    /// extra fds, readiness protocol, 10 s ready timeout, no watchdog,
    /// cgroup on, no PID namespace, the manager's default user.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            current_dir: None,
            stdout: OutputMode::Inherit,
            stderr: OutputMode::Inherit,
            fds: Vec::new(),
            readiness: Readiness::Protocol,
            ready_timeout: Duration::from_secs(10),
            watchdog: Duration::ZERO,
            use_cgroup: true,
            pid_namespace: false,
            run_as: None,
        }
    }

    /// Runs the proc as this user, group and supplementary groups.
    pub fn run_as(mut self, run_as: RunAs) -> Self {
        self.run_as = Some(run_as);
        self
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Sets the stdout destination.
    pub fn stdout(mut self, mode: OutputMode) -> Self {
        self.stdout = mode;
        self
    }

    /// Sets the stderr destination.
    pub fn stderr(mut self, mode: OutputMode) -> Self {
        self.stderr = mode;
        self
    }

    /// Passes `fd` to the child at `slot`.
    pub fn fd(mut self, fd: OwnedFd, slot: ChildFdSlot) -> Self {
        self.fds.push((fd, slot));
        self
    }

    /// Sets how readiness is learned.
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Sets the spawn-ready timeout (`Duration::ZERO` disables it).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Sets the sd_notify watchdog interval (`Duration::ZERO`: none).
    pub fn watchdog(mut self, interval: Duration) -> Self {
        self.watchdog = interval;
        self
    }

    /// Opts this proc in or out of its own PID namespace.
    pub fn pid_namespace(mut self, on: bool) -> Self {
        self.pid_namespace = on;
        self
    }

    /// Opts this proc in or out of its own cgroup.
    pub fn use_cgroup(mut self, on: bool) -> Self {
        self.use_cgroup = on;
        self
    }

    /// A copy with every setting, the extra fds duplicated (`dup`): the
    /// config for another start of the same program (a restart).
    pub fn try_clone(&self) -> std::io::Result<Self> {
        let fds = self
            .fds
            .iter()
            .map(|(fd, slot)| Ok((fd.try_clone()?, slot.clone())))
            .collect::<std::io::Result<_>>()?;
        // A struct literal, not `..`: a field added later must be copied here.
        Ok(Self {
            program: self.program.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            env_clear: self.env_clear,
            current_dir: self.current_dir.clone(),
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
            fds,
            readiness: self.readiness,
            ready_timeout: self.ready_timeout,
            watchdog: self.watchdog,
            use_cgroup: self.use_cgroup,
            pid_namespace: self.pid_namespace,
            run_as: self.run_as.clone(),
        })
    }
}

/// The boot protocol's way to hand a proc its variables and fds
/// (`hostmux-proc`'s ring protocol is written against it).
impl hostmux_boot::ChildSpawn for ProcessConfig {
    fn boot_env(self, var: &'static str, value: &str) -> Self {
        self.env(var, value)
    }

    fn boot_fd(self, fd: OwnedFd, var: &'static str) -> Self {
        self.fd(fd, ChildFdSlot::Env(var.to_owned()))
    }
}
