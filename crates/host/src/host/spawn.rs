//! Spawning a proc: rings, the manager's start, readiness and the agent's
//! first answer.

use super::*;

impl<M: ProcManager + 'static> Host<M> {
    /// Spawns a proc called `name`: creates its rings, starts it through the
    /// manager, waits for it to report ready (under
    /// [`HostConfig::spawn_ready_timeout`]; zero waits without limit) and
    /// returns its id `(frontend address, name)`.
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
    /// `NoSuchProc`; a duplicate name fails with [`HostError::ProcExists`].
    pub async fn spawn(&self, name: &str, spec: impl ProcSpec<M>) -> Result<ProcId, HostError>
    where
        M::Config: 'static,
    {
        self.spawn_with_timeout(name, spec, self.inner.cfg.spawn_ready_timeout)
            .await
    }

    /// [`Host::spawn`] with its own spawn-ready timeout (zero: none).
    pub(crate) async fn spawn_with_timeout(
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
        let inner = &self.inner;
        {
            let mut procs = inner.procs.lock().unwrap_or_else(|e| e.into_inner());
            if procs.contains_key(&name) || inner.table.contains(name.as_bytes()) {
                return Err(HostError::ProcExists(name));
            }
            procs.insert(name.clone(), Entry::reserved());
        }
        match self.start(&name, spec, ready_timeout).await {
            Ok(id) => Ok(id),
            Err((key, e)) => {
                if let Some(key) = key {
                    self.forget(&name, key).await;
                }
                let mut procs = inner.procs.lock().unwrap_or_else(|e| e.into_inner());
                procs.remove(&name);
                tracing::warn!(error = %e, "spawn failed");
                Err(e)
            }
        }
    }

    async fn start(
        &self,
        name: &ProcName,
        spec: impl ProcSpec<M>,
        ready_timeout: Duration,
    ) -> Result<ProcId, (Option<ProcKey>, HostError)> {
        let inner = &self.inner;
        let ring_error = |source: RingError| {
            (
                None,
                HostError::Ring {
                    name: name.clone(),
                    source,
                },
            )
        };
        let pings_agent = spec.pings_agent();
        let (inbound_bytes, outbound_bytes) = spec.ring_sizes();
        let inbound = SharedRing::create(inbound_bytes.unwrap_or(inner.cfg.inbound_ring_bytes))
            .map_err(ring_error)?;
        let outbound = SharedRing::create(outbound_bytes.unwrap_or(inner.cfg.outbound_ring_bytes))
            .map_err(ring_error)?;
        let dup = |ring: &SharedRing| -> Result<OwnedFd, RingError> {
            ring.memfd()
                .try_clone_to_owned()
                .map_err(|e| RingError::Os {
                    op: "dup",
                    source: e,
                })
        };
        let child_inbound = dup(&inbound).map_err(ring_error)?;
        let child_outbound = dup(&outbound).map_err(ring_error)?;
        let inbound_memfd = dup(&inbound).map_err(ring_error)?;
        let child_doorbell = inner.doorbell.try_clone().map_err(ring_error)?;
        // The proc's own doorbell, wired into the host's ends before they go
        // to the I/O thread: rung only when the proc sleeps in doorbell mode.
        let proc_doorbell = Doorbell::new().map_err(ring_error)?;
        let mut producer = inbound.into_producer().map_err(ring_error)?;
        let mut consumer = outbound.into_consumer().map_err(ring_error)?;
        producer.set_consumer_doorbell(Some(proc_doorbell.try_clone().map_err(ring_error)?));
        consumer.set_producer_doorbell(Some(proc_doorbell.try_clone().map_err(ring_error)?));

        let (reply, key) = oneshot::channel();
        inner
            .control
            .send(Command::AddProc {
                name: name.clone(),
                inbound: producer,
                inbound_memfd,
                outbound: consumer,
                reply,
            })
            .map_err(|e| (None, e))?;
        let key = key.await.map_err(|_| (None, HostError::IoThreadGone))?;
        if inner.table.insert(name.clone(), Route::Proc(key)).is_err() {
            return Err((Some(key), HostError::ProcExists(name.clone())));
        }
        self.with_entry(name, |entry| entry.key = Some(key));
        let rings = ChildRings {
            name: name.clone(),
            inbound: child_inbound,
            outbound: child_outbound,
            doorbell: child_doorbell,
            proc_doorbell,
            limits: inner.cfg.limits,
            id: ProcId::new(inner.addr.clone(), name.clone()),
            service_name: inner.service_name.clone(),
        };
        let config = spec.into_config(rings).map_err(|e| (Some(key), e))?;
        let handle = inner
            .manager
            .spawn(name.clone(), config)
            .await
            .map_err(|source| {
                (
                    Some(key),
                    HostError::Spawn {
                        name: name.clone(),
                        source,
                    },
                )
            })?;
        let started = Instant::now();
        // A proc that broke its ring before this point was only unbound:
        // kill it now that there is a handle to kill.
        let failed_early = self.with_entry(name, |entry| {
            entry.handle = Some(handle.clone());
            entry.started = Some(started);
            entry.failed
        });
        if failed_early == Some(true) {
            tracing::warn!("killing proc: it corrupted its ring before it was ready");
            let _ = handle.kill().await;
        }
        if let Err(e) = self
            .await_ready(name, key, &handle, pings_agent, ready_timeout)
            .await
        {
            let status = handle.kill().await;
            if let Ok(status) | Err(TerminateError::AlreadyTerminated(status)) = status {
                self.remember_gone(name, handle.pid(), status, started.elapsed());
            }
            return Err((Some(key), e));
        }
        // Wait until the I/O thread delivers to it: a frame sent once
        // `spawn` returned must not come back `NotReady`.
        let (done, marked) = oneshot::channel();
        inner
            .control
            .send(Command::MarkReady {
                key,
                agent: pings_agent,
                done,
            })
            .map_err(|e| (Some(key), e))?;
        marked
            .await
            .map_err(|_| (Some(key), HostError::IoThreadGone))?;
        let (gone_tx, gone_rx) = watch::channel(false);
        self.with_entry(name, |entry| entry.gone = Some(gone_rx));
        let weak: Weak<Inner<M>> = Arc::downgrade(&self.inner);
        let watched = name.clone();
        tokio::spawn(
            async move {
                let status = handle.wait().await;
                tracing::info!(?status, "proc exited");
                if let Some(inner) = weak.upgrade() {
                    let host = Host { inner };
                    host.forget(&watched, key).await;
                    if let Ok(status) = status {
                        host.remember_gone(&watched, handle.pid(), status, started.elapsed());
                    }
                    let mut procs = host.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
                    procs.remove(&watched);
                }
                let _ = gone_tx.send(true);
            }
            .instrument(tracing::info_span!("proc", proc = %name)),
        );
        tracing::info!("proc ready");
        Ok(ProcId::new(inner.addr.clone(), name.clone()))
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
