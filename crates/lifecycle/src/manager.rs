//! The traits both managers implement, the polite-stop hook type, and the
//! registry of live procs both keep.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hostmux_wire::ProcName;

use crate::bulk::BulkTerminateMode;
use crate::error::{LifecycleError, ReadyError, TerminateError, WaitError};
use crate::status::{ProcStatus, TerminalStatus, TerminateSummary};

/// A boxed, sendable future with no output.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The host's polite-stop hook: called once per proc at the start of its
/// terminate, just before its SIGTERM goes out (e.g. to queue a stop message
/// to the proc's agent). The returned future runs on its own task,
/// concurrently with the escalation (it never delays SIGKILL), and is
/// dropped when the proc is reaped, before its terminal status is
/// published. Every terminated proc's hook is called, in bulk terminates
/// too; do the part that must happen in the call itself.
pub type PoliteStopHook = Arc<dyn Fn(&ProcName) -> BoxFuture + Send + Sync>;

/// A spawned proc, as seen by its host. Clones share one supervisor.
///
/// `ready()` and `wait()` are multi-waiter and non-consuming; `terminate`
/// and `kill` are idempotent and coalesce onto one escalation.
pub trait ProcHandle: Clone + Send + Sync + 'static {
    /// The proc's name on its host.
    fn name(&self) -> &ProcName;

    /// The OS pid of the proc's main process, if it is one.
    fn pid(&self) -> Option<u32>;

    /// A non-blocking snapshot of the proc's state.
    fn status(&self) -> ProcStatus;

    /// Resolves once the proc reported ready, or with why it never will.
    fn ready(&self) -> impl Future<Output = Result<(), ReadyError>> + Send;

    /// Resolves with the proc's terminal status: it **blocks until the proc
    /// has ended** (hyperactor's trait promised the same, but its toy
    /// handles returned at once; code ported from them that awaits `wait()`
    /// right after a spawn hangs here). To look without waiting, use
    /// [`try_wait`](Self::try_wait) or [`status`](Self::status); to wait
    /// for readiness, [`ready`](Self::ready).
    fn wait(&self) -> impl Future<Output = Result<TerminalStatus, WaitError>> + Send;

    /// The terminal status if the proc has ended, else `None`, at once
    /// (like [`std::process::Child::try_wait`]).
    fn try_wait(&self) -> Option<TerminalStatus> {
        match self.status() {
            ProcStatus::Terminal(status) => Some(status),
            ProcStatus::Starting | ProcStatus::Ready | ProcStatus::Stopping => None,
        }
    }

    /// Polite stop and SIGTERM, then SIGKILL after `grace`; resolves with the
    /// terminal status within `grace` plus a small constant. If the proc was
    /// already terminal, returns [`TerminateError::AlreadyTerminated`].
    /// Dropping the future does not stop the escalation.
    fn terminate(
        &self,
        grace: Duration,
    ) -> impl Future<Output = Result<TerminalStatus, TerminateError>> + Send;

    /// SIGKILL now; resolves with the terminal status.
    fn kill(&self) -> impl Future<Output = Result<TerminalStatus, TerminateError>> + Send;

    /// The last status text the proc reported about itself (an OS proc's
    /// sd_notify `STATUS=`, see [`crate::notify`]); `None` if it never did
    /// or its manager has no such channel.
    fn status_text(&self) -> Option<String> {
        None
    }
}

/// Spawns procs and keeps track of the live ones by name.
///
/// The one trait a manager implements (besides [`ProcHandle`] for its
/// handle): [`BulkTerminate`] and [`SingleTerminate`] come with it, built
/// on [`procs`](Self::procs), [`get`](Self::get) and the handles'
/// [`ProcHandle::terminate`].
///
/// ```
/// use std::time::Duration;
/// use hostmux_lifecycle::{
///     BulkTerminate, LifecycleError, LocalHandle, LocalProcConfig, LocalProcManager,
///     ProcHandle, ProcManager, ProcName,
/// };
///
/// /// A custom manager (here one that wraps the in-process manager and
/// /// adds a default config): one `impl`, and bulk terminate is there.
/// struct Wrapper(LocalProcManager);
///
/// impl ProcManager for Wrapper {
///     type Handle = LocalHandle;
///     type Config = ();
///
///     async fn spawn(&self, name: ProcName, _config: ()) -> Result<LocalHandle, LifecycleError> {
///         let config = LocalProcConfig::new(|mut cx| async move {
///             cx.report_ready();
///             cx.stopped().await;
///             Ok(())
///         });
///         self.0.spawn(name, config).await
///     }
///
///     fn get(&self, name: &ProcName) -> Option<LocalHandle> {
///         self.0.get(name)
///     }
///
///     fn procs(&self) -> Vec<LocalHandle> {
///         self.0.procs()
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let manager = Wrapper(LocalProcManager::new());
/// let proc = manager.spawn(ProcName::new("a").unwrap(), ()).await.unwrap();
/// proc.ready().await.unwrap();
/// let summary = manager.terminate_all(Duration::from_secs(1), 4).await;
/// assert_eq!((summary.attempted, summary.ok), (1, 1));
/// assert!(proc.try_wait().is_some());
/// # });
/// ```
pub trait ProcManager: Send + Sync {
    /// The handle this manager returns.
    type Handle: ProcHandle;
    /// What a spawn needs besides the name.
    type Config: Send;

