//! OS-process procs: [`ProcessProc`], the [`ProcSpec`] for the lifecycle
//! crate's [`ProcessProcManager`], and [`SpawnByRequest`], how a manager
//! turns a control-plane `Spawn` request into a spec.

use std::ffi::OsString;
use std::net::ToSocketAddrs as _;
use std::path::PathBuf;
use std::time::Duration;

use hostmux_lifecycle::{
    BulkTerminate, LifecycleError, LocalProcManager, OutputMode, ProcManager, ProcessConfig,
    ProcessProcManager, Readiness, RunAs,
};
use hostmux_proc::protocol::{child_config, ChildFds, ChildLaneFds, ProcIdentity};
use hostmux_wire::{ControlErrorKind, ReadyMode, SpawnRequest};

use crate::restart::{RestartLimit, RestartMode, RestartPolicy};
use crate::spec::{ChildRings, LocalProc, ProcSpec};
use crate::HostError;

/// An OS process run as a proc: a program, its arguments and environment,
/// started with the boot protocol of `hostmux-proc` (`docs/proc.md`): its
/// ring memfds, the host doorbell and its own doorbell are inherited fds
/// announced in `HOSTMUX_*` variables.
///
/// Readiness is the lifecycle ready record (`hostmux_proc::boot` writes it
/// once the rings are mapped) followed by an answered agent ping; the host's
/// [`HostConfig::spawn_ready_timeout`](crate::HostConfig::spawn_ready_timeout)
/// (or the timeout given to [`Host::spawn_with_ready_timeout`](crate::Host::spawn_with_ready_timeout))
/// bounds both. Any other program is supervised with another
/// [`ProcessProc::readiness`]: [`Readiness::OnSpawn`], [`Readiness::Notify`]
/// (sd_notify) or [`Readiness::Tcp`]. Such a proc gets no rings and no
/// agent ping; frames sent to it are answered `Undeliverable` with reason
/// `NotReady` (see [`ProcSpec::receives_frames`]).
///
/// Ring sizes default to the host's [`HostConfig`](crate::HostConfig); they
/// can be set per proc with [`ProcessProc::ring_sizes`].
#[derive(Debug)]
pub struct ProcessProc {
    config: ProcessConfig,
    ping_agent: bool,
    ring_sizes: (Option<usize>, Option<usize>),
    restart: RestartPolicy,
}

