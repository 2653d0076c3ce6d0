//! Arming a just-cloned child on the spawner thread: registering its pidfd
//! and pipes with the runtime and starting its supervisor task, before the
//! spawning caller is even woken.
//!
//! Why here and not in the caller: the child needs several hundred µs to
//! exec and start up, and it writes its ready record at the end of that.
//! When the caller armed the supervisor, it first had to be woken by the
//! spawner thread, and on a loaded 2-core machine that wake-up regularly
//! came after the ready record, which then waited for it (measured: median
//! write-to-ready-seen 140–230 µs in such runs, 40–55 µs otherwise). The
//! spawner thread is running anyway right after the clone.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hostmux_wire::ProcName;
use rustix::process::{kill_process_group, pidfd_send_signal, waitid, Pid, Signal, WaitId};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};

use super::supervisor::{Parts, Supervisor};
use super::{HandleInner, ManagerInner, ProcessHandle, Readiness, StartingGuard};
use crate::cgroup::ProcCgroup;
use crate::link::{Command, Link, Snapshot};
use crate::manager::PoliteStopHook;
use crate::notify::NotifySocket;
use crate::output::{Stream, Tails};

/// Everything the supervisor of one proc needs besides the child itself,
/// moved into the spawn job.
pub(super) struct Arming {
    pub(super) name: ProcName,
    pub(super) seq: u64,
    pub(super) nonce: Option<String>,
    pub(super) readiness: Readiness,
    pub(super) ready_timeout: Duration,
    pub(super) watchdog: Duration,
    /// Read end of the ready pipe (readiness protocol only).
    pub(super) ready_pipe: Option<OwnedFd>,
    /// The proc's sd_notify socket (notify readiness or a watchdog).
    pub(super) notify: Option<NotifySocket>,
    /// Read ends of captured output pipes, with their tails' bounds.
    pub(super) captures: Vec<(Stream, usize, OwnedFd)>,
    pub(super) cgroup: Option<ProcCgroup>,
    pub(super) polite_stop: Option<PoliteStopHook>,
    pub(super) starting: StartingGuard,
    pub(super) manager: Weak<ManagerInner>,
    /// The caller's runtime: pipes and pidfd register with its reactor and
    /// the supervisor runs on it.
    pub(super) runtime: tokio::runtime::Handle,
}

/// Why a spawn job produced no proc.
pub(super) enum ArmError {
    /// The clone or the child's pre-exec steps failed.
    Spawn(io::Error),
    /// The child started but could not be registered with the runtime; it
    /// was killed and reaped.
    Register {
        what: &'static str,
        source: io::Error,
    },
}

/// A failed spawn job, with the proc's cgroup for the caller to release.
pub(super) struct ArmFailure {
    pub(super) error: ArmError,
    pub(super) cgroup: Option<ProcCgroup>,
}

