//! [`Host`] and [`ServeHandle`]: the control side, on the caller's runtime.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use hostmux_lifecycle::{
    BulkTerminate, ProcHandle, ProcManager, TerminalStatus, TerminateError, TerminateSummary,
};
use hostmux_ring::{Doorbell, RingError, SharedRing};
use hostmux_wire::{Addr, AddrKind, ProcId, ProcName};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use crate::config::{FrontendKind, HostConfig};
use crate::dataplane::{ProcKey, Route, Table};
use crate::epoll::Epoll;
use crate::frontend::{Frontend, StdListener};
use crate::io::{Command, Control, IoParts};
use crate::spec::{ChildRings, ProcSpec};
use crate::stats::HostStats;
use crate::uring::{self, Uring};
use crate::HostError;

/// A host serving its procs behind one frontend address. Cheap to clone;
/// all clones drive the same host.
pub struct Host<M: ProcManager> {
    inner: Arc<Inner<M>>,
}

impl<M: ProcManager> Clone for Host<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<M: ProcManager> std::fmt::Debug for Host<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

struct Inner<M: ProcManager> {
    manager: M,
    cfg: Arc<HostConfig>,
    addr: Addr,
    service_name: ProcName,
    table: Arc<Table>,
    control: Control,
    doorbell: Doorbell,
    procs: Mutex<HashMap<ProcName, Entry<M::Handle>>>,
}

struct Entry<H> {
    key: Option<ProcKey>,
    handle: Option<H>,
    gone: Option<watch::Receiver<bool>>,
}

/// Keeps the host's I/O thread running; dropping it (or
/// [`ServeHandle::shutdown`]) stops serving: connections close and every
/// proc's inbound ring closes.
#[derive(Debug)]
pub struct ServeHandle {
    control: Control,
    thread: Option<JoinHandle<()>>,
    frontend: FrontendKind,
}

impl ServeHandle {
    /// The frontend that runs: [`FrontendKind::IoUring`] or [`FrontendKind::Epoll`].
    pub fn frontend(&self) -> FrontendKind {
        self.frontend
    }

    /// Stops serving and waits for the I/O thread to finish.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.control.send(Command::Shutdown);
            let _ = thread.join();
        }
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind(addr: &Addr) -> Result<(StdListener, Addr), HostError> {
    let bind_error = |source| HostError::Bind {
        addr: addr.to_string(),
        source,
    };
    match addr.kind() {
        AddrKind::Tcp { host, port } => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let socket = (host, port)
                .to_socket_addrs()
                .map_err(bind_error)?
                .next()
                .ok_or_else(|| HostError::InvalidAddr {
                    addr: addr.to_string(),
                    reason: "host name resolves to no address".to_owned(),
                })?;
            let listener = std::net::TcpListener::bind(socket).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            let local = listener.local_addr().map_err(bind_error)?;
            let bound = Addr::tcp(&local.ip().to_string(), local.port())?;
            Ok((StdListener::Tcp(listener), bound))
        }
        AddrKind::UnixPath(path) => {
            let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            Ok((StdListener::Unix(listener), addr.clone()))
        }
        AddrKind::UnixAbstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let socket =
                std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(bind_error)?;
            let listener =
                std::os::unix::net::UnixListener::bind_addr(&socket).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            Ok((StdListener::Unix(listener), addr.clone()))
        }
    }
}

/// Tells `serve` which frontend the I/O thread runs, or why it could not start.
type Started = oneshot::Receiver<Result<FrontendKind, HostError>>;

fn start_io_thread(
    kind: FrontendKind,
    listener: StdListener,
    parts: IoParts,
) -> Result<(JoinHandle<()>, Started), HostError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("hostmux-io".to_owned())
        .spawn(move || {
            let kind = match kind {
                FrontendKind::Auto if uring::available() => FrontendKind::IoUring,
                FrontendKind::Auto => FrontendKind::Epoll,
                other => other,
            };
            match kind {
                FrontendKind::IoUring => {
                    let runtime = match tokio_uring::Runtime::new(&tokio_uring::builder()) {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = ready_tx.send(Err(HostError::Runtime(e)));
                            return;
                        }
                    };
                    runtime.block_on(serve_on::<Uring>(listener, parts, kind, ready_tx));
                }
                _ => {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = ready_tx.send(Err(HostError::Runtime(e)));
                            return;
                        }
                    };
                    let local = tokio::task::LocalSet::new();
                    local.block_on(
                        &runtime,
                        serve_on::<Epoll>(listener, parts, FrontendKind::Epoll, ready_tx),
                    );
                }
            }
        })
        .map_err(HostError::Runtime)?;
    Ok((thread, ready_rx))
}

