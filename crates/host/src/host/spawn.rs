//! Spawning a proc: rings, the manager's start, readiness and the agent's
//! first answer.

use super::*;

impl<M: ProcManager + 'static> Host<M> {
    /// Spawns a proc called `name`: creates its rings, starts it through the
    /// manager, waits for it to report ready (under
    /// [`HostConfig::spawn_ready_timeout`]; zero waits without limit; use
    /// [`Host::spawn_with_ready_timeout`] for a timeout of its own) and
    /// returns its id `(frontend address, name)`. A proc that does not
    /// report ready in time is killed and the spawn fails with
    /// [`HostError::ReadyTimeout`]; one that ends first fails at once with
    /// [`HostError::NotReady`] carrying how it ended.
    ///
    /// A spec whose proc does not receive frames
    /// ([`ProcSpec::receives_frames`] is false, e.g. a [`crate::ProcessProc`]
    /// with a readiness mode other than the boot protocol) is ready when
    /// its manager says so; frames to it are answered `NotReady`.
    ///
    /// The id is also the reference to the proc's agent: the agent answers
    /// frames sent to this id on the reserved port
    /// [`hostmux_wire::AGENT_PORT`] (ping, stop, stats), and for procs that
    /// ping their agent (see [`ProcSpec::pings_agent`]) it has already
    /// answered once before `spawn` returns. There is no separate agent
    /// handle to keep.
    ///
    /// The name is bound in the routing table as soon as the rings exist, so
    /// frames sent before the proc is ready come back `NotReady` rather than
    /// `NoSuchProc`; a duplicate name fails with [`HostError::ProcExists`],
    /// the service proc's name with [`HostError::ReservedName`].
    ///
    /// While it starts, the proc is in the host's registry (`list` shows it
    /// `Starting`); [`Host::terminate_proc`] or [`Host::kill_proc`] on it
    /// stops or kills it and this spawn fails with
    /// [`HostError::StoppedWhileStarting`].
    ///
    /// A spec whose [`ProcSpec::restart_policy`] restarts (see
    /// [`RestartPolicy`](crate::RestartPolicy)) keeps the name once the
    /// proc is ready: when an instance ends, the host starts the next one
    /// after the policy's wait (new rings, the same spec through
    /// [`ProcSpec::restart_copy`], this spawn's ready timeout), until a
    /// stop or kill, bulk terminate, the host's shutdown or the start
    /// limit. A first start that fails is returned here, never restarted.
    ///
    /// Cancellation-safe: if the returned future is dropped before it
    /// completes (at any await point), the name's route is unbound at once,
    /// and a task kills the process (if it was started), returns its
    /// data-plane slot and frees the name; a new spawn of the same name
    /// waits for that release instead of failing.
    pub async fn spawn(&self, name: &str, spec: impl ProcSpec<M>) -> Result<ProcId, HostError>
    where
        M::Config: 'static,
    {
        self.spawn_with_ready_timeout(name, spec, self.inner.cfg.spawn_ready_timeout)
            .await
    }

    /// [`Host::spawn`] with a spawn-ready timeout for this spawn only,
    /// instead of [`HostConfig::spawn_ready_timeout`] (`Duration::ZERO`:
    /// wait without limit). The timeout covers the manager's ready report
    /// and, for procs that ping their agent, the agent's first answer.
    pub async fn spawn_with_ready_timeout(
        &self,
        name: &str,
        spec: impl ProcSpec<M>,
        ready_timeout: Duration,
    ) -> Result<ProcId, HostError>
    where
        M::Config: 'static,
    {
        let name = ProcName::with_max_len(name, self.inner.cfg.limits.max_name_len)?;
        let span = tracing::info_span!("spawn", proc = %name);
        self.spawn_inner(name, spec, ready_timeout)
            .instrument(span)
            .await
    }

    async fn spawn_inner(
        &self,
        name: ProcName,
        spec: impl ProcSpec<M>,
        ready_timeout: Duration,
    ) -> Result<ProcId, HostError> {
        let supervisor = supervise::Supervisor::of(&name, &spec)?;
        let (mut starting, stop) = self.reserve(&name).await?;
        if let Some(supervisor) = &supervisor {
            self.attach_supervision(&name, starting.spawn_id, supervisor);
        }
        let counters = &self.inner.lifecycle;
        counters.spawns_started.fetch_add(1, Ordering::Relaxed);
        match self.start(&mut starting, spec, ready_timeout, stop).await {
            Ok(id) => {
                counters.spawns_ready.fetch_add(1, Ordering::Relaxed);
                if let Some(supervisor) = supervisor {
                    self.run_supervisor(&name, supervisor, ready_timeout);
                }
                Ok(id)
            }
            Err(failure) => {
                counters.spawns_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %failure.error, "spawn failed");
                starting.release(failure.status).await;
                Err(failure.error)
            }
        }
    }

    /// Registers `name` as starting. A name held by a proc that a failed or
    /// dropped spawn is still releasing is waited for; any other holder (a
    /// proc in the registry) makes it a duplicate, and the service proc's
    /// name is reserved. Clients are not consulted: their names are a namespace
    /// of their own, so a client never makes a spawn fail.
    async fn reserve(
        &self,
        name: &ProcName,
    ) -> Result<(Starting<M>, watch::Receiver<Option<StopRequest>>), HostError> {
        let inner = &self.inner;
        loop {
            let releasing = {
                let mut procs = inner.procs.lock().unwrap_or_else(|e| e.into_inner());
                match procs.get(name) {
                    Some(entry) if entry.phase == Phase::Releasing => entry.released.clone(),
                    Some(_) => return Err(HostError::ProcExists(name.clone())),
                    None if *name == inner.service_name => {
                        return Err(HostError::ReservedName(name.clone()))
                    }
                    None if inner.table.contains(name.as_bytes()) => {
                        return Err(HostError::ProcExists(name.clone()))
                    }
                    None => {
                        let spawn_id = inner
                            .next_spawn_id
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let (released_tx, released) = watch::channel(None);
                        let (stop, stop_rx) = watch::channel(None);
                        procs.insert(
                            name.clone(),
                            Entry {
                                spawn_id,
                                phase: Phase::Starting,
                                key: None,
                                handle: None,
                                gone: None,
                                released,
                                stop,
                                started: None,
                                failed: false,
                                supervision: None,
                            },
                        );
                        let starting = Starting {
                            host: self.clone(),
                            name: name.clone(),
                            spawn_id,
                            key: None,
                            handle: None,
                            started: None,
                            released: Some(released_tx),
                        };
                        return Ok((starting, stop_rx));
                    }
                }
            };
            wait_released(releasing).await;
        }
    }

    async fn start(
        &self,
        starting: &mut Starting<M>,
        spec: impl ProcSpec<M>,
        ready_timeout: Duration,
        mut stop: watch::Receiver<Option<StopRequest>>,
    ) -> Result<ProcId, SpawnFailure> {
        let inner = &self.inner;
        let name = &starting.name.clone();
        let ring_error = |source: RingError| HostError::Ring {
            name: name.clone(),
            source,
        };
        let pings_agent = spec.pings_agent();
        let receives_frames = spec.receives_frames();
        let (inbound_bytes, outbound_bytes) = spec.ring_sizes();
        let inbound_bytes = inbound_bytes.unwrap_or(inner.cfg.inbound_ring_bytes);
        let outbound_bytes = outbound_bytes.unwrap_or(inner.cfg.outbound_ring_bytes);
        // The key every I/O thread files the proc under. Held by the spawn
        // from now on: if it fails or is dropped, its release removes the
        // proc from every thread and gives the key back.
        let key = inner.proc_keys.allocate();
        starting.key = Some(key);
        // The proc's own doorbell, wired into the host's ends before they go
        // to the I/O threads: rung only when the proc sleeps in doorbell mode.
        let proc_doorbell = Doorbell::new().map_err(ring_error)?;
        // One lane per I/O thread: its pair of rings, whose host ends go to
        // that thread and whose proc side rings that thread's doorbell.
        let mut child_lanes = Vec::with_capacity(inner.control.len());
        let mut added = Vec::with_capacity(inner.control.len());
        for thread in 0..inner.control.len() {
            let lane = Lane::create(
                inbound_bytes,
                outbound_bytes,
                inner.cfg.ring_memory,
                &proc_doorbell,
            )
            .map_err(ring_error)?;
            let control = inner.control.thread(thread);
            let host_doorbell = control.doorbell().try_clone().map_err(ring_error)?;
            child_lanes.push(crate::spec::LaneFds {
                inbound: lane.child_inbound,
                outbound: lane.child_outbound,
                host_doorbell,
            });
            let (done, was_added) = oneshot::channel();
            control.send(Command::AddProc {
                key,
                name: name.clone(),
                inbound: lane.inbound,
                inbound_memfd: lane.inbound_memfd,
                outbound: lane.outbound,
                done,
            })?;
            added.push(was_added);
        }
        for (thread, was_added) in added.into_iter().enumerate() {
            if !was_added.await.map_err(|_| HostError::IoThreadGone)? {
                return Err(HostError::Unexpected(format!(
                    "I/O thread {thread} has proc slot {key:?} taken"
                ))
                .into());
            }
        }
        if inner.table.insert(name.clone(), Route::Proc(key)).is_err() {
            return Err(HostError::ProcExists(name.clone()).into());
        }
        self.with_own_entry(name, starting.spawn_id, |entry| entry.key = Some(key));
        let request = *stop.borrow();
        if let Some(request) = request {
            return Err(SpawnFailure {
                error: HostError::StoppedWhileStarting {
                    name: name.clone(),
                    how: request.past_tense(),
                    status: never_started(),
                },
                status: Some(never_started()),
            });
        }
        let rings = ChildRings {
            name: name.clone(),
            lanes: child_lanes,
            proc_doorbell,
            limits: inner.cfg.limits,
            id: ProcId::new(inner.identity.primary().clone(), name.clone()),
            service_name: inner.service_name.clone(),
        };
        let config = spec.into_config(rings)?;
        let handle = inner
            .manager
            .spawn(name.clone(), config)
            .await
            .map_err(|source| HostError::Spawn {
                name: name.clone(),
                source,
            })?;
        let started = Instant::now();
        starting.handle = Some(handle.clone());
        starting.started = Some(started);
        // A proc that broke its ring before this point was only unbound:
        // kill it now that there is a handle to kill.
        let failed_early = self.with_own_entry(name, starting.spawn_id, |entry| {
            entry.handle = Some(handle.clone());
            entry.started = Some(started);
            entry.failed
        });
        if failed_early == Some(true) {
            tracing::warn!("killing proc: it corrupted its ring before it was ready");
            let _ = handle.kill().await;
        }
        // A stop or kill while it starts ends the wait for readiness. A
        // kill may have ended the proc first (the wait then fails): the
        // stop request still decides what the spawn reports.
        let ready = tokio::select! {
            ready = self.await_ready(name, key, &handle, pings_agent, ready_timeout) => ready,
            request = stop_requested(&mut stop) => {
                return Err(self.stop_starting(name, key, &handle, request).await);
            }
        };
        if let Err(e) = ready {
            let request = *stop.borrow();
            if let Some(request) = request {
                return Err(self.stop_starting(name, key, &handle, request).await);
            }
            return Err(e.into());
        }
        // Wait until the I/O thread delivers to it: a frame sent once
        // `spawn` returned must not come back `NotReady`. A proc that never
        // maps its rings stays not ready for the data plane.
        if receives_frames {
            let mut marked = Vec::with_capacity(inner.control.len());
            inner.control.send_each(|_| {
                let (done, was_marked) = oneshot::channel();
                marked.push(was_marked);
                Command::MarkReady {
                    key,
                    agent: pings_agent,
                    done,
                }
            })?;
            for was_marked in marked {
                was_marked.await.map_err(|_| HostError::IoThreadGone)?;
            }
        }
        // Ready, unless a stop got in first: the registry's lock decides.
        let (gone_tx, gone_rx) = watch::channel(false);
        let stopped = self.with_own_entry(name, starting.spawn_id, |entry| {
            let request = *entry.stop.borrow();
            if request.is_none() {
                entry.phase = Phase::Ready;
                entry.gone = Some(gone_rx);
            }
            request
        });
        if let Some(Some(request)) = stopped {
            return Err(self.stop_starting(name, key, &handle, request).await);
        }
        let released = starting.disarm();
        let weak: Weak<Inner<M>> = Arc::downgrade(&self.inner);
        let watched = name.clone();
        let spawn_id = starting.spawn_id;
        tokio::spawn(
            async move {
                let status = handle.wait().await;
                tracing::info!(?status, "proc exited");
                if let Some(inner) = weak.upgrade() {
                    let host = Host { inner };
                    host.forget(&watched, key).await;
                    host.settle(
                        &watched,
                        spawn_id,
                        handle.pid(),
                        status.as_ref().ok().cloned(),
                        started.elapsed(),
                        true,
                    );
                }
                let _ = gone_tx.send(true);
                if let Some(released) = released {
                    let _ = released.send(Some(Released {
                        status: status.ok(),
                    }));
                }
            }
            .instrument(tracing::info_span!("proc", proc = %name)),
        );
        tracing::info!("proc ready");
        Ok(ProcId::new(inner.identity.primary().clone(), name.clone()))
    }

    /// Starts the next instance of a supervised proc (the restart
    /// supervisor's "respawn this spec"): its entry (spawn `spawn_id`) is
    /// already `Starting`, `released` and `stop` are that entry's. Runs
    /// like a spawn (new rings, readiness under `ready_timeout`); a failure
    /// is settled like any end of the proc (another restart, or the end).
    pub(super) async fn restart_instance(
        &self,
        name: &ProcName,
        spawn_id: u64,
        released: watch::Sender<Option<Released>>,
        stop: watch::Receiver<Option<StopRequest>>,
        spec: impl ProcSpec<M>,
        ready_timeout: Duration,
    ) -> Result<ProcId, HostError> {
        let mut starting = Starting {
            host: self.clone(),
            name: name.clone(),
            spawn_id,
            key: None,
            handle: None,
            started: None,
            released: Some(released),
        };
        match self.start(&mut starting, spec, ready_timeout, stop).await {
            Ok(id) => Ok(id),
            Err(failure) => {
                if matches!(failure.error, HostError::StoppedWhileStarting { .. }) {
                    tracing::info!(error = %failure.error, "restart stopped");
                } else {
                    tracing::warn!(error = %failure.error, "restart failed");
                }
                if matches!(failure.error, HostError::IoThreadGone) {
                    // The host stops serving: no further restart.
                    self.with_own_entry(name, spawn_id, |entry| {
                        entry.stop.send_replace(Some(StopRequest::Kill));
                    });
                }
                // `ps` says why, even if no process was started.
                let status = failure.status.or_else(|| {
                    Some(TerminalStatus::Failed {
                        reason: format!("restart failed: {}", failure.error),
                        output: None,
                    })
                });
                starting.release(status).await;
                Err(failure.error)
            }
        }
    }

    /// Carries out a stop or kill that reached a starting proc: unbinds it
    /// and stops it (the full escalation) or kills it. The failure the spawn
    /// then returns says so.
    async fn stop_starting(
        &self,
        name: &ProcName,
        key: ProcKey,
        handle: &M::Handle,
        request: StopRequest,
    ) -> SpawnFailure {
        tracing::info!(?request, "stop requested while starting");
        self.unbind(name, key);
        let result = match request {
            StopRequest::Terminate(grace) => handle.terminate(grace).await,
            StopRequest::Kill => handle.kill().await,
        };
        match result {
            Ok(status) | Err(TerminateError::AlreadyTerminated(status)) => SpawnFailure {
                error: HostError::StoppedWhileStarting {
                    name: name.clone(),
                    how: request.past_tense(),
                    status: status.clone(),
                },
                status: Some(status),
            },
            Err(source) => HostError::Terminate {
                name: name.clone(),
                source,
            }
            .into(),
        }
    }

    /// Runs `f` on `name`'s entry if it is still the one spawn `spawn_id` made.
    pub(super) fn with_own_entry<T>(
        &self,
        name: &ProcName,
        spawn_id: u64,
        f: impl FnOnce(&mut Entry<M::Handle>) -> T,
    ) -> Option<T> {
        let mut procs = self.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
        procs
            .get_mut(name)
            .filter(|entry| entry.spawn_id == spawn_id)
            .map(f)
    }

    /// Removes `name`'s entry if it is still the one spawn `spawn_id` made.
    fn remove_own_entry(&self, name: &ProcName, spawn_id: u64) {
        let mut procs = self.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
        if procs.get(name).is_some_and(|e| e.spawn_id == spawn_id) {
            procs.remove(name);
        }
    }

    /// Releases what a spawn that did not finish holds: kills its process
    /// (if one started), returns its data-plane slot, unbinds its route,
    /// records how it ended and frees its name. `status` is how it ended if
    /// the caller already knows.
    async fn release_starting(
        &self,
        parts: StartingParts<M::Handle>,
        status: Option<TerminalStatus>,
    ) {
        let StartingParts {
            name,
            spawn_id,
            key,
            handle,
            started,
            released,
        } = parts;
        let status = match &handle {
            Some(handle) => match handle.kill().await {
                Ok(status) | Err(TerminateError::AlreadyTerminated(status)) => Some(status),
                Err(e) => {
                    tracing::error!(proc = %name, error = %e, "could not kill the proc of a failed spawn");
                    status
                }
            },
            None => status,
        };
        if let Some(key) = key {
            self.forget(&name, key).await;
        }
        let pid = handle.as_ref().and_then(|h| h.pid());
        let uptime = started.map_or(Duration::ZERO, |t| t.elapsed());
        self.settle(&name, spawn_id, pid, status.clone(), uptime, false);
        let _ = released.send(Some(Released { status }));
    }
    /// Waits for the ready record and, if the spec asks, an answered agent
    /// ping, all under the spawn-ready timeout.
    async fn await_ready(
        &self,
        name: &ProcName,
        key: ProcKey,
        handle: &M::Handle,
        pings_agent: bool,
        timeout: Duration,
    ) -> Result<(), HostError> {
        let ready = async {
            handle.ready().await.map_err(|source| HostError::NotReady {
                name: name.clone(),
                source,
            })?;
            if pings_agent {
                let (reply, answer) = oneshot::channel();
                self.inner.control.send(Command::AgentPing { key, reply })?;
                tokio::select! {
                    answer = answer => match answer {
                        Ok(AgentResponse::Pong { .. }) => {}
                        Ok(other) => return Err(HostError::AgentUnanswered {
                            name: name.clone(),
                            reason: format!("it answered the ping with {other:?}"),
                        }),
                        Err(_) => return Err(HostError::AgentUnanswered {
                            name: name.clone(),
                            reason: "its ring was failed or closed before it answered".to_owned(),
                        }),
                    },
                    status = handle.wait() => return Err(HostError::AgentUnanswered {
                        name: name.clone(),
                        reason: match status {
                            Ok(status) => format!("it ended first ({status})"),
                            Err(e) => format!("its supervisor is gone ({e})"),
                        },
                    }),
                }
            }
            Ok(())
        };
        if timeout.is_zero() {
            ready.await
        } else {
            tokio::time::timeout(timeout, ready)
                .await
                .unwrap_or_else(|_| {
                    Err(HostError::ReadyTimeout {
                        name: name.clone(),
                        timeout,
                    })
                })
        }
    }
}

