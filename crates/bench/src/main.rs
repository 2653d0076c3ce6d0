//! `hostmux-bench`: the end-to-end benchmark, a binary of its own so that
//! the shipped `hostmux` links none of its harness (serde, bincode, the
//! conventional baseline, the benchmark certificates).
//!
//! For every payload size and every system it starts a **worker process**
//! (`hostmux-bench __bench serve …`) that sets up the receiving side, and the
//! worker starts a **load-generator process** (`hostmux-bench __bench load …`), so
//! the client, the host and the proc are three processes, as in production.
//! Systems, side by side in one run:
//!
//! 1. `tcp`: the physical limit, the same frame bytes over loopback TCP to a
//!    process that only reads and discards (or echoes, for round trips);
//! 2. `uring`: hostmux with the io_uring frontend, a sink or echo proc;
//! 3. `epoll`: hostmux with the epoll frontend;
//! 4. `conventional`: a tokio host that deserialises each serde + bincode
//!    envelope, forwards it to the child over a Unix socket, where the child
//!    deserialises it again (see [`conventional`]);
//! 5. `tcp-busy-poll`: round trips only, loopback TCP where both ends poll
//!    non-blocking sockets instead of sleeping in `read` (yielding the CPU
//!    on each empty poll, so that two pollers on a busy 2-core machine do
//!    not take turns by whole time slices);
//! 6. `same-host`: two `hostmux serve` processes that are each other's
//!    peers, the client and the proc on host A (see [`hosts`]); these run
//!    the real `hostmux` binary (`--hostmux PATH`, else `$HOSTMUX_BIN`,
//!    else the `hostmux` beside this binary);
//! 7. `cross-host`: the same two hosts, the client on A and the proc on B,
//!    so every frame crosses the link between them.
//!
//! The default run is 1-5 and 8: the baselines of issue 7's and issue 15's
//! targets (issue 15 compares round trips with (5)).
//! `--cross-host` runs 1, 5, 6, 7 and 9 (a bare TCP relay: two hops, the
//! physical analog of 7 on one machine): the baselines issue 13's targets
//! compare cross-host routing with, measured in the same run.
//! 8. `tls`: (2) with TLS configured (the fixed benchmark certificates in
//!    `crates/bench/src/tls/`, [`bench_tls`]) and the client speaking TLS to it; the
//!    table reports it against (2), a plain TCP client of the same setup.
//! 9. `tcp-relay`: (1) through a relay thread that reads and writes on to
//!    the discarding receiver: two TCP hops with nothing else, what (7) is
//!    on one machine without the hosts' work.
//! 10. `tcp-spread`: one-way only, (1) with a receiver that reads each
//!    stretch of the stream into the next part of a buffer the size of the
//!    rings at that payload ([`bench_ring_bytes`]: 1 MiB up to 64 KiB
//!    payloads, 16 MiB at 1 MiB; pages touched first), wrapping at its
//!    end: the copy destination a ring writer has, where (1) reuses one
//!    buffer that stays in cache. The issue 15 1 MiB bar is also reported
//!    against it.
//! 11. `uring-direct`: hostmux with the io_uring frontend on the io-uring
//!    crate, the default frontend; issue 15's bars are computed on it.
//! 12. `tcp-relay-busy-poll`: round trips only, (9) with the relay and the
//!    echoing end busy-polling (the relay on one thread for both
//!    directions): the same three parties as a hostmux round trip over TCP
//!    alone, reported beside issue 15's round-trip bar.
//!
//! The load client blocks in `read` and `write`, for every system but
//! (5); with `--busy-poll-client` every client spins instead.
//!
//! One-way throughput counts frames the receiver confirmed (the sink
//! answers a count request after the stream; a ring and a TCP stream are
//! FIFO, so every earlier frame was received). CPU per frame sums the
//! user+system time of the host, the proc and the load generator over the
//! measured window, from `/proc/PID/stat` (the counters `getrusage` reports,
//! 10 ms resolution). Round trips are one frame at a time, every one timed
//! into an HDR histogram.
//!
//! The procs measured are this binary again, in the hidden mode
//! `hostmux-bench __proc echo|sink` ([`procs`]).
//!
//! `--idle-procs 0,100,400` repeats the in-process hostmux systems (2, 3,
//! 8) with that many idle sink procs spawned beside the measured one and
//! prints their throughput side by side. `--proc-cost 0,100,400,1000`
//! measures instead what idle procs cost the host and the machine (memory
//! and fds) under each ring memory policy ([`proc_cost`]). The run's
//! output starts with the machine's load average, which the JSON keeps.
#![forbid(unsafe_code)]

