//! Procs the `hostmux` and `hostmux-bench` binaries can run themselves.
//!
//! The demo and the benchmark need echo, sink and "ignores SIGTERM" procs on
//! a fresh clone, where `hostmux-proc`'s own binaries may not be built. So
//! the binary re-executes itself in a hidden mode, `hostmux __proc
//! echo|sink|ignore-term|crash` (or `hostmux-bench __proc echo|sink`), whose
//! loops are written
//! here on `hostmux-proc`'s public API (the same few lines as its
//! `hostmux-echo`, `hostmux-sink` and `hostmux-proc-fixture ignore-term`
//! binaries). `crash` is a proc that fails on its own, for restart
//! policies (`tests/restart.rs`).

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hostmux_host::ProcessProc;
use hostmux_proc::{BatchRecv, BootOptions, ProcError, Recv};
use hostmux_wire::FrameKind;

/// The port a benchmark client uses to ask a sink proc how many frames it has
/// counted; the sink answers with the count as 8 little-endian bytes. Every
/// frame sent before it has been received by then (a ring is FIFO).
pub const SINK_COUNT_PORT: u32 = 1;

/// The hidden proc modes of the `hostmux` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProcMode {
    /// Replies to every data message with its payload; ignores other kinds.
    Echo,
    /// Counts and discards data; answers a data frame on [`SINK_COUNT_PORT`]
    /// with the count; ignores other kinds.
    Sink,
    /// Ignores SIGTERM and the agent's stop: only SIGKILL ends it.
    IgnoreTerm,
    /// Boots, answers its agent until nothing arrived for
    /// [`CRASH_AFTER_QUIET`], appends its pid to the file named by
    /// [`CRASH_PID_FILE_ENV`] (if set) and exits with [`CRASH_EXIT_CODE`];
    /// a stop before that ends it with 0.
    Crash,
}

/// How long a `crash` proc stays up once nothing arrives.
pub const CRASH_AFTER_QUIET: Duration = Duration::from_millis(250);
/// The exit code of a `crash` proc.
pub const CRASH_EXIT_CODE: u8 = 3;
/// The file a `crash` proc appends its pid to, one a line.
pub const CRASH_PID_FILE_ENV: &str = "CRASH_PID_FILE";

impl ProcMode {
    /// The mode's word after `__proc` on the command line.
    pub fn as_arg(self) -> &'static str {
        match self {
            ProcMode::Echo => "echo",
            ProcMode::Sink => "sink",
            ProcMode::IgnoreTerm => "ignore-term",
            ProcMode::Crash => "crash",
        }
    }
}

/// Runs this process as a proc in `mode` (it was spawned by a host).
pub fn run_proc(mode: ProcMode) -> anyhow::Result<ExitCode> {
    match mode {
        ProcMode::Echo => {
            let mut proc = hostmux_proc::boot().context("booting the echo proc")?;
            proc.serve(|mut message| {
                // Only data is answered (a notice or a control response
                // answered could loop).
                if message.kind() != FrameKind::Data {
                    return Ok(());
                }
                let payload = message.payload();
                match message.reply(payload) {
                    Err(ProcError::NoReplyAddress { .. }) => Ok(()),
                    other => other,
                }
            })?;
        }
        ProcMode::Sink => {
            let mut proc = hostmux_proc::boot().context("booting the sink proc")?;
            let mut count: u64 = 0;
            loop {
                let step = proc.recv_batch(256, Duration::from_secs(3600), |mut message| {
                    if message.kind() != FrameKind::Data {
                        // Never answered, never counted as traffic.
                    } else if message.port() == SINK_COUNT_PORT {
                        let _ = message.reply(&count.to_le_bytes());
                    } else {
                        count += 1;
                    }
                })?;
                match step {
                    BatchRecv::Delivered(_) | BatchRecv::TimedOut => {}
                    BatchRecv::Stopped | BatchRecv::Closed => break,
                }
            }
        }
        ProcMode::IgnoreTerm => {
            // A do-nothing handler, installed before readiness is reported:
            // from then on SIGTERM cannot end us, only SIGKILL.
            signal_hook::flag::register(
                signal_hook::consts::SIGTERM,
                Arc::new(AtomicBool::new(false)),
            )
            .context("installing a SIGTERM handler")?;
            let mut proc = hostmux_proc::boot_with(BootOptions {
                handle_signals: false,
                ..BootOptions::default()
            })
            .context("booting the ignore-term proc")?;
            // Receive (so the agent answers the host's readiness ping) and
            // drop messages; when asked to stop, stop receiving and wait
            // for SIGKILL.
            loop {
                match proc.recv_timeout(Duration::from_secs(3600))? {
                    Recv::Stopped | Recv::Closed => loop {
                        std::thread::park();
                    },
                    _ => {}
                }
            }
        }
        ProcMode::Crash => {
            let mut proc = hostmux_proc::boot().context("booting the crash proc")?;
            loop {
                match proc.recv_timeout(CRASH_AFTER_QUIET)? {
                    Recv::TimedOut => break,
                    Recv::Stopped | Recv::Closed => return Ok(ExitCode::SUCCESS),
                    Recv::Message(_) => {}
                }
            }
            if let Some(path) = std::env::var_os(CRASH_PID_FILE_ENV) {
                use std::io::Write as _;
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("opening {}", path.to_string_lossy()))?;
                writeln!(file, "{}", std::process::id()).context("writing the pid")?;
            }
            return Ok(ExitCode::from(CRASH_EXIT_CODE));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// This very binary in the hidden proc mode `mode`, as an OS-process proc.
pub fn this_binary(mode: ProcMode) -> anyhow::Result<ProcessProc> {
    let exe = std::env::current_exe().context("finding this binary to re-execute")?;
    Ok(ProcessProc::new(exe).args(["__proc", mode.as_arg()]))
}
