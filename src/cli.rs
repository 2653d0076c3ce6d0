//! Flag parsing for the `hostmux` binary, the exit codes, and dispatch to
//! the subcommands' modules.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::procs::ProcMode;
use hostmux::parse_duration;
use hostmux_host::RingMemory;

/// Exit codes, as documented in `--help` (`EXIT_CODES_HELP`) and
/// `docs/operations.md`.
pub(crate) mod exit {
    /// A runtime failure (I/O, no reply in time, a proc that failed, a
    /// shutdown that could not confirm every proc stopped).
    pub(crate) const FAILURE: u8 = 1;
    /// Bad usage: unknown flag, invalid value, unreadable token file, an
    /// address or control socket path `serve` cannot take (clap also uses
    /// 2).
    pub(crate) const USAGE: u8 = 2;
    /// The host could not be reached (no control socket, nothing listening,
    /// permission denied on the socket, the connection closed before the
    /// answer).
    pub(crate) const UNREACHABLE: u8 = 3;
    /// The host refused the request (caller's uid or token, no such proc,
    /// name taken or reserved, spawn failed, frame undeliverable).
    pub(crate) const REFUSED: u8 = 4;
}

/// The exit codes section of every `--help`.
const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  runtime failure (I/O error, no reply within --timeout, a proc failed,
     shutdown could not confirm every proc stopped)
  2  usage error (unknown flag, invalid value, unreadable token file,
     frontend address or control socket path in use)
  3  host unreachable (no control socket or nothing listening at that
     address, permission denied on the control socket, the host closed
     the connection before answering)
  4  refused by the host (caller's uid or token not allowed, no such proc,
     name taken or reserved, spawn failed, frame undeliverable)";

/// An error that carries its exit code. Everything else exits 1.
#[derive(Debug)]
pub(crate) struct CliError {
    code: u8,
    message: String,
}

impl CliError {
    pub(crate) fn failure(message: impl Into<String>) -> Self {
        Self {
            code: exit::FAILURE,
            message: message.into(),
        }
    }
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: exit::USAGE,
            message: message.into(),
        }
    }
    pub(crate) fn unreachable(message: impl Into<String>) -> Self {
        Self {
            code: exit::UNREACHABLE,
            message: message.into(),
        }
    }
    pub(crate) fn refused(message: impl Into<String>) -> Self {
        Self {
            code: exit::REFUSED,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The one line `main` prints for `error`: the context and each cause in
/// the chain once, joined by `: `. A cause whose text is already in the
/// line is left out: many errors embed their source in their own message,
/// and anyhow's `{:#}` would print it twice ("Address already in use (os
/// error 98): Address already in use (os error 98)").
pub(crate) fn message(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The exit code for an error returned by [`run`].
pub(crate) fn exit_code(error: &anyhow::Error) -> ExitCode {
    let code = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<CliError>())
        .map_or(exit::FAILURE, |e| e.code);
    ExitCode::from(code)
}

/// hostmux: one host process per machine that makes every child proc
/// reachable through a single frontend address, by name.
///
/// `hostmux serve` runs the host; `spawn`, `ps`, `stop`, `kill` and `stats`
/// talk to it over its control socket; `send` talks to a proc through the
/// frontend address. `demo` shows it all in one command. The end-to-end
/// benchmark is a separate binary, `hostmux-bench` (docs/benchmarks.md).
#[derive(Debug, Parser)]
#[command(name = "hostmux", version, about, long_about, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a host: bind the frontend address and the control socket, spawn
    /// procs on request, stop them all on SIGTERM/SIGINT and print how each
    /// ended (exited N, signal, SIGKILLed after the grace) and after how long.
    #[command(after_help = EXIT_CODES_HELP)]
    // Boxed: by far the largest variant.
    Serve(Box<ServeArgs>),
    /// Spawn a proc: `hostmux spawn NAME -- PROGRAM ARGS…`.
    #[command(after_help = EXIT_CODES_HELP)]
    Spawn(SpawnArgs),
    /// List the host's procs (a table, or JSON with --json).
    #[command(after_help = EXIT_CODES_HELP)]
    Ps(PsArgs),
    /// Stop a proc: polite stop and SIGTERM, SIGKILL after --timeout.
    #[command(after_help = EXIT_CODES_HELP)]
    Stop(StopArgs),
    /// SIGKILL a proc's process group now.
    #[command(after_help = EXIT_CODES_HELP)]
    Kill(KillArgs),
    /// Send one payload to a proc through the frontend and print the reply
    /// (or, if the host returned the frame, why, in words: exit 4).
    #[command(after_help = EXIT_CODES_HELP)]
    Send(SendArgs),
    /// Per-proc counters and rates (--watch refreshes in place).
    #[command(after_help = EXIT_CODES_HELP)]
    Stats(StatsArgs),
    /// The host's links to its peers: state, bytes queued, frames in flight
    /// (sent, not yet acknowledged), answers awaited, heartbeat round trip,
    /// dials and failures (a table, or JSON with --json).
    #[command(after_help = EXIT_CODES_HELP)]
    Links(LinksArgs),
    /// Start a host on loopback, drive a million frames through five procs,
    /// show counters, percentiles and the terminate escalation.
    #[command(after_help = EXIT_CODES_HELP)]
    Demo(DemoArgs),
    /// Internal: run this binary as a proc (used by demo).
    #[command(name = "__proc", hide = true)]
    Proc {
        #[arg(value_enum)]
        mode: ProcMode,
    },
}

/// The frontend kinds a host can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Frontend {
    /// io-uring-direct if the kernel builds its ring, else io-uring, else
    /// epoll (the log says which runs).
    Auto,
    /// io_uring through tokio-uring (fails if the kernel refuses it).
    IoUring,
    /// epoll.
    Epoll,
    /// io_uring driven by the host itself (the io-uring crate; fails if
    /// the kernel refuses it).
    IoUringDirect,
}