async fn serve_on<F: Frontend>(
    listener: StdListener,
    parts: IoParts,
    kind: FrontendKind,
    ready: oneshot::Sender<Result<FrontendKind, HostError>>,
) {
    match F::listener(listener) {
        Ok(listener) => {
            tracing::info!(frontend = F::NAME, "host I/O thread running");
            let _ = ready.send(Ok(kind));
            crate::io::run::<F>(listener, parts).await;
        }
        Err(e) => {
            let _ = ready.send(Err(HostError::Runtime(e)));
        }
    }
}

impl<M: ProcManager + 'static> Host<M> {
    /// Binds the frontend at `addr` (TCP, or a Unix path or abstract name),
    /// starts the I/O thread and the service proc, and returns the host and
    /// the handle that keeps it serving.
    ///
    /// A non-loopback TCP address without [`HostConfig::token`] is refused
    /// ([`HostError::InsecureBind`]).
    pub async fn serve(
        manager: M,
        addr: Addr,
        config: HostConfig,
    ) -> Result<(Self, ServeHandle), HostError> {
        if !addr.is_loopback() && config.token.is_none() {
            return Err(HostError::InsecureBind {
                addr: addr.to_string(),
            });
        }
        let service_name =
            ProcName::with_max_len(&config.service_name, config.limits.max_name_len)?;
        let (listener, bound) = bind(&addr)?;
        let table = Arc::new(Table::new());
        table
            .insert(service_name.clone(), Route::Service)
            .map_err(|_| HostError::ProcExists(service_name.clone()))?;
        let doorbell = Doorbell::new().map_err(|source| HostError::Ring {
            name: service_name.clone(),
            source,
        })?;
        let service_for_errors = service_name.clone();
        let ring_error = |source| HostError::Ring {
            name: service_for_errors.clone(),
            source,
        };
        let (tx, rx) = crossbeam::channel::unbounded();
        let (failures, failed) = tokio::sync::mpsc::unbounded_channel();
        let cfg = Arc::new(config);
        let parts = IoParts {
            cfg: cfg.clone(),
            service_name: service_name.clone(),
            table: table.clone(),
            commands: rx,
            doorbell: doorbell.try_clone().map_err(ring_error)?,
            failures,
            own_addr: bound.to_string(),
        };
        let (thread, ready) = start_io_thread(cfg.frontend, listener, parts)?;
        let frontend = match ready.await {
            Ok(Ok(kind)) => kind,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(HostError::IoThreadGone),
        };
        tracing::info!(addr = %bound, ?frontend, service = %service_name, "serving host");
        let handle = ServeHandle {
            control: Control::new(tx.clone(), doorbell.try_clone().map_err(ring_error)?),
            thread: Some(thread),
            frontend,
        };
        let inner = Inner {
            manager,
            cfg,
            addr: bound,
            service_name,
            table,
            control: Control::new(tx, doorbell.try_clone().map_err(ring_error)?),
            doorbell,
            procs: Mutex::new(HashMap::new()),
        };
        let inner = Arc::new(inner);
        tokio::spawn(kill_failed(Arc::downgrade(&inner), failed));
        Ok((Host { inner }, handle))
    }

    /// The frontend address every proc of this host is reached through.
    pub fn addr(&self) -> &Addr {
        &self.inner.addr
    }

    /// The service proc's name.
    pub fn service_name(&self) -> &ProcName {
        &self.inner.service_name
    }

    /// The proc manager.
    pub fn manager(&self) -> &M {
        &self.inner.manager
    }

    /// The configuration the host serves with.
    pub fn config(&self) -> &HostConfig {
        &self.inner.cfg
    }

    /// Names of the live procs.
    pub fn procs(&self) -> Vec<ProcName> {
        let procs = self.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
        procs.keys().cloned().collect()
    }

    /// Spawns a proc called `name`: creates its rings, starts it through the
    /// manager, waits for it to report ready (under
    /// [`HostConfig::spawn_ready_timeout`]; zero waits without limit) and
    /// returns its id `(frontend address, name)`.
    ///
    /// The name is bound in the routing table as soon as the rings exist, so
    /// frames sent before the proc is ready come back `NotReady` rather than
    /// `NoSuchProc`; a duplicate name fails with [`HostError::ProcExists`].
    pub async fn spawn(&self, name: &str, spec: impl ProcSpec<M>) -> Result<ProcId, HostError>
    where
        M::Config: 'static,
    {
        let name = ProcName::with_max_len(name, self.inner.cfg.limits.max_name_len)?;
        let span = tracing::info_span!("spawn", proc = %name);
        self.spawn_inner(name, spec).instrument(span).await
    }

    async fn spawn_inner(
        &self,
        name: ProcName,
        spec: impl ProcSpec<M>,
    ) -> Result<ProcId, HostError> {
        let inner = &self.inner;
        {
            let mut procs = inner.procs.lock().unwrap_or_else(|e| e.into_inner());
            if procs.contains_key(&name) || inner.table.contains(name.as_bytes()) {
                return Err(HostError::ProcExists(name));
            }
            procs.insert(
                name.clone(),
                Entry {
                    key: None,
                    handle: None,
                    gone: None,
                },
            );
        }
        match self.start(&name, spec).await {
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
        let inbound = SharedRing::create(inner.cfg.inbound_ring_bytes).map_err(ring_error)?;
        let outbound = SharedRing::create(inner.cfg.outbound_ring_bytes).map_err(ring_error)?;
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
        let producer = inbound.into_producer().map_err(ring_error)?;
        let consumer = outbound.into_consumer().map_err(ring_error)?;

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
        let rings = ChildRings {
            name: name.clone(),
            inbound: child_inbound,
            outbound: child_outbound,
            doorbell: child_doorbell,
            limits: inner.cfg.limits,
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
        let timeout = inner.cfg.spawn_ready_timeout;
        let ready = if timeout.is_zero() {
            Ok(handle.ready().await)
        } else {
            tokio::time::timeout(timeout, handle.ready()).await
        };
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                let _ = handle.kill().await;
                return Err((
                    Some(key),
                    HostError::NotReady {
                        name: name.clone(),
                        source,
                    },
                ));
            }
            Err(_) => {
                let _ = handle.kill().await;
                return Err((
                    Some(key),
                    HostError::ReadyTimeout {
                        name: name.clone(),
                        timeout,
                    },
                ));
            }
        }
        inner
            .control
            .send(Command::MarkReady(key))
            .map_err(|e| (Some(key), e))?;
        let (gone_tx, gone_rx) = watch::channel(false);
        {
            let mut procs = inner.procs.lock().unwrap_or_else(|e| e.into_inner());
            procs.insert(
                name.clone(),
                Entry {
                    key: Some(key),
                    handle: Some(handle.clone()),
                    gone: Some(gone_rx),
                },
            );
        }
        let weak: Weak<Inner<M>> = Arc::downgrade(&self.inner);
        let watched = name.clone();
        tokio::spawn(
            async move {
                let status = handle.wait().await;
                tracing::info!(?status, "proc exited");
                if let Some(inner) = weak.upgrade() {
                    let host = Host { inner };
                    host.forget(&watched, key).await;
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

    /// Unbinds the proc's route and has the I/O thread return what it holds
    /// for it and release its rings.
    async fn forget(&self, name: &ProcName, key: ProcKey) {
        if self.inner.table.lookup(name.as_bytes()) == Some(Route::Proc(key)) {
            self.inner.table.remove(name.as_bytes());
        }
        let (done_tx, done_rx) = oneshot::channel();
        if self
            .inner
            .control
            .send(Command::Remove(key, done_tx))
            .is_ok()
        {
            let _ = done_rx.await;
        }
    }

    fn unbind_and_detach(&self, name: &ProcName, key: ProcKey) {
        self.unbind(name, key);
        self.detach(key);
    }

    /// Removes the proc's route if it still points at this incarnation.
    fn unbind(&self, name: &ProcName, key: ProcKey) {
        if self.inner.table.lookup(name.as_bytes()) == Some(Route::Proc(key)) {
            self.inner.table.remove(name.as_bytes());
        }
    }

    /// Tells the I/O thread to close the proc's inbound ring and return
    /// what is left in it.
    fn detach(&self, key: ProcKey) {
        let _ = self.inner.control.send(Command::Detach(key));
    }

    /// Terminates one proc: unbinds its route and closes its inbound ring
    /// first, then asks the manager to stop it (polite stop, then a forced
    /// kill after `grace`). Returns once the proc is gone and its name free.
    pub async fn terminate_proc(
        &self,
        name: &str,
        grace: Duration,
    ) -> Result<TerminalStatus, HostError> {
        let name = ProcName::with_max_len(name, self.inner.cfg.limits.max_name_len)?;
        let span = tracing::info_span!("terminate", proc = %name);
        async {
            let (key, handle, gone) = {
                let procs = self.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
                match procs.get(&name) {
                    Some(Entry {
                        key: Some(key),
                        handle: Some(handle),
                        gone: Some(gone),
                    }) => (*key, handle.clone(), gone.clone()),
                    _ => return Err(HostError::NoSuchProc(name.clone())),
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

    /// Frames and counters of every live connection and proc (the service
    /// proc's `Stats` request reads the same counters).
    pub async fn stats(&self) -> Result<HostStats, HostError> {
        let (tx, rx) = oneshot::channel();
        self.inner.control.send(Command::Stats(tx))?;
        rx.await.map_err(|_| HostError::IoThreadGone)
    }
}

impl<M: ProcManager + BulkTerminate + 'static> Host<M> {
    /// Terminates every proc: unbinds all routes and closes all inbound
    /// rings first, then has the manager stop them all under one deadline
    /// (`grace`), with at most `max_in_flight` polite stops at a time.
    /// Returns once every proc is gone.
    pub async fn terminate_children(
        &self,
        grace: Duration,
        max_in_flight: usize,
    ) -> TerminateSummary {
        let span = tracing::info_span!("terminate_children", ?grace, max_in_flight);
        async {
            let targets: Vec<(ProcName, ProcKey, watch::Receiver<bool>)> = {
                let procs = self.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
                procs
                    .iter()
                    .filter_map(|(name, entry)| {
                        Some((name.clone(), entry.key?, entry.gone.clone()?))
                    })
                    .collect()
            };
            // Unbind every route first so no new frame is routed to a proc
            // that is going away, but keep the rings attached until the
            // manager has taken the procs down: detaching closes a proc's
            // inbound ring, which a proc may take as its cue to exit, and a
            // proc that left on its own before `terminate_all` looked would
            // be missing from the summary.
            for (name, key, _) in &targets {
                self.unbind(name, *key);
            }
            let summary = self.inner.manager.terminate_all(grace, max_in_flight).await;
            for (_, key, _) in &targets {
                self.detach(*key);
            }
            for (_, _, gone) in targets {
                wait_gone(gone).await;
            }
            tracing::info!(%summary, "children terminated");
            summary
        }
        .instrument(span)
        .await
    }
}

/// Kills procs the I/O thread failed for breaking the ring protocol; their
/// watchers then unbind them and return what they left.
async fn kill_failed<M: ProcManager + 'static>(
    host: Weak<Inner<M>>,
    mut failed: tokio::sync::mpsc::UnboundedReceiver<(ProcKey, ProcName)>,
) {
    while let Some((key, name)) = failed.recv().await {
        let Some(inner) = host.upgrade() else { return };
        let handle = {
            let procs = inner.procs.lock().unwrap_or_else(|e| e.into_inner());
            procs
                .get(&name)
                .filter(|entry| entry.key == Some(key))
                .and_then(|entry| entry.handle.clone())
        };
        drop(inner);
        if let Some(handle) = handle {
            tracing::warn!(proc = %name, "killing proc: it corrupted its ring");
            tokio::spawn(async move {
                let _ = handle.kill().await;
            });
        }
    }
}

async fn wait_gone(mut gone: watch::Receiver<bool>) {
    let _ = gone.wait_for(|gone| *gone).await;
}
