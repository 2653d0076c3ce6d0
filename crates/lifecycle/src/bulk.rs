//! Bulk terminate: stop every live proc of a manager, in one of two
//! [`BulkTerminateMode`]s, and count the outcomes.
//!
//! Both modes give every proc the same full escalation a single
//! [`ProcHandle::terminate`](crate::ProcHandle::terminate) gives it: the
//! polite-stop hook, SIGTERM, and SIGKILL once its grace ran out. They
//! differ only in what they bound:
//!
//! - [`BulkTerminateMode::PerProcGrace`] (hyperactor's meaning, the
//!   default of [`BulkTerminate::terminate_all`](crate::BulkTerminate::terminate_all))
//!   bounds how many procs are being terminated at once; each gets its own
//!   `grace` from the moment its termination starts, so the whole takes up
//!   to `ceil(n / max_in_flight) × grace`.
//! - [`BulkTerminateMode::OverallDeadline`] bounds the total time: every
//!   proc starts terminating at once and all share the deadline
//!   `now + grace`. A host's own shutdown uses it.
//!
//! The order of per-proc-grace terminations is decided by
//! [`TerminationWindow`], a sans-IO scheduler with no clock and no tasks;
//! [`terminate_all`] is the thin driver that executes it over any
//! manager's handles, which is why [`BulkTerminate`](crate::BulkTerminate)
//! comes with every [`ProcManager`](crate::ProcManager) and no manager
//! implements it by hand.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::error::TerminateError;
use crate::manager::ProcHandle;
use crate::status::{TerminalStatus, TerminateSummary};

/// How a bulk terminate paces its procs. Either way every proc gets the
/// full escalation (polite stop, SIGTERM, SIGKILL after the grace); no proc
/// is skipped or killed without its polite stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkTerminateMode {
    /// Hyperactor's bulk terminate: at most `max_in_flight` procs are being
    /// terminated at a time (0 counts as 1), the next starts as soon as one
    /// of them is terminal, and each proc's SIGKILL comes `grace` after its
    /// own termination started. Procs start in name order. Total time: up
    /// to `ceil(n / max_in_flight) × grace` plus small constants.
    PerProcGrace {
        /// The most procs being terminated (from polite stop to terminal
        /// status) at once.
        max_in_flight: usize,
    },
    /// One deadline for all: every proc gets its polite stop and SIGTERM
    /// now, and whatever still runs at `now + grace` is SIGKILLed. Total
    /// time: `grace` plus small constants, whatever the number of procs;
    /// in exchange there is no cap on procs stopping at once. For a host
    /// shutting down under a supervisor's stop timeout (systemd's
    /// `TimeoutStopSec`).
    OverallDeadline,
}

/// [`BulkTerminate`](crate::BulkTerminate) for every manager, over the
/// handles of its live procs at the moment of the call (so a custom
/// manager gets hyperactor's bulk terminate from its
/// [`ProcManager::procs`](crate::ProcManager::procs) and its handles'
/// [`ProcHandle::terminate`]). A proc that is already terminal (or becomes
/// so before its turn) counts as ok.
///
/// Dropping the returned future starts no further terminations; those
/// already started run to the end on their own tasks.
pub(crate) async fn terminate_all<H: ProcHandle>(
    mut procs: Vec<H>,
    grace: Duration,
    mode: BulkTerminateMode,
) -> TerminateSummary {
    procs.sort_by(|a, b| a.name().cmp(b.name()));
    let mut summary = TerminateSummary::default();
    let mut running = tokio::task::JoinSet::new();
    match mode {
        BulkTerminateMode::PerProcGrace { max_in_flight } => {
            let mut window = TerminationWindow::new(procs, max_in_flight);
            loop {
                while let Some(proc) = window.poll_start() {
                    running.spawn(async move { proc.terminate(grace).await });
                }
                let Some(joined) = running.join_next().await else {
                    break;
                };
                window.handle_terminal();
                summary.count(joined.unwrap_or(Err(TerminateError::ChannelClosed)));
            }
            debug_assert!(window.is_done());
        }
        BulkTerminateMode::OverallDeadline => {
            let deadline = Instant::now() + grace;
            for proc in procs {
                // Each proc's grace is what is left of the one deadline
                // when its terminate starts (microseconds apart).
                running.spawn(async move {
                    proc.terminate(deadline.saturating_duration_since(Instant::now()))
                        .await
                });
            }
            while let Some(joined) = running.join_next().await {
                summary.count(joined.unwrap_or(Err(TerminateError::ChannelClosed)));
            }
        }
    }
    summary
}

