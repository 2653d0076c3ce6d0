//! The per-proc supervisor task: the one owner of the child's pidfd, its
//! reaping, its ready pipe and its escalation. Handles talk to it through a
//! [`Link`](crate::link::Link); because the escalation lives here, a caller
//! that stops waiting never stops the escalation.

use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hostmux_wire::ProcName;
use rustix::io::Errno;
use rustix::process::{
    kill_process_group, pidfd_send_signal, waitid, Pid, Signal, WaitId, WaitIdOptions,
};
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{ManagerInner, Readiness, StartingGuard};
use crate::cgroup::ProcCgroup;
use crate::error::ReadyError;
use crate::escalation::{Action, Escalation};
use crate::link::{Command, Snapshot};
use crate::manager::PoliteStopHook;
use crate::notify::{Notification, NotifySocket, Watchdog, WATCHDOG_STOP_GRACE};
use crate::output::Tails;
use crate::readiness::{check_record, probe_tcp, RecordCheck, READY_RECORD_LEN};
use crate::status::{ProcStatus, TerminalStatus};
use crate::supervision::{apply_command, sleep_until, PoliteStops, ReadyTimeout};

/// How long after the ready pipe's EOF the supervisor waits for the exit to
/// become reapable (a dying process closes its fds just before it becomes a
/// zombie) before it kills a proc that merely closed the pipe.
const EOF_EXIT_GRACE: Duration = Duration::from_millis(100);

/// How long output readers may take to reach EOF after the proc's tree is
/// dead, before the terminal status is published without them.
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_millis(200);

pub(super) struct Parts {
    pub(super) name: ProcName,
    pub(super) seq: u64,
    pub(super) pid: u32,
    /// The child's pidfd, registered with the runtime.
    pub(super) pidfd: AsyncFd<OwnedFd>,
    pub(super) ready_pipe: Option<pipe::Receiver>,
    pub(super) nonce: Option<String>,
    pub(super) readiness: Readiness,
    pub(super) ready_timeout: Duration,
    pub(super) watchdog: Duration,
    pub(super) notify: Option<NotifySocket>,
    pub(super) cgroup: Option<ProcCgroup>,
    pub(super) polite_stop: Option<PoliteStopHook>,
    pub(super) state: watch::Sender<Snapshot>,
    pub(super) commands: mpsc::UnboundedReceiver<Command>,
    pub(super) readers: Vec<JoinHandle<()>>,
    pub(super) tails: Option<Arc<Tails>>,
    pub(super) starting: Option<StartingGuard>,
    pub(super) manager: Weak<ManagerInner>,
}

/// Kills and reaps the child if the supervisor is dropped before it reaped
/// (runtime shutdown, panic): no orphans and no zombies on any path.
struct ChildGuard {
    pid: Pid,
    pidfd: AsyncFd<OwnedFd>,
    cgroup: Option<ProcCgroup>,
    reaped: bool,
}

impl ChildGuard {
    /// SIGKILL to the group (safe: the leader is unreaped, so its pid and
    /// pgid cannot be reused), to the leader via its pidfd, and to the cgroup.
    fn kill_tree(&self) -> Result<(), Errno> {
        let _ = kill_process_group(self.pid, Signal::KILL);
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill();
        }
        match pidfd_send_signal(self.pidfd.get_ref().as_fd(), Signal::KILL) {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.kill_tree();
            let fd = self.pidfd.get_ref().as_fd();
            let _ = waitid(WaitId::PidFd(fd), WaitIdOptions::EXITED);
            if let Some(cg) = &mut self.cgroup {
                cg.kill_and_remove_blocking();
            }
        }
    }
}

enum ReadyState {
    /// Reading the pipe; `eof_at` set once EOF arrived without a record.
    Pending {
        pipe: pipe::Receiver,
        nonce: String,
        received: Vec<u8>,
        eof_at: Option<Instant>,
    },
    /// Waiting for `READY=1` on the notify socket.
    AwaitingNotify,
    /// Trying to connect to the proc's TCP port.
    AwaitingConnect(Pin<Box<dyn Future<Output = ()> + Send>>),
    Done,
}

/// What moved readiness on, besides the notify socket.
enum ReadyEvent {
    /// Bytes (or EOF, or an error) from the ready pipe.
    Pipe(std::io::Result<usize>),
    /// The TCP probe connected.
    Connected,
}

