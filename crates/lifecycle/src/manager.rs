//! The traits both managers implement, the polite-stop hook type, and the
//! registry of live procs both keep.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hostmux_wire::ProcName;

use crate::error::{LifecycleError, ReadyError, TerminateError, WaitError};
use crate::status::{ProcStatus, TerminalStatus, TerminateSummary};

/// A boxed, sendable future with no output.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The host's polite-stop hook: called once per proc at the start of a
/// terminate, at the same moment SIGTERM goes out. The returned future runs
/// concurrently with the escalation (it never delays SIGKILL) and is dropped
/// when the proc is reaped. Bulk terminate caps how many run at once.
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

    /// Resolves with the proc's terminal status.
    fn wait(&self) -> impl Future<Output = Result<TerminalStatus, WaitError>> + Send;

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
}

/// Spawns procs and keeps track of the live ones by name.
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
}

/// Terminate every live proc of a manager.
pub trait BulkTerminate: Send + Sync {
    /// Sends every live proc its SIGTERM (and polite stop) at once under one
    /// deadline `now + grace`, running at most `max_in_flight` polite-stop
    /// hooks at a time, and escalates the rest to SIGKILL at the deadline.
    fn terminate_all(
        &self,
        grace: Duration,
        max_in_flight: usize,
    ) -> impl Future<Output = TerminateSummary> + Send;
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