/// Why a spawn failed, and how its proc ended if that is already known.
struct SpawnFailure {
    error: HostError,
    status: Option<TerminalStatus>,
}

impl From<HostError> for SpawnFailure {
    fn from(error: HostError) -> Self {
        Self {
            error,
            status: None,
        }
    }
}

/// The status of a proc stopped before its process was started.
fn never_started() -> TerminalStatus {
    TerminalStatus::Failed {
        reason: "stopped before its process was started".to_owned(),
        output: None,
    }
}

/// Resolves with the first stop or kill asked for (never, if nobody can
/// ask any more).
pub(super) async fn stop_requested(stop: &mut watch::Receiver<Option<StopRequest>>) -> StopRequest {
    if let Ok(request) = stop.wait_for(Option::is_some).await {
        if let Some(request) = *request {
            return request;
        }
    }
    std::future::pending().await
}

/// What a spawn under way holds.
struct StartingParts<H> {
    name: ProcName,
    spawn_id: u64,
    key: Option<ProcKey>,
    handle: Option<H>,
    started: Option<Instant>,
    released: watch::Sender<Option<Released>>,
}

/// A spawn under way: its name is reserved and, as it progresses, it holds a
/// data-plane slot, a route and a process. [`Host::spawn`] is
/// cancellation-safe through this guard: if the spawn future is dropped at
/// any await point, `Drop` unbinds the route at once and a task kills the
/// process, returns the slot, records how it ended and frees the name (a
/// new spawn of the name waits for that).
struct Starting<M: ProcManager + 'static> {
    host: Host<M>,
    name: ProcName,
    spawn_id: u64,
    /// Its key, once allocated: the spawn's release removes the proc from
    /// every I/O thread and gives the key back.
    key: Option<ProcKey>,
    handle: Option<M::Handle>,
    started: Option<Instant>,
    /// `None` once released or handed to the ready proc's watcher.
    released: Option<watch::Sender<Option<Released>>>,
}

