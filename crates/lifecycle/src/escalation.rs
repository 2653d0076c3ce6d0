//! The sans-IO escalation state machine that decides when a proc gets a
//! polite stop, SIGTERM and SIGKILL.
//!
//! It owns no clock, no pid and no syscalls: drivers feed it events with the
//! current time and execute the [`Action`]s it yields. Both managers drive
//! the same machine, and its unit tests run under a fake clock.
//!
//! ```text
//!            terminate(t)                 deadline / kill / fail
//! Running ───────────────▶ Stopping{dl} ─────────────────────────▶ Killing
//!    │                         │                                      │
//!    └──────── exit ───────────┴──────────────── exit ────────────────┴──▶ Terminal
//! ```
//!
//! Call order for a driver, after every input:
//! 1. one of the `handle_*` methods with `now`;
//! 2. [`Escalation::poll_action`] until it returns `None`, executing each;
//! 3. [`Escalation::poll_timeout`] to learn when to call
//!    [`Escalation::handle_timeout`] next.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::status::TerminalStatus;

/// Something the driver must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run the host's polite-stop hook (e.g. a stop message to the proc's
    /// agent). Yielded at most once per proc.
    PoliteStop,
    /// Ask the proc to stop: SIGTERM then SIGCONT to its process group (so a
    /// stopped proc can act on it), or the in-process stop signal.
    Terminate,
    /// Force it down: SIGKILL to the group and `cgroup.kill`, or abort the
    /// in-process task. Yielded at most once per proc.
    Kill,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping { deadline: Instant },
    Killing,
    Terminal(TerminalStatus),
}

/// The per-proc escalation decision logic. See the module docs for the
/// call order.
#[derive(Debug)]
pub struct Escalation {
    phase: Phase,
    actions: VecDeque<Action>,
    failure: Option<String>,
    polite_stop_sent: bool,
    kill_sent: bool,
}

impl Default for Escalation {
    fn default() -> Self {
        Self::new()
    }
}

impl Escalation {
    /// A machine for a running proc.
    pub fn new() -> Self {
        Self {
            phase: Phase::Running,
            actions: VecDeque::with_capacity(4),
            failure: None,
            polite_stop_sent: false,
            kill_sent: false,
        }
    }

    /// A graceful stop with a grace period of `grace` was requested.
    ///
    /// Coalesces: while already stopping, the earlier of the two deadlines
    /// wins, so every caller's bound `grace + ε` holds; while killing or
    /// terminal this is a no-op.
    pub fn handle_terminate(&mut self, grace: Duration, now: Instant) {
        let requested = now + grace;
        match self.phase {
            Phase::Running => {
                self.phase = Phase::Stopping {
                    deadline: requested,
                };
                if !self.polite_stop_sent {
                    self.polite_stop_sent = true;
                    self.actions.push_back(Action::PoliteStop);
                }
                self.actions.push_back(Action::Terminate);
            }
            Phase::Stopping { deadline } if requested < deadline => {
                self.phase = Phase::Stopping {
                    deadline: requested,
                };
            }
            _ => {}
        }
        self.handle_timeout(now);
    }

    /// An immediate forced stop was requested.
    pub fn handle_kill(&mut self, _now: Instant) {
        self.escalate_to_kill();
    }

    /// The driver decided the proc failed (e.g. it missed the spawn-ready
    /// timeout): kill it, and report `Failed { reason }` once it is reaped
    /// instead of the raw signal status.
    pub fn handle_fail(&mut self, reason: String, now: Instant) {
        if matches!(self.phase, Phase::Terminal(_)) {
            return;
        }
        self.failure.get_or_insert(reason);
        self.handle_kill(now);
    }

    /// The driver decided the proc failed but deserves a stop rather than a
    /// kill (e.g. its watchdog expired): the full escalation with `grace`,
    /// reporting `Failed { reason }` once it is reaped.
    pub fn handle_fail_gracefully(&mut self, reason: String, grace: Duration, now: Instant) {
        if matches!(self.phase, Phase::Terminal(_)) {
            return;
        }
        self.failure.get_or_insert(reason);
        self.handle_terminate(grace, now);
    }