impl From<Frontend> for hostmux_host::FrontendKind {
    fn from(f: Frontend) -> Self {
        match f {
            Frontend::Auto => hostmux_host::FrontendKind::Auto,
            Frontend::IoUring => hostmux_host::FrontendKind::IoUring,
            Frontend::Epoll => hostmux_host::FrontendKind::Epoll,
            Frontend::IoUringDirect => hostmux_host::FrontendKind::IoUringDirect,
        }
    }
}

/// The default control socket path.
pub(crate) const DEFAULT_CONTROL_SOCKET: &str = "/run/hostmux/control.sock";
/// The default frontend address.
pub(crate) const DEFAULT_FRONTEND: &str = "tcp:127.0.0.1:7000";

/// Where the control socket is.
#[derive(Debug, Args)]
pub(crate) struct ControlArgs {
    /// The host's control socket (Unix, mode 0600).
    #[arg(long, env = "HOSTMUX_CONTROL_SOCKET", default_value = DEFAULT_CONTROL_SOCKET)]
    pub(crate) control_socket: PathBuf,
    /// Reach the control plane through this TCP frontend (tcp:HOST:PORT)
    /// instead of the control socket; needs --control-token-file.
    #[arg(long, value_name = "ADDR", requires = "control_token_file")]
    pub(crate) control_tcp: Option<String>,
    /// File holding the host's token, for --control-tcp.
    #[arg(long, value_name = "FILE")]
    pub(crate) control_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Frontend address: tcp:HOST:PORT or unix:/PATH. A non-loopback
    /// address needs --token-file.
    #[arg(long, default_value = DEFAULT_FRONTEND)]
    pub(crate) frontend: String,
    /// Where to create the control socket (Unix, mode 0600, removed at exit).
    #[arg(long, env = "HOSTMUX_CONTROL_SOCKET", default_value = DEFAULT_CONTROL_SOCKET)]
    pub(crate) control_socket: PathBuf,
    /// File holding the token clients (and TCP control clients) must present.
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// Each proc's inbound ring, in bytes (power of two, 64 KiB..256 MiB).
    #[arg(long, default_value_t = 1 << 20, value_parser = parse_ring_bytes)]
    pub(crate) inbound_ring_bytes: usize,
    /// Each proc's outbound ring, in bytes (power of two, 64 KiB..256 MiB).
    #[arg(long, default_value_t = 1 << 20, value_parser = parse_ring_bytes)]
    pub(crate) outbound_ring_bytes: usize,
    /// When each proc's rings get their memory: `on-demand` (each page on
    /// first use, a page fault once; an idle proc holds two pages) or
    /// `populated` (all of it at spawn; no page faults ever). See
    /// docs/operations.md, "Sizing rings for many procs".
    #[arg(long, default_value = "on-demand", value_parser = parse_ring_memory)]
    pub(crate) ring_memory: RingMemory,
    /// How long a spawned proc may take to report ready; 0 waits forever.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) spawn_ready_timeout: Duration,
    /// Grace between the polite stop and SIGKILL when the host shuts down.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) shutdown_grace: Duration,
    /// Which frontend runs.
    #[arg(long, value_enum, default_value_t = Frontend::Auto)]
    pub(crate) frontend_kind: Frontend,
    /// Host I/O threads (1..=64), each a complete data plane with its own
    /// pair of rings to every proc; connections are spread across them.
    /// Default: a quarter of the cores the host may use (affinity mask,
    /// capped by its cgroup's CPU quota), at least 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) io_threads: Option<u16>,
    /// After a client shuts down its write side, how long the host keeps the
    /// connection open for the answers to what it sent before (it closes as
    /// soon as all are answered); 0 closes at once.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) half_close_linger: Duration,
    /// Links between hosts a frame may cross before it is dropped (a data
    /// frame's sender is told `HopLimit`).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..))]
    pub(crate) max_hops: u8,
    /// The user procs run as when `spawn` names none (USER or USER:GROUP,
    /// names or ids; supplementary groups as initgroups sets them). Needs
    /// root. Procs run as another user cannot use the control socket.
    /// Default: the host's own user.
    #[arg(long, value_name = "USER[:GROUP]")]
    pub(crate) proc_user: Option<String>,
    /// Memory budget for all connections' read buffers (e.g. 256M, 1G); a
    /// connection over it is not read until others release memory.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    pub(crate) conn_memory: usize,
    /// Memory budget for frames queued for clients over all connections
    /// (replies a client has not read yet; e.g. 256M). Past it, a proc's
    /// reply waits like for a full queue, then comes back `Overloaded`.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    pub(crate) reply_memory: usize,
    /// Frames at least this large (e.g. 64K) from plain client connections
    /// are read from the socket straight into the proc's ring; 0 turns it
    /// off. See docs/operations.md, "Zero-copy receive".
    #[arg(long, default_value = "64K", value_parser = parse_size)]
    pub(crate) zero_copy_threshold: usize,
    /// The io-uring-direct frontend's multishot receive: COUNTxSIZE
    /// provided buffers per I/O thread (e.g. 64x64K; COUNT a power of two
    /// up to 32768, SIZE 4K to 16M; one connection holds at most a quarter
    /// of them), or `off` (one re-armed receive per read). Other frontends
    /// ignore it.
    /// See docs/operations.md, "Multishot receive".
    #[arg(long, default_value = "64x64K", value_parser = parse_recv_buffers)]
    pub(crate) recv_buffers: RecvBuffersArg,
    /// Frontend connections served at once; more are closed at accept,
    /// unless a connection has gone --hello-eviction-grace without saying
    /// hello: the oldest such one is closed instead.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_connections: u32,
    /// At the connection cap, how long a connection may go without saying
    /// hello before a new connection may take its place (so a flood of
    /// connections that never say hello cannot keep clients out); `off`
    /// never takes a place. See docs/operations.md, "Memory limits".
    #[arg(long, default_value = "100ms", value_parser = parse_eviction_grace)]
    pub(crate) hello_eviction_grace: Duration,
    /// How long a frame may take from its first byte to its last; a
    /// connection holding an older partial frame is closed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) frame_timeout: Duration,
    /// Another host this host may dial, tcp:HOST:PORT (repeatable). Frames
    /// for any other host are answered `NotAPeer` and nothing is dialled;
    /// with no peers the host dials nobody. The token goes only to peers.
    #[arg(long = "peer", value_name = "ADDR")]
    pub(crate) peers: Vec<String>,
    /// File of peer addresses, one per line (`#` starts a comment, blank
    /// lines are ignored); adds to --peer.
    #[arg(long, value_name = "FILE")]
    pub(crate) peers_file: Option<PathBuf>,
    /// File holding the secret the peers share for links between them
    /// (needed with --peer/--peers-file; must differ from --token-file,
    /// which clients hold, so that no client can pose as a peer).
    #[arg(long, value_name = "FILE")]
    pub(crate) peer_token_file: Option<PathBuf>,
    /// A link on which nothing (frame, acknowledgement, heartbeat) arrives
    /// for this long is taken as dead: closed, and every frame awaiting an
    /// answer through it answered `LinkFailed`. Heartbeats go every quarter
    /// of it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) link_timeout: Duration,
    /// Flow control per link: bytes sent to a peer and not yet acknowledged
    /// (e.g. 8M). A full link holds its senders back like a full ring, then
    /// answers `Overloaded` after the overload wait.
    #[arg(long, default_value = "8M", value_parser = parse_size)]
    pub(crate) link_window: usize,
    /// How long this host may hold back the status acknowledging frames a
    /// peer sent it, so one status covers them all instead of waking the
    /// peer once per frame. Sent at once when an eighth of the window
    /// waits, with anything else written, or when the peer asks (a full
    /// window pings). 0 acknowledges at once.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub(crate) link_ack_delay: Duration,
    /// An address this host names itself by, tcp:HOST:PORT (repeatable, or
    /// a comma list); the first is the primary: the address other hosts
    /// see in this host's forwarded frames and proc ids, so it should be
    /// how the peers list this host. Default: the frontend address; for
    /// 0.0.0.0 (or the IPv6 any-address), every interface address with the
    /// port, non-loopback first. Every advertised and interface address
    /// means this host.
    #[arg(long = "advertise", value_name = "ADDR", value_delimiter = ',')]
    pub(crate) advertise: Vec<String>,
    /// This host's TLS certificate chain (PEM, leaf first). With --tls-key
    /// and --tls-ca (all three or none): every link to a peer is mutual TLS,
    /// and the TCP frontend takes TLS clients beside plain ones.
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// The CA certificates (PEM) that peers' certificates, and clients'
    /// when they present one, must chain to.
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Refuse plain TCP clients from non-loopback addresses (TLS ones are
    /// served; Unix-socket and loopback clients stay plain). Needs the TLS
    /// files.
    #[arg(long)]
    pub(crate) tls_required: bool,
    /// With --tls-required: refuse plain TCP clients from loopback
    /// addresses too (Unix-socket clients stay plain).
    #[arg(long, requires = "tls_required")]
    pub(crate) tls_required_loopback: bool,
    /// Serve `GET /metrics` (Prometheus text format) on this address,
    /// IP:PORT (e.g. 127.0.0.1:9464; port 0 picks one, printed at start).
    /// Off by default. It has no authentication: bind loopback or a
    /// private address.
    #[arg(long, value_name = "IP:PORT", value_parser = parse_metrics_addr)]
    pub(crate) metrics: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub(crate) struct SpawnArgs {
    /// The proc's name (unique on the host).
    pub(crate) name: String,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    pub(crate) command: Vec<String>,
    /// Extra environment variables, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub(crate) env: Vec<String>,
    /// How long the proc may take to report ready; 0 waits without limit.
    /// A proc that is not ready in time is killed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) ready_timeout: Duration,
    /// How the proc tells the host it is ready. `boot`: it speaks
    /// hostmux's boot protocol (a program built on hostmux-proc); the only
    /// mode whose procs get rings and receive frames. `spawn`: ready once
    /// the program was exec'd (any program). `notify`: systemd's sd_notify
    /// protocol: it gets NOTIFY_SOCKET and is ready when it sends READY=1
    /// (STATUS=text shows in `ps`). `tcp:PORT` or `tcp:HOST:PORT`: ready
    /// once a TCP connection to it succeeds (PORT alone means 127.0.0.1).
    /// Frames sent to a proc in any mode but `boot` are answered
    /// undeliverable, reason "proc not ready". Every mode honours
    /// --ready-timeout; a proc that exits first fails the spawn at once.
    #[arg(long, value_name = "MODE", default_value = "boot", value_parser = parse_ready_mode)]
    pub(crate) ready: hostmux_wire::ReadyMode,
    /// sd_notify watchdog: the proc gets NOTIFY_SOCKET, WATCHDOG_USEC and
    /// WATCHDOG_PID
    /// and, once ready, must send WATCHDOG=1 at least this often, or it is
    /// terminated (SIGTERM, SIGKILL 5 s later) and reported as failed with
    /// "watchdog timeout". 0: no watchdog.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub(crate) watchdog: Duration,
    /// Run the proc as this user (name or uid), with its supplementary
    /// groups and no_new_privs; the host must run as root. Default: the
    /// host's `--proc-user`, else the host's own user.
    #[arg(long, value_name = "USER|UID")]
    pub(crate) user: Option<String>,
    /// The proc's group (name or gid); default: the user's primary group.
    #[arg(long, value_name = "GROUP|GID", requires = "user")]
    pub(crate) group: Option<String>,
    /// Restart the proc when it ends, like systemd's Restart=: `no`;
    /// `on-failure` after a non-zero exit, a signal the operator did not
    /// send, or a failed readiness after a restart; `always` after any end
    /// but `hostmux stop`/`kill` or the host's shutdown. A proc whose
    /// first start fails is not restarted (spawn reports it).
    #[arg(long, value_enum, default_value_t = Restart::No)]
    pub(crate) restart: Restart,
    /// The wait before a restart; it doubles with each restart in a row up
    /// to --restart-delay-max, and starts again here once an instance
    /// stayed up for 10 s.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub(crate) restart_delay: Duration,
    /// The longest wait before a restart.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) restart_delay_max: Duration,
    /// At most N restarts within INTERVAL (like systemd's StartLimitBurst=
    /// and StartLimitIntervalSec=); the restart past it does not happen and
    /// the proc stays down, failed with "restart limit reached". `none`:
    /// no limit.
    #[arg(long, value_name = "N/INTERVAL", default_value = "5/60s", value_parser = parse_restart_limit)]
    pub(crate) restart_limit: RestartLimit,
    #[command(flatten)]
    pub(crate) control: ControlArgs,
}

/// `spawn --restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Restart {
    /// Never restart.
    No,
    /// Restart after a failure.
    OnFailure,
    /// Restart after any end the operator did not ask for.
    Always,
}

/// `spawn --restart-limit`: at most `burst` restarts within `interval`;
/// a burst of 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestartLimit {
    pub(crate) burst: u32,
    pub(crate) interval: Duration,
}