mod client;
mod conventional;
mod hosts;
mod load;
mod proc_cost;
mod report;
mod scaling;
mod worker;

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use hostmux::procs::ProcMode;
use hostmux::{format, parse_duration, procs};
use hostmux_host::RingMemory;

fn main() -> ExitCode {
    use clap::Parser as _;
    let cli = Cli::parse();
    let outcome = match cli.internal {
        Some(Internal::Bench(args)) => run_worker(args),
        Some(Internal::Proc { mode }) => procs::run_proc(mode),
        None => run(cli.bench),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hostmux-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// hostmux-bench: the end-to-end benchmark of hostmux against loopback TCP
/// and a conventional serde+bincode design (and, with `--cross-host`,
/// routing between two `hostmux serve` peers). Prints a table and writes
/// `RESULTS/bench.json` and `RESULTS/bench.svg`; see `docs/benchmarks.md`.
///
/// Exit codes: 0 success, 1 a measurement failed, 2 usage error.
#[derive(Debug, clap::Parser)]
#[command(
    name = "hostmux-bench",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
    #[command(subcommand)]
    internal: Option<Internal>,
}

/// The hidden modes this binary re-executes itself in.
#[derive(Debug, clap::Subcommand)]
enum Internal {
    /// Internal: benchmark worker processes.
    #[command(name = "__bench", hide = true)]
    Bench(WorkerArgs),
    /// Internal: run this binary as a benchmark proc.
    #[command(name = "__proc", hide = true)]
    Proc {
        #[arg(value_enum)]
        mode: ProcMode,
    },
}

/// Parses a payload size in bytes, from 1 to 8 MiB.
fn parse_payload_size(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(size) if (1..=MAX_PAYLOAD_BYTES).contains(&size) => Ok(size),
        _ => Err(format!(
            "{text:?} is not a payload size; sizes are bytes from 1 to {MAX_PAYLOAD_BYTES}"
        )),
    }
}

/// Parses a ring memory policy (`populated`, `on-demand`).
fn parse_ring_memory(text: &str) -> Result<RingMemory, String> {
    text.parse::<RingMemory>().map_err(|e| e.to_string())
}

/// The largest payload a measurement may use.
const MAX_PAYLOAD_BYTES: usize = 8 << 20;

/// The systems compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum System {
    /// Loopback TCP to a process that reads and discards: the physical limit.
    Tcp,
    /// hostmux, io_uring frontend.
    Uring,
    /// hostmux, epoll frontend.
    Epoll,
    /// hostmux, io_uring frontend on the io-uring crate (the host drives
    /// its own ring: batched submission, fixed files).
    UringDirect,
    /// tokio host, serde + bincode envelopes, Unix socket to the child.
    Conventional,
    /// Loopback TCP round trips with both ends busy-polling (no one-way).
    TcpBusyPoll,
    /// Two `hostmux serve` peers; client and proc on host A.
    SameHost,
    /// Two `hostmux serve` peers; client on host A, proc on host B.
    CrossHost,
    /// hostmux, io_uring frontend, with TLS configured and the client
    /// speaking TLS to it (compare with `uring`: a plain TCP client).
    Tls,
    /// Loopback TCP through a relay that reads and writes on to a process
    /// that reads and discards: two TCP hops, the physical analog of
    /// cross-host (7) on one machine.
    TcpRelay,
    /// Loopback TCP to a process that reads each stretch of the stream
    /// into the next part of a buffer as large as the benchmark's rings
    /// (1 MiB, 16 MiB at 1 MiB frames; pages touched first), wrapping at
    /// its end, instead of into one reused buffer: the destination a ring
    /// writer copies to, for the zero-copy comparison at large frames
    /// (one-way only).
    TcpSpread,
    /// Loopback TCP round trips through a relay to an echo server, the
    /// relay and the server busy-polling, the client as hostmux's (blocking
    /// unless `--busy-poll-client`): the same three parties as a hostmux
    /// round trip (client, host, proc), with a second TCP hop where hostmux
    /// has its rings (no one-way).
    TcpRelayBusyPoll,
}

