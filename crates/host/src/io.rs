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

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender as ChannelSender};
use hostmux_ring::{Consumer, Doorbell, Producer};
use hostmux_wire::{
    decode_frame, rkyv::util::AlignedVec, AgentRequest, AgentResponse, FrameDecoder, ProcName,
    FRAME_ALIGN,
};
use tokio::sync::{oneshot, Notify};

use crate::config::HostConfig;
use crate::dataplane::{ConnKey, Dataplane, Delivery, Drain, Outbox, ProcKey, Table};
use crate::frontend::{ConnReader, ConnWriter, Frontend};
use crate::service::ControlJob;
use crate::stats::HostStats;
use crate::HostError;

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
    /// This host's frontend address text.
    pub(crate) own_addr: String,
    /// Procs that broke the ring protocol, for the control side to kill.
    pub(crate) failures: tokio::sync::mpsc::UnboundedSender<(ProcKey, ProcName)>,
    /// Privileged control requests, for the control side.
    pub(crate) control_jobs: tokio::sync::mpsc::UnboundedSender<ControlJob>,
    /// The control socket (mode 0600, bound), if configured.
    pub(crate) control_socket: Option<std::os::unix::net::UnixListener>,
}

type Shared = Rc<RefCell<Dataplane>>;

/// Runs the host until a `Shutdown` command (or the control side is gone).
pub(crate) async fn run<F: Frontend>(listener: F::Listener, parts: IoParts) {
    let dataplane = Rc::new(RefCell::new(Dataplane::new(
        parts.cfg.clone(),
        parts.service_name.clone(),
        parts.table.clone(),
        &parts.own_addr,
    )));
    dataplane
        .borrow_mut()
        .set_control_sink(parts.control_jobs.clone());
    let control_accept = match parts.control_socket.as_ref().map(|l| l.try_clone()) {
        Some(Ok(listener)) => Some(tokio::task::spawn_local(control_accept_loop::<F>(
            listener,
            dataplane.clone(),
            parts.cfg.clone(),
            parts.service_name.clone(),
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
        parts.own_addr.clone(),
    ));
    let accept = tokio::task::spawn_local(accept_loop::<F>(
        listener,
        dataplane.clone(),
        parts.cfg.clone(),
        parts.service_name.clone(),
    ));
    if let Err(e) = backend_loop::<F>(&dataplane, &parts).await {
        tracing::error!(error = %e, "host doorbell failed; I/O thread stopping");
    }
    accept.abort();
    dials.abort();
    if let Some(task) = control_accept {
        task.abort();
    }
}

async fn backend_loop<F: Frontend>(dataplane: &Shared, parts: &IoParts) -> io::Result<()> {
    let doorbell =
        crate::sys::doorbell_async(parts.doorbell.try_clone().map_err(io::Error::other)?)?;
    let mut to_drain: Vec<ProcKey> = Vec::new();
    let conn_room = dataplane.borrow().backend_wake();
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
                    let _ = reply.send(key);
                }
                Command::MarkReady { key, agent, done } => {
                    dp.mark_ready(key, agent);
                    let _ = done.send(());
                }
                Command::AgentPing { key, reply } => {
                    // The reply is matched by message id; the nonce is echoed only.
                    let nonce = 0x686d_7069_6e67;
                    dp.agent_request(key, AgentRequest::Ping { nonce }, Some(reply));
                }
                Command::AgentStop(key) => {
                    dp.agent_request(key, AgentRequest::Stop, None);
                }
                Command::AgentStopName(name) => dp.agent_stop_by_name(&name),
                Command::ControlReply { conn, frame } => dp.queue_raw(conn, &frame),
                Command::Detach(key) => dp.detach_proc(key),
                Command::Remove(key, done) => {
                    dp.remove_proc(key, Instant::now());
                    let _ = done.send(());
                }
                Command::Stats(reply) => {
                    let _ = reply.send(dp.stats());
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

async fn accept_loop<F: Frontend>(
    listener: F::Listener,
    dataplane: Shared,
    cfg: Arc<HostConfig>,
    service_name: ProcName,
) {
    loop {
        match F::accept(&listener).await {
            Ok((reader, writer, peer)) => {
                let span = tracing::info_span!("connection", peer = %peer, frontend = F::NAME);
                tracing::debug!(parent: &span, "accepted");
                tokio::task::spawn_local(connection::<F>(
                    reader,
                    writer,
                    dataplane.clone(),
                    cfg.clone(),
                    service_name.clone(),
                    Door::Frontend,
                    span,
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // Out of fds and the like: do not spin on the error.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Which listener a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    /// The frontend: privileged only if the host has a token (which its
    /// hello then presented).
    Frontend,
    /// The control socket, whose peer credentials were checked: privileged;
    /// its hello carries no token.
    ControlSocket,
}

/// Accepts on the control socket: only peers running as the host's uid or
/// root get through; their connections may use the control plane.
async fn control_accept_loop<F: Frontend>(
    listener: std::os::unix::net::UnixListener,
    dataplane: Shared,
    cfg: Arc<HostConfig>,
    service_name: ProcName,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixListener::from_std(listener))
    {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen on the control socket");
            return;
        }
    };
    let own_uid = crate::control::own_uid();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let peer = match stream.peer_cred() {
            Ok(cred) => cred,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: no peer credentials; closing");
                continue;
            }
        };
        if peer.uid() != own_uid && peer.uid() != 0 {
            tracing::warn!(
                peer_uid = peer.uid(),
                peer_pid = ?peer.pid(),
                host_uid = own_uid,
                "control socket: refusing a peer running as another user"
            );
            continue;
        }
        let adopted = stream.into_std().and_then(F::adopt_unix);
        let (reader, writer) = match adopted {
            Ok(halves) => halves,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: cannot adopt the connection");
                continue;
            }
        };
        let span = tracing::info_span!(
            "control",
            peer_uid = peer.uid(),
            peer_pid = ?peer.pid(),
            frontend = F::NAME
        );
        tracing::debug!(parent: &span, "accepted");
        tokio::task::spawn_local(connection::<F>(
            reader,
            writer,
            dataplane.clone(),
            cfg.clone(),
            service_name.clone(),
            Door::ControlSocket,
            span,
        ));
    }
}

async fn connection<F: Frontend>(
    mut reader: F::Reader,
    writer: F::Writer,
    dataplane: Shared,
    cfg: Arc<HostConfig>,
    service_name: ProcName,
    door: Door,
    span: tracing::Span,
) {
    let token = match door {
        Door::Frontend => cfg.token.as_deref().map(str::as_bytes),
        Door::ControlSocket => None,
    };
    let limits = cfg.limits;
    let mut decoder = FrameDecoder::new(limits);
    // The hello: the first frame, within a bounded time.
    let hello = tokio::time::timeout(Duration::from_secs(10), async {
        let outcome = loop {
            let (result, back) = reader.read_into(decoder).await;
            decoder = back;
            match result {
                Ok(0) | Err(_) => break Err("connection closed before its hello".to_owned()),
                Ok(_) => {}
            }
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    break hostmux_wire::check_hello(&frame, service_name.as_str(), token)
                        .map(str::to_owned)
                        .map_err(|refusal| format!("hello refused: {refusal:?}"));
                }
                Ok(None) => continue,
                Err(e) => break Err(format!("malformed hello: {e}")),
            }
        };
        (outcome, decoder)
    })
    .await;
    let (hello, decoder) = match hello {
        Ok((outcome, decoder)) => (Ok(outcome), decoder),
        Err(elapsed) => (Err(elapsed), FrameDecoder::new(limits)),
    };
    let client = match hello {
        Ok(Ok(name)) => name,
        Ok(Err(reason)) => {
            tracing::warn!(parent: &span, %reason, "closing connection");
            return;
        }
        Err(_) => {
            tracing::warn!(parent: &span, "closing connection: no hello within 10s");
            return;
        }
    };
    let Ok(name) = ProcName::with_max_len(&client, limits.max_name_len) else {
        tracing::warn!(parent: &span, client, "closing connection: invalid client name");
        return;
    };
    let wake_writer = Rc::new(Notify::new());
    let wake_reader = Rc::new(Notify::new());
    let key = {
        let mut dp = dataplane.borrow_mut();
        let Some(key) = dp.add_conn(name.clone(), wake_writer.clone(), wake_reader.clone()) else {
            tracing::warn!(parent: &span, client, "closing connection: name already bound");
            return;
        };
        // The token was checked by the hello; the control socket's peer by
        // its credentials.
        if door == Door::ControlSocket || cfg.token.is_some() {
            dp.set_privileged(key);
        }
        let mut ack = vec![0; 256];
        match hostmux_wire::encode_hello_ack(
            &mut ack,
            service_name.as_str(),
            name.as_str(),
            &limits,
        ) {
            Ok(len) => dp.queue_raw(key, &ack[..len]),
            Err(e) => tracing::warn!(parent: &span, error = %e, "cannot encode hello ack"),
        }
        key
    };
    tracing::info!(parent: &span, client, "client connected");
    serve_conn::<F>(
        reader,
        writer,
        decoder,
        &dataplane,
        key,
        (wake_writer, wake_reader),
        &cfg,
        &span,
    )
    .await;
}

/// Runs an established connection (accepted, or dialled to another host)
/// until it closes, then forgets it.
#[allow(clippy::too_many_arguments)]
async fn serve_conn<F: Frontend>(
    mut reader: F::Reader,
    writer: F::Writer,
    decoder: FrameDecoder,
    dataplane: &Shared,
    key: ConnKey,
    (wake_writer, wake_reader): (Rc<Notify>, Rc<Notify>),
    cfg: &HostConfig,
    span: &tracing::Span,
) {
    let writer_task = tokio::task::spawn_local(write_loop::<F>(
        writer,
        dataplane.clone(),
        key,
        wake_writer.clone(),
    ));
    let outcome = read_loop::<F>(&mut reader, decoder, dataplane, key, &wake_reader, cfg).await;
    match &outcome {
        Ok(()) => tracing::info!(parent: span, "connection closed by peer"),
        Err(reason) => {
            tracing::warn!(parent: span, %reason, "closing connection");
            dataplane.borrow_mut().fail_conn(key);
        }
    }
    dataplane.borrow_mut().close_conn(key);
    // Let the writer send what is queued (the error notice included), but
    // not wait forever on a peer that does not read.
    let abort = writer_task.abort_handle();
    if tokio::time::timeout(Duration::from_secs(1), writer_task)
        .await
        .is_err()
    {
        abort.abort();
    }
    dataplane.borrow_mut().remove_conn(key);
}

/// Dials links to other hosts as the data plane asks for them.
async fn dial_loop<F: Frontend>(
    dataplane: Shared,
    cfg: Arc<HostConfig>,
    service_name: ProcName,
    own_addr: String,
) {
    let wake = dataplane.borrow().dial_wake();
    let mut dials = Vec::new();
    // The name this host gives itself in its hellos to other hosts.
    let peer_name = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        own_addr.hash(&mut hasher);
        format!("peer-{:016x}", hasher.finish())
    };
    loop {
        wake.notified().await;
        dataplane.borrow_mut().take_dials(&mut dials);
        for (key, addr) in dials.drain(..) {
            tokio::task::spawn_local(dial::<F>(
                dataplane.clone(),
                cfg.clone(),
                service_name.clone(),
                peer_name.clone(),
                key,
                addr,
            ));
        }
    }
}