impl Arming {
    /// Arms the outcome of a clone: on success the supervisor is running
    /// and the handle waits for the caller to claim it.
    pub(super) fn arm(
        self,
        spawned: io::Result<(libc::pid_t, OwnedFd)>,
        in_pid_namespace: bool,
    ) -> Result<UnclaimedProc, ArmFailure> {
        let Arming {
            name,
            seq,
            nonce,
            readiness,
            ready_timeout,
            watchdog,
            ready_pipe,
            notify,
            captures,
            cgroup,
            polite_stop,
            starting,
            manager,
            runtime,
        } = self;
        let (pid, pidfd) = match spawned {
            Ok(child) => child,
            Err(source) => {
                return Err(ArmFailure {
                    error: ArmError::Spawn(source),
                    cgroup,
                })
            }
        };
        // Until the supervisor owns the pidfd, a failure kills and reaps
        // the child here.
        let mut child = UnclaimedChild(Some((pid, Some(pidfd))));
        let _runtime = runtime.enter();
        let register = |what: &'static str| move |source| ArmError::Register { what, source };
        let registered = (|| {
            let ready_pipe = ready_pipe
                .map(pipe::Receiver::from_owned_fd)
                .transpose()
                .map_err(register("registering the ready pipe"))?;
            let mut receivers = Vec::with_capacity(captures.len());
            for (stream, max_bytes, fd) in captures {
                let receiver = pipe::Receiver::from_owned_fd(fd)
                    .map_err(register("registering an output pipe"))?;
                receivers.push((stream, max_bytes, receiver));
            }
            let pidfd = crate::sys::register_pidfd(child.take_pidfd()).map_err(|(fd, e)| {
                child.put_pidfd(fd);
                register("registering the pidfd")(e)
            })?;
            Ok((ready_pipe, receivers, pidfd))
        })();
        let (ready_pipe, receivers, pidfd) = match registered {
            Ok(parts) => parts,
            Err(error) => return Err(ArmFailure { error, cgroup }),
        };
        child.disarm();

        let tails = (!receivers.is_empty()).then(|| Arc::new(Tails::default()));
        let readers = match &tails {
            Some(tails) => receivers
                .into_iter()
                .map(|(stream, max_bytes, receiver)| {
                    tokio::spawn(Arc::clone(tails).drain(stream, max_bytes, receiver))
                })
                .collect(),
            None => Vec::new(),
        };
        let (state_tx, state_rx) = watch::channel(Snapshot::starting());
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let pid = pid as u32;
        let handle = ProcessHandle {
            inner: Arc::new(HandleInner {
                link: Link {
                    name: name.clone(),
                    state: state_rx,
                    commands: command_tx,
                },
                pid,
                in_pid_namespace,
                tails: tails.clone(),
            }),
        };
        let supervisor = Supervisor::new(Parts {
            name,
            seq,
            pid,
            pidfd,
            ready_pipe,
            nonce,
            readiness,
            ready_timeout,
            watchdog,
            notify,
            cgroup,
            polite_stop,
            state: state_tx,
            commands: command_rx,
            readers,
            tails,
            starting: Some(starting),
            manager,
        });
        tokio::spawn(supervisor.run());
        Ok(UnclaimedProc(Some(handle)))
    }
}

/// A supervised proc whose spawning caller has not taken its handle yet.
/// Dropped unclaimed (the caller's spawn future was cancelled, before or
/// after the job finished), it asks its supervisor to kill it: the
/// supervisor then kills, reaps and cleans up as for any kill.
pub(super) struct UnclaimedProc(Option<ProcessHandle>);

impl UnclaimedProc {
    pub(super) fn claim(&mut self) -> ProcessHandle {
        self.0.take().expect("claimed once")
    }
}

impl Drop for UnclaimedProc {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.inner.link.commands.send(Command::Kill);
        }
    }
}

/// A just-cloned child that no supervisor owns yet: dropped armed, it is
/// killed and reaped (blocking, on the spawner thread) rather than leaked.
struct UnclaimedChild(Option<(libc::pid_t, Option<OwnedFd>)>);

impl UnclaimedChild {
    fn take_pidfd(&mut self) -> OwnedFd {
        self.0
            .as_mut()
            .and_then(|(_, fd)| fd.take())
            .expect("the pidfd is taken once")
    }

    fn put_pidfd(&mut self, pidfd: OwnedFd) {
        if let Some((_, slot)) = &mut self.0 {
            *slot = Some(pidfd);
        }
    }

    /// The supervisor owns the child now.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for UnclaimedChild {
    fn drop(&mut self) {
        let Some((pid, pidfd)) = self.0.take() else {
            return;
        };
        let Some(pid) = Pid::from_raw(pid) else {
            return;
        };
        // Unreaped, so the pid and pgid are still this child's.
        let _ = kill_process_group(pid, Signal::KILL);
        match &pidfd {
            Some(fd) => {
                let _ = pidfd_send_signal(fd, Signal::KILL);
                let _ = waitid(
                    WaitId::PidFd(std::os::fd::AsFd::as_fd(fd)),
                    rustix::process::WaitIdOptions::EXITED,
                );
            }
            None => {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
                let _ = waitid(WaitId::Pid(pid), rustix::process::WaitIdOptions::EXITED);
            }
        }
    }
}
