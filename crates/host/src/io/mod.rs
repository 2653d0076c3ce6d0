//! The host's I/O thread: one thread owns every ring end, every connection
//! and the routing-table reader, and drives the [`Dataplane`] from whichever
//! [`Frontend`] runs.
//!
//! Control operations ([`crate::Host::spawn`] and friends) run on the
//! caller's runtime and reach this thread through a command queue plus a ring
//! of the host doorbell, the same eventfd every proc rings; ring ends never
//! leave this thread, so each ring keeps exactly one producer and one
//! consumer. More I/O threads (one per core, each with its own rings to each
//! proc) would each run this loop over their own `Dataplane`; the control
//! side would pick a thread per connection and per proc ring pair.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender as ChannelSender};
use hostmux_ring::{Consumer, Doorbell, Producer};
use hostmux_wire::{
    decode_frame, rkyv::util::AlignedVec, AgentRequest, AgentResponse, FrameDecoder, ProcName,
    FRAME_ALIGN,
};
use tokio::sync::oneshot;

use crate::config::HostConfig;
use crate::dataplane::service::ControlJob;
use crate::dataplane::{Blocker, ConnKey, Dataplane, Delivery, Drain, Outbox, ProcKey, Table};
use crate::frontend::{ConnReader, ConnWriter, Frontend};
use crate::stats::HostStats;
use crate::HostError;

mod accept;
pub(crate) mod budget;
mod conn;
mod dial;
mod shell;
pub(crate) mod tls;
pub(crate) mod zero_copy;

use accept::{accept_loop, control_accept_loop, Door, Serving};
use budget::ConnBudget;
use conn::{connection, serve_conn};
use dial::dial_loop;
pub(crate) use shell::Shared;

/// A request from the control side to the I/O thread.
// Commands are rare (spawns, terminates, stats); their size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    AddProc {
        name: ProcName,
        inbound: Producer,
        inbound_memfd: OwnedFd,
        outbound: Consumer,
        reply: oneshot::Sender<ProcKey>,
    },
    /// The proc is ready; `done` once frames to it are delivered.
    MarkReady {
        key: ProcKey,
        agent: bool,
        done: oneshot::Sender<()>,
    },
    /// Ping the proc's agent; the answer goes to `reply`.
    AgentPing {
        key: ProcKey,
        reply: oneshot::Sender<AgentResponse>,
    },
    /// Ask the proc's agent to stop (once; no-op without an agent).
    AgentStop(ProcKey),
    /// The same, by name (the lifecycle's polite-stop hook knows only that).
    AgentStopName(ProcName),
    /// A control-plane response for a connection's queue.
    ControlReply {
        conn: ConnKey,
        frame: Vec<u8>,
    },
    Detach(ProcKey),
    Remove(ProcKey, oneshot::Sender<()>),
    Stats(oneshot::Sender<HostStats>),
    Shutdown,
}

/// The control side's way in: a queue plus a doorbell ring.
#[derive(Debug)]
pub(crate) struct Control {
    commands: ChannelSender<Command>,
    doorbell: Doorbell,
}

impl Control {
    pub(crate) fn new(commands: ChannelSender<Command>, doorbell: Doorbell) -> Self {
        Self { commands, doorbell }
    }

    pub(crate) fn try_clone(&self) -> Result<Self, HostError> {
        Ok(Self {
            commands: self.commands.clone(),
            doorbell: self
                .doorbell
                .try_clone()
                .map_err(|_| HostError::IoThreadGone)?,
        })
    }

    pub(crate) fn send(&self, command: Command) -> Result<(), HostError> {
        self.commands
            .send(command)
            .map_err(|_| HostError::IoThreadGone)?;
        self.doorbell.ring().map_err(|_| HostError::IoThreadGone)
    }
}

