//! The one long-lived thread every OS proc is forked from.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not the process. Forking from tokio worker or blocking-pool threads would
//! therefore kill children whenever the pool retires a thread. This thread is
//! started on first use and never exits, so the death signal means exactly
//! "the host process died".

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use crate::error::LifecycleError;

type Job = Box<dyn FnOnce() + Send + 'static>;

static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

fn spawner() -> Result<mpsc::Sender<Job>, LifecycleError> {
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("hostmux-spawner".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the lifecycle spawner thread");
        }
        Mutex::new(tx)
    });
    Ok(sender
        .lock()
        .map_err(|_| LifecycleError::SpawnerGone)?
        .clone())
}

/// Runs `job` on the spawner thread and returns its result.
pub(crate) async fn on_spawner_thread<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LifecycleError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    spawner()?
        .send(Box::new(move || {
            let _ = tx.send(job());
        }))
        .map_err(|_| LifecycleError::SpawnerGone)?;
    rx.await.map_err(|_| LifecycleError::SpawnerGone)
}
