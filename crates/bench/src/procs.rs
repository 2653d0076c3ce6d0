//! The procs the benchmark measures against, run by this very binary in the
//! hidden mode `hostmux-bench __proc echo|sink` (so the benchmark needs no
//! other binary for its procs; the loops are the same few lines as
//! `hostmux-proc`'s `hostmux-echo` and `hostmux-sink`, plus the sink's
//! count request).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use hostmux_host::ProcessProc;
use hostmux_proc::{BatchRecv, ProcError};
use hostmux_wire::FrameKind;

/// The port a benchmark client uses to ask a sink proc how many frames it has
/// counted; the sink answers with the count as 8 little-endian bytes. Every
/// frame sent before it has been received by then (a ring is FIFO).
pub(crate) const SINK_COUNT_PORT: u32 = 1;

/// The hidden proc modes of the `hostmux-bench` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProcMode {
    /// Replies to every data message with its payload; ignores other kinds.
    Echo,
    /// Counts and discards data; answers a data frame on [`SINK_COUNT_PORT`]
    /// with the count; ignores other kinds.
    Sink,
}

impl ProcMode {
    pub(crate) fn as_arg(self) -> &'static str {
        match self {
            ProcMode::Echo => "echo",
            ProcMode::Sink => "sink",
        }
    }
}

/// Runs this process as a proc in `mode` (it was spawned by a host).
pub(crate) fn run_proc(mode: ProcMode) -> anyhow::Result<ExitCode> {
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
    }
    Ok(ExitCode::SUCCESS)
}

/// This very binary in the hidden proc mode `mode`, as an OS-process proc.
pub(crate) fn this_binary(mode: ProcMode) -> anyhow::Result<ProcessProc> {
    let exe = std::env::current_exe().context("finding the hostmux-bench binary to re-execute")?;
    Ok(ProcessProc::new(exe).args(["__proc", mode.as_arg()]))
}