/// Parses `5/60s` (N restarts within INTERVAL) or `none`.
fn parse_restart_limit(text: &str) -> Result<RestartLimit, String> {
    let text = text.trim();
    if text == "none" {
        return Ok(RestartLimit {
            burst: 0,
            interval: Duration::ZERO,
        });
    }
    let (burst, interval) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not N/INTERVAL; write e.g. 5/60s, or none"))?;
    let burst: u32 = burst
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{burst:?} in {text:?} is not a positive count of restarts"))?;
    let interval = parse_duration(interval)?;
    if interval.is_zero() {
        return Err(format!("the interval in {text:?} must be longer than 0"));
    }
    Ok(RestartLimit { burst, interval })
}

#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) control: ControlArgs,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// The proc.
    pub(crate) name: String,
    /// Grace before SIGKILL.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    #[command(flatten)]
    pub(crate) control: ControlArgs,
}

#[derive(Debug, Args)]
pub(crate) struct KillArgs {
    /// The proc.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) control: ControlArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The destination proc.
    pub(crate) name: String,
    /// The payload (UTF-8 text, sent as its bytes).
    pub(crate) payload: String,
    /// The host's frontend address.
    #[arg(long, env = "HOSTMUX_FRONTEND", default_value = DEFAULT_FRONTEND)]
    pub(crate) frontend: String,
    /// File holding the host's token, if it has one.
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// Port on the proc.
    #[arg(long, default_value_t = 0)]
    pub(crate) port: u32,
    /// How long to wait for the reply (0: do not wait for one).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// The name this client says hello with [default: hostmux-send-PID, so
    /// that a connection the host still holds for an earlier send (it keeps a
    /// closed client's name until its frames are answered, or for
    /// `serve --half-close-linger`) never blocks the next one].
    #[arg(long)]
    pub(crate) client_name: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LinksArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) control: ControlArgs,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Only this proc.
    pub(crate) name: Option<String>,
    /// Print JSON (the counters `ps --json` carries) instead of a table;
    /// with --watch, one JSON document per line.
    #[arg(long)]
    pub(crate) json: bool,
    /// Refresh in place every --interval until interrupted.
    #[arg(long)]
    pub(crate) watch: bool,
    /// Refresh interval for --watch.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) interval: Duration,
    #[command(flatten)]
    pub(crate) control: ControlArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Frames to drive through the procs.
    #[arg(long, default_value_t = 1_000_000, hide = true)]
    pub(crate) frames: u64,
    /// Grace before the stubborn proc is SIGKILLed.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) grace: Duration,
    /// Which frontend runs.
    #[arg(long, value_enum, default_value_t = Frontend::Auto)]
    pub(crate) frontend_kind: Frontend,
    /// Host I/O threads (1..=64), each a complete data plane with its own
    /// pair of rings to every proc; connections are spread across them.
    /// Default: a quarter of the cores the host may use (affinity mask,
    /// capped by its cgroup's CPU quota), at least 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) io_threads: Option<u16>,
}

