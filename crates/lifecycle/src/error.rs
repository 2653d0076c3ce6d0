//! Errors: [`LifecycleError`] for spawning and the child side, plus the three
//! small handle-level errors the cross-crate contract names.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use hostmux_wire::ProcName;

use crate::status::TerminalStatus;

/// Everything that can go wrong spawning a proc or speaking the readiness
/// protocol from the child side.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The OS refused to start the program (missing, not executable, ...).
    #[error("proc '{name}': failed to spawn program '{program}': {source}")]
    Spawn {
        /// The proc being spawned.
        name: ProcName,
        /// The program path as configured.
        program: PathBuf,
        /// The OS error reported by the child before exec.
        #[source]
        source: io::Error,
    },
    /// A live proc already has this name on this manager.
    #[error("proc '{0}' already exists")]
    ProcExists(ProcName),
    /// A configuration value is unusable (e.g. two fds mapped to one slot).
    #[error("proc '{name}': invalid config: {reason}")]
    InvalidConfig {
        /// The proc being spawned.
        name: ProcName,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// A system call the manager needs failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation that failed, e.g. "pidfd_open".
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The dedicated spawner thread is gone (it only stops if it panicked).
    #[error("the lifecycle spawner thread is gone")]
    SpawnerGone,
    /// No user of this name (or uid) in the system's user database.
    #[error("unknown user '{user}'{hint}")]
    UnknownUser {
        /// The user as given.
        user: String,
        /// Advice appended to the message (may be empty).
        hint: &'static str,
    },
    /// The user and group asked for do not make sense together.
    #[error("invalid user or group: {reason}")]
    InvalidRunAs {
        /// What is wrong.
        reason: String,
    },
    /// No group of this name in the system's group database.
    #[error("unknown group '{group}'")]
    UnknownGroup {
        /// The group as given.
        group: String,
    },
    /// The user or group database could not be read.
    #[error("looking up user or group '{account}' failed: {source}")]
    AccountLookup {
        /// The user or group as given.
        account: String,
        /// The error from the lookup.
        #[source]
        source: io::Error,
    },
    /// A proc is to run as another user, but this process may not switch
    /// users (it is not root, or lacks `CAP_SETUID`/`CAP_SETGID`).
    #[error(
        "running a proc as user '{user}' (uid {uid}) needs root (CAP_SETUID and CAP_SETGID); \
         this host runs as uid {host_uid} without them"
    )]
    SwitchUserNotPermitted {
        /// The user as given.
        user: String,
        /// Its uid.
        uid: u32,
        /// The host's effective uid.
        host_uid: u32,
    },
}

/// Why [`ProcHandle::ready`](crate::ProcHandle::ready) did not resolve to
/// ready.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadyError {
    /// The proc reached a terminal status before it reported ready (it
    /// exited, crashed, closed its ready pipe, or was terminated).
    #[error("proc ended before it was ready: {0}")]
    Terminal(TerminalStatus),
    /// The spawn-ready timeout elapsed; the proc was killed and reaped.
    #[error("proc '{name}' was not ready within the spawn-ready timeout of {timeout:?}; killed")]
    TimedOut {
        /// The proc.
        name: ProcName,
        /// The configured spawn-ready timeout.
        timeout: Duration,
    },
    /// The supervisor that observes the proc is gone.
    #[error("lifecycle status channel closed; cannot observe readiness")]
    ChannelClosed,
}

/// Why [`ProcHandle::wait`](crate::ProcHandle::wait) could not return a
/// terminal status.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The supervisor that observes the proc is gone.
    #[error("lifecycle status channel closed; cannot observe exit")]
    ChannelClosed,
}

/// Why a terminate or kill did not produce a fresh terminal status.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TerminateError {
    /// The manager cannot signal this kind of proc.
    #[error("terminate/kill unsupported by this manager")]
    Unsupported,
    /// The proc was already terminal when asked; this is its status (the
    /// same value `wait()` returns).
    #[error("proc already terminated ({0})")]
    AlreadyTerminated(TerminalStatus),
    /// The supervisor that observes the proc is gone.
    #[error("lifecycle status channel closed; cannot observe termination")]
    ChannelClosed,
    /// No live proc has this name on this manager.
    #[error("no proc named '{0}'")]
    NoSuchProc(ProcName),
    /// Delivering a signal failed with something other than "already gone".
    #[error("signal delivery failed: {0}")]
    Io(#[source] io::Error),
}