impl ProcessProc {
    /// Runs `program` (looked up in `PATH` if it has no slash). Defaults:
    /// inherited environment and stdio, the readiness protocol plus an agent
    /// ping, its own cgroup where delegated, no PID namespace.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            config: ProcessConfig::new(program).ready_timeout(Duration::ZERO),
            ping_agent: true,
            ring_sizes: (None, None),
            restart: RestartPolicy::never(),
        }
    }

    /// The spec of a control-plane `Spawn` request: program, arguments,
    /// environment, ring sizes (0 = the host's default) and the user and
    /// group to run as (resolved here; `None` leaves the manager's
    /// default), the ready mode (a `tcp:HOST:PORT` host is resolved here,
    /// the first address wins) and the watchdog. The request's
    /// `ready_timeout_ms` is applied by the control plane, not here.
    pub fn from_spawn_request(request: &SpawnRequest) -> Result<Self, LifecycleError> {
        let nonzero = |bytes: u32| (bytes != 0).then_some(bytes as usize);
        let mut spec = Self::new(&request.program).args(&request.args);
        let mode: ReadyMode = request
            .ready
            .parse()
            .map_err(|e: hostmux_wire::WireError| LifecycleError::Io {
                what: "reading the spawn request's ready mode",
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
            })?;
        spec = match mode {
            ReadyMode::Boot => spec,
            ReadyMode::Spawn => spec.readiness(Readiness::OnSpawn),
            ReadyMode::Notify => spec.readiness(Readiness::Notify),
            ReadyMode::Tcp { host, port } => {
                let addr = (host.as_str(), port)
                    .to_socket_addrs()
                    .and_then(|mut addrs| {
                        addrs.next().ok_or_else(|| {
                            std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
                        })
                    })
                    .map_err(|e| LifecycleError::Io {
                        what: "resolving the host of the tcp ready mode",
                        source: std::io::Error::new(e.kind(), format!("{host}: {e}")),
                    })?;
                spec.readiness(Readiness::Tcp(addr))
            }
        };
        if request.watchdog_ms != 0 {
            spec = spec.watchdog(Duration::from_millis(request.watchdog_ms));
        }
        for var in &request.env {
            spec = spec.env(&var.key, &var.value);
        }
        spec.ring_sizes = (
            nonzero(request.inbound_ring_bytes),
            nonzero(request.outbound_ring_bytes),
        );
        spec.restart = restart_policy_of(&request.restart);
        match (&request.user, &request.group) {
            (Some(user), group) => {
                spec = spec.run_as(RunAs::resolve(user, group.as_deref())?);
            }
            (None, Some(group)) => {
                return Err(LifecycleError::InvalidRunAs {
                    reason: format!("a group ('{group}') needs a user"),
                })
            }
            (None, None) => {}
        }
        Ok(spec)
    }

    /// How the host restarts the proc when it ends (default: never); see
    /// [`RestartPolicy`].
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// Runs the proc as this user, group and supplementary groups (the
    /// host must be root; the proc also gets `PR_SET_NO_NEW_PRIVS`).
    pub fn run_as(mut self, run_as: RunAs) -> Self {
        self.config = self.config.run_as(run_as);
        self
    }

    /// Appends arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.config = self.config.args(args);
        self
    }

    /// Sets one environment variable (added to the host's environment).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.config = self.config.env(key, value);
        self
    }

    /// Sizes of this proc's inbound and outbound rings in bytes (powers of
    /// two, 64 KiB..256 MiB), instead of the host's defaults.
    pub fn ring_sizes(mut self, inbound: usize, outbound: usize) -> Self {
        self.ring_sizes = (Some(inbound), Some(outbound));
        self
    }

    /// Where the proc's stdout goes (default: inherited).
    pub fn stdout(mut self, mode: OutputMode) -> Self {
        self.config = self.config.stdout(mode);
        self
    }

    /// Where the proc's stderr goes (default: inherited).
    pub fn stderr(mut self, mode: OutputMode) -> Self {
        self.config = self.config.stderr(mode);
        self
    }

    /// The working directory (default: the host's).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config = self.config.current_dir(dir);
        self
    }

    /// How readiness is learned. Any mode but [`Readiness::Protocol`] (for
    /// programs that do not speak the boot protocol) also turns the agent
    /// ping off, and the proc gets no rings.
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.config = self.config.readiness(readiness);
        if readiness != Readiness::Protocol {
            self.ping_agent = false;
        }
        self
    }

    /// The sd_notify watchdog interval: the proc gets `NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC` and `WATCHDOG_PID`, and once ready must send `WATCHDOG=1` at least this
    /// often or be terminated and reported as a watchdog timeout.
    pub fn watchdog(mut self, interval: Duration) -> Self {
        self.config = self.config.watchdog(interval);
        self
    }

    /// Whether the proc gets rings: only with the boot protocol.
    fn speaks_boot_protocol(&self) -> bool {
        self.config.readiness == Readiness::Protocol
    }

    /// Whether readiness also waits for an answered agent ping (default on).
    pub fn ping_agent(mut self, on: bool) -> Self {
        self.ping_agent = on;
        self
    }

    /// Starts the proc as PID 1 of its own PID namespace where permitted, so
    /// the kernel kills its whole tree when it dies, even if the host was
    /// SIGKILLed (see `docs/lifecycle.md` for the costs).
    pub fn pid_namespace(mut self, on: bool) -> Self {
        self.config = self.config.pid_namespace(on);
        self
    }

    /// The lifecycle config as it stands (program, args, env, ...).
    pub fn config(&self) -> &ProcessConfig {
        &self.config
    }
}