    /// Starts a proc. Returns once it runs (not once it is ready: await
    /// [`ProcHandle::ready`] for that). Names are unique among live procs.
    fn spawn(
        &self,
        name: ProcName,
        config: Self::Config,
    ) -> impl Future<Output = Result<Self::Handle, LifecycleError>> + Send;

    /// The live proc with this name.
    fn get(&self, name: &ProcName) -> Option<Self::Handle>;

    /// The handles of every live proc, in any order: what a bulk terminate
    /// stops.
    fn procs(&self) -> Vec<Self::Handle>;
}

/// Terminate every live proc of a manager. Implemented for every
/// [`ProcManager`] (over [`ProcManager::procs`] and
/// [`ProcHandle::terminate`]); a manager does not implement it itself.
///
/// Either way, every proc live at the call gets the full escalation of
/// [`ProcHandle::terminate`] (polite-stop hook, SIGTERM, SIGKILL once its
/// grace ran out) and is counted once in the [`TerminateSummary`]
/// (`attempted == ok + failed`; a proc that is already terminal counts as
/// ok). Dropping the future starts no further terminations; those already
/// started run to the end.
pub trait BulkTerminate: Send + Sync {
    /// Terminates every live proc as `mode` says; see [`BulkTerminateMode`].
    fn terminate_all_with(
        &self,
        grace: Duration,
        mode: BulkTerminateMode,
    ) -> impl Future<Output = TerminateSummary> + Send;

    /// Hyperactor's bulk terminate ([`BulkTerminateMode::PerProcGrace`]): at
    /// most `max_in_flight` procs are being terminated at a time, the next
    /// starts as soon as one is terminal, and each proc is SIGKILLed `grace`
    /// after its own termination started if it is still running.
    fn terminate_all(
        &self,
        grace: Duration,
        max_in_flight: usize,
    ) -> impl Future<Output = TerminateSummary> + Send {
        self.terminate_all_with(grace, BulkTerminateMode::PerProcGrace { max_in_flight })
    }
}

/// Every manager terminates its procs in bulk the same way: through their
/// handles, paced by [`BulkTerminateMode`].
impl<M: ProcManager> BulkTerminate for M {
    fn terminate_all_with(
        &self,
        grace: Duration,
        mode: BulkTerminateMode,
    ) -> impl Future<Output = TerminateSummary> + Send {
        crate::bulk::terminate_all(self.procs(), grace, mode)
    }
}

/// Terminate one proc of a manager by name.
pub trait SingleTerminate: Send + Sync {
    /// Same as [`ProcHandle::terminate`] on the named proc.
    fn terminate_proc(
        &self,
        name: &ProcName,
        grace: Duration,
    ) -> impl Future<Output = Result<TerminalStatus, TerminateError>> + Send;
}

/// Every manager terminates one proc the same way: through its handle.
impl<M: ProcManager> SingleTerminate for M {
    async fn terminate_proc(
        &self,
        name: &ProcName,
        grace: Duration,
    ) -> Result<TerminalStatus, TerminateError> {
        match self.get(name) {
            Some(handle) => handle.terminate(grace).await,
            None => Err(TerminateError::NoSuchProc(name.clone())),
        }
    }
}

/// A manager's live procs by name. A poisoned lock is taken over rather
/// than propagated: every critical section is a few map operations that a
/// panic cannot leave half done.
#[derive(Debug)]
pub(crate) struct Registry<V>(Mutex<HashMap<ProcName, V>>);

impl<V> Registry<V> {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<ProcName, V>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