/// `--ready MODE`: boot, spawn, notify, tcp:PORT or tcp:HOST:PORT.
fn parse_ready_mode(text: &str) -> Result<hostmux_wire::ReadyMode, String> {
    text.parse()
        .map_err(|e: hostmux_wire::WireError| e.to_string())
}

/// `--recv-buffers`: a buffer ring's shape, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecvBuffersArg(pub(crate) Option<hostmux_host::RecvBuffers>);

/// Parses `--recv-buffers`: `COUNTxSIZE` (e.g. `64x64K`) or `off`.
pub(crate) fn parse_recv_buffers(text: &str) -> Result<RecvBuffersArg, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(RecvBuffersArg(None));
    }
    let shape = || format!("{text:?}: expected COUNTxSIZE (e.g. 64x64K) or off");
    let (count, size) = text.split_once(['x', 'X']).ok_or_else(shape)?;
    let count: u16 = count.trim().parse().map_err(|_| shape())?;
    if !count.is_power_of_two() || count > 1 << 15 {
        return Err(format!(
            "{text:?}: the buffer count must be a power of two from 1 to 32768"
        ));
    }
    let size = parse_size(size)?;
    if !(4 << 10..=16 << 20).contains(&size) {
        return Err(format!("{text:?}: each buffer must be 4K to 16M"));
    }
    Ok(RecvBuffersArg(Some(hostmux_host::RecvBuffers {
        count,
        len: size as u32,
        held_per_conn: (count / 4).max(1),
    })))
}

