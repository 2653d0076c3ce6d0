//! Stopping procs: one (polite stop with escalation, or a kill) or all of
//! them (a bounded number at a time, or under one overall deadline).

use hostmux_lifecycle::BulkTerminateMode;

use super::*;

impl<M: ProcManager + 'static> Host<M> {
    /// Terminates one proc: unbinds its route and closes its inbound ring
    /// first, then asks the manager to stop it (polite stop, then a forced
    /// kill after `grace`). Returns once the proc is gone and its name free.
    ///
    /// A proc still starting is stopped the same way, by its spawn, which
    /// then fails with [`HostError::StoppedWhileStarting`]. A proc that has
    /// already ended gives [`HostError::AlreadyEnded`] with how it ended.
    pub async fn terminate_proc(
        &self,
        name: &str,
        grace: Duration,
    ) -> Result<TerminalStatus, HostError> {
        let name = ProcName::with_max_len(name, self.inner.cfg.limits.max_name_len)?;
        let span = tracing::info_span!("terminate", proc = %name);
        async {
            let (key, handle, gone) = match self.target(&name, StopRequest::Terminate(grace))? {
                Target::Ready { key, handle, gone } => (key, handle, gone),
                Target::Starting { released, .. } => {
                    return self.wait_stopped_while_starting(&name, released).await;
                }
            };
            self.unbind_and_detach(&name, key);
            let status = match handle.terminate(grace).await {
                Ok(status) | Err(TerminateError::AlreadyTerminated(status)) => status,
                Err(source) => {
                    return Err(HostError::Terminate {
                        name: name.clone(),
                        source,
                    })
                }
            };
            wait_gone(gone).await;
            tracing::info!(%status, "proc terminated");
            Ok(status)
        }
        .instrument(span)
        .await
    }

    /// Kills one proc now (SIGKILL to its group): unbinds its route first,
    /// closes its inbound ring once the kill is done (returning what is left
    /// in it). Returns once it is gone. A starting proc is killed and its
    /// spawn fails with [`HostError::StoppedWhileStarting`]; an ended one
    /// gives [`HostError::AlreadyEnded`].
    pub async fn kill_proc(&self, name: &str) -> Result<TerminalStatus, HostError> {
        let name = ProcName::with_max_len(name, self.inner.cfg.limits.max_name_len)?;
        let (key, handle, gone) = match self.target(&name, StopRequest::Kill)? {
            Target::Ready { key, handle, gone } => (key, handle, gone),
            Target::Starting { handle, released } => {
                // Now, even if the spawn is in a polite stop's grace.
                if let Some(handle) = handle {
                    let _ = handle.kill().await;
                }
                return self.wait_stopped_while_starting(&name, released).await;
            }
        };
        self.unbind(&name, key);
        // SIGKILL before the inbound ring is closed: a proc that sees its
        // ring close exits on its own, and a kill must not race that into
        // an `Exited` status.
        let killed = handle.kill().await;
        self.detach(key);
        let status = match killed {
            Ok(status) | Err(TerminateError::AlreadyTerminated(status)) => status,
            Err(source) => return Err(HostError::Terminate { name, source }),
        };
        wait_gone(gone).await;
        tracing::info!(proc = %name, %status, "proc killed");
        Ok(status)
    }

    /// The pid of a live proc.
    pub(crate) fn pid_of(&self, name: &ProcName) -> Option<u32> {
        let procs = self.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
        procs.get(name)?.handle.as_ref()?.pid()
    }

    /// Sends `command` to I/O thread `thread`.
    pub(crate) fn send_command(&self, thread: usize, command: Command) -> Result<(), HostError> {
        self.inner.control.thread(thread).send(command)
    }

    /// What a stop or kill of `name` acts on, from the one registry. Every
    /// proc is marked with `request`, so that it is not restarted; a
    /// starting proc's spawn (or a backing-off proc's restart supervisor)
    /// carries it out.
    fn target(
        &self,
        name: &ProcName,
        request: StopRequest,
    ) -> Result<Target<M::Handle>, HostError> {
        if *name == self.inner.service_name {
            return Err(HostError::ServiceProc(name.clone()));
        }
        {
            let procs = self.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = procs.get(name) {
                entry
                    .stop
                    .send_modify(|r| *r = Some(StopRequest::merge(*r, request)));
                return Ok(match (entry.phase, entry.key, &entry.handle, &entry.gone) {
                    (Phase::Ready, Some(key), Some(handle), Some(gone)) => Target::Ready {
                        key,
                        handle: handle.clone(),
                        gone: gone.clone(),
                    },
                    _ => Target::Starting {
                        handle: entry.handle.clone(),
                        released: entry.released.clone(),
                    },
                });
            }
        }
        match self.last_gone(name) {
            Some(status) => Err(HostError::AlreadyEnded {
                name: name.clone(),
                status,
            }),
            None => Err(HostError::NoSuchProc(name.clone())),
        }
    }

    /// After a stop or kill reached a starting (or releasing) proc: how it
    /// ended, once its spawn has released it.
    async fn wait_stopped_while_starting(
        &self,
        name: &ProcName,
        released: watch::Receiver<Option<Released>>,
    ) -> Result<TerminalStatus, HostError> {
        match wait_released(released).await {
            Some(status) => {
                tracing::info!(proc = %name, %status, "proc stopped while starting");
                Ok(status)
            }
            None => Err(HostError::NoSuchProc(name.clone())),
        }
    }
}