/// Everything the I/O thread starts with.
pub(crate) struct IoParts {
    pub(crate) cfg: Arc<HostConfig>,
    pub(crate) service_name: ProcName,
    pub(crate) table: Arc<Table>,
    pub(crate) commands: Receiver<Command>,
    pub(crate) doorbell: Doorbell,
    /// The addresses that mean this host; the primary one names it.
    pub(crate) identity: crate::identity::Identity,
    /// Procs that broke the ring protocol, for the control side to kill.
    pub(crate) failures: tokio::sync::mpsc::UnboundedSender<(ProcKey, ProcName)>,
    /// Privileged control requests, for the control side.
    pub(crate) control_jobs: tokio::sync::mpsc::UnboundedSender<ControlJob>,
    /// The control socket (mode 0600, bound), if configured.
    pub(crate) control_socket: Option<std::os::unix::net::UnixListener>,
}

/// Runs the host until a `Shutdown` command (or the control side is gone),
/// speaking TLS where [`HostConfig::tls`] says so (see [`tls`]).
pub(crate) async fn run<F: Frontend>(listener: F::Listener, parts: IoParts) {
    let listener = tls::TlsListener::<F>::new(listener, parts.cfg.tls.clone());
    run_on::<tls::Tls<F>>(listener, parts).await;
}

async fn run_on<F: Frontend>(listener: F::Listener, parts: IoParts) {
    let dataplane = Shared::new(
        Dataplane::new(
            parts.cfg.clone(),
            parts.service_name.clone(),
            parts.table.clone(),
            parts.identity.clone(),
        ),
        parts.control_jobs.clone(),
    );
    let budget = ConnBudget::new(&parts.cfg);
    let serving = Serving {
        dataplane: dataplane.clone(),
        cfg: parts.cfg.clone(),
        service_name: parts.service_name.clone(),
        budget: budget.clone(),
    };
    let control_accept = match parts.control_socket.as_ref().map(|l| l.try_clone()) {
        Some(Ok(listener)) => Some(tokio::task::spawn_local(control_accept_loop::<F>(
            listener,
            serving.clone(),
        ))),
        Some(Err(e)) => {
            tracing::error!(error = %e, "control socket unusable; control plane over TCP with token only");
            None
        }
        None => None,
    };
    let dials = tokio::task::spawn_local(dial_loop::<F>(
        dataplane.clone(),
        parts.cfg.clone(),
        parts.service_name.clone(),
        parts.identity.hello_name(),
        budget.clone(),
    ));
    let accept = tokio::task::spawn_local(accept_loop::<F>(listener, serving));
    if let Err(e) = backend_loop::<F>(&dataplane, &parts, &budget).await {
        tracing::error!(error = %e, "host doorbell failed; I/O thread stopping");
    }
    accept.abort();
    dials.abort();
    if let Some(task) = control_accept {
        task.abort();
    }
}