/// Parses `--hello-eviction-grace`: a duration, or `off` (never).
pub(crate) fn parse_eviction_grace(text: &str) -> Result<Duration, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(Duration::MAX);
    }
    parse_duration(text)
}

/// Parses a byte size: a number with an optional `K`, `M` or `G` suffix
/// (powers of 1024; a trailing `B` or `iB` is allowed: `64KiB`, `1G`).
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let upper = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (number, shift) = match upper.char_indices().last() {
        Some((at, 'K')) => (&upper[..at], 10),
        Some((at, 'M')) => (&upper[..at], 20),
        Some((at, 'G')) => (&upper[..at], 30),
        _ => (upper, 0),
    };
    number
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{trimmed:?} is not a size; write e.g. 268435456, 256M or 1G"))
}

/// Parses `--metrics IP:PORT`.
fn parse_metrics_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not IP:PORT; write e.g. 127.0.0.1:9464 or [::1]:9464"))
}

/// Parses a ring size: a power of two from 64 KiB to 256 MiB, with an
/// optional `K`/`M` suffix.
fn parse_ring_memory(text: &str) -> Result<RingMemory, String> {
    text.parse::<RingMemory>().map_err(|e| e.to_string())
}

fn parse_ring_bytes(text: &str) -> Result<usize, String> {
    let (number, scale) = match text.trim().strip_suffix(['K', 'k']) {
        Some(n) => (n, 1 << 10),
        None => match text.trim().strip_suffix(['M', 'm']) {
            Some(n) => (n, 1 << 20),
            None => (text.trim(), 1),
        },
    };
    let bytes = number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a size; write e.g. 1048576, 1024K or 1M"))?;
    if !bytes.is_power_of_two() || !(64 << 10..=256 << 20).contains(&bytes) {
        return Err(format!(
            "ring size {bytes} must be a power of two from 64K to 256M"
        ));
    }
    Ok(bytes)
}

