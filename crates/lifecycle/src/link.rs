//! The handle side of a per-proc supervisor: a `watch` of its state and a
//! command queue. Shared by both managers' handles.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hostmux_wire::ProcName;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::error::{ReadyError, TerminateError, WaitError};
use crate::status::{ProcStatus, TerminalStatus, TerminateSummary};

/// What a supervisor publishes.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) status: ProcStatus,
    /// Whether the proc ever reported ready.
    pub(crate) was_ready: bool,
    /// Set with the terminal status if the proc never became ready.
    pub(crate) ready_failure: Option<ReadyError>,
    /// Set if SIGKILL could not be delivered (errno); terminate callers then
    /// get an I/O error instead of waiting forever.
    pub(crate) kill_errno: Option<i32>,
}

impl Snapshot {
    /// The proc reported ready; it shows as `Stopping` if an escalation
    /// already started.
    pub(crate) fn mark_ready(&mut self, stopping: bool) {
        self.was_ready = true;
        self.status = if stopping {
            ProcStatus::Stopping
        } else {
            ProcStatus::Ready
        };
    }

    /// A terminate began: the proc shows as `Stopping` until it is terminal.
    pub(crate) fn mark_stopping(&mut self) {
        if !matches!(self.status, ProcStatus::Terminal(_)) {
            self.status = ProcStatus::Stopping;
        }
    }

    pub(crate) fn starting() -> Self {
        Self {
            status: ProcStatus::Starting,
            was_ready: false,
            ready_failure: None,
            kill_errno: None,
        }
    }

    fn terminal(&self) -> Option<&TerminalStatus> {
        match &self.status {
            ProcStatus::Terminal(status) => Some(status),
            _ => None,
        }
    }
}

/// A request to a supervisor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Stop politely with SIGKILL at `deadline`; polite-stop hooks take a
    /// permit from `permits` first when given (bulk terminate).
    Terminate {
        deadline: Instant,
        permits: Option<Arc<Semaphore>>,
    },
    /// Kill now.
    Kill,
}

/// The handle's connection to its supervisor.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) name: ProcName,
    pub(crate) state: watch::Receiver<Snapshot>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
}

impl Link {
    pub(crate) fn status(&self) -> ProcStatus {
        self.state.borrow().status.clone()
    }

    pub(crate) async fn ready(&self) -> Result<(), ReadyError> {
        let mut state = self.state.clone();
        let snapshot = state
            .wait_for(|s| s.was_ready || s.terminal().is_some())
            .await
            .map_err(|_| ReadyError::ChannelClosed)?;
        if snapshot.was_ready {
            return Ok(());
        }
        match (&snapshot.status, &snapshot.ready_failure) {
            (_, Some(failure)) => Err(failure.clone()),
            (ProcStatus::Terminal(status), None) => Err(ReadyError::Terminal(status.clone())),
            _ => Err(ReadyError::ChannelClosed),
        }
    }

    pub(crate) async fn wait(&self) -> Result<TerminalStatus, WaitError> {
        let mut state = self.state.clone();
        let snapshot = state
            .wait_for(|s| s.terminal().is_some())
            .await
            .map_err(|_| WaitError::ChannelClosed)?;
        Ok(snapshot.terminal().cloned().expect("checked by wait_for"))
    }

    /// [`ProcHandle::terminate`](crate::ProcHandle::terminate) for both
    /// managers' handles.
    pub(crate) async fn terminate(
        &self,
        grace: Duration,
    ) -> Result<TerminalStatus, TerminateError> {
        self.request(Command::Terminate {
            deadline: Instant::now() + grace,
            permits: None,
        })
        .await
    }

    /// [`ProcHandle::kill`](crate::ProcHandle::kill) for both managers'
    /// handles.
    pub(crate) async fn kill(&self) -> Result<TerminalStatus, TerminateError> {
        self.request(Command::Kill).await
    }

    async fn request(&self, command: Command) -> Result<TerminalStatus, TerminateError> {
        if let Some(status) = self.state.borrow().terminal() {
            return Err(TerminateError::AlreadyTerminated(status.clone()));
        }
        if self.commands.send(command).is_err() {
            // The supervisor finished between the check and the send.
            return match self.state.borrow().terminal() {
                Some(status) => Err(TerminateError::AlreadyTerminated(status.clone())),
                None => Err(TerminateError::ChannelClosed),
            };
        }
        let mut state = self.state.clone();
        let snapshot = state
            .wait_for(|s| s.terminal().is_some() || s.kill_errno.is_some())
            .await
            .map_err(|_| TerminateError::ChannelClosed)?;
        match (snapshot.terminal(), snapshot.kill_errno) {
            (Some(status), _) => Ok(status.clone()),
            (None, Some(errno)) => Err(TerminateError::Io(io::Error::from_raw_os_error(errno))),
            (None, None) => Err(TerminateError::ChannelClosed),
        }
    }
}

/// [`BulkTerminate::terminate_all`](crate::BulkTerminate::terminate_all)
/// for both managers, over their live procs' links: one deadline
/// `now + grace` for all, at most `max_in_flight` polite-stop hooks at once.
pub(crate) async fn terminate_all(
    links: impl IntoIterator<Item = Link>,
    grace: Duration,
    max_in_flight: usize,
) -> TerminateSummary {
    let deadline = Instant::now() + grace;
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut waits = tokio::task::JoinSet::new();
    for link in links {
        let permits = Arc::clone(&permits);
        waits.spawn(async move {
            link.request(Command::Terminate {
                deadline,
                permits: Some(permits),
            })
            .await
        });
    }
    let mut summary = TerminateSummary::default();
    while let Some(joined) = waits.join_next().await {
        // Counted so that `attempted == ok + failed`.
        summary.attempted += 1;
        match joined.unwrap_or(Err(TerminateError::ChannelClosed)) {
            Ok(_) | Err(TerminateError::AlreadyTerminated(_)) => summary.ok += 1,
            Err(_) => summary.failed += 1,
        }
    }
    summary
}
