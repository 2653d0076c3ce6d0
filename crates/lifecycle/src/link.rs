//! The handle side of a per-proc supervisor: a `watch` of its state and a
//! command queue. Shared by both managers' handles.

use std::io;
use std::time::{Duration, Instant};

use hostmux_wire::ProcName;
use tokio::sync::{mpsc, watch};

use crate::error::{ReadyError, TerminateError, WaitError};
use crate::status::{ProcStatus, TerminalStatus};

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
    /// The last `STATUS=` the proc sent over sd_notify.
    pub(crate) status_text: Option<String>,
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
            status_text: None,
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
    /// Stop politely with SIGKILL at `deadline`.
    Terminate { deadline: Instant },
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

    pub(crate) fn status_text(&self) -> Option<String> {
        self.state.borrow().status_text.clone()
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
        })
        .await
    }

    /// [`ProcHandle::kill`](crate::ProcHandle::kill) for both managers'
    /// handles.
    pub(crate) async fn kill(&self) -> Result<TerminalStatus, TerminateError> {
        self.request(Command::Kill).await
    }

    /// Sends `command` and waits for the terminal status (or why it cannot
    /// be observed).
    pub(crate) async fn request(&self, command: Command) -> Result<TerminalStatus, TerminateError> {
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