pub(super) struct Supervisor {
    name: ProcName,
    seq: u64,
    child: ChildGuard,
    escalation: Escalation,
    ready: ReadyState,
    ready_timeout: ReadyTimeout,
    notify: Option<NotifySocket>,
    watchdog: Watchdog,
    polite_stops: PoliteStops,
    state: watch::Sender<Snapshot>,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    readers: Vec<JoinHandle<()>>,
    tails: Option<Arc<Tails>>,
    starting: Option<StartingGuard>,
    manager: Weak<ManagerInner>,
}

impl Supervisor {
    pub(super) fn new(parts: Parts) -> Self {
        let pidfd = parts.pidfd;
        let now = Instant::now();
        let ready = match (parts.readiness, parts.ready_pipe, parts.nonce) {
            (Readiness::Protocol, Some(pipe), Some(nonce)) => ReadyState::Pending {
                pipe,
                nonce,
                received: Vec::with_capacity(READY_RECORD_LEN),
                eof_at: None,
            },
            (Readiness::Notify, ..) => ReadyState::AwaitingNotify,
            (Readiness::Tcp(addr), ..) => ReadyState::AwaitingConnect(Box::pin(probe_tcp(addr))),
            _ => ReadyState::Done,
        };
        let waiting = !matches!(ready, ReadyState::Done);
        let mut supervisor = Self {
            name: parts.name,
            seq: parts.seq,
            child: ChildGuard {
                pid: Pid::from_raw(parts.pid as i32).expect("child pids are positive"),
                pidfd,
                cgroup: parts.cgroup,
                reaped: false,
            },
            escalation: Escalation::new(),
            ready,
            ready_timeout: ReadyTimeout::start(parts.ready_timeout, waiting, now),
            notify: parts.notify,
            watchdog: Watchdog::new(parts.watchdog),
            polite_stops: PoliteStops::new(parts.polite_stop),
            state: parts.state,
            commands: parts.commands,
            commands_open: true,
            readers: parts.readers,
            tails: parts.tails,
            starting: parts.starting,
            manager: parts.manager,
        };
        if matches!(supervisor.ready, ReadyState::Done) {
            supervisor.mark_ready();
        }
        supervisor
    }

    pub(super) async fn run(mut self) {
        while self.escalation.terminal().is_none() {
            self.step().await;
            self.execute_actions();
        }
        self.finish().await;
    }

    /// Waits for the next event and feeds it to the escalation.
    async fn step(&mut self) {
        let wake_at = [
            self.escalation.poll_timeout(),
            self.ready_timeout.deadline(),
            self.watchdog.deadline(),
            match &self.ready {
                ReadyState::Pending {
                    eof_at: Some(at), ..
                } => Some(*at + EOF_EXIT_GRACE),
                _ => None,
            },
        ]
        .into_iter()
        .flatten()
        .min();
        let mut buf = [0u8; READY_RECORD_LEN + 1];
        let pid = self.child.pid.as_raw_nonzero().get() as u32;

        tokio::select! {
            biased;
            exited = self.child.pidfd.readable() => {
                if let Ok(mut guard) = exited {
                    guard.retain_ready();
                }
                self.reap();
            }
            command = self.commands.recv(), if self.commands_open => match command {
                Some(command) => apply_command(command, &mut self.escalation),
                None => self.commands_open = false,
            },
            event = ready_event(&mut self.ready, &mut buf) => match event {
                ReadyEvent::Pipe(read) => self.on_ready_bytes(read.map(|n| &buf[..n])),
                ReadyEvent::Connected => self.mark_ready(),
            },
            received = recv_notify(self.notify.as_ref(), pid) => self.on_notification(received),
            () = sleep_until(wake_at), if wake_at.is_some() => self.on_timer(),
        }
    }

    fn on_ready_bytes(&mut self, read: std::io::Result<&[u8]>) {
        let now = Instant::now();
        let ReadyState::Pending {
            nonce,
            received,
            eof_at,
            ..
        } = &mut self.ready
        else {
            return;
        };
        match read {
            Ok([]) | Err(_) => *eof_at = Some(now),
            Ok(bytes) => {
                received.extend_from_slice(bytes);
                match check_record(received, nonce) {
                    RecordCheck::Partial => {}
                    RecordCheck::Complete => self.mark_ready(),
                    RecordCheck::Mismatch => {
                        self.ready = ReadyState::Done;
                        self.ready_timeout.stop();
                        self.escalation
                            .handle_fail("wrote a malformed ready record".into(), now);
                    }
                }
            }
        }
    }