impl<M: ProcManager + 'static> Starting<M> {
    fn take_parts(&mut self) -> Option<StartingParts<M::Handle>> {
        Some(StartingParts {
            released: self.released.take()?,
            name: self.name.clone(),
            spawn_id: self.spawn_id,
            key: self.key,
            handle: self.handle.take(),
            started: self.started,
        })
    }

    /// The spawn succeeded: the proc's watcher takes over its release.
    fn disarm(&mut self) -> Option<watch::Sender<Option<Released>>> {
        self.released.take()
    }

    /// The spawn failed: release everything before returning the error.
    async fn release(mut self, status: Option<TerminalStatus>) {
        if let Some(parts) = self.take_parts() {
            let host = self.host.clone();
            host.release_starting(parts, status).await;
        }
    }
}

impl<M: ProcManager + 'static> Drop for Starting<M> {
    fn drop(&mut self) {
        let Some(parts) = self.take_parts() else {
            return;
        };
        tracing::info!(proc = %parts.name, "spawn dropped before it finished; releasing the proc");
        let host = self.host.clone();
        // At once: new frames to the name are not routed to it, and `ps`
        // shows it terminating.
        host.with_own_entry(&parts.name, parts.spawn_id, |entry| {
            entry.phase = Phase::Releasing;
        });
        if let Some(key) = parts.key {
            host.unbind(&parts.name, key);
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { host.release_starting(parts, None).await });
            }
            Err(_) => {
                // No runtime left (it is shutting down): return the slot and
                // free the name; the process ends with the host (PDEATHSIG).
                if let Some(key) = parts.key {
                    let _ = host.inner.control.send_each(|_| {
                        let (done, _) = oneshot::channel();
                        Command::Remove(key, done)
                    });
                }
                host.remove_own_entry(&parts.name, parts.spawn_id);
            }
        }
    }
}