impl System {
    /// Every system, in table order.
    pub(crate) const ALL: [System; 12] = [
        System::Tcp,
        System::Uring,
        System::Epoll,
        System::UringDirect,
        System::Conventional,
        System::TcpBusyPoll,
        System::SameHost,
        System::CrossHost,
        System::Tls,
        System::TcpRelay,
        System::TcpSpread,
        System::TcpRelayBusyPoll,
    ];

    /// What `--cross-host` runs: cross-host and the baselines of its targets.
    pub(crate) const CROSS_HOST: [System; 5] = [
        System::Tcp,
        System::TcpBusyPoll,
        System::SameHost,
        System::CrossHost,
        System::TcpRelay,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            System::Tcp => "(1) loopback TCP, discard",
            System::Uring => "(2) hostmux io_uring",
            System::Epoll => "(3) hostmux epoll",
            System::UringDirect => "(11) hostmux io_uring, io-uring crate",
            System::Conventional => "(4) tokio + bincode + UDS",
            System::TcpBusyPoll => "(5) loopback TCP, busy-poll",
            System::SameHost => "(6) hostmux serve, same host",
            System::CrossHost => "(7) hostmux serve, cross-host",
            System::Tls => "(8) hostmux io_uring, TLS client",
            System::TcpRelay => "(9) loopback TCP via a relay",
            System::TcpSpread => "(10) loopback TCP into a ring-sized buffer",
            System::TcpRelayBusyPoll => "(12) loopback TCP via a busy-poll relay",
        }
    }

    /// Whether this system runs two `hostmux serve` processes (it needs the
    /// `hostmux` binary).
    pub(crate) fn runs_hostmux_serve(self) -> bool {
        matches!(self, System::SameHost | System::CrossHost)
    }

    /// Whether this system is a hostmux host inside the worker process,
    /// the systems `--idle-procs` adds idle procs to.
    pub(crate) fn is_in_process_host(self) -> bool {
        matches!(
            self,
            System::Uring | System::Epoll | System::UringDirect | System::Tls
        )
    }

    /// The modes measured for this system (busy-polling pays off only for
    /// round trips; one-way throughput is (1)'s).
    pub(crate) fn modes(self) -> &'static [Mode] {
        match self {
            System::TcpBusyPoll | System::TcpRelayBusyPoll => &[Mode::Rr],
            System::TcpSpread => &[Mode::Oneway],
            _ => &[Mode::Oneway, Mode::Rr],
        }
    }
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// Frames one way, as fast as the receiver takes them.
    Oneway,
    /// One request, one reply, repeated.
    Rr,
}

/// The benchmark's TLS settings: a CA and a host certificate for
/// 127.0.0.1, made once with openssl and kept in the source (benchmark
/// use only; never use these files to secure anything).
pub(crate) fn bench_tls() -> anyhow::Result<hostmux_host::TlsConfig> {
    Ok(hostmux_host::TlsConfig::from_pem(
        include_bytes!("tls/host.pem"),
        include_bytes!("tls/host.key"),
        include_bytes!("tls/ca.pem"),
    )?)
}

/// A host of OS procs on a free loopback TCP port, as each of this
/// binary's in-process measurements runs one.
pub(crate) async fn start_host(
    config: hostmux_host::HostConfig,
) -> anyhow::Result<(
    hostmux_host::Host<hostmux_lifecycle::ProcessProcManager>,
    hostmux_host::ServeHandle,
)> {
    Ok(hostmux_host::Host::serve_processes(
        hostmux_lifecycle::ProcessProcManager::builder(),
        hostmux_wire::Addr::tcp("127.0.0.1", 0)?,
        config,
    )
    .await?)
}