/// Parses the command line and runs the chosen subcommand.
pub(crate) fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => crate::serve::run(*args),
        Command::Spawn(args) => crate::control::spawn(args),
        Command::Ps(args) => crate::control::ps(args),
        Command::Stop(args) => crate::control::stop(args),
        Command::Kill(args) => crate::control::kill(args),
        Command::Stats(args) => crate::control::stats(args),
        Command::Links(args) => crate::control::links(args),
        Command::Send(args) => crate::send::run(args),
        Command::Demo(args) => crate::demo::run(args),
        Command::Proc { mode } => crate::procs::run_proc(mode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("5h").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_eviction_grace_is_a_duration_or_off() {
        assert_eq!(
            parse_eviction_grace("100ms"),
            Ok(Duration::from_millis(100))
        );
        assert_eq!(parse_eviction_grace("OFF"), Ok(Duration::MAX));
        assert!(parse_eviction_grace("never").is_err());
    }

    #[test]
    fn sizes_parse_with_binary_suffixes_and_reject_garbage() {
        assert_eq!(
            parse_recv_buffers("64x64K"),
            Ok(RecvBuffersArg(Some(hostmux_host::RecvBuffers::DEFAULT)))
        );
        assert_eq!(parse_recv_buffers("off"), Ok(RecvBuffersArg(None)));
        let small = parse_recv_buffers("2X4K").unwrap().0.unwrap();
        assert_eq!((small.count, small.len, small.held_per_conn), (2, 4096, 1));
        for bad in [
            "63x64K",
            "64x1K",
            "64x32M",
            "65536x64K",
            "64",
            "x64K",
            "many",
        ] {
            assert!(parse_recv_buffers(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("512mb"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1T").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn a_metrics_address_is_an_ip_and_port() {
        assert_eq!(
            parse_metrics_addr("127.0.0.1:9464"),
            Ok(([127, 0, 0, 1], 9464).into())
        );
        assert!(parse_metrics_addr("[::1]:0").is_ok());
        assert!(parse_metrics_addr("localhost:9464")
            .unwrap_err()
            .contains("IP:PORT"));
        assert!(parse_metrics_addr("9464").is_err());
    }

    #[test]
    fn restart_limits_parse_as_count_and_interval_or_none() {
        assert_eq!(
            parse_restart_limit("5/60s"),
            Ok(RestartLimit {
                burst: 5,
                interval: Duration::from_secs(60)
            })
        );
        assert_eq!(
            parse_restart_limit("3/500ms").map(|l| l.interval),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(parse_restart_limit("none").map(|l| l.burst), Ok(0));
        assert!(parse_restart_limit("5").unwrap_err().contains("N/INTERVAL"));
        assert!(parse_restart_limit("0/60s").is_err());
        assert!(parse_restart_limit("5/0s").is_err());
        assert!(parse_restart_limit("x/60s").is_err());
    }

    #[test]
    fn ring_memory_takes_the_two_policy_names() {
        assert_eq!(parse_ring_memory("populated"), Ok(RingMemory::Populated));
        assert_eq!(parse_ring_memory("on-demand"), Ok(RingMemory::OnDemand));
        assert!(parse_ring_memory("lazy").unwrap_err().contains("on-demand"));
    }

    #[test]
    fn serve_defaults_to_the_host_configs_ring_memory() {
        let cli = Cli::try_parse_from(["hostmux", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve: {cli:?}");
        };
        assert_eq!(
            args.ring_memory,
            hostmux_host::HostConfig::default().ring_memory
        );
        assert_eq!(args.ring_memory, RingMemory::OnDemand);
    }

    #[test]
    fn ring_sizes_must_be_powers_of_two_in_range() {
        assert_eq!(parse_ring_bytes("1M"), Ok(1 << 20));
        assert_eq!(parse_ring_bytes("65536"), Ok(65536));
        assert!(parse_ring_bytes("1000").is_err());
        assert!(parse_ring_bytes("32K").is_err());
        assert!(parse_ring_bytes("512M").is_err());
    }

    #[test]
    fn exit_code_comes_from_the_cli_error_in_the_chain() {
        let error =
            anyhow::Error::new(CliError::refused("no such proc")).context("stopping proc x");
        assert_eq!(exit_code(&error), ExitCode::from(exit::REFUSED));
        assert_eq!(
            exit_code(&anyhow::anyhow!("plain")),
            ExitCode::from(exit::FAILURE)
        );
    }

    #[test]
    fn the_error_line_names_each_cause_once() {
        let os = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let embedded = format!("frontend 'tcp:127.0.0.1:7000': {os}");
        #[derive(Debug)]
        struct Embeds(String, std::io::Error);
        impl std::fmt::Display for Embeds {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for Embeds {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.1)
            }
        }
        let error = anyhow::Error::new(Embeds(embedded.clone(), os)).context("serving");
        assert_eq!(message(&error), format!("serving: {embedded}"));
        let error = anyhow::anyhow!("the host closed the connection")
            .context("the host closed the connection")
            .context("stopping proc \"x\"");
        assert_eq!(
            message(&error),
            "stopping proc \"x\": the host closed the connection"
        );
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