async fn dial<F: Frontend>(
    dataplane: Shared,
    cfg: Arc<HostConfig>,
    service_name: ProcName,
    peer_name: String,
    key: ConnKey,
    addr: Box<str>,
) {
    let span = tracing::info_span!("link", remote = %addr, frontend = F::NAME);
    let limits = cfg.limits;
    let linked = tokio::time::timeout(Duration::from_secs(10), async {
        let target = match tcp_target(&addr) {
            Some((host, port)) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("cannot resolve: {e}"))?
                .next()
                .ok_or_else(|| "resolves to no address".to_owned())?,
            None => return Err("not a TCP address".to_owned()),
        };
        let (mut reader, mut writer) = F::connect(target)
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
        let mut hello = vec![0; 512];
        let len = hostmux_wire::encode_hello(
            &mut hello,
            service_name.as_str(),
            &peer_name,
            cfg.token.as_deref().unwrap_or("").as_bytes(),
            &limits,
        )
        .map_err(|e| format!("cannot encode hello: {e}"))?;
        hello.truncate(len);
        let (written, _) = writer.write_all(hello).await;
        written.map_err(|e| format!("hello not sent: {e}"))?;
        let mut decoder = FrameDecoder::new(limits);
        loop {
            let (read, back) = reader.read_into(decoder).await;
            decoder = back;
            match read {
                Ok(0) | Err(_) => return Err("closed before acknowledging the hello".to_owned()),
                Ok(_) => {}
            }
            match decoder.next_frame() {
                Ok(Some(frame)) if hostmux_wire::is_hello_ack(&frame) => break,
                Ok(Some(_)) | Err(_) => {
                    return Err("answered the hello with something else".to_owned())
                }
                Ok(None) => {}
            }
        }
        Ok((reader, writer, decoder))
    })
    .await
    .unwrap_or_else(|_| Err("no hello acknowledgement within 10s".to_owned()));
    let (reader, writer, decoder) = match linked {
        Ok(link) => link,
        Err(reason) => {
            tracing::warn!(parent: &span, %reason, "link to another host failed; returning its frames");
            let mut dp = dataplane.borrow_mut();
            dp.remove_conn(key);
            dp.flush();
            return;
        }
    };
    let Some(wakes) = dataplane.borrow_mut().link_wakes(key) else {
        return;
    };
    dataplane.borrow_mut().remote_connected(key);
    tracing::info!(parent: &span, "linked to another host");
    serve_conn::<F>(reader, writer, decoder, &dataplane, key, wakes, &cfg, &span).await;
    dataplane.borrow_mut().flush();
}