/// Flags of `hostmux-bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// How long each one-way throughput measurement runs.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// How long each round-trip measurement runs.
    #[arg(long, default_value = "700ms", value_parser = parse_duration)]
    pub(crate) rr_duration: Duration,
    /// Rounds over every measurement (interleaved, so a noisy moment hits
    /// every system alike); each figure reported is the median of its rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(crate) repeat: u32,
    /// Payload sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,4096,1048576", value_parser = parse_payload_size)]
    pub(crate) sizes: Vec<usize>,
    /// Systems to compare, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tcp,uring,epoll,conventional,tcp-busy-poll,tls"
    )]
    pub(crate) systems: Vec<System>,
    /// Idle procs spawned beside the measured one, comma-separated: each
    /// count is a run of the in-process hostmux systems (2, 3, 8), side by
    /// side; the baselines run once. Targets are checked at the smallest.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub(crate) idle_procs: Vec<usize>,
    /// Ring memory of the hostmux systems' procs: `populated` (the steady
    /// state of rings that have wrapped once) or `on-demand` (a run this
    /// short then pays the first-touch page faults of its rings).
    #[arg(long, default_value = "populated", value_parser = parse_ring_memory)]
    pub(crate) ring_memory: RingMemory,
    /// Instead of throughput: what idle procs cost (host and machine
    /// memory, fds) at each of these counts, under each ring memory policy.
    #[arg(long, value_delimiter = ',', conflicts_with = "cross_host")]
    pub(crate) proc_cost: Option<Vec<usize>>,
    /// Every load client busy-polls its socket (non-blocking, spinning)
    /// instead of blocking in `read` and `write`: hostmux's and those of
    /// the plain TCP systems (1), (9), (10) and (12) alike, so one-way
    /// figures compare the same client; hostmux's round trip is then the
    /// one comparable with `tcp-busy-poll`, where both ends spin. Costs a
    /// core.
    #[arg(long)]
    pub(crate) busy_poll_client: bool,
    /// The io-uring-direct host (11) reads one receive at a time, without
    /// multishot receive (`serve --recv-buffers off`), to compare.
    #[arg(long)]
    pub(crate) no_multishot: bool,
    /// Instead of the systems table: issue 15's I/O-thread scaling. One
    /// host with 1, then 2 I/O threads (alternating every round), each of
    /// `--clients` load generators pipelining one-way frames of the first
    /// `--sizes` entry to a sink proc of its own; frames/s summed, host CPU
    /// per frame, and the 2-thread / 1-thread ratio, for both frontends.
    #[arg(long, conflicts_with_all = ["cross_host", "proc_cost"])]
    pub(crate) scaling: bool,
    /// Load generators in `--scaling` (each its own client and sink).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub(crate) clients: u64,
    /// Cross-host mode: two `hostmux serve` peers on loopback, a client of
    /// host A sending to a proc on host B, beside the same-host, loopback
    /// TCP and busy-poll TCP baselines; reports issue 13's targets. Same as
    /// `--systems tcp,tcp-busy-poll,same-host,cross-host,tcp-relay`.
    #[arg(long, conflicts_with = "systems")]
    pub(crate) cross_host: bool,
    /// Folder for the JSON results and the SVG chart.
    #[arg(long, default_value = "results")]
    pub(crate) results: PathBuf,
    /// The `hostmux` binary the same-host and cross-host systems run as
    /// `hostmux serve` (default: the `hostmux` beside this binary).
    #[arg(long, env = "HOSTMUX_BIN")]
    pub(crate) hostmux: Option<PathBuf>,
}

/// Flags of the hidden worker processes.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    #[command(subcommand)]
    role: WorkerRole,
}

#[derive(Debug, clap::Subcommand)]
enum WorkerRole {
    /// Set up the receiving side of one measurement and run the load generator.
    Serve {
        #[command(flatten)]
        spec: RunSpec,
        /// The `hostmux` binary (same-host and cross-host systems only).
        #[arg(long)]
        hostmux: Option<PathBuf>,
    },
    /// Generate load against `--target`; prints `START`, then the result as JSON.
    Load {
        #[command(flatten)]
        spec: RunSpec,
        /// Where to send.
        #[arg(long)]
        target: String,
        /// The host address of the destination proc when it is not the
        /// target's (cross-host).
        #[arg(long, default_value = "")]
        dest_addr: String,
    },
    /// The child of the conventional host.
    ConvChild {
        /// The host's Unix socket.
        #[arg(long)]
        socket: PathBuf,
        /// Count (`oneway`) or echo (`rr`).
        #[arg(long, value_enum)]
        mode: Mode,
        /// The child's name.
        #[arg(long)]
        name: String,
    },
}