impl TerminateSummary {
    /// Counts one proc's outcome, so that `attempted == ok + failed`.
    fn count(&mut self, outcome: Result<TerminalStatus, TerminateError>) {
        self.attempted += 1;
        match outcome {
            Ok(_) | Err(TerminateError::AlreadyTerminated(_)) => self.ok += 1,
            Err(_) => self.failed += 1,
        }
    }
}

/// The per-proc-grace schedule, sans-IO: which proc's termination to start
/// next. Call [`poll_start`](Self::poll_start) until it returns `None`,
/// start each proc it yields, and call
/// [`handle_terminal`](Self::handle_terminal) whenever a started proc is
/// terminal (however its termination ended); repeat until
/// [`is_done`](Self::is_done).
#[derive(Debug)]
pub(crate) struct TerminationWindow<T> {
    waiting: VecDeque<T>,
    in_flight: usize,
    max_in_flight: usize,
}

impl<T> TerminationWindow<T> {
    /// A window over `procs`, in order, at most `max_in_flight` (at least
    /// 1) at a time.
    pub(crate) fn new(procs: impl IntoIterator<Item = T>, max_in_flight: usize) -> Self {
        Self {
            waiting: procs.into_iter().collect(),
            in_flight: 0,
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// The next proc to start, if a slot is free and one is waiting.
    #[must_use]
    pub(crate) fn poll_start(&mut self) -> Option<T> {
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        let next = self.waiting.pop_front()?;
        self.in_flight += 1;
        Some(next)
    }

    /// A started proc is terminal: its slot is free.
    pub(crate) fn handle_terminal(&mut self) {
        debug_assert!(self.in_flight > 0, "a terminal proc that never started");
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Every proc started and is terminal.
    pub(crate) fn is_done(&self) -> bool {
        self.waiting.is_empty() && self.in_flight == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_starts(window: &mut TerminationWindow<u32>) -> Vec<u32> {
        std::iter::from_fn(|| window.poll_start()).collect()
    }

    #[test]
    fn window_starts_every_proc_once_in_order_never_more_than_max_at_a_time() {
        let mut window = TerminationWindow::new(0..8, 3);
        assert_eq!(drain_starts(&mut window), [0, 1, 2]);
        let mut started = vec![0, 1, 2];
        let mut in_flight = 3;
        while !window.is_done() {
            window.handle_terminal();
            in_flight -= 1;
            let next = drain_starts(&mut window);
            assert!(next.len() <= 1, "one slot freed, {next:?} started");
            in_flight += next.len();
            assert!(in_flight <= 3);
            started.extend(next);
        }
        assert_eq!(started, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn window_refills_a_freed_slot_at_once_while_others_stay_busy() {
        // One slow proc (0) holds its slot; the other slot serves the rest.
        let mut window = TerminationWindow::new(0..5, 2);
        assert_eq!(drain_starts(&mut window), [0, 1]);
        for next in 2..5 {
            window.handle_terminal(); // the fast one ended
            assert_eq!(drain_starts(&mut window), [next]);
        }
        window.handle_terminal();
        assert!(drain_starts(&mut window).is_empty());
        assert!(!window.is_done(), "proc 0 is still terminating");
        window.handle_terminal();
        assert!(window.is_done());
    }

    #[test]
    fn window_treats_zero_in_flight_as_one_and_an_empty_set_as_done() {
        let mut window = TerminationWindow::new(0..2, 0);
        assert_eq!(drain_starts(&mut window), [0]);
        window.handle_terminal();
        assert_eq!(drain_starts(&mut window), [1]);
        window.handle_terminal();
        assert!(window.is_done());
        assert!(TerminationWindow::new(0..0, 4).is_done());
    }

    #[test]
    fn summary_counts_already_terminal_as_ok_and_lost_supervisors_as_failed() {
        let mut summary = TerminateSummary::default();
        let exited = TerminalStatus::Exited {
            code: 0,
            output: None,
        };
        summary.count(Ok(exited.clone()));
        summary.count(Err(TerminateError::AlreadyTerminated(exited)));
        summary.count(Err(TerminateError::ChannelClosed));
        assert_eq!(
            summary,
            TerminateSummary {
                attempted: 3,
                ok: 2,
                failed: 1
            }
        );
    }
}