    /// A datagram on the notify socket: status text, readiness, watchdog.
    fn on_notification(&mut self, received: std::io::Result<Notification>) {
        let now = Instant::now();
        let notification = match received {
            Ok(notification) => notification,
            Err(error) => {
                tracing::warn!(proc = %self.name, %error, "reading the sd_notify socket failed; closing it");
                self.notify = None;
                return;
            }
        };
        if let Some(text) = notification.status {
            self.state.send_modify(|s| s.status_text = Some(text));
        }
        if notification.ready && matches!(self.ready, ReadyState::AwaitingNotify) {
            self.mark_ready();
        }
        if notification.watchdog_ping {
            self.watchdog.ping(now);
        }
        if notification.watchdog_trigger {
            self.fail_watchdog("its watchdog was triggered (WATCHDOG=trigger)".into(), now);
        }
    }

    /// The watchdog expired or was triggered: stop the proc with the full
    /// escalation and report it failed for that reason.
    fn fail_watchdog(&mut self, reason: String, now: Instant) {
        self.watchdog.disarm();
        tracing::warn!(proc = %self.name, %reason, "watchdog: terminating the proc");
        self.escalation
            .handle_fail_gracefully(reason, WATCHDOG_STOP_GRACE, now);
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        self.escalation.handle_timeout(now);
        if self.watchdog.expired(now) {
            let reason = format!(
                "watchdog timeout: no WATCHDOG=1 within {:?}",
                self.watchdog.interval()
            );
            self.fail_watchdog(reason, now);
        }
        if matches!(self.ready, ReadyState::Done) {
            return;
        }
        if let ReadyState::Pending { eof_at, .. } = &self.ready {
            if eof_at.is_some_and(|at| now >= at + EOF_EXIT_GRACE) {
                self.ready = ReadyState::Done;
                self.ready_timeout.stop();
                self.escalation
                    .handle_fail("closed its ready pipe without reporting ready".into(), now);
                return;
            }
        }
        if self
            .ready_timeout
            .check(now, &self.name, &mut self.escalation)
        {
            self.ready = ReadyState::Done;
        }
    }

    fn mark_ready(&mut self) {
        self.ready = ReadyState::Done;
        self.ready_timeout.stop();
        self.watchdog.arm(Instant::now());
        self.starting = None;
        let stopping = self.escalation.is_stopping();
        self.state.send_modify(|s| s.mark_ready(stopping));
    }

    /// The pidfd is readable: the leader exited and is a zombie. Kill what
    /// is left of its process group while the pgid is still pinned, then reap.
    fn reap(&mut self) {
        // A record written just before the exit is still in the pipe: read
        // it first so a proc that was ready and then exited counts as ready.
        let mut buf = [0u8; READY_RECORD_LEN + 1];
        while let ReadyState::Pending {
            pipe, eof_at: None, ..
        } = &self.ready
        {
            match pipe.try_read(&mut buf) {
                Ok(n) => self.on_ready_bytes(Ok(&buf[..n])),
                Err(_) => break,
            }
        }
        // Likewise a READY=1 (or a last STATUS=) sent just before the exit.
        let pid = self.child.pid.as_raw_nonzero().get() as u32;
        while let Some(notification) = self.notify.as_ref().and_then(|s| s.try_recv(pid)) {
            self.on_notification(Ok(notification));
        }
        let _ = kill_process_group(self.child.pid, Signal::KILL);
        let fd = self.child.pidfd.get_ref().as_fd();
        let status = match waitid(
            WaitId::PidFd(fd),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        ) {
            Ok(Some(status)) => {
                if let Some(code) = status.exit_status() {
                    TerminalStatus::Exited { code, output: None }
                } else if let Some(signal) = status.terminating_signal() {
                    TerminalStatus::Signaled {
                        signal,
                        core_dumped: status.dumped(),
                        output: None,
                    }
                } else {
                    return; // a stop/continue report; keep waiting
                }
            }
            Ok(None) => return, // spurious wake-up
            Err(Errno::CHILD) => TerminalStatus::Failed {
                reason: "reaped by another waiter in the host process".into(),
                output: None,
            },
            Err(Errno::INTR) => return,
            Err(e) => TerminalStatus::Failed {
                reason: format!("waitid on the pidfd failed: {e}"),
                output: None,
            },
        };
        self.child.reaped = true;
        self.escalation.handle_exit(status, Instant::now());
    }