/// One measurement.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RunSpec {
    #[arg(long, value_enum)]
    pub(crate) system: System,
    #[arg(long, value_enum)]
    pub(crate) mode: Mode,
    #[arg(long)]
    pub(crate) size: usize,
    #[arg(long, value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Idle procs spawned beside the measured one (in-process hosts only).
    #[arg(long, default_value_t = 0)]
    pub(crate) idle_procs: usize,
    #[arg(long, default_value = "populated", value_parser = parse_ring_memory)]
    pub(crate) ring_memory: RingMemory,
    /// Which of several load generators this is (`--scaling`): it says
    /// hello as `load-N` and sends to the proc `sink-N` (or `echo-N`).
    #[arg(long)]
    pub(crate) client_index: Option<usize>,
    /// The hostmux client busy-polls its socket (round trips).
    #[arg(long)]
    pub(crate) busy_poll_client: bool,
    /// The in-process host has no multishot receive buffers.
    #[arg(long)]
    pub(crate) no_multishot: bool,
}

impl RunSpec {
    fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--system".into(),
            value_name(self.system),
            "--mode".into(),
            value_name(self.mode),
            "--size".into(),
            self.size.to_string(),
            "--duration".into(),
            format!("{}ms", self.duration.as_millis()),
            "--idle-procs".into(),
            self.idle_procs.to_string(),
            "--ring-memory".into(),
            self.ring_memory.name().to_owned(),
        ];
        if let Some(index) = self.client_index {
            args.extend(["--client-index".into(), index.to_string()]);
        }
        if self.busy_poll_client {
            args.push("--busy-poll-client".into());
        }
        if self.no_multishot {
            args.push("--no-multishot".into());
        }
        args
    }
}

/// A flag value as clap spells it (`tcp-busy-poll`).
fn value_name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .expect("no value is skipped")
        .get_name()
        .to_owned()
}

/// The outcome of one measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Measurement {
    pub(crate) system: System,
    pub(crate) mode: Mode,
    pub(crate) size: usize,
    /// Idle procs beside the measured one.
    #[serde(default)]
    pub(crate) idle_procs: usize,
    /// Frames the receiver confirmed (one-way) or round trips completed.
    pub(crate) frames: u64,
    /// Frames the host returned as undeliverable (hostmux only).
    pub(crate) returned: u64,
    pub(crate) secs: f64,
    pub(crate) frames_per_sec: f64,
    /// Payload bytes per second, in 10^9.
    pub(crate) gb_per_sec: f64,
    /// User+system CPU of every process involved, per frame.
    pub(crate) cpu_ns_per_frame: f64,
    /// The same split: load generator, host (or TCP server), separate
    /// receiver (proc or conventional child; 0 for TCP, whose receiver is
    /// the server thread).
    #[serde(default)]
    pub(crate) cpu_split_ns: [f64; 3],
    pub(crate) p50_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) p999_ns: u64,
    /// Rounds this figure is the median of.
    #[serde(default = "one")]
    pub(crate) rounds: u32,
}

fn one() -> u32 {
    1
}

