//! Restarting procs: the driver of [`Restarts`](crate::restart::Restarts)
//! (the policy's sans-IO core).
//!
//! A proc spawned with a restarting policy keeps its name in the registry
//! across its instances. When an instance ends, [`Host::settle`] asks the
//! policy (under the registry's lock, so nothing else can take the name in
//! between) and either frees the name as for any proc, or replaces the
//! entry with a [`Phase::BackingOff`] one and hands it to the proc's
//! supervisor task. That task waits out the delay (or a stop), turns the
//! entry into a starting one and starts the next instance through
//! [`Host::restart_instance`], the same path a spawn takes: new rings, the
//! same spec (a [`ProcSpec::restart_copy`]), readiness under the original
//! spawn's ready timeout. The route is bound again when the rings exist,
//! so a frame to the name is answered `NoSuchProc` while it backs off
//! (as for an ended proc), `NotReady` while it starts, and delivered to
//! the new instance once it is ready.
//!
//! Each instance gets new rings, not its predecessor's: a crashed proc may
//! have left its rings in any state (they are writable by the child and
//! read as untrusted), and a grandchild it left behind may still map them.
//! Fresh memfds cost one allocation per restart and rule both out.
//!
//! What ends restarting: a stop or kill of the proc in any phase (it marks
//! the entry's stop request, which [`Host::settle`] and the supervisor
//! read), bulk terminate and the host's shutdown (which mark every entry
//! first), the start limit, and the host itself going away.

use crate::restart::{Decision, RestartPolicy, Restarts};

use super::*;

/// One supervised proc's restart state, shared by the registry entries of
/// its instances (for `ps` and [`Host::settle`]).
pub(crate) struct Supervision {
    restarts: Mutex<Restarts>,
    /// To the proc's supervisor task: an instance ended and the entry now
    /// backs off. Closed once the task is gone.
    wake: tokio::sync::mpsc::UnboundedSender<Backoff>,
}

impl Supervision {
    fn restarts(&self) -> std::sync::MutexGuard<'_, Restarts> {
        self.restarts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Restarts so far, how the last instance ended, and the wait left
    /// before the next restart.
    pub(crate) fn snapshot(&self, now: Instant) -> (RestartRecord, Option<Duration>) {
        let restarts = self.restarts();
        (
            RestartRecord {
                restarts: restarts.count(),
                last_exit: restarts.last_exit().cloned(),
            },
            restarts.next_in(now),
        )
    }
}

/// What `ps` shows of a proc's restarts.
#[derive(Debug, Clone, Default)]
pub(crate) struct RestartRecord {
    pub(crate) restarts: u32,
    pub(crate) last_exit: Option<TerminalStatus>,
}

/// A backing-off entry, handed to the supervisor task.
struct Backoff {
    spawn_id: u64,
    delay: Duration,
    released: watch::Sender<Option<Released>>,
    stop: watch::Receiver<Option<StopRequest>>,
}

/// A supervisor about to be started for a proc being spawned.
pub(super) struct Supervisor<S> {
    supervision: Arc<Supervision>,
    template: S,
    wake: tokio::sync::mpsc::UnboundedReceiver<Backoff>,
}

impl<S> Supervisor<S> {
    /// The supervisor `spec` asks for, if its policy restarts; fails if the
    /// spec cannot give a copy of itself for the restarts.
    pub(super) fn of<M: ProcManager>(name: &ProcName, spec: &S) -> Result<Option<Self>, HostError>
    where
        S: ProcSpec<M>,
    {
        let policy: RestartPolicy = spec.restart_policy();
        if !policy.restarts() {
            return Ok(None);
        }
        let template = spec
            .restart_copy()
            .ok_or_else(|| HostError::CannotRestart {
                name: name.clone(),
                reason: "its spec gives no copy of itself for a restart (ProcSpec::restart_copy)"
                    .to_owned(),
            })?;
        let (wake, wakes) = tokio::sync::mpsc::unbounded_channel();
        Ok(Some(Self {
            supervision: Arc::new(Supervision {
                restarts: Mutex::new(Restarts::new(policy)),
                wake,
            }),
            template,
            wake: wakes,
        }))
    }
}

