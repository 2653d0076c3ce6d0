//! Restart policies: [`RestartPolicy`] (when a proc that ended is started
//! again, how long the host waits first, and how many restarts it allows in
//! an interval) and the sans-IO bookkeeping that applies it.
//!
//! [`Restarts`] is the decision logic without clock or I/O: the host hands
//! it each end of an instance with `now` and carries out what it answers
//! (`host/supervise.rs`). Its tests run on a made-up clock.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use hostmux_lifecycle::TerminalStatus;

/// When a proc that ended is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RestartMode {
    /// Never (the default).
    #[default]
    No,
    /// After a non-zero exit, a death by signal (other than the operator's
    /// stop or kill) or a failed readiness after a restart.
    OnFailure,
    /// After any end the operator did not ask for, a clean exit included.
    Always,
}

impl RestartMode {
    /// The CLI's spelling: `no`, `on-failure`, `always`.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartMode::No => "no",
            RestartMode::OnFailure => "on-failure",
            RestartMode::Always => "always",
        }
    }
}

impl fmt::Display for RestartMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At most `burst` restarts within any `interval` (systemd's
/// `StartLimitBurst=` and `StartLimitIntervalSec=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RestartLimit {
    /// Restarts allowed within `interval`.
    pub burst: u32,
    /// The sliding window the restarts are counted in.
    pub interval: Duration,
}

impl Default for RestartLimit {
    /// 5 restarts in 60 s.
    fn default() -> Self {
        Self {
            burst: 5,
            interval: Duration::from_secs(60),
        }
    }
}

impl fmt::Display for RestartLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} restarts in {}",
            self.burst,
            short_duration(self.interval)
        )
    }
}

/// How a proc is restarted when it ends.
///
/// The semantics follow systemd's `Restart=`, `RestartSec=`,
/// `RestartMaxDelaySec=` and `StartLimitBurst=`/`StartLimitIntervalSec=`:
///
/// * [`RestartMode::OnFailure`] restarts after a non-zero exit, a death by
///   signal, or a failure to become ready again after a restart;
///   [`RestartMode::Always`] after any end as well, a clean exit included.
///   A stop or kill from the operator (`hostmux stop`/`kill`,
///   [`Host::terminate_proc`](crate::Host::terminate_proc), bulk terminate,
///   the host's own shutdown) never leads to a restart. A proc whose first
///   start fails is not restarted: the spawn reports the failure.
/// * The wait before a restart starts at [`RestartPolicy::delay`] and
///   doubles with every restart in a row, up to [`RestartPolicy::delay_max`];
///   an instance that stayed up for `reset_after` resets it.
/// * `limit`: at most `burst` restarts within any
///   `interval`. The restart past it does not happen: the proc stays down
///   as failed with `restart limit reached: 5 restarts in 60s`.
///
/// `docs/operations.md` ("Restart policies") describes it for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RestartPolicy {
    /// When it is restarted.
    pub mode: RestartMode,
    /// The wait before the first restart in a row (default 100 ms).
    pub delay: Duration,
    /// The longest wait: the doubling stops here (default 30 s).
    pub delay_max: Duration,
    /// How long an instance must stay up for the next wait to start again
    /// at `delay` (default 10 s).
    pub reset_after: Duration,
    /// The start limit (default 5 restarts in 60 s); `None`: no limit.
    pub limit: Option<RestartLimit>,
}

/// [`RestartPolicy::delay`]'s default.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_millis(100);
/// [`RestartPolicy::delay_max`]'s default.
pub const DEFAULT_RESTART_DELAY_MAX: Duration = Duration::from_secs(30);
/// [`RestartPolicy::reset_after`]'s default.
pub const DEFAULT_RESTART_RESET_AFTER: Duration = Duration::from_secs(10);

impl Default for RestartPolicy {
    fn default() -> Self {
        Self::new(RestartMode::No)
    }
}

impl RestartPolicy {
    /// `mode` with the default delays and limit.
    pub fn new(mode: RestartMode) -> Self {
        Self {
            mode,
            delay: DEFAULT_RESTART_DELAY,
            delay_max: DEFAULT_RESTART_DELAY_MAX,
            reset_after: DEFAULT_RESTART_RESET_AFTER,
            limit: Some(RestartLimit::default()),
        }
    }

    /// Never restart.
    pub fn never() -> Self {
        Self::new(RestartMode::No)
    }

    /// Restart after failures ([`RestartMode::OnFailure`]).
    pub fn on_failure() -> Self {
        Self::new(RestartMode::OnFailure)
    }

