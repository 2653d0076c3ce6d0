//! [`Host`] and [`ServeHandle`]: the control side, on the caller's runtime.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hostmux_lifecycle::{
    BulkTerminate, ProcHandle, ProcManager, TerminalStatus, TerminateError, TerminateSummary,
};
use hostmux_ring::{Doorbell, RingError, SharedRing};
use hostmux_wire::{Addr, AgentResponse, ProcId, ProcName};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use crate::config::{FrontendKind, HostConfig};
use crate::dataplane::{ClientNames, ProcKey, ProcKeys, Route, Table};
use crate::epoll::Epoll;
use crate::frontend::{bind, Frontend};
use crate::identity::Identity;
use crate::io::{Accepting, Command, Control, Controls, IoParts, Listening};
use crate::process::SpawnByRequest;
use crate::spec::{ChildRings, ProcSpec};
use crate::stats::HostStats;
use crate::uring::{self, Uring};
use crate::uring_direct::{self, UringDirect};
use crate::HostError;

mod control;
mod processes;
mod spawn;
mod stop;
mod supervise;

/// A host serving its procs behind one frontend address. Cheap to clone;
/// all clones drive the same host.
pub struct Host<M: ProcManager> {
    pub(crate) inner: Arc<Inner<M>>,
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

pub(crate) struct Inner<M: ProcManager> {
    manager: M,
    cfg: Arc<HostConfig>,
    addr: Addr,
    /// The addresses that mean this host; the primary one names it.
    identity: Identity,
    service_name: ProcName,
    table: Arc<Table>,
    /// Every I/O thread's command queue and doorbell, thread 0 first.
    pub(crate) control: Controls,
    /// Proc keys, the same on every I/O thread.
    proc_keys: ProcKeys,
    pub(crate) procs: Mutex<HashMap<ProcName, Entry<M::Handle>>>,
    pub(crate) gone: Mutex<VecDeque<GoneProc>>,
    /// The last [`Entry::spawn_id`] handed out.
    next_spawn_id: std::sync::atomic::AtomicU64,
    /// Spawns and exits, for [`HostStats::lifecycle`].
    lifecycle: LifecycleCounters,
    /// When the host started serving.
    started: Instant,
}

/// Spawns and exits since the host started (the control side's own
/// counters; see [`crate::LifecycleStats`]).
#[derive(Default)]
struct LifecycleCounters {
    spawns_started: AtomicU64,
    spawns_ready: AtomicU64,
    spawns_failed: AtomicU64,
    exits_exited: AtomicU64,
    exits_signaled: AtomicU64,
    exits_failed: AtomicU64,
}

impl LifecycleCounters {
    fn count_exit(&self, status: &TerminalStatus) {
        let counter = match status {
            TerminalStatus::Exited { .. } => &self.exits_exited,
            TerminalStatus::Signaled { .. } => &self.exits_signaled,
            TerminalStatus::Failed { .. } => &self.exits_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self, uptime: Duration) -> crate::LifecycleStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        crate::LifecycleStats {
            spawns_started: read(&self.spawns_started),
            spawns_ready: read(&self.spawns_ready),
            spawns_failed: read(&self.spawns_failed),
            exits_exited: read(&self.exits_exited),
            exits_signaled: read(&self.exits_signaled),
            exits_failed: read(&self.exits_failed),
            uptime,
        }
    }
}

/// One proc in the host's registry, from the moment `spawn` reserves its
/// name until it is gone and its name, data-plane slot and route are
/// released. `ps`, stop, kill and the control plane all read this one map.
pub(crate) struct Entry<H> {
    /// Which spawn made it (a later incarnation of the name has another).
    spawn_id: u64,
    pub(crate) phase: Phase,
    key: Option<ProcKey>,
    pub(crate) handle: Option<H>,
    /// Set once it is ready (the watcher's end of `released`): what bulk
    /// terminate waits on.
    gone: Option<watch::Receiver<bool>>,
    /// Set once the proc is gone and its name, slot and route are
    /// released, whatever phase it was in.
    released: watch::Receiver<Option<Released>>,
    /// A stop or kill asked for while it was starting; the spawn carries
    /// it out and fails with [`HostError::StoppedWhileStarting`].
    stop: watch::Sender<Option<StopRequest>>,
    /// When the manager started it.
    pub(crate) started: Option<Instant>,
    /// The I/O thread failed it (ring corruption) before its handle was
    /// stored: kill it as soon as the handle exists.
    failed: bool,
    /// Its restart state, if its restart policy restarts it (shared by the
    /// entries of all its instances).
    supervision: Option<Arc<supervise::Supervision>>,
}

/// What a proc's `released` channel says once it is released.
#[derive(Debug, Clone)]
pub(crate) struct Released {
    /// How it ended; `None` if its process never started.
    status: Option<TerminalStatus>,
}

/// Waits until the proc is released; `None` if it never ran (or whoever
/// was to release it vanished).
async fn wait_released(mut released: watch::Receiver<Option<Released>>) -> Option<TerminalStatus> {
    match released.wait_for(Option::is_some).await {
        Ok(released) => released.as_ref().and_then(|r| r.status.clone()),
        Err(_) => None,
    }
}

/// Where a registered proc is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `spawn` is starting it and waiting for readiness.
    Starting,
    /// `spawn` returned its id; a watcher releases it when it ends.
    Ready,
    /// A failed or dropped spawn is killing it and releasing its name,
    /// slot and route.
    Releasing,
    /// Its last instance ended and its restart supervisor starts the next
    /// one after a delay: no process, no route, the name held.
    BackingOff,
}