async fn backend_loop<F: Frontend>(
    dataplane: &Shared,
    parts: &IoParts,
    budget: &ConnBudget,
) -> io::Result<()> {
    let doorbell =
        crate::sys::doorbell_async(parts.doorbell.try_clone().map_err(io::Error::other)?)?;
    let mut to_drain: Vec<ProcKey> = Vec::new();
    let conn_room = dataplane.reply_queue_room();
    // Whether this round follows a doorbell wake-up (not a drain budget
    // running out or a timer).
    let mut woken = false;
    // The loop rang its own doorbell to let the runtime park mid-spin: the
    // wake-up that follows is not a proc's.
    let mut spin_resumed = false;
    loop {
        // Commands first: a new proc must exist before its ring is polled.
        loop {
            let command = match parts.commands.try_recv() {
                Ok(command) => command,
                Err(crossbeam::channel::TryRecvError::Empty) => break,
                Err(crossbeam::channel::TryRecvError::Disconnected) => return Ok(()),
            };
            let mut dp = dataplane.borrow_mut();
            match command {
                Command::AddProc {
                    name,
                    inbound,
                    inbound_memfd,
                    outbound,
                    reply,
                } => {
                    let key = dp.add_proc(name, inbound, inbound_memfd, outbound);
                    // The spawn was dropped before it learned the key: the
                    // slot is nobody's, release it now.
                    if reply.send(key).is_err() {
                        dp.remove_proc(key, Instant::now());
                    }
                }
                Command::MarkReady { key, agent, done } => {
                    dp.mark_ready(key, agent);
                    let _ = done.send(());
                }
                Command::AgentPing { key, reply } => {
                    // The reply is matched by message id; the nonce is echoed only.
                    let nonce = 0x686d_7069_6e67;
                    let waiter = dataplane.agent_waiter(reply);
                    dp.agent_request(key, AgentRequest::Ping { nonce }, Some(waiter));
                }
                Command::AgentStop(key) => {
                    dp.agent_request(key, AgentRequest::Stop, None);
                }
                Command::AgentStopName(name) => dp.agent_stop_by_name(&name),
                Command::ControlReply { conn, frame } => dp.queue_answer(conn, &frame),
                Command::Detach(key) => dp.detach_proc(key),
                Command::Remove(key, done) => {
                    dp.remove_proc(key, Instant::now());
                    let _ = done.send(());
                }
                Command::Stats(reply) => {
                    let mut stats = dp.stats();
                    stats.conn_limits = budget.stats();
                    let _ = reply.send(stats);
                }
                Command::Shutdown => return Ok(()),
            }
        }
        // Rings: every proc whose outbound ring was rung, or whose drain was
        // cut short, or which waits for room that appeared.
        let now = Instant::now();
        let mut more = false;
        {
            let mut dp = dataplane.borrow_mut();
            to_drain.clear();
            to_drain.reserve(dp.proc_capacity());
            dp.poll_doorbell(&mut to_drain);
            dp.retry_agent_stops();
            dp.take_conn_room(&mut to_drain);
            if to_drain.is_empty() && woken && !spin_resumed {
                dp.sweep_corruption();
            }
            if dp.earliest_drain_deadline().is_some_and(|at| at <= now) {
                dp.blocked_drains(&mut to_drain);
            }
            for &key in &to_drain {
                if dp.drain_outbound(key, now) == Drain::More {
                    more = true;
                }
            }
            to_drain.clear();
            dp.take_failed(&mut to_drain);
            for &key in &to_drain {
                if let Some(name) = dp.proc_name(key) {
                    let _ = parts.failures.send((key, name));
                }
            }
        }
        if more {
            woken = false;
            tokio::task::yield_now().await;
            continue;
        }
        // Spin-then-sleep: after a wake-up, keep looking at the rings for
        // `poll_spin` before sleeping, so a proc answering within that time
        // needs no doorbell wake-up (about 9 us each on small VMs). Between
        // looks this thread's connection tasks run first (the reply the
        // drain just queued is written before anything else), then the
        // thread yields the CPU to a peer the scheduler put on it. An idle
        // host is never woken, so it never spins.
        //
        // A spin never parks the runtime, and tokio-uring submits what its
        // tasks queued only when the runtime parks: spinning on would hold
        // the reply just queued back for the rest of the spin. So once the
        // frontend has queued a write, the loop rings its own doorbell and
        // waits: the runtime parks, submits, finds the doorbell readable and
        // returns at once, and the spin starts again (traffic keeps it
        // going, as it does for epoll, whose writes happen on the spot).
        if woken && !parts.cfg.poll_spin.is_zero() {
            woken = false;
            spin_resumed = false;
            let until = Instant::now() + parts.cfg.poll_spin;
            let writes = F::queued_writes();
            let mut ready = false;
            loop {
                tokio::task::yield_now().await;
                if !parts.commands.is_empty() || dataplane.borrow_mut().outbound_ready() {
                    ready = true;
                    break;
                }
                if Instant::now() >= until {
                    break;
                }
                if F::queued_writes() != writes {
                    spin_resumed = doorbell.get_ref().ring().is_ok();
                    break;
                }
                std::thread::yield_now();
            }
            if ready {
                continue;
            }
        }
        woken = false;
        let deadline = dataplane.borrow().earliest_drain_deadline();
        tokio::select! {
            guard = doorbell.readable() => {
                let mut guard = guard?;
                // Read until the eventfd is empty, then clear readiness: a
                // ring that lands after the read re-arms it.
                loop {
                    match guard.get_inner().drain() {
                        Ok(0) => {
                            guard.clear_ready();
                            woken = true;
                            break;
                        }
                        Ok(_) => continue,
                        Err(e) => return Err(io::Error::other(e)),
                    }
                }
            }
            () = sleep_until(deadline) => {}
            () = conn_room.notified() => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