    /// Restart after any end not asked for ([`RestartMode::Always`]).
    pub fn always() -> Self {
        Self::new(RestartMode::Always)
    }

    /// The first wait and its cap.
    pub fn delays(mut self, delay: Duration, delay_max: Duration) -> Self {
        self.delay = delay;
        self.delay_max = delay_max.max(delay);
        self
    }

    /// The start limit; `None` for none.
    pub fn limit(mut self, limit: Option<RestartLimit>) -> Self {
        self.limit = limit;
        self
    }

    /// How long an instance must stay up to reset the wait.
    pub fn reset_after(mut self, reset_after: Duration) -> Self {
        self.reset_after = reset_after;
        self
    }

    /// Whether it ever restarts.
    pub fn restarts(&self) -> bool {
        self.mode != RestartMode::No
    }

    /// Whether an instance that ended with `status` (not stopped by the
    /// operator) is to be restarted.
    fn wants(&self, status: &TerminalStatus) -> bool {
        match self.mode {
            RestartMode::No => false,
            RestartMode::OnFailure => !status.success(),
            RestartMode::Always => true,
        }
    }

    /// The wait before the restart after `in_a_row` earlier ones in a row.
    fn delay_after(&self, in_a_row: u32) -> Duration {
        let factor = 1u32.checked_shl(in_a_row.min(31)).unwrap_or(u32::MAX);
        self.delay
            .checked_mul(factor)
            .unwrap_or(self.delay_max)
            .min(self.delay_max)
    }
}

/// What to do about an instance that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing: the proc is done (its policy does not restart after this
    /// end, or it never started successfully).
    Done,
    /// Start it again after this wait.
    RestartAfter(Duration),
    /// The start limit is reached: the proc stays down, failed with this
    /// reason.
    LimitReached(String),
}

/// One supervised proc's restart bookkeeping, across its instances: the
/// sans-IO core of the restart supervisor. Time is always a parameter.
#[derive(Debug, Clone)]
pub(crate) struct Restarts {
    policy: RestartPolicy,
    /// Restarts made (instances started after the first).
    count: u32,
    /// Restarts since an instance last stayed up for `reset_after`.
    in_a_row: u32,
    /// When each restart within the limit's interval was decided.
    recent: VecDeque<Instant>,
    /// Some instance became ready (a failed first start is not restarted).
    ready_once: bool,
    /// How the last instance ended.
    last_exit: Option<TerminalStatus>,
    /// When the next restart is due, while backing off.
    next_at: Option<Instant>,
}

impl Restarts {
    pub(crate) fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            count: 0,
            in_a_row: 0,
            recent: VecDeque::new(),
            ready_once: false,
            last_exit: None,
            next_at: None,
        }
    }

    /// An instance ended with `status`: `ran_for` is how long it was up
    /// after it became ready (`None`: it never did). `stopped` says the
    /// operator or the host's shutdown ended it.
    pub(crate) fn handle_end(
        &mut self,
        status: &TerminalStatus,
        ran_for: Option<Duration>,
        stopped: bool,
        now: Instant,
    ) -> Decision {
        self.last_exit = Some(status.clone());
        self.next_at = None;
        if let Some(ran_for) = ran_for {
            self.ready_once = true;
            if ran_for >= self.policy.reset_after {
                self.in_a_row = 0;
            }
        }
        if stopped || !self.ready_once || !self.policy.wants(status) {
            return Decision::Done;
        }
        if let Some(limit) = self.policy.limit {
            while self
                .recent
                .front()
                .is_some_and(|at| now.saturating_duration_since(*at) >= limit.interval)
            {
                self.recent.pop_front();
            }
            if self.recent.len() >= limit.burst as usize {
                return Decision::LimitReached(format!("restart limit reached: {limit}"));
            }
            self.recent.push_back(now);
        }
        let delay = self.policy.delay_after(self.in_a_row);
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.next_at = Some(now + delay);
        Decision::RestartAfter(delay)
    }

    /// The next instance is being started.
    pub(crate) fn handle_restart(&mut self) {
        self.count = self.count.saturating_add(1);
        self.next_at = None;
    }

    /// Restarts made so far.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// How the last instance ended.
    pub(crate) fn last_exit(&self) -> Option<&TerminalStatus> {
        self.last_exit.as_ref()
    }

    /// The wait left until the next restart, while backing off.
    pub(crate) fn next_in(&self, now: Instant) -> Option<Duration> {
        self.next_at.map(|at| at.saturating_duration_since(now))
    }
}