/// What a stop or kill of a starting proc asks the spawn to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopRequest {
    /// The full escalation: polite stop and SIGTERM, SIGKILL after `grace`.
    Terminate(Duration),
    /// SIGKILL now.
    Kill,
}

impl StopRequest {
    /// For [`HostError::StoppedWhileStarting`].
    fn past_tense(self) -> &'static str {
        match self {
            StopRequest::Terminate(_) => "stopped",
            StopRequest::Kill => "killed",
        }
    }

    /// A kill overrides a pending terminate, never the other way round.
    fn merge(current: Option<StopRequest>, new: StopRequest) -> StopRequest {
        match current {
            Some(StopRequest::Kill) => StopRequest::Kill,
            _ => new,
        }
    }
}

/// A proc that is gone, kept for `list`/`ps`.
#[derive(Debug, Clone)]
pub(crate) struct GoneProc {
    pub(crate) name: ProcName,
    pub(crate) pid: Option<u32>,
    pub(crate) status: TerminalStatus,
    pub(crate) uptime: Duration,
    /// Its restarts, if it had a restart policy.
    pub(crate) restart: Option<supervise::RestartRecord>,
}

/// How many gone procs keep their terminal status.
const GONE_HISTORY: usize = 64;

/// The most I/O threads a host runs (a proc has one lane per thread).
pub(crate) const MAX_IO_THREADS: usize = 64;

/// Keeps the host's I/O threads running; dropping it (or
/// [`ServeHandle::shutdown`]) stops serving: connections close and every
/// proc's inbound rings close.
#[derive(Debug)]
pub struct ServeHandle {
    control: Controls,
    threads: Vec<JoinHandle<()>>,
    frontend: FrontendKind,
    /// Removed when serving stops.
    control_socket: Option<PathBuf>,
}

impl ServeHandle {
    /// The frontend that runs: [`FrontendKind::IoUring`], [`FrontendKind::Epoll`]
    /// or [`FrontendKind::IoUringDirect`] (never `Auto`).
    pub fn frontend(&self) -> FrontendKind {
        self.frontend
    }

    /// How many I/O threads serve ([`HostConfig::io_threads`]).
    pub fn io_threads(&self) -> usize {
        self.control.len()
    }

    /// Stops serving and waits for the I/O threads to finish.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if !self.threads.is_empty() {
            // Every thread, even past one that is gone already.
            for thread in 0..self.control.len() {
                let _ = self.control.thread(thread).send(Command::Shutdown);
            }
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
        if let Some(path) = self.control_socket.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Tells `serve` which frontend the I/O thread runs, or why it could not start.
type Started = oneshot::Receiver<Result<FrontendKind, HostError>>;

fn start_io_thread(
    kind: FrontendKind,
    listener: Listening,
    parts: IoParts,
) -> Result<(JoinHandle<()>, Started), HostError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let name = if parts.threads == 1 {
        "hostmux-io".to_owned()
    } else {
        format!("hostmux-io-{}", parts.thread)
    };
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            // Auto: the io-uring crate's ring where the kernel builds one,
            // else tokio-uring's, else epoll.
            let mut direct = None;
            let kind = match kind {
                FrontendKind::Auto => match uring_direct_runtime(&parts) {
                    Ok(runtime) => {
                        direct = Some(runtime);
                        FrontendKind::IoUringDirect
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "no io-uring-direct ring; trying tokio-uring");
                        if uring::available() {
                            FrontendKind::IoUring
                        } else {
                            FrontendKind::Epoll
                        }
                    }
                },
                other => other,
            };
            match kind {
                FrontendKind::IoUring => {
                    let runtime = match uring::runtime() {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = ready_tx.send(Err(HostError::Runtime(e)));
                            return;
                        }
                    };
                    runtime.block_on(serve_on::<Uring>(listener, parts, kind, ready_tx));
                }
                FrontendKind::IoUringDirect => {
                    let runtime = match direct.map_or_else(|| uring_direct_runtime(&parts), Ok) {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = ready_tx.send(Err(HostError::Runtime(e)));
                            return;
                        }
                    };
                    runtime.block_on(serve_on::<UringDirect>(listener, parts, kind, ready_tx));
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

