//! A custom manager written against the public traits only: an in-memory
//! fake with one `impl ProcManager` (and `impl ProcHandle` for its handle).
//! Bulk terminate and terminate-by-name come with it; these tests show they
//! keep their meaning (every proc once, at most `max_in_flight` at a time,
//! SIGKILL at each proc's own grace, one overall deadline in the other
//! mode), and that `wait()` blocks until the end while `try_wait()` and
//! `status()` answer at once.
//!
//! Time is tokio's paused clock: a stubborn fake proc "ends" when its grace
//! has run out on that clock, so no test depends on the machine's speed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostmux_lifecycle::{
    BulkTerminate, BulkTerminateMode, LifecycleError, ProcHandle, ProcManager, ProcName,
    ProcStatus, ReadyError, SingleTerminate, TerminalStatus, TerminateError, WaitError,
};
use tokio::sync::watch;
use tokio::time::Instant;

/// How a fake proc reacts to a polite stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Temper {
    /// Exits 0 as soon as it is asked to.
    Cooperative,
    /// Ignores the polite stop; killed when its grace runs out.
    Stubborn,
}

/// Counts terminations in flight, and the most at once.
#[derive(Debug, Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

#[derive(Debug, Clone)]
struct FakeHandle {
    name: ProcName,
    temper: Temper,
    state: Arc<watch::Sender<ProcStatus>>,
    in_flight: Arc<InFlight>,
    /// When each proc's termination started and ended (paused clock).
    log: Arc<Mutex<Vec<(ProcName, Instant, Instant)>>>,
}

impl FakeHandle {
    fn end(&self, status: TerminalStatus) {
        self.state.send_replace(ProcStatus::Terminal(status));
    }
}

impl ProcHandle for FakeHandle {
    fn name(&self) -> &ProcName {
        &self.name
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn status(&self) -> ProcStatus {
        self.state.borrow().clone()
    }

    async fn ready(&self) -> Result<(), ReadyError> {
        let mut state = self.state.subscribe();
        let status = state
            .wait_for(|s| *s != ProcStatus::Starting)
            .await
            .map_err(|_| ReadyError::ChannelClosed)?
            .clone();
        match status {
            ProcStatus::Terminal(status) => Err(ReadyError::Terminal(status)),
            _ => Ok(()),
        }
    }

    async fn wait(&self) -> Result<TerminalStatus, WaitError> {
        let mut state = self.state.subscribe();
        let status = state
            .wait_for(|s| matches!(s, ProcStatus::Terminal(_)))
            .await
            .map_err(|_| WaitError::ChannelClosed)?
            .clone();
        match status {
            ProcStatus::Terminal(status) => Ok(status),
            _ => unreachable!("waited for a terminal status"),
        }
    }

    async fn terminate(&self, grace: Duration) -> Result<TerminalStatus, TerminateError> {
        if let Some(status) = self.try_wait() {
            return Err(TerminateError::AlreadyTerminated(status));
        }
        let started = Instant::now();
        let now = self.in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight.most.fetch_max(now, Ordering::SeqCst);
        self.state.send_replace(ProcStatus::Stopping);
        let status = match self.temper {
            Temper::Cooperative => {
                tokio::task::yield_now().await;
                TerminalStatus::Exited {
                    code: 0,
                    output: None,
                }
            }
            Temper::Stubborn => {
                tokio::time::sleep(grace).await;
                TerminalStatus::Signaled {
                    signal: 9,
                    core_dumped: false,
                    output: None,
                }
            }
        };
        self.in_flight.now.fetch_sub(1, Ordering::SeqCst);
        self.log
            .lock()
            .unwrap()
            .push((self.name.clone(), started, Instant::now()));
        self.end(status.clone());
        Ok(status)
    }

    async fn kill(&self) -> Result<TerminalStatus, TerminateError> {
        self.terminate(Duration::ZERO).await
    }
}

/// The fake manager: procs are entries in a map.
#[derive(Debug, Default)]
struct FakeManager {
    procs: Mutex<HashMap<ProcName, FakeHandle>>,
    in_flight: Arc<InFlight>,
    log: Arc<Mutex<Vec<(ProcName, Instant, Instant)>>>,
}

impl ProcManager for FakeManager {
    type Handle = FakeHandle;
    type Config = Temper;

    async fn spawn(&self, name: ProcName, temper: Temper) -> Result<FakeHandle, LifecycleError> {
        let mut procs = self.procs.lock().unwrap();
        if procs.contains_key(&name) {
            return Err(LifecycleError::ProcExists(name));
        }
        let handle = FakeHandle {
            name: name.clone(),
            temper,
            state: Arc::new(watch::channel(ProcStatus::Ready).0),
            in_flight: self.in_flight.clone(),
            log: self.log.clone(),
        };
        procs.insert(name, handle.clone());
        Ok(handle)
    }

