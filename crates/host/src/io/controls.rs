//! The control side's way into every I/O thread.
//!
//! A command that concerns a proc everywhere (its lane added, ready,
//! detached, removed), the stats and the shutdown go to every thread; the
//! agent's requests go to thread 0 (the agent is reached on lane 0); a
//! control reply goes to the thread that owns the connection.

use tokio::sync::oneshot;

use super::{merge_thread_stats, Command, Control};
use crate::dataplane::ProcKey;
use crate::stats::HostStats;
use crate::HostError;

/// One [`Control`] per I/O thread, thread 0 first.
#[derive(Debug)]
pub(crate) struct Controls {
    threads: Vec<Control>,
}

impl Controls {
    pub(crate) fn new(threads: Vec<Control>) -> Self {
        assert!(!threads.is_empty(), "a host has at least one I/O thread");
        Self { threads }
    }

    pub(crate) fn try_clone(&self) -> Result<Self, HostError> {
        let threads = self
            .threads
            .iter()
            .map(Control::try_clone)
            .collect::<Result<_, _>>()?;
        Ok(Self { threads })
    }

    /// How many I/O threads there are.
    pub(crate) fn len(&self) -> usize {
        self.threads.len()
    }

    /// I/O thread `thread` (lane `thread` of every proc).
    pub(crate) fn thread(&self, thread: usize) -> &Control {
        &self.threads[thread]
    }

    /// Sends to thread 0, whose lane reaches every proc's agent.
    pub(crate) fn send(&self, command: Command) -> Result<(), HostError> {
        self.threads[0].send(command)
    }

    /// Sends `thread`'s command to each thread; stops at the first that
    /// is gone.
    pub(crate) fn send_each(
        &self,
        mut command: impl FnMut(usize) -> Command,
    ) -> Result<(), HostError> {
        for (thread, control) in self.threads.iter().enumerate() {
            control.send(command(thread))?;
        }
        Ok(())
    }

    /// Has every thread remove the proc (each returns what is left in its
    /// lane's inbound ring) and waits until all have.
    pub(crate) async fn remove(&self, key: ProcKey) -> Result<(), HostError> {
        let mut done = Vec::with_capacity(self.threads.len());
        let sent = self.send_each(|_| {
            let (tx, rx) = oneshot::channel();
            done.push(rx);
            Command::Remove(key, tx)
        });
        for rx in done {
            let _ = rx.await;
        }
        sent
    }

    /// Every thread's counters, merged into host totals.
    pub(crate) async fn stats(&self) -> Result<HostStats, HostError> {
        let mut answers = Vec::with_capacity(self.threads.len());
        self.send_each(|_| {
            let (tx, rx) = oneshot::channel();
            answers.push(rx);
            Command::Stats(tx)
        })?;
        let mut total = HostStats::default();
        for (thread, answer) in answers.into_iter().enumerate() {
            let stats = answer.await.map_err(|_| HostError::IoThreadGone)?;
            merge_thread_stats(&mut total, stats, thread);
        }
        Ok(total)
    }
}