/// The io-uring-direct frontend's runtime for an I/O thread, with room in
/// its fixed-file table for every connection the host admits, plus its
/// links and control connections (more go by descriptor).
fn uring_direct_runtime(parts: &IoParts) -> std::io::Result<uring_direct::Runtime> {
    let slots = parts.cfg.max_connections.saturating_add(64).min(1 << 16) as u32;
    uring_direct::Runtime::new(slots, parts.cfg.uring_recv_buffers)
}

async fn serve_on<F: Frontend>(
    listening: Listening,
    parts: IoParts,
    kind: FrontendKind,
    ready: oneshot::Sender<Result<FrontendKind, HostError>>,
) {
    let accepting = match listening {
        Listening::Alone(listener) => F::listener(listener).map(Accepting::Own),
        Listening::HandsOff { listener, threads } => {
            crate::io::handoff::Acceptor::new(listener, threads).map(Accepting::HandsOff)
        }
        Listening::Adopts => Ok(Accepting::Nothing),
    };
    match accepting {
        Ok(accepting) => {
            tracing::info!(
                frontend = F::NAME,
                thread = parts.thread,
                "host I/O thread running"
            );
            let _ = ready.send(Ok(kind));
            crate::io::run::<F>(accepting, parts).await;
        }
        Err(e) => {
            let _ = ready.send(Err(HostError::Runtime(e)));
        }
    }
}

