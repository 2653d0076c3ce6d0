//! The in-process manager: procs are tokio tasks in this process, behind the
//! same traits as OS procs. For host tests and embedding.
//!
//! Mapping onto the OS model:
//!
//! | OS proc                   | in-process proc                                   |
//! |---------------------------|---------------------------------------------------|
//! | ready record              | [`LocalProcContext::report_ready`]                |
//! | SIGTERM                   | the stop signal ([`LocalProcContext::stopped`])   |
//! | SIGKILL                   | the task is aborted                               |
//! | `Exited { code: 0 }`      | the future returned `Ok(())`                      |
//! | `Failed { reason }`       | it returned `Err(reason)`, or panicked            |
//! | `Signaled { SIGKILL }`    | it was aborted (kill, or still running at the deadline) |

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hostmux_wire::ProcName;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::{LifecycleError, ReadyError, TerminateError, WaitError};
use crate::escalation::{Action, Escalation};
use crate::link::{Command, Link, Snapshot};
use crate::manager::{PoliteStopHook, ProcHandle, ProcManager, Registry};
use crate::status::{ProcStatus, TerminalStatus};
use crate::supervision::{apply_command, sleep_until, PoliteStops, ReadyTimeout};

/// The future an in-process proc runs.
pub type LocalProcFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

type Factory = Box<dyn FnOnce(LocalProcContext) -> LocalProcFuture + Send + 'static>;

/// What an in-process proc is spawned with.
pub struct LocalProcConfig {
    factory: Factory,
    ready_timeout: Duration,
    ready_on_spawn: bool,
}

impl std::fmt::Debug for LocalProcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProcConfig")
            .field("ready_timeout", &self.ready_timeout)
            .field("ready_on_spawn", &self.ready_on_spawn)
            .finish_non_exhaustive()
    }
}

impl LocalProcConfig {
    /// A proc running the future `body` builds. It must call
    /// [`LocalProcContext::report_ready`] (unless [`Self::ready_on_spawn`])
    /// and should return when [`LocalProcContext::stopped`] resolves.
    /// Default ready timeout: 10 s.
    pub fn new<F, Fut>(body: F) -> Self
    where
        F: FnOnce(LocalProcContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            factory: Box::new(move |cx| Box::pin(body(cx))),
            ready_timeout: Duration::from_secs(10),
            ready_on_spawn: false,
        }
    }

    /// Sets the spawn-ready timeout (`Duration::ZERO` disables it).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Treats the proc as ready as soon as it is spawned.
    pub fn ready_on_spawn(mut self) -> Self {
        self.ready_on_spawn = true;
        self
    }
}

/// Given to an in-process proc's body: its name, readiness and stop signal.
#[derive(Debug)]
pub struct LocalProcContext {
    name: ProcName,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
    stop: watch::Receiver<bool>,
}

impl LocalProcContext {
    /// The proc's name.
    pub fn name(&self) -> &ProcName {
        &self.name
    }

    /// Reports ready (the in-process ready record). Later calls do nothing.
    pub fn report_ready(&mut self) {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(());
        }
    }

    /// Resolves once a terminate asked the proc to stop.
    pub async fn stopped(&mut self) {
        let _ = self.stop.wait_for(|stop| *stop).await;
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Manager of in-process procs.
#[derive(Clone)]
pub struct LocalProcManager {
    inner: Arc<LocalInner>,
}

struct LocalInner {
    polite_stop: Option<PoliteStopHook>,
    registry: Registry<LocalHandle>,
}

impl std::fmt::Debug for LocalProcManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProcManager").finish_non_exhaustive()
    }
}

impl Default for LocalProcManager {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalProcManager {
    /// A manager with no polite-stop hook.
    pub fn new() -> Self {
        Self::with_polite_stop(None)
    }

    /// A manager whose terminates first run `hook` (as the OS manager does).
    pub fn with_polite_stop(hook: Option<PoliteStopHook>) -> Self {
        Self {
            inner: Arc::new(LocalInner {
                polite_stop: hook,
                registry: Registry::new(),
            }),
        }
    }
}

/// Handle to one in-process proc.
#[derive(Clone, Debug)]
pub struct LocalHandle {
    link: Arc<Link>,
}

impl ProcHandle for LocalHandle {
    fn name(&self) -> &ProcName {
        &self.link.name
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn status(&self) -> ProcStatus {
        self.link.status()
    }

    async fn ready(&self) -> Result<(), ReadyError> {
        self.link.ready().await
    }

    async fn wait(&self) -> Result<TerminalStatus, WaitError> {
        self.link.wait().await
    }

    async fn terminate(&self, grace: Duration) -> Result<TerminalStatus, TerminateError> {
        self.link.terminate(grace).await
    }

    async fn kill(&self) -> Result<TerminalStatus, TerminateError> {
        self.link.kill().await
    }
}

impl ProcManager for LocalProcManager {
    type Handle = LocalHandle;
    type Config = LocalProcConfig;