/// `60s`, `1m30s`, `250ms`: how the limit's interval reads in messages.
fn short_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        format!("{ms}ms")
    } else if ms >= 60_000 && ms % 60_000 != 0 {
        format!("{}m{}s", ms / 60_000, ms % 60_000 / 1000)
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> TerminalStatus {
        TerminalStatus::Exited { code, output: None }
    }

    fn killed() -> TerminalStatus {
        TerminalStatus::Signaled {
            signal: 9,
            core_dumped: false,
            output: None,
        }
    }

    const UP: Option<Duration> = Some(Duration::from_millis(5));

    #[test]
    fn on_failure_restarts_failures_only_and_always_restarts_clean_exits_too() {
        let now = Instant::now();
        let mut on_failure = Restarts::new(RestartPolicy::on_failure());
        assert_eq!(
            on_failure.handle_end(&exited(0), UP, false, now),
            Decision::Done
        );
        assert!(matches!(
            on_failure.handle_end(&exited(1), UP, false, now),
            Decision::RestartAfter(_)
        ));
        assert!(matches!(
            on_failure.handle_end(&killed(), UP, false, now),
            Decision::RestartAfter(_)
        ));
        let mut always = Restarts::new(RestartPolicy::always());
        assert!(matches!(
            always.handle_end(&exited(0), UP, false, now),
            Decision::RestartAfter(_)
        ));
        let mut never = Restarts::new(RestartPolicy::never());
        assert_eq!(never.handle_end(&exited(1), UP, false, now), Decision::Done);
    }

    #[test]
    fn an_operator_stop_or_a_failed_first_start_is_never_restarted() {
        let now = Instant::now();
        let mut restarts = Restarts::new(RestartPolicy::always());
        assert_eq!(
            restarts.handle_end(&exited(1), None, false, now),
            Decision::Done,
            "never ready: the spawn reports it"
        );
        assert_eq!(
            restarts.handle_end(&killed(), UP, true, now),
            Decision::Done
        );
        // Ready once: a later failure to become ready is restarted.
        assert!(matches!(
            restarts.handle_end(&exited(1), None, false, now),
            Decision::RestartAfter(_)
        ));
    }

    #[test]
    fn the_wait_doubles_up_to_its_cap_and_resets_after_a_long_run() {
        let policy = RestartPolicy::on_failure()
            .delays(Duration::from_millis(100), Duration::from_millis(500))
            .limit(None);
        let mut restarts = Restarts::new(policy);
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..5 {
            match restarts.handle_end(&exited(1), UP, false, now) {
                Decision::RestartAfter(d) => waits.push(d.as_millis()),
                other => panic!("{other:?}"),
            }
            assert!(restarts.next_in(now).is_some());
            restarts.handle_restart();
            now += Duration::from_secs(1);
        }
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        assert_eq!(restarts.count(), 5);
        let long = Some(policy.reset_after);
        assert_eq!(
            restarts.handle_end(&exited(1), long, false, now),
            Decision::RestartAfter(Duration::from_millis(100))
        );
        assert_eq!(restarts.last_exit(), Some(&exited(1)));
    }

    #[test]
    fn the_limit_counts_restarts_in_a_sliding_window() {
        let limit = RestartLimit {
            burst: 3,
            interval: Duration::from_secs(10),
        };
        let mut restarts = Restarts::new(RestartPolicy::always().limit(Some(limit)));
        let start = Instant::now();
        for i in 0..3 {
            let at = start + Duration::from_secs(i);
            assert!(matches!(
                restarts.handle_end(&exited(0), UP, false, at),
                Decision::RestartAfter(_)
            ));
        }
        let refused = restarts.handle_end(&exited(0), UP, false, start + Duration::from_secs(3));
        assert_eq!(
            refused,
            Decision::LimitReached("restart limit reached: 3 restarts in 10s".into())
        );
        // Ten seconds after the first, it has left the window.
        assert!(matches!(
            restarts.handle_end(&exited(0), UP, false, start + Duration::from_secs(10)),
            Decision::RestartAfter(_)
        ));
    }

    #[test]
    fn huge_delays_saturate_at_the_cap() {
        let policy = RestartPolicy::always().delays(Duration::from_secs(1), Duration::MAX);
        assert_eq!(policy.delay_after(40), Duration::from_secs(1 << 31));
        assert_eq!(short_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(short_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(RestartLimit::default().to_string(), "5 restarts in 60s");
    }
}