impl<M: SpawnByRequest> Host<M> {
    /// Binds the frontend at `addr` (TCP, or a Unix path or abstract name),
    /// starts the I/O thread and the service proc, and returns the host and
    /// the handle that keeps it serving.
    ///
    /// A non-loopback TCP address without [`HostConfig::token`] is refused
    /// ([`HostError::InsecureBind`]).
    ///
    /// The manager says how a control-plane `Spawn` request becomes a spec
    /// ([`SpawnByRequest`]); serve a custom manager that starts no programs
    /// by request as [`WithoutSpawnRequests`](crate::WithoutSpawnRequests)`(manager)`.
    pub async fn serve(
        manager: M,
        addr: Addr,
        mut config: HostConfig,
    ) -> Result<(Self, ServeHandle), HostError> {
        if !addr.is_loopback() && config.token.is_none() {
            return Err(HostError::InsecureBind {
                addr: addr.to_string(),
            });
        }
        let service_name =
            ProcName::with_max_len(&config.service_name, config.limits.max_name_len)?;
        let (listener, bound) = bind(&addr)?;
        let identity = identity_of(&bound, &mut config).await?;
        let control_socket = match &config.control_socket {
            Some(path) => Some(crate::control::bind_control_socket(path)?),
            None => None,
        };
        let threads = config.io_threads;
        if !(1..=MAX_IO_THREADS).contains(&threads) {
            return Err(HostError::InvalidIoThreads {
                given: threads,
                max: MAX_IO_THREADS,
            });
        }
        let table = Arc::new(Table::new());
        table
            .insert(service_name.clone(), Route::Service)
            .map_err(|_| HostError::ProcExists(service_name.clone()))?;
        let service_for_errors = service_name.clone();
        let ring_error = |source| HostError::Ring {
            name: service_for_errors.clone(),
            source,
        };
        // Each thread's command queue and doorbell (what its lane of
        // every proc rings).
        let mut queues = Vec::with_capacity(threads);
        let mut controls = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (tx, rx) = crossbeam::channel::unbounded();
            let doorbell = Doorbell::new().map_err(ring_error)?;
            controls.push(Control::new(tx, doorbell.try_clone().map_err(ring_error)?));
            queues.push((rx, doorbell));
        }
        let controls = Controls::new(controls);
        let (failures, failed) = tokio::sync::mpsc::unbounded_channel();
        let (control_jobs, jobs) = tokio::sync::mpsc::unbounded_channel();
        let cfg = Arc::new(config);
        let client_names = Arc::new(ClientNames::default());
        let mut listener = Some(listener);
        let mut control_socket = control_socket;
        // Dropping `handle` on an error below stops the threads started.
        let mut handle = ServeHandle {
            control: controls.try_clone()?,
            threads: Vec::with_capacity(threads),
            frontend: FrontendKind::Auto,
            control_socket: cfg.control_socket.clone(),
        };
        let mut ready = Vec::with_capacity(threads);
        for (thread, (commands, doorbell)) in queues.into_iter().enumerate() {
            let listening = match listener.take() {
                Some(listener) if threads == 1 => Listening::Alone(listener),
                Some(listener) => Listening::HandsOff {
                    listener,
                    threads: (1..threads)
                        .map(|k| controls.thread(k).try_clone())
                        .collect::<Result<_, _>>()?,
                },
                None => Listening::Adopts,
            };
            let parts = IoParts {
                cfg: cfg.clone(),
                service_name: service_name.clone(),
                table: table.clone(),
                commands,
                doorbell,
                thread,
                threads,
                client_names: client_names.clone(),
                others: (0..threads)
                    .map(|k| (k != thread).then(|| controls.thread(k).try_clone()))
                    .map(Option::transpose)
                    .collect::<Result<_, _>>()?,
                failures: failures.clone(),
                identity: identity.clone(),
                control_jobs: control_jobs.clone(),
                control_socket: control_socket.take(),
            };
            let (thread, answer) = start_io_thread(cfg.frontend, listening, parts)?;
            handle.threads.push(thread);
            ready.push(answer);
        }
        let mut frontend = None;
        for answer in ready {
            match answer.await {
                Ok(Ok(kind)) => frontend = Some(kind),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(HostError::IoThreadGone),
            }
        }
        let frontend = frontend.ok_or(HostError::IoThreadGone)?;
        handle.frontend = frontend;
        tracing::info!(
            addr = %bound,
            advertised = %identity.advertised_list(),
            %frontend,
            io_threads = threads,
            service = %service_name,
            "serving host"
        );
        let inner = Inner {
            manager,
            cfg,
            addr: bound,
            identity,
            service_name,
            table,
            control: controls,
            proc_keys: ProcKeys::default(),
            procs: Mutex::new(HashMap::new()),
            gone: Mutex::new(VecDeque::new()),
            next_spawn_id: std::sync::atomic::AtomicU64::new(0),
            lifecycle: LifecycleCounters::default(),
            started: Instant::now(),
        };
        let inner = Arc::new(inner);
        tokio::spawn(kill_failed(Arc::downgrade(&inner), failed));
        tokio::spawn(control::control_loop(
            WeakHost(Arc::downgrade(&inner)),
            jobs,
        ));
        Ok((Host { inner }, handle))
    }
}

/// How long `Host::serve` waits for the DNS names of its peers to resolve
/// (each), to tell whether one of them is this host.
const PEER_NAME_WAIT: Duration = Duration::from_secs(2);

/// This host's identity, bound at `bound` with `config.advertise`; drops
/// from `config.peers` (logging each) the peers that are this host (an
/// alias, or a DNS name that resolves to one, which becomes an alias), so
/// that it never dials itself.
async fn identity_of(bound: &Addr, config: &mut HostConfig) -> Result<Identity, HostError> {
    let interfaces = if crate::identity::is_unspecified(bound) {
        crate::sys::interface_addrs().map_err(|source| HostError::LocalAddresses {
            addr: bound.to_string(),
            source,
        })?
    } else {
        Vec::new()
    };
    let mut identity = Identity::resolve(bound, &config.advertise, &interfaces)?;
    for peer in &config.peers {
        let hostmux_wire::AddrKind::Tcp { host, port } = peer.kind() else {
            continue;
        };
        if identity.is_alias(peer.as_str()) || host.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        match tokio::time::timeout(PEER_NAME_WAIT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(mut sockets)) => {
                if sockets.any(|socket| identity.is_alias_socket(socket)) {
                    identity.adopt(peer);
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "peer name does not resolve (yet)");
            }
            Err(_) => tracing::debug!(%peer, "peer name did not resolve in time"),
        }
    }
    let (peers, this_host) = identity.split_peers(std::mem::take(&mut config.peers));
    config.peers = peers;
    for peer in this_host {
        tracing::info!(
            %peer,
            "a configured peer is this host (one of its addresses): not a link, never dialled"
        );
    }
    Ok(identity)
}

/// A host that does not keep it alive (for its own background tasks).
pub(crate) struct WeakHost<M: ProcManager>(Weak<Inner<M>>);