impl<M: ProcManager + 'static> Host<M> {
    /// Puts `supervisor`'s state on the entry of spawn `spawn_id`, before
    /// the proc starts: an instance that ends at once is restarted too.
    pub(super) fn attach_supervision<S>(
        &self,
        name: &ProcName,
        spawn_id: u64,
        supervisor: &Supervisor<S>,
    ) {
        self.with_own_entry(name, spawn_id, |entry| {
            entry.supervision = Some(supervisor.supervision.clone());
        });
    }

    /// Runs `supervisor` for `name` (whose first instance is ready) until
    /// the proc is done for good.
    pub(super) fn run_supervisor<S: ProcSpec<M>>(
        &self,
        name: &ProcName,
        supervisor: Supervisor<S>,
        ready_timeout: Duration,
    ) where
        M::Config: 'static,
    {
        let Supervisor {
            supervision,
            template,
            mut wake,
        } = supervisor;
        // The task must not keep the sender alive: it ends when the last
        // entry holding the supervision is gone.
        drop(supervision);
        let host = WeakHost(Arc::downgrade(&self.inner));
        let name = name.clone();
        let span = tracing::info_span!("supervise", proc = %name);
        tokio::spawn(
            async move {
                while let Some(mut backoff) = wake.recv().await {
                    let stopped = tokio::select! {
                        () = tokio::time::sleep(backoff.delay) => false,
                        _ = super::spawn::stop_requested(&mut backoff.stop) => true,
                    };
                    let Some(host) = host.upgrade() else { return };
                    let spec = if stopped {
                        None
                    } else {
                        template.restart_copy()
                    };
                    let restarting = spec.is_some() && host.begin_restart(&name, backoff.spawn_id);
                    match spec {
                        Some(spec) if restarting => {
                            tracing::info!("restarting proc");
                            let _ = host
                                .restart_instance(
                                    &name,
                                    backoff.spawn_id,
                                    backoff.released,
                                    backoff.stop,
                                    spec,
                                    ready_timeout,
                                )
                                .await;
                        }
                        _ => {
                            host.end_backoff(&name, backoff.spawn_id, backoff.released);
                            return;
                        }
                    }
                }
            }
            .instrument(span),
        );
    }

    /// An instance of `name` (spawn `spawn_id`) ended (`status`, `None` if
    /// its process never started) after `uptime`; `was_ready` says whether
    /// it had become ready. Under the registry's lock: if the proc's
    /// restart policy restarts it, its entry becomes a backing-off one
    /// handed to its supervisor; otherwise its end is remembered for `ps`
    /// and its name freed.
    pub(super) fn settle(
        &self,
        name: &ProcName,
        spawn_id: u64,
        pid: Option<u32>,
        status: Option<TerminalStatus>,
        uptime: Duration,
        was_ready: bool,
    ) {
        let mut procs = self.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = procs.get(name).filter(|e| e.spawn_id == spawn_id) else {
            drop(procs);
            if let Some(status) = status {
                self.remember_gone(name, pid, status, uptime, None);
            }
            return;
        };
        let stopped = entry.stop.borrow().is_some();
        let (status, record) = match (entry.supervision.clone(), status) {
            (Some(supervision), Some(status)) => {
                let decision = supervision.restarts().handle_end(
                    &status,
                    was_ready.then_some(uptime),
                    stopped,
                    Instant::now(),
                );
                let status = match decision {
                    Decision::RestartAfter(delay) if !supervision.wake.is_closed() => {
                        let (released_tx, released) = watch::channel(None);
                        let (stop, stop_rx) = watch::channel(None);
                        let spawn_id = self
                            .inner
                            .next_spawn_id
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let backoff = Backoff {
                            spawn_id,
                            delay,
                            released: released_tx,
                            stop: stop_rx,
                        };
                        tracing::info!(proc = %name, %status, ?delay, "proc ended; restarting it after the delay");
                        procs.insert(
                            name.clone(),
                            Entry {
                                spawn_id,
                                phase: Phase::BackingOff,
                                key: None,
                                handle: None,
                                gone: None,
                                released,
                                stop,
                                started: None,
                                failed: false,
                                supervision: Some(supervision.clone()),
                            },
                        );
                        let _ = supervision.wake.send(backoff);
                        return;
                    }
                    Decision::LimitReached(reason) => {
                        tracing::warn!(proc = %name, last_exit = %status, "not restarting the proc: {reason}");
                        TerminalStatus::Failed {
                            reason,
                            output: status.output().cloned().map(Arc::new),
                        }
                    }
                    _ => status,
                };
                (Some(status), Some(supervision.snapshot(Instant::now()).0))
            }
            (supervision, status) => (status, supervision.map(|s| s.snapshot(Instant::now()).0)),
        };
        procs.remove(name);
        drop(procs);
        if let Some(status) = status {
            self.remember_gone(name, pid, status, uptime, record);
        }
    }

    /// Turns the backing-off entry of spawn `spawn_id` into a starting one
    /// for the next instance; `false` if a stop got there first (or the
    /// entry is gone).
    fn begin_restart(&self, name: &ProcName, spawn_id: u64) -> bool {
        self.with_own_entry(name, spawn_id, |entry| {
            if entry.phase != Phase::BackingOff || entry.stop.borrow().is_some() {
                return false;
            }
            entry.phase = Phase::Starting;
            if let Some(supervision) = &entry.supervision {
                supervision.restarts().handle_restart();
            }
            true
        })
        .unwrap_or(false)
    }

    /// Ends a backing-off proc for good (a stop or kill reached it, or the
    /// host is going away): remembers how its last instance ended and frees
    /// its name; the stop that is waiting learns that status.
    fn end_backoff(
        &self,
        name: &ProcName,
        spawn_id: u64,
        released: watch::Sender<Option<Released>>,
    ) {
        let entry = {
            let mut procs = self.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
            match procs.get(name) {
                Some(entry) if entry.spawn_id == spawn_id => procs.remove(name),
                _ => None,
            }
        };
        let record = entry
            .and_then(|entry| entry.supervision)
            .map(|supervision| supervision.snapshot(Instant::now()).0);
        let status = record.as_ref().and_then(|r| r.last_exit.clone());
        if let Some(status) = &status {
            tracing::info!(proc = %name, last_exit = %status, "proc stopped while backing off");
            self.remember_gone(name, None, status.clone(), Duration::ZERO, record);
        }
        let _ = released.send(Some(Released { status }));
    }
}
