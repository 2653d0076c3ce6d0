//! What the two managers' per-proc supervisors do alike: feed a handle's
//! [`Command`] to the [`Escalation`], run the polite-stop hook it asks for,
//! keep the spawn-ready timeout, and sleep until the next deadline.
//!
//! Only the execution of [`Action::Terminate`](crate::Action) and
//! [`Action::Kill`](crate::Action) differs between them (signals to a
//! process versus a stop flag and an aborted task), and that stays in each
//! supervisor.

use std::time::{Duration, Instant};

use hostmux_wire::ProcName;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::ReadyError;
use crate::escalation::Escalation;
use crate::link::{Command, Snapshot};
use crate::manager::PoliteStopHook;

/// One proc's polite stops: the host's hook and the hook futures still
/// running.
///
/// The hook is called at the start of the proc's termination, before its
/// SIGTERM goes out, and never waits for anything first (a bulk terminate
/// bounds how many procs are terminating, not how many hooks run), so every
/// terminated proc gets its polite stop. Its future runs on its own task and
/// never delays the escalation; it is dropped once the proc is reaped,
/// before the terminal status is published.
pub(crate) struct PoliteStops {
    hook: Option<PoliteStopHook>,
    running: Vec<JoinHandle<()>>,
}

impl PoliteStops {
    pub(crate) fn new(hook: Option<PoliteStopHook>) -> Self {
        Self {
            hook,
            running: Vec::new(),
        }
    }

    /// [`Action::PoliteStop`](crate::Action::PoliteStop): the proc shows
    /// as `Stopping`, the hook for `name` is called now and its future runs
    /// on its own task.
    pub(crate) fn begin(&mut self, name: &ProcName, state: &watch::Sender<Snapshot>) {
        state.send_modify(Snapshot::mark_stopping);
        let Some(hook) = &self.hook else {
            return;
        };
        self.running.push(tokio::spawn(hook(name)));
    }

    /// The proc is terminal: cancels the hook futures still running and
    /// returns once each is dropped (so nothing of a hook outlives the
    /// publication of the status that follows).
    pub(crate) async fn end_all(&mut self) {
        for hook in &self.running {
            hook.abort();
        }
        for hook in self.running.drain(..) {
            let _ = hook.await;
        }
    }
}

/// Feeds a handle's command to the escalation.
pub(crate) fn apply_command(command: Command, escalation: &mut Escalation) {
    match command {
        Command::Terminate { deadline } => {
            let now = Instant::now();
            escalation.handle_terminate(deadline.saturating_duration_since(now), now);
        }
        Command::Kill => escalation.handle_kill(Instant::now()),
    }
}

/// A proc's spawn-ready timeout: the deadline while the proc has not
/// reported ready, and the error its `ready()` callers get once it passed.
pub(crate) struct ReadyTimeout {
    timeout: Duration,
    deadline: Option<Instant>,
    failure: Option<ReadyError>,
}

impl ReadyTimeout {
    /// Runs until `now + timeout` if `waiting` (the proc has yet to report
    /// ready) and `timeout` is not zero (zero disables it).
    pub(crate) fn start(timeout: Duration, waiting: bool, now: Instant) -> Self {
        Self {
            timeout,
            deadline: (waiting && !timeout.is_zero()).then(|| now + timeout),
            failure: None,
        }
    }

    /// When the supervisor must wake up for it.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Readiness is settled (reported, or failed otherwise): no deadline.
    pub(crate) fn stop(&mut self) {
        self.deadline = None;
    }

    /// Called on every timer wake-up. Once the deadline has passed, fails
    /// the proc in the escalation (which kills it), records the error for
    /// `ready()` and returns true.
    pub(crate) fn check(
        &mut self,
        now: Instant,
        name: &ProcName,
        escalation: &mut Escalation,
    ) -> bool {
        if self.deadline.is_none_or(|at| now < at) {
            return false;
        }
        self.deadline = None;
        escalation.handle_fail(
            format!(
                "not ready within the spawn-ready timeout of {:?}",
                self.timeout
            ),
            now,
        );
        self.failure = Some(ReadyError::TimedOut {
            name: name.clone(),
            timeout: self.timeout,
        });
        true
    }

    /// The ready timeout error, if the deadline passed.
    pub(crate) fn take_failure(&mut self) -> Option<ReadyError> {
        self.failure.take()
    }
}

/// Sleeps until `at`; never resolves for `None`.
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escalation::Action;
    use crate::status::TerminalStatus;

    #[test]
    fn ready_timeout_fails_the_proc_once_at_its_deadline_with_the_reason() {
        let start = Instant::now();
        let timeout = Duration::from_millis(300);
        let name = ProcName::new("sloth").unwrap();
        let mut escalation = Escalation::new();
        let mut ready = ReadyTimeout::start(timeout, true, start);
        assert_eq!(ready.deadline(), Some(start + timeout));

        let just_before = start + timeout - Duration::from_millis(1);
        assert!(!ready.check(just_before, &name, &mut escalation));
        assert_eq!(escalation.poll_action(), None);

        assert!(ready.check(start + timeout, &name, &mut escalation));
        assert_eq!(escalation.poll_action(), Some(Action::Kill));
        assert_eq!(ready.deadline(), None);
        assert!(!ready.check(start + timeout * 2, &name, &mut escalation));
        assert_eq!(
            ready.take_failure(),
            Some(ReadyError::TimedOut {
                name: name.clone(),
                timeout
            })
        );
        escalation.handle_exit(
            TerminalStatus::Signaled {
                signal: libc::SIGKILL,
                core_dumped: false,
                output: None,
            },
            start + timeout,
        );
        assert!(matches!(
            escalation.terminal(),
            Some(TerminalStatus::Failed { reason, .. })
                if reason == "not ready within the spawn-ready timeout of 300ms"
        ));
    }

    #[test]
    fn ready_timeout_is_off_when_zero_when_not_waiting_and_once_stopped() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        assert_eq!(
            ReadyTimeout::start(Duration::ZERO, true, start).deadline(),
            None
        );
        assert_eq!(ReadyTimeout::start(second, false, start).deadline(), None);
        let mut reported = ReadyTimeout::start(second, true, start);
        reported.stop();
        let mut escalation = Escalation::new();
        let name = ProcName::new("prompt").unwrap();
        assert!(!reported.check(start + second * 2, &name, &mut escalation));
        assert_eq!(escalation.poll_action(), None);
        assert_eq!(reported.take_failure(), None);
    }
}