/// For the [`ProcessProcManager`], and any manager built on it (whose
/// config is a [`ProcessConfig`]).
impl<M: ProcManager<Config = ProcessConfig>> ProcSpec<M> for ProcessProc {
    fn into_config(self, rings: ChildRings) -> Result<ProcessConfig, HostError> {
        if !self.speaks_boot_protocol() {
            // It would not map them: its ring fds stay with the host.
            return Ok(self.config);
        }
        let ring_error = |source| HostError::Ring {
            name: rings.name.clone(),
            source,
        };
        let proc_doorbell = rings.proc_doorbell.inheritable_fd().map_err(ring_error)?;
        let mut lanes = Vec::with_capacity(rings.lanes.len());
        for lane in rings.lanes {
            lanes.push(ChildLaneFds {
                inbound: lane.inbound,
                outbound: lane.outbound,
                host_doorbell: lane.host_doorbell.inheritable_fd().map_err(ring_error)?,
            });
        }
        Ok(child_config(
            self.config,
            ProcIdentity {
                id: &rings.id,
                service_name: &rings.service_name,
                limits: rings.limits,
            },
            ChildFds {
                lanes,
                proc_doorbell: Some(proc_doorbell),
            },
        ))
    }

    fn pings_agent(&self) -> bool {
        self.ping_agent
    }

    fn ring_sizes(&self) -> (Option<usize>, Option<usize>) {
        if !self.speaks_boot_protocol() {
            // Never mapped by the proc: the smallest rings there are.
            let min = Some(hostmux_ring::MIN_CAPACITY);
            return (min, min);
        }
        self.ring_sizes
    }

    fn receives_frames(&self) -> bool {
        self.speaks_boot_protocol()
    }

    fn restart_policy(&self) -> RestartPolicy {
        self.restart
    }

    fn restart_copy(&self) -> Option<Self> {
        Some(Self {
            config: self.config.try_clone().ok()?,
            ping_agent: self.ping_agent,
            ring_sizes: self.ring_sizes,
            restart: self.restart,
        })
    }
}

/// The policy a `Spawn` request's restart fields ask for.
fn restart_policy_of(request: &hostmux_wire::RestartRequest) -> RestartPolicy {
    use hostmux_wire::RestartWhen;
    let mode = match request.when {
        RestartWhen::No => RestartMode::No,
        RestartWhen::OnFailure => RestartMode::OnFailure,
        RestartWhen::Always => RestartMode::Always,
    };
    let limit = (request.limit_burst > 0).then(|| RestartLimit {
        burst: request.limit_burst,
        interval: Duration::from_millis(request.limit_interval_ms),
    });
    RestartPolicy::new(mode)
        .delays(
            Duration::from_millis(request.delay_ms),
            Duration::from_millis(request.delay_max_ms),
        )
        .limit(limit)
}

/// Why a `Spawn` request could not become a spec: the control error's
/// kind and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecRefused {
    /// `InvalidRequest` (e.g. an unknown user) or `SpawnFailed`.
    pub kind: ControlErrorKind,
    /// What is wrong, naming the thing.
    pub reason: String,
}

/// A manager whose procs the control plane can spawn from a `Spawn`
/// request (the service proc's `ControlRequest::Spawn`).
pub trait SpawnByRequest: ProcManager + BulkTerminate + Sized + 'static {
    /// The spec a request becomes.
    type Spec: ProcSpec<Self>;

    /// The spec for `request`, or why this manager cannot run it.
    fn spec_for(request: &SpawnRequest) -> Result<Self::Spec, SpecRefused>;
}

impl SpawnByRequest for ProcessProcManager {
    type Spec = ProcessProc;

    fn spec_for(request: &SpawnRequest) -> Result<ProcessProc, SpecRefused> {
        if let Err(e) = request.ready.parse::<ReadyMode>() {
            return Err(SpecRefused {
                kind: ControlErrorKind::InvalidRequest,
                reason: format!("proc '{}': {e}", request.name),
            });
        }
        ProcessProc::from_spawn_request(request).map_err(|e| SpecRefused {
            kind: match e {
                LifecycleError::UnknownUser { .. }
                | LifecycleError::UnknownGroup { .. }
                | LifecycleError::InvalidRunAs { .. } => ControlErrorKind::InvalidRequest,
                _ => ControlErrorKind::SpawnFailed,
            },
            reason: format!("proc '{}': {e}", request.name),
        })
    }
}