/// One lane of a new proc: the host's ends of its two rings (for one I/O
/// thread), the inbound ring's memfd (to read back what is left in it
/// when the proc goes) and the proc's ends as memfds.
struct Lane {
    inbound: hostmux_ring::Producer,
    inbound_memfd: OwnedFd,
    outbound: hostmux_ring::Consumer,
    child_inbound: OwnedFd,
    child_outbound: OwnedFd,
}

impl Lane {
    /// Creates the rings (their memory populated per `memory`); the
    /// host's ends ring `proc_doorbell` when the proc sleeps on the inbound
    /// ring or waits for outbound room.
    fn create(
        inbound_bytes: usize,
        outbound_bytes: usize,
        memory: hostmux_ring::RingMemory,
        proc_doorbell: &Doorbell,
    ) -> Result<Lane, RingError> {
        let inbound = SharedRing::create_with(inbound_bytes, memory)?;
        let outbound = SharedRing::create_with(outbound_bytes, memory)?;
        let dup = |ring: &SharedRing| -> Result<OwnedFd, RingError> {
            ring.memfd()
                .try_clone_to_owned()
                .map_err(|e| RingError::Os {
                    op: "dup",
                    source: e,
                })
        };
        let child_inbound = dup(&inbound)?;
        let child_outbound = dup(&outbound)?;
        let inbound_memfd = dup(&inbound)?;
        let mut producer = inbound.into_producer()?;
        let mut consumer = outbound.into_consumer()?;
        producer.set_consumer_doorbell(Some(proc_doorbell.try_clone()?));
        consumer.set_producer_doorbell(Some(proc_doorbell.try_clone()?));
        Ok(Lane {
            inbound: producer,
            inbound_memfd,
            outbound: consumer,
            child_inbound,
            child_outbound,
        })
    }
}
