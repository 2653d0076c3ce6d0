//! The host's I/O threads: each owns its lane (one inbound and one
//! outbound ring) of every proc, the connections handed to it and a
//! routing-table reader, and drives its own [`Dataplane`] from whichever
//! [`Frontend`] runs.
//!
//! Control operations ([`crate::Host::spawn`] and friends) run on the
//! caller's runtime and reach each thread through its command queue plus a
//! ring of its doorbell, the same eventfd every proc rings for its lane on
//! that thread ([`Controls`]); ring ends never leave their thread, so each
//! ring keeps exactly one producer and one consumer. With several threads,
//! thread 0 accepts every frontend connection and hands each to a thread
//! in turn ([`handoff`]); see docs/architecture.md, "Threads".

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
use crate::dataplane::{
    Blocker, ClientNames, ConnKey, Dataplane, Delivery, Drain, HandedFrame, Outbox, ProcKey, Table,
};
use crate::frontend::{ConnReader, ConnWriter, Frontend, StdListener};
use crate::stats::HostStats;
use crate::HostError;

mod accept;
pub(crate) mod budget;
mod conn;
mod controls;
mod dial;
pub(crate) mod handoff;
mod merge;
mod shell;
pub(crate) mod tls;
pub(crate) mod zero_copy;

use accept::{accept_loop, control_accept_loop, Door, Serving};
use budget::ConnBudget;
use conn::{connection, serve_conn};
pub(crate) use controls::Controls;
use dial::dial_loop;
pub(crate) use handoff::Accepted;
pub(crate) use merge::merge_thread_stats;
pub(crate) use shell::Shared;

/// A request from the control side to an I/O thread.
// Commands are rare (spawns, terminates, stats); their size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    /// This thread's lane of a new proc, under the key every thread uses;
    /// `done` says whether it was added.
    AddProc {
        key: ProcKey,
        name: ProcName,
        inbound: Producer,
        inbound_memfd: OwnedFd,
        outbound: Consumer,
        done: oneshot::Sender<bool>,
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
    /// A frontend connection thread 0 accepted, for this thread to serve.
    Adopt(Accepted),
    /// A frame for a client this thread owns, from another thread.
    HandedFrame(HandedFrame),
    Detach(ProcKey),
    Remove(ProcKey, oneshot::Sender<()>),
    Stats(oneshot::Sender<HostStats>),
    Shutdown,
}

/// The control side's way into one I/O thread: a queue plus a doorbell ring.
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

    /// The thread's doorbell (what its lane of every proc rings).
    pub(crate) fn doorbell(&self) -> &Doorbell {
        &self.doorbell
    }
}

/// Which listener an I/O thread serves.
pub(crate) enum Listening {
    /// The only thread: it accepts and serves every frontend connection.
    Alone(StdListener),
    /// Thread 0 of several: it accepts every frontend connection and hands
    /// each to a thread in turn (itself included); `threads` reach the
    /// others.
    HandsOff {
        listener: StdListener,
        threads: Vec<Control>,
    },
    /// Another thread: it serves what thread 0 hands it.
    Adopts,
}

/// Everything an I/O thread starts with.
pub(crate) struct IoParts {
    pub(crate) cfg: Arc<HostConfig>,
    pub(crate) service_name: ProcName,
    pub(crate) table: Arc<Table>,
    pub(crate) commands: Receiver<Command>,
    pub(crate) doorbell: Doorbell,
    /// This thread's index (its lane of every proc) and the thread count.
    pub(crate) thread: usize,
    pub(crate) threads: usize,
    /// Client names, unique across the threads.
    pub(crate) client_names: Arc<ClientNames>,
    /// The other threads, by index (`None` at this one's), for frames
    /// for their clients.
    pub(crate) others: Vec<Option<Control>>,
    /// The addresses that mean this host; the primary one names it.
    pub(crate) identity: crate::identity::Identity,
    /// Procs that broke the ring protocol, for the control side to kill.
    pub(crate) failures: tokio::sync::mpsc::UnboundedSender<(ProcKey, ProcName)>,
    /// Privileged control requests, for the control side.
    pub(crate) control_jobs: tokio::sync::mpsc::UnboundedSender<ControlJob>,
    /// The control socket (mode 0600, bound), if configured (thread 0).
    pub(crate) control_socket: Option<std::os::unix::net::UnixListener>,
}