    async fn spawn(
        &self,
        name: ProcName,
        config: LocalProcConfig,
    ) -> Result<LocalHandle, LifecycleError> {
        let mut registry = self.inner.registry.lock();
        if registry.contains_key(&name) {
            return Err(LifecycleError::ProcExists(name));
        }
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (state_tx, state_rx) = watch::channel(Snapshot::starting());
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let cx = LocalProcContext {
            name: name.clone(),
            ready: Some(ready_tx),
            stop: stop_rx,
        };
        let task = tokio::spawn((config.factory)(cx));
        let handle = LocalHandle {
            link: Arc::new(Link {
                name: name.clone(),
                state: state_rx,
                commands: command_tx,
            }),
        };
        let supervisor = LocalSupervisor {
            name: name.clone(),
            task,
            ready: (!config.ready_on_spawn).then_some(ready_rx),
            ready_timeout: ReadyTimeout::start(
                config.ready_timeout,
                !config.ready_on_spawn,
                Instant::now(),
            ),
            stop: stop_tx,
            escalation: Escalation::new(),
            polite_stops: PoliteStops::new(self.inner.polite_stop.clone()),
            state: state_tx,
            commands: command_rx,
            commands_open: true,
            manager: Arc::downgrade(&self.inner),
        };
        registry.insert(name, handle.clone());
        drop(registry);
        tokio::spawn(supervisor.run());
        Ok(handle)
    }

    fn get(&self, name: &ProcName) -> Option<LocalHandle> {
        let registry = self.inner.registry.lock();
        registry.get(name).cloned()
    }

    fn procs(&self) -> Vec<LocalHandle> {
        let registry = self.inner.registry.lock();
        registry.values().cloned().collect()
    }
}

struct LocalSupervisor {
    name: ProcName,
    task: JoinHandle<Result<(), String>>,
    ready: Option<tokio::sync::oneshot::Receiver<()>>,
    ready_timeout: ReadyTimeout,
    stop: watch::Sender<bool>,
    escalation: Escalation,
    polite_stops: PoliteStops,
    state: watch::Sender<Snapshot>,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    manager: Weak<LocalInner>,
}

impl LocalSupervisor {
    async fn run(mut self) {
        if self.ready.is_none() {
            self.mark_ready();
        }
        while self.escalation.terminal().is_none() {
            let wake_at = [
                self.escalation.poll_timeout(),
                self.ready_timeout.deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                biased;
                joined = &mut self.task => {
                    let status = match joined {
                        Ok(Ok(())) => TerminalStatus::Exited { code: 0, output: None },
                        Ok(Err(reason)) => TerminalStatus::Failed {
                            reason,
                            output: None,
                        },
                        Err(e) if e.is_cancelled() => TerminalStatus::Signaled {
                            signal: libc::SIGKILL,
                            core_dumped: false,
                            output: None,
                        },
                        Err(e) => TerminalStatus::Failed {
                            reason: format!("panicked: {}", panic_message(e)),
                            output: None,
                        },
                    };
                    self.escalation.handle_exit(status, Instant::now());
                }
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(command) => apply_command(command, &mut self.escalation),
                    None => self.commands_open = false,
                },
                reported = wait_ready(&mut self.ready), if self.ready.is_some() => {
                    self.ready = None;
                    if reported {
                        self.mark_ready();
                    }
                }
                () = sleep_until(wake_at), if wake_at.is_some() => {
                    let now = Instant::now();
                    self.escalation.handle_timeout(now);
                    if self.ready_timeout.check(now, &self.name, &mut self.escalation) {
                        self.ready = None;
                    }
                }
            }
            self.execute_actions();
        }
        self.polite_stops.end_all().await;
        let status = self
            .escalation
            .terminal()
            .cloned()
            .expect("loop ends at the exit");
        if let Some(manager) = self.manager.upgrade() {
            manager.registry.lock().remove(&self.name);
        }
        let ready_failure = self.ready_timeout.take_failure();
        self.state.send_modify(|s| {
            s.ready_failure = ready_failure;
            s.status = ProcStatus::Terminal(status);
        });
    }

    fn mark_ready(&mut self) {
        self.ready_timeout.stop();
        let stopping = self.escalation.is_stopping();
        self.state.send_modify(|s| s.mark_ready(stopping));
    }

    fn execute_actions(&mut self) {
        while let Some(action) = self.escalation.poll_action() {
            match action {
                Action::PoliteStop => self.polite_stops.begin(&self.name, &self.state),
                Action::Terminate => {
                    let _ = self.stop.send(true);
                }
                Action::Kill => self.task.abort(),
            }
        }
    }
}

/// True if the proc reported ready; false if it dropped its context first.
async fn wait_ready(ready: &mut Option<tokio::sync::oneshot::Receiver<()>>) -> bool {
    match ready {
        Some(rx) => rx.await.is_ok(),
        None => std::future::pending().await,
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into()),
        Err(e) => e.to_string(),
    }
}