/// A manager served without control-plane spawns: wrap a custom manager in
/// it to [`Host::serve`](crate::Host::serve) it without implementing
/// [`SpawnByRequest`]. Its procs are spawned through the API
/// ([`Host::spawn`](crate::Host::spawn)) only; a `Spawn` request (e.g.
/// `hostmux spawn`) is refused with `SpawnFailed`, naming the program.
/// Everything else is the wrapped manager's (`.0`).
#[derive(Debug, Default)]
pub struct WithoutSpawnRequests<M>(pub M);

impl<M: ProcManager> ProcManager for WithoutSpawnRequests<M> {
    type Handle = M::Handle;
    type Config = M::Config;

    fn spawn(
        &self,
        name: hostmux_wire::ProcName,
        config: M::Config,
    ) -> impl std::future::Future<Output = Result<M::Handle, LifecycleError>> + Send {
        self.0.spawn(name, config)
    }

    fn get(&self, name: &hostmux_wire::ProcName) -> Option<M::Handle> {
        self.0.get(name)
    }

    fn procs(&self) -> Vec<M::Handle> {
        self.0.procs()
    }
}

impl<M: ProcManager + 'static> SpawnByRequest for WithoutSpawnRequests<M>
where
    M::Config: 'static,
{
    /// Never built: every request is refused.
    type Spec = fn(ChildRings) -> Result<M::Config, HostError>;

    fn spec_for(request: &SpawnRequest) -> Result<Self::Spec, SpecRefused> {
        Err(SpecRefused {
            kind: ControlErrorKind::SpawnFailed,
            reason: format!(
                "this host's proc manager takes no spawn requests and cannot start program '{}'; its procs are spawned through the host's API",
                request.program
            ),
        })
    }
}

impl SpawnByRequest for LocalProcManager {
    type Spec = LocalProc;

    fn spec_for(request: &SpawnRequest) -> Result<LocalProc, SpecRefused> {
        Err(SpecRefused {
            kind: ControlErrorKind::SpawnFailed,
            reason: format!(
                "this host runs in-process procs only and cannot start program '{}'",
                request.program
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user: Option<&str>, group: Option<&str>) -> SpawnRequest {
        SpawnRequest {
            name: "p".to_owned(),
            program: "/bin/true".to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            inbound_ring_bytes: 0,
            outbound_ring_bytes: 0,
            ready_timeout_ms: 0,
            user: user.map(str::to_owned),
            group: group.map(str::to_owned),
            restart: Default::default(),
            ready: String::new(),
            watchdog_ms: 0,
        }
    }

    #[test]
    fn spawn_requests_resolve_their_user_or_say_what_is_wrong() {
        let spec = ProcessProcManager::spec_for(&request(Some("root"), Some("0"))).unwrap();
        let run_as = spec.config().run_as.as_ref().expect("a user");
        assert_eq!((run_as.uid(), run_as.gid()), (0, 0));
        let spec = ProcessProcManager::spec_for(&request(None, None)).unwrap();
        assert!(
            spec.config().run_as.is_none(),
            "the manager's default applies"
        );

        let unknown =
            ProcessProcManager::spec_for(&request(Some("no-such-user-hm"), None)).unwrap_err();
        assert_eq!(unknown.kind, ControlErrorKind::InvalidRequest);
        assert_eq!(unknown.reason, "proc 'p': unknown user 'no-such-user-hm'");
        let group_only = ProcessProcManager::spec_for(&request(None, Some("0"))).unwrap_err();
        assert_eq!(group_only.kind, ControlErrorKind::InvalidRequest);
        assert!(
            group_only.reason.contains("needs a user"),
            "{}",
            group_only.reason
        );
    }
}
