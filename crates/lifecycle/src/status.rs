//! Terminal and live statuses of a proc, and the bulk-terminate summary.

use std::fmt;
use std::sync::Arc;

use crate::output::OutputTail;

/// How a proc ended. Published exactly once per proc; every waiter sees the
/// same value.
///
/// Every variant carries `output`: the bounded tail of the proc's stdout and
/// stderr when either was [`OutputMode::Capture`](crate::OutputMode::Capture)
/// (`None` otherwise, and always `None` for in-process procs). It is taken
/// after the output pipes reached EOF (or a short drain limit passed, see
/// [`OutputTail::complete`]), so it holds everything the proc wrote before
/// it ended. It is an [`Arc`] because the status is cloned to every waiter
/// and a tail may be kilobytes; equality compares the tails' contents.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TerminalStatus {
    /// The proc returned normally with this exit code.
    Exited {
        /// The exit code (`0..=255` for OS processes).
        code: i32,
        /// The captured output tail, if output was captured.
        output: Option<Arc<OutputTail>>,
    },
    /// The proc was ended by a signal (for in-process procs: aborted at the
    /// deadline, reported as `SIGKILL`).
    Signaled {
        /// The signal number, e.g. `libc::SIGKILL`.
        signal: i32,
        /// Whether the kernel wrote a core dump.
        core_dumped: bool,
        /// The captured output tail, if output was captured.
        output: Option<Arc<OutputTail>>,
    },
    /// The proc did not get to run to an exit of its own: it never became
    /// ready in time, broke the readiness protocol, or (in-process) returned
    /// an error or panicked. `reason` says which.
    Failed {
        /// Human-readable cause, naming the limit where one applies.
        reason: String,
        /// The captured output tail, if output was captured (often the
        /// best clue to why a proc never became ready).
        output: Option<Arc<OutputTail>>,
    },
}

impl TerminalStatus {
    /// True for `Exited { code: 0, .. }`.
    pub fn success(&self) -> bool {
        matches!(self, TerminalStatus::Exited { code: 0, .. })
    }

    /// The captured output tail, whichever way the proc ended.
    pub fn output(&self) -> Option<&OutputTail> {
        match self {
            TerminalStatus::Exited { output, .. }
            | TerminalStatus::Signaled { output, .. }
            | TerminalStatus::Failed { output, .. } => output.as_deref(),
        }
    }

    /// The output tail, moved out.
    pub(crate) fn into_output(self) -> Option<Arc<OutputTail>> {
        match self {
            TerminalStatus::Exited { output, .. }
            | TerminalStatus::Signaled { output, .. }
            | TerminalStatus::Failed { output, .. } => output,
        }
    }

    /// The same status carrying `tail` as its output.
    pub(crate) fn with_output(mut self, tail: Option<Arc<OutputTail>>) -> Self {
        match &mut self {
            TerminalStatus::Exited { output, .. }
            | TerminalStatus::Signaled { output, .. }
            | TerminalStatus::Failed { output, .. } => *output = tail,
        }
        self
    }
}

impl fmt::Display for TerminalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TerminalStatus::Exited { code, .. } => write!(f, "exited with code {code}")?,
            TerminalStatus::Signaled {
                signal,
                core_dumped,
                ..
            } => {
                write!(f, "killed by signal {signal}")?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
            }
            TerminalStatus::Failed { reason, .. } => write!(f, "failed: {reason}")?,
        }
        // The bytes stay out of the line (they may hold newlines); only
        // their count is shown.
        if let Some(tail) = self.output() {
            write!(
                f,
                " ({} output bytes captured, {} dropped",
                tail.stdout.len() + tail.stderr.len(),
                tail.dropped_bytes
            )?;
            if !tail.complete {
                f.write_str(", incomplete")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A non-blocking snapshot of where a proc is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcStatus {
    /// Spawned, ready record not yet received.
    Starting,
    /// Reported ready (or readiness is not tracked for it) and running.
    Ready,
    /// A terminate or kill is in progress.
    Stopping,
    /// Reaped; this is the final status.
    Terminal(TerminalStatus),
}

/// Outcome counts of a bulk terminate. Invariant: `attempted == ok + failed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TerminateSummary {
    /// Procs for which termination was attempted.
    pub attempted: usize,
    /// Procs that reached a terminal status (including those that already
    /// had one).
    pub ok: usize,
    /// Procs whose termination could not be confirmed (signal delivery
    /// failed or the supervisor was lost).
    pub failed: usize,
}

impl fmt::Display for TerminateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempted={} ok={} failed={}",
            self.attempted, self.ok, self.failed
        )
    }
}
