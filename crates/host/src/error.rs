//! The host crate's one error type.

use std::time::Duration;

use hostmux_lifecycle::{LifecycleError, ReadyError, TerminalStatus, TerminateError};
use hostmux_ring::RingError;
use hostmux_wire::{ProcName, WireError};

/// Everything a host operation can fail with. Messages name the proc, the
/// address or the limit involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// A proc (or a connected client) already holds this name.
    #[error("proc '{0}' already exists")]
    ProcExists(ProcName),
    /// The name is the host's service proc's (the control plane): no proc
    /// may be spawned under it.
    #[error("proc name '{0}' is reserved for the host's service proc (the control plane); pick another name")]
    ReservedName(ProcName),
    /// A stop or kill named the service proc: it is the host's own and
    /// ends only with the host.
    #[error("'{0}' is the host's service proc (the control plane): it ends with the host; stop `hostmux serve` instead")]
    ServiceProc(ProcName),
    /// No proc has this name, live, starting or recently gone.
    #[error("no proc named '{0}'")]
    NoSuchProc(ProcName),
    /// The proc asked for has already ended (`ps` still lists it): there
    /// is nothing left to stop or kill.
    #[error("proc '{name}' already ended ({status})")]
    AlreadyEnded {
        /// The proc.
        name: ProcName,
        /// How it ended.
        status: TerminalStatus,
    },
    /// A stop or kill reached the proc while its spawn was still waiting
    /// for it to become ready: it was stopped (or killed) and the spawn
    /// fails with this.
    #[error("proc '{name}' was {how} while starting ({status})")]
    StoppedWhileStarting {
        /// The proc.
        name: ProcName,
        /// `"stopped"` or `"killed"`.
        how: &'static str,
        /// How it ended.
        status: TerminalStatus,
    },
    /// The spec asks to be restarted but cannot give a copy of itself for
    /// the next start ([`ProcSpec::restart_copy`](crate::ProcSpec::restart_copy)).
    #[error("proc '{name}' cannot be restarted: {reason}")]
    CannotRestart {
        /// The proc.
        name: ProcName,
        /// Why.
        reason: String,
    },
    /// The frontend address is not one the host can bind (or a client can
    /// connect to).
    #[error("cannot use frontend address '{addr}': {reason}")]
    InvalidAddr {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A non-loopback bind was requested without a token (see the security
    /// contract in `docs/architecture.md`).
    #[error("refusing to bind non-loopback frontend address '{addr}' without a token; set HostConfig::token")]
    InsecureBind {
        /// The address as given.
        addr: String,
    },
    /// Binding or accepting on the frontend failed.
    #[error("frontend address '{addr}': {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The metrics endpoint's address could not be bound
    /// ([`Host::serve_metrics`](crate::Host::serve_metrics)).
    #[error("cannot serve metrics on {addr}: {source}")]
    MetricsBind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An address in [`HostConfig::advertise`](crate::HostConfig::advertise)
    /// cannot name this host to others.
    #[error("cannot advertise '{addr}': {reason}")]
    InvalidAdvertise {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The addresses of the machine's interfaces could not be read (a host
    /// bound to `0.0.0.0` or `[::]` needs them to know its own addresses).
    #[error("cannot list the network interfaces' addresses for frontend '{addr}': {source}")]
    LocalAddresses {
        /// The bound frontend address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The proc manager could not start the proc.
    #[error("{}", spawn_failed(name, source))]
    Spawn {
        /// The proc.
        name: ProcName,
        /// What the manager reported.
        #[source]
        source: LifecycleError,
    },
    /// The proc ended before it reported ready, or its supervisor vanished.
    #[error("proc '{name}' did not become ready: {source}")]
    NotReady {
        /// The proc.
        name: ProcName,
        /// What the manager reported.
        #[source]
        source: ReadyError,
    },
    /// The proc did not report ready within the spawn-ready timeout; it was killed.
    #[error("proc '{name}' was not ready within the spawn-ready timeout of {timeout:?}; killed")]
    ReadyTimeout {
        /// The proc.
        name: ProcName,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The proc reported ready but its agent did not answer the host's ping.
    #[error("proc '{name}' reported ready but its agent did not answer the host's ping: {reason}")]
    AgentUnanswered {
        /// The proc.
        name: ProcName,
        /// What happened instead.
        reason: String,
    },
    /// A TLS certificate, private key or CA file cannot be used (see
    /// [`TlsConfig`](crate::TlsConfig)).
    #[error("TLS {role} file '{}': {reason}", path.display())]
    TlsFile {
        /// Which file: `"certificate"`, `"private key"` or `"CA certificate"`.
        role: &'static str,
        /// The file as given.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS settings are incomplete or do not fit together.
    #[error("TLS configuration: {0}")]
    TlsSettings(String),
    /// The control socket could not be created.
    #[error("control socket '{}': {reason}", path.display())]
    ControlSocket {
        /// The configured path.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A client could not open a connection to a host (or write its hello).
    #[error("cannot connect to host at '{addr}': {source}")]
    Connect {
        /// The address or path.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The host closed a client's connection instead of acknowledging its
    /// hello: a wrong or missing token, a name already taken, or a peer the
    /// host refuses (its log says which).
    #[error("cannot connect to host at '{addr}': the host closed the connection instead of acknowledging the hello (wrong token, taken name, or a peer it refuses)")]
    HelloRefused {
        /// The host's address or path.
        addr: String,
        /// The name the client said hello with.
        client: String,
    },
    /// The host answered a client's hello with a frame that is not the ack.
    #[error("cannot connect to host at '{addr}': the host answered the hello of client '{client}' with something else")]
    HelloNotAcknowledged {
        /// The host's address or path.
        addr: String,
        /// The name the client said hello with.
        client: String,
    },
    /// Writing to a host's connection failed (the host closed it?).
    #[error("writing to host at '{addr}': {source}")]
    Send {
        /// The host's address or path.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading from a host's connection failed.
    #[error("reading from host at '{addr}': {source}")]
    Receive {
        /// The host's address or path.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking client's read timeout passed with no whole frame.
    #[error("no frame from host at '{addr}' within {waited:?}")]
    ReceiveTimeout {
        /// The host's address or path.
        addr: String,
        /// The read timeout that passed.
        waited: Duration,
    },
    /// The host sent a client bytes that are not a valid frame.
    #[error("host at '{addr}' sent a malformed frame: {source}")]
    MalformedFromHost {
        /// The host's address or path.
        addr: String,
        /// What the decoder found.
        #[source]
        source: WireError,
    },
    /// The host closed a control connection before answering a request.
    #[error("host at '{addr}' closed the connection before answering")]
    ClosedBeforeAnswer {
        /// The host's address or path.
        addr: String,
    },
    /// The host answered a control request with an error.
    #[error("control request refused ({kind:?}): {message}")]
    Control {
        /// The error kind the host gave.
        kind: hostmux_wire::ControlErrorKind,
        /// The host's message.
        message: String,
    },
    /// The host answered with something the client did not expect.
    #[error("unexpected answer from the host: {0}")]
    Unexpected(String),
    /// Terminating a proc failed.
    #[error("proc '{name}' could not be terminated: {source}")]
    Terminate {
        /// The proc.
        name: ProcName,
        /// What the manager reported.
        #[source]
        source: TerminateError,
    },
    /// Creating or attaching a proc's shared-memory ring failed.
    #[error("proc '{name}': ring setup failed: {source}")]
    Ring {
        /// The proc.
        name: ProcName,
        /// The ring error.
        #[source]
        source: RingError,
    },
    /// [`ChildRings::attach`](crate::ChildRings::attach) maps one lane, and
    /// the host gave the proc several (one per I/O thread).
    #[error("proc '{name}': a ProcEndpoint serves one lane and the host gave it {lanes}; boot it with hostmux-proc (LocalProc::booted) instead")]
    EndpointLanes {
        /// The proc.
        name: ProcName,
        /// How many lanes it was given.
        lanes: usize,
    },
    /// A frame or name could not be encoded or decoded.
    #[error("wire error: {0}")]
    Wire(#[from] WireError),
    /// [`HostConfig::io_threads`](crate::HostConfig::io_threads) is out of range.
    #[error("io_threads must be between 1 and {max}, not {given}")]
    InvalidIoThreads {
        /// The configured count.
        given: usize,
        /// The most the host runs.
        max: usize,
    },
    /// The host's I/O thread is gone (it was shut down or panicked).
    #[error("the host I/O thread is not running")]
    IoThreadGone,
    /// Starting the host's I/O thread or its runtime failed.
    #[error("cannot start the host I/O thread: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The text of [`HostError::Spawn`]: the manager's error alone when it
/// names the proc already, else prefixed with which proc failed to spawn
/// (so "proc 'x'" is said once).
fn spawn_failed(name: &ProcName, source: &LifecycleError) -> String {
    let text = source.to_string();
    if text.starts_with(&format!("proc '{name}'")) {
        text
    } else {
        format!("proc '{name}' failed to spawn: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawn_error_names_the_proc_once() {
        let name = ProcName::new("m").unwrap();
        let missing = HostError::Spawn {
            name: name.clone(),
            source: LifecycleError::Spawn {
                name: name.clone(),
                program: "/no/such".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
        };
        let text = missing.to_string();
        assert!(
            text.starts_with("proc 'm': failed to spawn program '/no/such': "),
            "{text}"
        );
        assert_eq!(text.matches("proc 'm'").count(), 1, "{text}");
        let gone = HostError::Spawn {
            name,
            source: LifecycleError::SpawnerGone,
        };
        assert_eq!(
            gone.to_string(),
            "proc 'm' failed to spawn: the lifecycle spawner thread is gone"
        );
    }
}