    fn execute_actions(&mut self) {
        while let Some(action) = self.escalation.poll_action() {
            match action {
                Action::PoliteStop => self.polite_stops.begin(&self.name, &self.state),
                Action::Terminate => {
                    // SIGCONT after SIGTERM so a stopped proc wakes to act on it.
                    let _ = kill_process_group(self.child.pid, Signal::TERM);
                    let _ = kill_process_group(self.child.pid, Signal::CONT);
                    let fd = self.child.pidfd.get_ref().as_fd();
                    let _ = pidfd_send_signal(fd, Signal::TERM);
                    let _ = pidfd_send_signal(fd, Signal::CONT);
                }
                Action::Kill => {
                    if let Err(errno) = self.child.kill_tree() {
                        tracing::error!(proc = %self.name, error = %errno, "SIGKILL delivery failed");
                        self.state
                            .send_modify(|s| s.kill_errno = Some(errno.raw_os_error()));
                    }
                }
            }
        }
    }

    /// After the reap: kill leftovers in the cgroup, read the output pipes
    /// to EOF (bounded by [`OUTPUT_DRAIN_LIMIT`]), then publish the one
    /// terminal status carrying the final output tail.
    async fn finish(mut self) {
        self.polite_stops.end_all().await;
        if let Some(cg) = &mut self.child.cgroup {
            cg.kill_and_release().await;
        }
        // The proc's tree is dead, so every writer end is closed unless a
        // descendant escaped both the group and the cgroup.
        let drain_until = tokio::time::Instant::now() + OUTPUT_DRAIN_LIMIT;
        let mut all_at_eof = true;
        for reader in self.readers.drain(..) {
            let abort = reader.abort_handle();
            if tokio::time::timeout_at(drain_until, reader).await.is_err() {
                abort.abort();
                all_at_eof = false;
            }
        }
        let output = self
            .tails
            .take()
            .map(|tails| Arc::new(tails.snapshot(all_at_eof)));
        let status = self
            .escalation
            .terminal()
            .cloned()
            .expect("finish runs after the exit")
            .with_output(output);
        if let Some(manager) = self.manager.upgrade() {
            manager.forget(&self.name, self.seq);
        }
        let ready_failure = match self.ready {
            ReadyState::Done => self.ready_timeout.take_failure(),
            _ => Some(
                self.ready_timeout
                    .take_failure()
                    .unwrap_or_else(|| ReadyError::Terminal(status.clone())),
            ),
        };
        tracing::debug!(proc = %self.name, pid = self.child.pid.as_raw_nonzero().get(), %status, "proc terminal");
        // Close every fd of this proc (pidfd, pipes, cgroup) before anyone
        // can observe the terminal status.
        let state = self.state;
        let refill = self.child.cgroup.as_ref().and_then(|cg| cg.refill_needed());
        drop(self.child);
        drop(self.ready);
        drop(self.notify);
        drop(self.starting);
        state.send_modify(|s| {
            s.ready_failure = ready_failure;
            s.status = ProcStatus::Terminal(status);
        });
        // A cgroup that could not be reused was removed: replace it now,
        // after the status is out, so the next spawn finds one ready.
        if let Some(refill) = refill {
            refill.run();
        }
    }
}

/// The next event of the ready pipe or the TCP probe; never resolves in
/// other states (or once the pipe reached EOF).
async fn ready_event(ready: &mut ReadyState, buf: &mut [u8]) -> ReadyEvent {
    match ready {
        ReadyState::Pending {
            pipe, eof_at: None, ..
        } => ReadyEvent::Pipe(pipe.read(buf).await),
        ReadyState::AwaitingConnect(probe) => {
            probe.as_mut().await;
            ReadyEvent::Connected
        }
        _ => std::future::pending().await,
    }
}

/// The next accepted notify datagram; never resolves without a socket.
async fn recv_notify(notify: Option<&NotifySocket>, pid: u32) -> std::io::Result<Notification> {
    match notify {
        Some(socket) => socket.recv(pid).await,
        None => std::future::pending().await,
    }
}