impl<M: ProcManager> WeakHost<M> {
    pub(crate) fn new(host: &Host<M>) -> Self {
        WeakHost(Arc::downgrade(&host.inner))
    }

    pub(crate) fn upgrade(&self) -> Option<Host<M>> {
        self.0.upgrade().map(|inner| Host { inner })
    }
}

impl<M: ProcManager + 'static> Host<M> {
    /// The frontend address as bound (with the port the kernel chose for
    /// port 0). For a bind to `0.0.0.0` or `[::]` this is not an address
    /// other hosts can name this host by: see [`Host::advertised`].
    pub fn addr(&self) -> &Addr {
        &self.inner.addr
    }

    /// The addresses this host names itself by, the primary first: it is
    /// the address in this host's proc ids and in the frames it forwards
    /// to other hosts ([`HostConfig::advertise`], or by default the bound
    /// address, or for an unspecified bind every interface address with
    /// the bound port, non-loopback first).
    pub fn advertised(&self) -> &[Addr] {
        self.inner.identity.advertised()
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

    /// Names of the procs in the registry: starting, ready, or being
    /// released after a failed or dropped spawn.
    pub fn procs(&self) -> Vec<ProcName> {
        let procs = self.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
        procs.keys().cloned().collect()
    }

    /// Keeps a gone proc's terminal status for `list`.
    pub(crate) fn remember_gone(
        &self,
        name: &ProcName,
        pid: Option<u32>,
        status: TerminalStatus,
        uptime: Duration,
        restart: Option<supervise::RestartRecord>,
    ) {
        self.inner.lifecycle.count_exit(&status);
        let mut gone = self.inner.gone.lock().unwrap_or_else(|e| e.into_inner());
        if gone.len() == GONE_HISTORY {
            gone.pop_front();
        }
        gone.push_back(GoneProc {
            name: name.clone(),
            pid,
            status,
            uptime,
            restart,
        });
    }

    /// How the most recent proc called `name` ended, if the gone history
    /// still holds it.
    pub(crate) fn last_gone(&self, name: &ProcName) -> Option<TerminalStatus> {
        let gone = self.inner.gone.lock().unwrap_or_else(|e| e.into_inner());
        gone.iter()
            .rev()
            .find(|proc| proc.name == *name)
            .map(|proc| proc.status.clone())
    }

    /// Unbinds the proc's route, has every I/O thread return what it
    /// holds for it and release its lane, then gives its key back.
    async fn forget(&self, name: &ProcName, key: ProcKey) {
        self.inner
            .table
            .remove_if(name.as_bytes(), Route::Proc(key));
        if self.inner.control.remove(key).await.is_ok() {
            self.inner.proc_keys.release(key);
        }
    }

    /// Unbinds the proc, asks its agent to stop (behind the frames already
    /// in its inbound ring) and closes that ring.
    fn unbind_and_detach(&self, name: &ProcName, key: ProcKey) {
        self.unbind(name, key);
        let _ = self.inner.control.send(Command::AgentStop(key));
        self.detach(key);
    }

    /// Removes the proc's route if it still points at this incarnation.
    fn unbind(&self, name: &ProcName, key: ProcKey) {
        self.inner
            .table
            .remove_if(name.as_bytes(), Route::Proc(key));
    }

    /// Tells every I/O thread to close the proc's inbound ring of its
    /// lane and return what is left in it.
    fn detach(&self, key: ProcKey) {
        let _ = self.inner.control.send_each(|_| Command::Detach(key));
    }

    /// Frames and counters of every live connection and proc (the service
    /// proc's `Stats` request reads the same counters), with the spawn and
    /// exit counts.
    pub async fn stats(&self) -> Result<HostStats, HostError> {
        let mut stats = self.inner.control.stats().await?;
        stats.lifecycle = self.inner.lifecycle.snapshot(self.inner.started.elapsed());
        Ok(stats)
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
            let mut procs = inner.procs.lock().unwrap_or_else(|e| e.into_inner());
            match procs.get_mut(&name).filter(|entry| entry.key == Some(key)) {
                Some(entry) => {
                    // Not spawned yet: `start` kills it once it has a handle.
                    entry.failed = entry.handle.is_none();
                    entry.handle.clone()
                }
                None => None,
            }
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

/// Waits until the proc is gone (or whoever was to say so is: a dropped
/// sender counts as gone).
async fn wait_gone(mut gone: watch::Receiver<bool>) {
    let _ = gone.wait_for(|gone| *gone).await;
}
