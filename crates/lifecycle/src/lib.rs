//! hostmux-lifecycle: spawn the host's procs, learn when they are ready,
//! stop them with a bounded escalation, and report how they ended — with no
//! orphans left behind.
//!
//! # Main types
//!
//! - [`ProcManager`] / [`ProcHandle`]: the traits the host is written
//!   against; [`BulkTerminate`] and [`SingleTerminate`] on managers.
//! - [`ProcessProcManager`] (production): each proc an OS child process,
//!   configured by [`ProcessConfig`]. [`LocalProcManager`]: procs as tokio
//!   tasks in this process, for host tests and embedding.
//! - [`TerminalStatus`] (`Exited` / `Signaled` / `Failed`, each carrying
//!   the bounded [`OutputTail`] when stdout or stderr was
//!   [`OutputMode::Capture`]d), [`ProcStatus`], [`TerminateSummary`]; errors [`LifecycleError`], [`ReadyError`],
//!   [`WaitError`], [`TerminateError`].
//! - [`RunAs`]: the user, group and supplementary groups a proc runs as
//!   ([`ProcessConfig::run_as`], or a manager-wide default with
//!   [`ProcessProcManagerBuilder::default_run_as`]); the child switches
//!   before exec and sets `PR_SET_NO_NEW_PRIVS`.
//! - [`BulkTerminateMode`]: a bulk terminate either bounds how many procs
//!   stop at once, each with its own grace (hyperactor's meaning, the
//!   default), or gives all procs one overall deadline (a host's shutdown).
//! - [`Escalation`]: the sans-IO Running → Stopping → Killing → Terminal
//!   state machine both managers drive.
//! - [`child::report_ready`] and [`readiness`]: the readiness protocol
//!   (inherited pipe + per-spawn nonce), defined in `hostmux-boot` (which
//!   the child library uses without depending on this crate) and
//!   re-exported here. [`ProcessConfig`] implements
//!   `hostmux_boot::ChildSpawn`, the boot protocol's hand-over of variables
//!   and fds.
//! - [`Readiness`]: how an OS proc's readiness is learned: that protocol,
//!   `OnSpawn` (exec succeeded), `Notify` (systemd's `sd_notify`, with
//!   `STATUS=` text and a watchdog, see [`notify`]) or `Tcp` (its port
//!   accepts a connection).
//!
//! # Invariants
//!
//! - One supervisor task per proc owns its pidfd, reaps it (exactly once,
//!   with `waitid(P_PIDFD)`) and owns its escalation; handles only send
//!   requests and watch a published state. Every waiter sees the one
//!   terminal status; cancelling a caller never cancels an escalation.
//! - Signals go through the pidfd; the process group is signalled only while
//!   its leader is unreaped (so the pgid cannot have been reused).
//! - `terminate(grace)` resolves within `grace` plus a small constant:
//!   SIGKILL goes out at the deadline whatever the proc does.
//! - A proc's whole tree dies with it: its process group is SIGKILLed when
//!   its leader exits, and its cgroup (where delegated) is `cgroup.kill`ed.
//!   If the host itself is SIGKILLed, `PR_SET_PDEATHSIG` kills each proc,
//!   and the manager's **guardian** kills their descendants: a small process
//!   outside the manager's cgroup subtree ([`ProcessProcManager::guardian_pid`])
//!   that waits for EOF on a pipe only the host holds open and then writes
//!   `cgroup.kill` for the whole subtree; a guardian that dies while the
//!   host runs is replaced at once. Without cgroups there is no
//!   guardian, and descendants die only with the proc's PID namespace
//!   (opt-in, [`ProcessConfig::pid_namespace`]); a start-up sweep of dead
//!   managers' cgroups catches what a killed guardian could not.
//!
//! # Key design decision: one long-lived spawner thread
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits.
//! Spawning from tokio's pools would kill children whenever a pool thread
//! retires, so all forks happen on one dedicated thread that never exits;
//! the death signal then means exactly "the host died". That thread starts
//! children with `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` like
//! `posix_spawn` (no copy-on-write storm in a big multi-threaded host, pidfd
//! obtained atomically); the crate's only `unsafe` is that code, in `sys`.
//! The same thread then arms the proc (registers its pipes and pidfd, starts
//! its supervisor) before the caller is woken, so the ready record is
//! watched for while the child is still starting up. See
//! `docs/lifecycle.md` for the full state machine, crash behaviour and the
//! cgroup and PID-namespace choices.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use hostmux_lifecycle::{LocalProcConfig, LocalProcManager, ProcHandle, ProcManager, TerminalStatus};
//! use hostmux_wire::ProcName;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let manager = LocalProcManager::new();
//! let config = LocalProcConfig::new(|mut cx| async move {
//!     cx.report_ready();
//!     cx.stopped().await; // a cooperative proc returns when asked to stop
//!     Ok(())
//! });
//! let proc = manager.spawn(ProcName::new("worker").unwrap(), config).await.unwrap();
//! proc.ready().await.unwrap();
//! let status = proc.terminate(Duration::from_secs(1)).await.unwrap();
//! assert_eq!(status, TerminalStatus::Exited { code: 0, output: None });
//! assert_eq!(proc.wait().await.unwrap(), status);
//! # });
//! ```
#![deny(missing_docs)]
// All unsafe code lives in `sys`; everything else is checked safe.
#![deny(unsafe_code)]

mod bulk;
mod cgroup;
pub mod child;
mod credentials;
mod error;
pub mod escalation;
mod guardian;
mod link;
mod local;
mod manager;
pub mod notify;
mod output;
mod process;
pub mod readiness;
mod spawner;
mod status;
mod supervision;
#[allow(unsafe_code)]
mod sys;

pub use bulk::BulkTerminateMode;
pub use credentials::RunAs;
pub use error::{LifecycleError, ReadyError, TerminateError, WaitError};
pub use escalation::{Action, Escalation};
pub use local::{
    LocalHandle, LocalProcConfig, LocalProcContext, LocalProcFuture, LocalProcManager,
};
pub use manager::{
    BoxFuture, BulkTerminate, PoliteStopHook, ProcHandle, ProcManager, SingleTerminate,
};
pub use output::{OutputMode, OutputTail};
pub use process::{
    CgroupMode, ChildFdSlot, ProcessConfig, ProcessHandle, ProcessProcManager,
    ProcessProcManagerBuilder, Readiness,
};
pub use status::{ProcStatus, TerminalStatus, TerminateSummary};

/// Re-exported so callers can name procs without a direct wire dependency.
pub use hostmux_wire::ProcName;