    fn get(&self, name: &ProcName) -> Option<FakeHandle> {
        self.procs.lock().unwrap().get(name).cloned()
    }

    fn procs(&self) -> Vec<FakeHandle> {
        self.procs.lock().unwrap().values().cloned().collect()
    }
}

fn name(text: &str) -> ProcName {
    ProcName::new(text).unwrap()
}

async fn spawn_all(manager: &FakeManager, tempers: &[Temper]) -> Vec<FakeHandle> {
    let mut handles = Vec::new();
    for (i, &temper) in tempers.iter().enumerate() {
        handles.push(manager.spawn(name(&format!("p{i}")), temper).await.unwrap());
    }
    handles
}

#[tokio::test(start_paused = true)]
async fn a_custom_manager_gets_hyperactors_bulk_terminate_from_one_impl() {
    use Temper::*;
    let manager = FakeManager::default();
    let tempers = [
        Stubborn,
        Cooperative,
        Stubborn,
        Cooperative,
        Stubborn,
        Cooperative,
    ];
    let handles = spawn_all(&manager, &tempers).await;
    // One already ended before the bulk terminate: counted ok, not stopped again.
    handles[5].end(TerminalStatus::Exited {
        code: 3,
        output: None,
    });
    let grace = Duration::from_secs(10);

    let started = Instant::now();
    let summary = manager.terminate_all(grace, 2).await;

    assert_eq!((summary.attempted, summary.ok, summary.failed), (6, 6, 0));
    assert_eq!(manager.in_flight.most.load(Ordering::SeqCst), 2);
    let log = manager.log.lock().unwrap().clone();
    let mut stopped: Vec<&str> = log.iter().map(|(n, _, _)| n.as_str()).collect();
    stopped.sort_unstable();
    assert_eq!(
        stopped,
        ["p0", "p1", "p2", "p3", "p4"],
        "each live proc once"
    );
    for (proc, begun, ended) in &log {
        let expected = match proc.as_str() {
            "p0" | "p2" | "p4" => grace,
            _ => Duration::ZERO,
        };
        assert_eq!(*ended - *begun, expected, "{proc}: its own full grace");
    }
    // Two slots, three stubborn procs: two graces in a row, never three.
    assert_eq!(started.elapsed(), 2 * grace);
    for handle in &handles {
        assert!(
            handle.try_wait().is_some(),
            "{} still running",
            handle.name()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn overall_deadline_mode_stops_every_proc_at_once_within_one_grace() {
    let manager = FakeManager::default();
    spawn_all(&manager, &[Temper::Stubborn; 5]).await;
    let grace = Duration::from_secs(10);

    let started = Instant::now();
    let summary = manager
        .terminate_all_with(grace, BulkTerminateMode::OverallDeadline)
        .await;

    assert_eq!((summary.attempted, summary.ok, summary.failed), (5, 5, 0));
    assert_eq!(manager.in_flight.most.load(Ordering::SeqCst), 5);
    assert_eq!(started.elapsed(), grace);
}

#[tokio::test(start_paused = true)]
async fn a_custom_manager_terminates_one_proc_by_name() {
    let manager = FakeManager::default();
    spawn_all(&manager, &[Temper::Cooperative]).await;

    let status = manager
        .terminate_proc(&name("p0"), Duration::from_secs(1))
        .await
        .unwrap();
    assert!(status.success());
    match manager
        .terminate_proc(&name("p0"), Duration::from_secs(1))
        .await
    {
        Err(TerminateError::AlreadyTerminated(again)) => assert_eq!(again, status),
        other => panic!("a second terminate: {other:?}"),
    }
    match manager
        .terminate_proc(&name("nobody"), Duration::from_secs(1))
        .await
    {
        Err(TerminateError::NoSuchProc(missing)) => assert_eq!(missing.as_str(), "nobody"),
        other => panic!("terminate of an unknown proc: {other:?}"),
    }
}

/// Hyperactor's toy handles returned from `wait()` at once; ours waits for
/// the end. `try_wait()` and `status()` are the calls that answer now.
#[tokio::test(start_paused = true)]
async fn wait_blocks_until_the_end_while_try_wait_and_status_answer_at_once() {
    let manager = FakeManager::default();
    let handle = spawn_all(&manager, &[Temper::Cooperative]).await.remove(0);
    handle.ready().await.unwrap();
    assert_eq!(handle.try_wait(), None);
    assert_eq!(handle.status(), ProcStatus::Ready);

    let waiter = tokio::spawn({
        let handle = handle.clone();
        async move { handle.wait().await }
    });
    // Let the waiter run until it blocks: it must still be waiting.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished(), "wait() returned while the proc runs");

    let status = handle.terminate(Duration::from_secs(1)).await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), status);
    assert_eq!(handle.try_wait(), Some(status.clone()));
    assert_eq!(handle.status(), ProcStatus::Terminal(status));
}