    /// The proc's main process was reaped with `status`. Final.
    pub fn handle_exit(&mut self, status: TerminalStatus, _now: Instant) {
        if matches!(self.phase, Phase::Terminal(_)) {
            return;
        }
        let status = match self.failure.take() {
            Some(reason) => TerminalStatus::Failed {
                reason,
                output: status.into_output(),
            },
            None => status,
        };
        self.phase = Phase::Terminal(status);
        self.actions.clear();
    }

    /// Time passed; escalates a stop whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::Stopping { deadline } = self.phase {
            if now >= deadline {
                self.escalate_to_kill();
            }
        }
    }

    /// The next action to execute, in order.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Escalation::handle_timeout`] must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Stopping { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// The final status, once reaped.
    pub fn terminal(&self) -> Option<&TerminalStatus> {
        match &self.phase {
            Phase::Terminal(status) => Some(status),
            _ => None,
        }
    }

    /// True once a terminate, kill or failure has begun and before the exit.
    pub fn is_stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. } | Phase::Killing)
    }

    /// True if a [`Action::Kill`] has been yielded.
    pub fn kill_sent(&self) -> bool {
        self.kill_sent
    }

    fn escalate_to_kill(&mut self) {
        if matches!(self.phase, Phase::Running | Phase::Stopping { .. }) {
            self.phase = Phase::Killing;
            if !self.kill_sent {
                self.kill_sent = true;
                self.actions.push_back(Action::Kill);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock: a fixed origin plus a manually advanced offset.
    struct FakeClock {
        origin: Instant,
        offset: Duration,
    }

    impl FakeClock {
        fn new() -> Self {
            Self {
                origin: Instant::now(),
                offset: Duration::ZERO,
            }
        }
        fn now(&self) -> Instant {
            self.origin + self.offset
        }
        fn advance(&mut self, by: Duration) {
            self.offset += by;
        }
    }

    fn drain(esc: &mut Escalation) -> Vec<Action> {
        std::iter::from_fn(|| esc.poll_action()).collect()
    }

    const fn exited(code: i32) -> TerminalStatus {
        TerminalStatus::Exited { code, output: None }
    }

    const SIGKILL_STATUS: TerminalStatus = TerminalStatus::Signaled {
        signal: libc::SIGKILL,
        core_dumped: false,
        output: None,
    };

    #[test]
    fn graceful_failure_stops_then_kills_and_reports_the_reason() {
        let mut clock = FakeClock::new();
        let mut esc = Escalation::new();
        let grace = Duration::from_secs(5);
        esc.handle_fail_gracefully("watchdog timeout".into(), grace, clock.now());
        assert_eq!(drain(&mut esc), [Action::PoliteStop, Action::Terminate]);
        assert_eq!(esc.poll_timeout(), Some(clock.now() + grace));
        clock.advance(grace);
        esc.handle_timeout(clock.now());
        assert_eq!(drain(&mut esc), [Action::Kill]);
        esc.handle_exit(SIGKILL_STATUS, clock.now());
        assert!(matches!(
            esc.terminal(),
            Some(TerminalStatus::Failed { reason, .. }) if reason == "watchdog timeout"
        ));

        // A proc that exits on SIGTERM is still reported as failed.
        let mut esc = Escalation::new();
        esc.handle_fail_gracefully("watchdog timeout".into(), grace, clock.now());
        esc.handle_exit(exited(0), clock.now());
        assert!(matches!(
            esc.terminal(),
            Some(TerminalStatus::Failed { .. })
        ));
    }

    #[test]
    fn term_ignored_escalates_to_kill_exactly_at_deadline() {
        let mut clock = FakeClock::new();
        let mut esc = Escalation::new();
        esc.handle_terminate(Duration::from_secs(2), clock.now());
        assert_eq!(drain(&mut esc), [Action::PoliteStop, Action::Terminate]);
        assert_eq!(
            esc.poll_timeout(),
            Some(clock.now() + Duration::from_secs(2))
        );

        clock.advance(Duration::from_millis(1999));
        esc.handle_timeout(clock.now());
        assert_eq!(drain(&mut esc), []);

        clock.advance(Duration::from_millis(1));
        esc.handle_timeout(clock.now());
        assert_eq!(drain(&mut esc), [Action::Kill]);
        assert_eq!(esc.poll_timeout(), None);

        esc.handle_exit(SIGKILL_STATUS, clock.now());
        assert_eq!(esc.terminal(), Some(&SIGKILL_STATUS));
    }

    #[test]
    fn cooperative_exit_within_grace_never_kills() {
        let mut clock = FakeClock::new();
        let mut esc = Escalation::new();
        esc.handle_terminate(Duration::from_secs(5), clock.now());
        let _ = drain(&mut esc);
        clock.advance(Duration::from_millis(10));
        esc.handle_exit(exited(0), clock.now());
        clock.advance(Duration::from_secs(10));
        esc.handle_timeout(clock.now());
        assert_eq!(drain(&mut esc), []);
        assert!(!esc.kill_sent());
        assert_eq!(esc.terminal(), Some(&exited(0)));
    }

    #[test]
    fn repeated_terminates_coalesce_onto_earliest_deadline() {
        let clock = FakeClock::new();
        let mut esc = Escalation::new();
        esc.handle_terminate(Duration::from_secs(10), clock.now());
        esc.handle_terminate(Duration::from_secs(3), clock.now());
        esc.handle_terminate(Duration::from_secs(20), clock.now());
        assert_eq!(drain(&mut esc), [Action::PoliteStop, Action::Terminate]);
        assert_eq!(
            esc.poll_timeout(),
            Some(clock.now() + Duration::from_secs(3))
        );
    }

    #[test]
    fn zero_grace_terminates_and_kills_at_once() {
        let clock = FakeClock::new();
        let mut esc = Escalation::new();
        esc.handle_terminate(Duration::ZERO, clock.now());
        assert_eq!(
            drain(&mut esc),
            [Action::PoliteStop, Action::Terminate, Action::Kill]
        );
    }

    #[test]
    fn kill_during_grace_skips_the_rest_of_it_and_is_sent_once() {
        let mut clock = FakeClock::new();
        let mut esc = Escalation::new();
        esc.handle_terminate(Duration::from_secs(5), clock.now());
        let _ = drain(&mut esc);
        clock.advance(Duration::from_millis(100));
        esc.handle_kill(clock.now());
        esc.handle_kill(clock.now());
        esc.handle_terminate(Duration::from_secs(1), clock.now());
        assert_eq!(drain(&mut esc), [Action::Kill]);
        assert!(esc.is_stopping());
    }

    #[test]
    fn failure_overrides_the_signal_status() {
        let clock = FakeClock::new();
        let mut esc = Escalation::new();
        esc.handle_fail("not ready within 1s".into(), clock.now());
        assert_eq!(drain(&mut esc), [Action::Kill]);
        esc.handle_exit(SIGKILL_STATUS, clock.now());
        assert_eq!(
            esc.terminal(),
            Some(&TerminalStatus::Failed {
                reason: "not ready within 1s".into(),
                output: None,
            })
        );
    }

    #[test]
    fn exit_racing_terminate_wins_and_later_inputs_are_ignored() {
        let clock = FakeClock::new();
        let mut esc = Escalation::new();
        esc.handle_exit(exited(3), clock.now());
        esc.handle_terminate(Duration::ZERO, clock.now());
        esc.handle_kill(clock.now());
        esc.handle_fail("late".into(), clock.now());
        esc.handle_exit(SIGKILL_STATUS, clock.now());
        assert_eq!(drain(&mut esc), []);
        assert_eq!(esc.terminal(), Some(&exited(3)));
    }
}