/// What the load generator reports (CPU of its own process only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoadResult {
    pub(crate) frames: u64,
    pub(crate) returned: u64,
    pub(crate) secs: f64,
    pub(crate) cpu_ticks: u64,
    pub(crate) p50_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) p999_ns: u64,
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let load = report::Load::now();
    println!("{}", load.line());
    if let Some(counts) = &args.proc_cost {
        return proc_cost::run(counts, &args.results);
    }
    if args.scaling {
        return scaling::run(&args);
    }
    let exe = std::env::current_exe().context("finding the hostmux-bench binary")?;
    let systems: &[System] = if args.cross_host {
        &System::CROSS_HOST
    } else {
        &args.systems
    };
    let hostmux = if systems.iter().any(|s| s.runs_hostmux_serve()) {
        Some(hostmux_binary(args.hostmux, &exe)?)
    } else {
        None
    };
    let mut results = Vec::new();
    let mut idle_counts = args.idle_procs.clone();
    idle_counts.sort_unstable();
    idle_counts.dedup();
    // The baselines run at the first count only.
    let runs = |idle_index: usize, system: System| idle_index == 0 || system.is_in_process_host();
    let per_round: usize = (0..idle_counts.len())
        .flat_map(|i| systems.iter().filter(move |&&s| runs(i, s)))
        .map(|s| s.modes().len())
        .sum();
    let total = args.sizes.len() * per_round * args.repeat as usize;
    let mut done = 0;
    for _round in 0..args.repeat {
        for &size in &args.sizes {
            for (idle_index, &idle_procs) in idle_counts.iter().enumerate() {
                for &system in systems.iter().filter(|&&s| runs(idle_index, s)) {
                    let idle_procs = if system.is_in_process_host() {
                        idle_procs
                    } else {
                        0
                    };
                    for &mode in system.modes() {
                        let duration = match mode {
                            Mode::Oneway => args.duration,
                            Mode::Rr => args.rr_duration,
                        };
                        done += 1;
                        let idle = if idle_procs > 0 {
                            format!(" +{idle_procs} idle")
                        } else {
                            String::new()
                        };
                        let step = format!(
                            "[{done}/{total}] {}{idle} {size} B {mode:?}",
                            system.label()
                        );
                        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                            eprint!("\r{step:<60}");
                        } else {
                            eprintln!("{step}");
                        }
                        let spec = RunSpec {
                            system,
                            mode,
                            size,
                            duration,
                            idle_procs,
                            ring_memory: args.ring_memory,
                            client_index: None,
                            busy_poll_client: args.busy_poll_client,
                            no_multishot: args.no_multishot,
                        };
                        let mut worker = Command::new(&exe);
                        worker.arg("__bench").arg("serve").args(spec.to_args());
                        if let Some(hostmux) = &hostmux {
                            worker.arg("--hostmux").arg(hostmux);
                        }
                        let output = worker
                            .stdin(Stdio::null())
                            .stderr(Stdio::inherit())
                            .output()
                            .context("running a benchmark worker")?;
                        if !output.status.success() {
                            bail!(
                        "benchmark worker {} {size} B {mode:?} failed ({}); rerun with HOSTMUX_LOG=debug to see why",
                        system.label(),
                        output.status
                    );
                        }
                        let line = String::from_utf8_lossy(&output.stdout);
                        let measurement: Measurement = serde_json::from_str(line.trim())
                            .with_context(|| format!("worker printed no result: {line:?}"))?;
                        results.push(measurement);
                    }
                }
            }
        }
    }
    eprintln!();
    let results = medians(&results);
    print!("{}", report::table(&results));
    let run = report::RunInfo {
        load_at_start: load,
        load_at_end: report::Load::now(),
        ring_memory: args.ring_memory.name(),
    };
    let written = report::write(&args.results, &results, &run)?;
    println!("results written to {}", written.display());
    Ok(ExitCode::SUCCESS)
}

/// One measurement per (system, mode, size): each field the median of the
/// rounds (fields separately, so a figure is always a measured value or the
/// midpoint of two).
fn medians(rounds: &[Measurement]) -> Vec<Measurement> {
    let mut out: Vec<Measurement> = Vec::new();
    for m in rounds {
        let alike = |o: &Measurement| {
            o.system == m.system
                && o.mode == m.mode
                && o.size == m.size
                && o.idle_procs == m.idle_procs
        };
        if out.iter().any(alike) {
            continue;
        }
        let same: Vec<&Measurement> = rounds.iter().filter(|o| alike(o)).collect();
        let median = |f: fn(&Measurement) -> f64| {
            let mut v: Vec<f64> = same.iter().map(|m| f(m)).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        };
        out.push(Measurement {
            frames: median(|m| m.frames as f64) as u64,
            returned: same.iter().map(|m| m.returned).sum(),
            secs: median(|m| m.secs),
            frames_per_sec: median(|m| m.frames_per_sec),
            gb_per_sec: median(|m| m.gb_per_sec),
            cpu_ns_per_frame: median(|m| m.cpu_ns_per_frame),
            cpu_split_ns: [
                median(|m| m.cpu_split_ns[0]),
                median(|m| m.cpu_split_ns[1]),
                median(|m| m.cpu_split_ns[2]),
            ],
            p50_ns: median(|m| m.p50_ns as f64) as u64,
            p99_ns: median(|m| m.p99_ns as f64) as u64,
            p999_ns: median(|m| m.p999_ns as f64) as u64,
            rounds: same.len() as u32,
            ..m.clone()
        });
    }
    out
}

pub(crate) fn run_worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    match args.role {
        WorkerRole::Serve { spec, hostmux } => worker::serve(spec, hostmux),
        WorkerRole::Load {
            spec,
            target,
            dest_addr,
        } => load::run(&spec, &target, &dest_addr),
        WorkerRole::ConvChild { socket, mode, name } => conventional::child(&socket, mode, &name),
    }
}