/// What an I/O thread accepts on, in its runtime.
pub(crate) enum Accepting<F: Frontend> {
    /// Its own frontend listener.
    Own(F::Listener),
    /// The frontend listener whose connections it hands out.
    HandsOff(handoff::Acceptor),
    /// Nothing: connections are handed to it.
    Nothing,
}

/// Runs an I/O thread until a `Shutdown` command (or the control side is
/// gone), speaking TLS where [`HostConfig::tls`] says so (see [`tls`]).
pub(crate) async fn run<F: Frontend>(accepting: Accepting<F>, parts: IoParts) {
    let accepting = match accepting {
        Accepting::Own(listener) => {
            Accepting::Own(tls::TlsListener::<F>::new(listener, parts.cfg.tls.clone()))
        }
        Accepting::HandsOff(acceptor) => Accepting::HandsOff(acceptor),
        Accepting::Nothing => Accepting::Nothing,
    };
    run_on::<tls::Tls<F>>(accepting, parts).await;
}

async fn run_on<F: Frontend>(accepting: Accepting<F>, mut parts: IoParts) {
    if parts.threads > 1 {
        parts.cfg = Arc::new(handoff::thread_share(&parts.cfg, parts.threads));
    }
    let mut plane = Dataplane::new(
        parts.cfg.clone(),
        parts.service_name.clone(),
        parts.table.clone(),
        parts.identity.clone(),
    );
    if parts.threads > 1 {
        plane.share_client_names(parts.client_names.clone(), parts.thread);
    }
    let others = std::mem::take(&mut parts.others);
    let dataplane = Shared::new(plane, parts.control_jobs.clone(), parts.thread, others);
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
        dial::link_hello_name(&parts.identity, parts.thread),
        budget.clone(),
    ));
    let accept = match accepting {
        Accepting::Own(listener) => Some(tokio::task::spawn_local(accept_loop::<F>(
            listener,
            serving.clone(),
        ))),
        Accepting::HandsOff(acceptor) => Some(tokio::task::spawn_local(
            handoff::hand_off_loop::<F>(acceptor, serving.clone()),
        )),
        Accepting::Nothing => None,
    };
    if let Err(e) = backend_loop::<F>(&dataplane, &parts, &serving).await {
        tracing::error!(error = %e, thread = parts.thread, "host doorbell failed; I/O thread stopping");
    }
    if let Some(task) = accept {
        task.abort();
    }
    dials.abort();
    if let Some(task) = control_accept {
        task.abort();
    }
}

async fn backend_loop<F: Frontend>(
    dataplane: &Shared,
    parts: &IoParts,
    serving: &Serving,
) -> io::Result<()> {
    let budget = &serving.budget;
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
                    key,
                    name,
                    inbound,
                    inbound_memfd,
                    outbound,
                    done,
                } => {
                    // A spawn dropped meanwhile removes the key on every
                    // thread (its `Remove` follows this command).
                    let _ = done.send(dp.insert_proc(key, name, inbound, inbound_memfd, outbound));
                }
                Command::HandedFrame(frame) => dp.take_handed_frame(frame, Instant::now()),
                Command::Adopt(accepted) => {
                    drop(dp);
                    handoff::adopt::<F>(accepted, serving);
                    continue;
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
                    for conn in stats.conns.iter_mut().chain(&mut stats.closed_conns) {
                        conn.io_thread = parts.thread as u32;
                    }
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
            F::turn();
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
                // What the tasks just queued (a reply) goes to the kernel
                // now; what completed wakes its task for the next look.
                F::turn();
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