async fn write_loop<F: Frontend>(
    mut writer: F::Writer,
    dataplane: Shared,
    key: ConnKey,
    wake: Rc<Notify>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let state = dataplane.borrow_mut().take_outbox(key, &mut buf);
        match state {
            Outbox::Closed => return,
            Outbox::Empty => wake.notified().await,
            Outbox::Bytes => {
                let (result, back) = writer.write_all(buf).await;
                buf = back;
                buf.clear();
                if result.is_err() {
                    return;
                }
            }
        }
    }
}

async fn read_loop<F: Frontend>(
    reader: &mut F::Reader,
    mut decoder: FrameDecoder,
    dataplane: &Shared,
    key: ConnKey,
    wake: &Notify,
    cfg: &HostConfig,
) -> Result<(), String> {
    let mut stash: AlignedVec<FRAME_ALIGN> = AlignedVec::new();
    loop {
        // Frames left over from the read that carried the hello, or from the
        // last read, first; then more bytes. One clock read per socket read,
        // not per frame: `now` only starts a full ring's overload wait, and a
        // batch is routed in microseconds (it is re-read after a wait).
        let mut now = Instant::now();
        loop {
            let blocked = {
                let mut dp = dataplane.borrow_mut();
                // Runs of frames that repeat the previous header go straight
                // to the same proc, without a frame view; anything else (and
                // a repeat the fast path declines) goes through `next_frame`.
                dp.deliver_repeats(key, &mut decoder);
                match decoder.next_frame() {
                    Ok(Some(frame)) => match dp.handle_conn_frame(key, &frame, true, None, now) {
                        Delivery::Done => None,
                        Delivery::Blocked(on, deadline) => {
                            stash.clear();
                            stash.extend_from_slice(frame.as_bytes());
                            Some((on, deadline))
                        }
                    },
                    Ok(None) => break,
                    Err(e) => return Err(format!("malformed frame: {e}")),
                }
            };
            if let Some((on, deadline)) = blocked {
                wait_for_room(dataplane, key, wake, cfg, &stash, on, deadline).await;
                now = Instant::now();
            }
        }
        dataplane.borrow_mut().flush();
        // Backpressure from a client that does not read its replies.
        while dataplane.borrow_mut().outbox_full(key) {
            wake.notified().await;
        }
        let (result, back) = reader.read_into(decoder).await;
        decoder = back;
        match result {
            Ok(0) => {
                return decoder
                    .finish()
                    .map_err(|e| format!("stream ended mid-frame: {e}"))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

/// Holds a frame for a full ring: retries on each wake-up, gives up with
/// `Overloaded` after the configured wait.
async fn wait_for_room(
    dataplane: &Shared,
    key: ConnKey,
    wake: &Notify,
    cfg: &HostConfig,
    stash: &[u8],
    mut on: ProcKey,
    deadline: Instant,
) {
    let limits = cfg.limits;
    loop {
        dataplane.borrow_mut().flush();
        let timed_out = tokio::time::timeout_at(deadline.into(), wake.notified())
            .await
            .is_err();
        let Ok(frame) = decode_frame(stash, &limits) else {
            return;
        };
        let mut dp = dataplane.borrow_mut();
        match dp.handle_conn_frame(key, &frame, false, Some(on), Instant::now()) {
            Delivery::Done => return,
            Delivery::Blocked(..) if timed_out => {
                dp.give_up_conn_frame(key, &frame, on);
                return;
            }
            Delivery::Blocked(next, _) => on = next,
        }
    }
}

/// Host and port of a TCP address text.
fn tcp_target(addr: &str) -> Option<(String, u16)> {
    let addr = addr.parse::<hostmux_wire::Addr>().ok()?;
    match addr.kind() {
        hostmux_wire::AddrKind::Tcp { host, port } => Some((
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        )),
        _ => None,
    }
}