/// Beyond the grace (from the start of a bulk terminate), how long it
/// waits for the procs that were starting or backing off to be released.
const NOT_READY_STOP_SLACK: Duration = Duration::from_secs(2);

/// What a stop or kill acts on.
enum Target<H> {
    /// A ready proc: the caller stops it.
    Ready {
        key: ProcKey,
        handle: H,
        gone: watch::Receiver<bool>,
    },
    /// A proc its spawn still holds (starting, or being released after a
    /// failed spawn): the spawn stops it; the caller waits.
    Starting {
        handle: Option<H>,
        released: watch::Receiver<Option<Released>>,
    },
}

impl<M: ProcManager + BulkTerminate + 'static> Host<M> {
    /// Terminates every proc the way hyperactor's host does: unbinds all
    /// routes first, then stops at most `max_in_flight` procs at a time,
    /// each with its full escalation (the agent's stop message and SIGTERM,
    /// then SIGKILL `grace` after its own turn began), the next as soon as
    /// one is gone; then closes their inbound rings. Returns once every proc
    /// is gone. The whole can take `ceil(procs / max_in_flight) × grace`;
    /// for one overall bound use [`Host::terminate_children_with`] and
    /// [`BulkTerminateMode::OverallDeadline`].
    pub async fn terminate_children(
        &self,
        grace: Duration,
        max_in_flight: usize,
    ) -> TerminateSummary {
        self.terminate_children_with(grace, BulkTerminateMode::PerProcGrace { max_in_flight })
            .await
    }

    /// Terminates every proc as `mode` says (see [`BulkTerminateMode`]):
    /// unbinds all routes first, has the manager stop the procs, then closes
    /// their inbound rings. Returns once every proc is gone. Every proc is
    /// first marked stopped, so that none is restarted by its restart
    /// policy: a proc backing off ends at once, and one starting (a restart
    /// among them) is stopped by its spawn with the same grace (waited for
    /// up to the grace plus 2 s from the start). The host's own
    /// shutdown (`hostmux serve` on SIGTERM) uses
    /// [`BulkTerminateMode::OverallDeadline`], so it ends within its grace
    /// plus a small constant however many procs there are.
    pub async fn terminate_children_with(
        &self,
        grace: Duration,
        mode: BulkTerminateMode,
    ) -> TerminateSummary {
        let span = tracing::info_span!("terminate_children", ?grace, ?mode);
        let not_ready_deadline = tokio::time::Instant::now() + grace + NOT_READY_STOP_SLACK;
        async {
            let mut not_ready = Vec::new();
            let targets: Vec<(ProcName, ProcKey, watch::Receiver<bool>)> = {
                let procs = self.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
                // Marked stopped, every one: none is restarted, a starting
                // one is stopped by its spawn, a backing-off one ends.
                for entry in procs.values() {
                    entry.stop.send_modify(|r| {
                        *r = Some(StopRequest::merge(*r, StopRequest::Terminate(grace)));
                    });
                    if entry.phase != Phase::Ready {
                        not_ready.push(entry.released.clone());
                    }
                }
                procs
                    .iter()
                    .filter_map(|(name, entry)| {
                        Some((name.clone(), entry.key?, entry.gone.clone()?))
                    })
                    .collect()
            };
            // Unbind every route first so no new frame is routed to a proc
            // that is going away, but leave the procs alone until the
            // manager has taken its snapshot of them: neither detach (a
            // closed inbound ring is a proc's cue to exit) nor ask agents to
            // stop here. A proc that left on its own before `terminate_all`
            // looked would be missing from the summary. The polite stop
            // through the agent comes from the manager's polite-stop hook
            // (`serve_processes` installs it) once escalation starts.
            for (name, key, _) in &targets {
                self.unbind(name, *key);
            }
            let summary = self.inner.manager.terminate_all_with(grace, mode).await;
            for (_, key, _) in &targets {
                self.detach(*key);
            }
            for (_, _, gone) in targets {
                wait_gone(gone).await;
            }
            // Procs that were starting (a restart among them) or backing
            // off: their spawns stop them with the same grace.
            let stopped = async {
                for released in not_ready {
                    wait_released(released).await;
                }
            };
            if tokio::time::timeout_at(not_ready_deadline, stopped)
                .await
                .is_err()
            {
                tracing::warn!("a starting proc was not released within the grace");
            }
            tracing::info!(%summary, "children terminated");
            summary
        }
        .instrument(span)
        .await
    }
}