/// The `hostmux` binary to run as `hostmux serve`: `flag` (`--hostmux` or
/// `$HOSTMUX_BIN`), else the `hostmux` in the folder of `bench_exe` (cargo
/// builds both into the same `target/PROFILE`).
fn hostmux_binary(flag: Option<PathBuf>, bench_exe: &std::path::Path) -> anyhow::Result<PathBuf> {
    let path = match flag {
        Some(path) => path,
        None => bench_exe
            .parent()
            .context("the hostmux-bench binary has no folder")?
            .join("hostmux"),
    };
    if !path.is_file() {
        bail!(
            "no hostmux binary at {}: build it (`cargo build --release -p hostmux`) or pass --hostmux PATH",
            path.display()
        );
    }
    Ok(path)
}

/// User+system CPU ticks (1/100 s, Linux's fixed USER_HZ) of process `pid`
/// ("self" for this one), from `/proc/PID/stat`.
pub(crate) fn cpu_ticks(pid: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after_comm = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc/PID/stat format")?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are 11 and 12 after the comm.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Bytes in each ring of a benchmark proc at `payload` bytes a frame: the
/// host's default (`serve --inbound-ring-bytes`, 1 MiB) while sixteen
/// payloads fit in it, else room for sixteen as a power of two (16 MiB at
/// 1 MiB frames, the size every run used before session 13). A ring is a
/// cache footprint too: the host writes, and the proc reads, each byte of
/// it in turn, so at 64 B a 16 MiB ring costs both ends cache misses that
/// a 1 MiB one does not (docs/benchmarks.md, "Session 13", "Rings sized
/// by payload").
pub(crate) fn bench_ring_bytes(payload: usize) -> usize {
    let default = hostmux_host::HostConfig::default().inbound_ring_bytes;
    payload
        .saturating_mul(16)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
        .max(default)
}

/// Nanoseconds per CPU tick.
pub(crate) const NS_PER_TICK: f64 = 1e7;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_are_the_hosts_default_until_sixteen_payloads_need_more() {
        let default = hostmux_host::HostConfig::default().inbound_ring_bytes;
        assert_eq!(bench_ring_bytes(64), default);
        assert_eq!(bench_ring_bytes(64 << 10), default.max(1 << 20));
        assert_eq!(bench_ring_bytes(1 << 20), 16 << 20);
        assert_eq!(bench_ring_bytes(100_000), 2 << 20);
        assert!(bench_ring_bytes(usize::MAX) >= default);
    }

    #[test]
    fn cpu_ticks_of_this_process_grow_with_work() {
        let before = cpu_ticks("self").unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_ticks("self").unwrap() > before);
    }

    #[test]
    fn medians_are_taken_per_field_over_the_rounds() {
        let round = |fps: f64, p50: u64| Measurement {
            system: System::Uring,
            mode: Mode::Oneway,
            size: 64,
            idle_procs: 0,
            frames: 10,
            returned: 0,
            secs: 1.0,
            frames_per_sec: fps,
            gb_per_sec: 0.0,
            cpu_ns_per_frame: 1.0,
            cpu_split_ns: [0.0; 3],
            p50_ns: p50,
            p99_ns: 0,
            p999_ns: 0,
            rounds: 1,
        };
        let merged = medians(&[round(1.0, 30), round(9.0, 10), round(5.0, 20)]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].frames_per_sec, 5.0);
        assert_eq!(merged[0].p50_ns, 20);
        assert_eq!(merged[0].rounds, 3);
    }

    #[test]
    fn run_spec_arguments_parse_back_for_every_system() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            spec: RunSpec,
        }
        for system in System::ALL {
            for &mode in system.modes() {
                let spec = RunSpec {
                    system,
                    mode,
                    size: 4096,
                    duration: Duration::from_millis(1500),
                    idle_procs: 100,
                    ring_memory: RingMemory::OnDemand,
                    client_index: Some(1),
                    busy_poll_client: true,
                    no_multishot: true,
                };
                let args = std::iter::once("x".to_owned()).chain(spec.to_args());
                let parsed = Wrapper::try_parse_from(args).unwrap().spec;
                assert_eq!(parsed.system, spec.system);
                assert_eq!(parsed.mode, spec.mode);
                assert_eq!(parsed.size, 4096);
                assert_eq!(parsed.duration, spec.duration);
                assert_eq!(parsed.idle_procs, 100);
                assert_eq!(parsed.ring_memory, RingMemory::OnDemand);
                assert_eq!(parsed.client_index, Some(1));
                assert!(parsed.busy_poll_client);
                assert!(parsed.no_multishot);
            }
        }
    }
}
