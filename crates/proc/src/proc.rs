//! [`Proc`]: boot, receive (blocking, batched, async) and the agent.

use std::time::{Duration, Instant};

use hostmux_ring::SharedRing;
use hostmux_wire::{
    decode_frame, decode_frame_memo, AgentRefusal, AgentRequest, AgentResponse, AgentStats,
    FrameKind, HeaderMemo, Limits, ProcId, ProcName, Sender, AGENT_MESSAGE_MAX_LEN, AGENT_PORT,
    PREFIX_LEN,
};

use crate::inbox::{InLane, Inbox};
use crate::lane::Lanes;
use crate::message::Message;
use crate::outbox::Outbox;
use crate::protocol::{BootParams, INBOUND_FD_ENV, OUTBOUND_FD_ENV, PROC_DOORBELL_FD_ENV};
use crate::signals::{StopHandle, StopSignals};
use crate::wait::AsyncSignal;
use crate::ProcError;

/// How long a blocking wait spins before it sleeps (see `docs/ring.md`).
pub const DEFAULT_SPIN: Duration = hostmux_ring::DEFAULT_SPIN;

/// How long a receive spins when the proc has sent something since its
/// previous receive wait: it is answering requests (or waiting for the
/// answer to its own), and the next message comes back after a round trip
/// through the host and another process, which often takes longer than
/// [`DEFAULT_SPIN`]. Sleeping then makes the round trip pay a wake-up on an
/// idle CPU, which slows it further: on the 2-vCPU VM the end-to-end 64 B
/// round trip flipped between ~15 and ~70 µs with 20 µs; with this window
/// it stays near ~20 µs (`docs/benchmarks.md`, issue 7). A proc that only
/// receives (a sink) or only sends keeps [`DEFAULT_SPIN`], so spinning does
/// not take CPU from the host when there are more busy processes than
/// cores (a 100 µs spin for every wait cut one-way throughput through the
/// host by half there).
pub const ANSWERING_SPIN: Duration = Duration::from_micros(100);

/// Without a proc doorbell a blocking receive sleeps on the ring's futex,
/// which a signal cannot interrupt for good; it then wakes at least this
/// often to notice a stop signal.
pub const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// How [`boot_with`] starts a proc.
#[derive(Debug, Clone, Copy)]
pub struct BootOptions {
    /// Report readiness to the lifecycle manager after mapping the rings
    /// (only if the manager passed a ready fd). Default on.
    pub report_ready: bool,
    /// Treat SIGTERM and SIGINT as a stop request (like the agent's `Stop`).
    /// Default on.
    pub handle_signals: bool,
}

impl Default for BootOptions {
    fn default() -> Self {
        Self {
            report_ready: true,
            handle_signals: true,
        }
    }
}

/// Boots an OS proc from the boot protocol: reads the environment, adopts
/// the inherited fds, maps both rings, installs the SIGTERM/SIGINT stop
/// handlers and reports ready (when spawned by the lifecycle manager).
pub fn boot() -> Result<Proc, ProcError> {
    boot_with(BootOptions::default())
}

/// [`boot`] with options.
pub fn boot_with(options: BootOptions) -> Result<Proc, ProcError> {
    let params = BootParams::from_env()?;
    let mut proc = boot_from(params)?;
    if options.handle_signals {
        proc.agent.signals = Some(StopSignals::install()?);
    }
    if options.report_ready {
        // Spawned by a manager that speaks the readiness protocol.
        if let Some(channel) = hostmux_boot::ReadyChannel::from_env().map_err(ProcError::Ready)? {
            channel.report().map_err(ProcError::Ready)?;
        }
    }
    Ok(proc)
}

/// Starts a proc from parameters given directly (an in-process proc, a test,
/// or after [`BootParams::from_env`]): maps both rings and wires the
/// doorbells. Reports no readiness and installs no signal handlers.
pub fn boot_from(params: BootParams) -> Result<Proc, ProcError> {
    params.check_lanes()?;
    if params.lanes.len() > 1 && params.proc_doorbell.is_none() {
        // Futexes put a sleeper on one ring; only the doorbell serves all.
        return Err(ProcError::invalid(
            PROC_DOORBELL_FD_ENV,
            format!(
                "not given, and a proc with {} lanes sleeps on all of them through its doorbell",
                params.lanes.len()
            ),
        ));
    }
    let mapping = |name: &'static str| {
        move |e: hostmux_ring::RingError| ProcError::InvalidParameter {
            name,
            reason: format!("not a usable ring memfd: {e}"),
        }
    };
    let mut in_lanes = Vec::with_capacity(params.lanes.len());
    let mut out_lanes = Vec::with_capacity(params.lanes.len());
    for lane in params.lanes {
        // The ring's own waits spin without yielding; this crate spins first
        // (`spin_for`) and then lets the ring sleep at once.
        let mut inbound = SharedRing::attach(lane.inbound)
            .map_err(mapping(INBOUND_FD_ENV))?
            .into_consumer()
            .map_err(mapping(INBOUND_FD_ENV))?;
        let mut outbound = SharedRing::attach(lane.outbound)
            .map_err(mapping(OUTBOUND_FD_ENV))?
            .into_producer()
            .map_err(mapping(OUTBOUND_FD_ENV))?;
        let host_copy = lane
            .host_doorbell
            .try_clone()
            .map_err(ProcError::ring("host doorbell"))?;
        inbound.set_producer_doorbell(Some(host_copy));
        inbound.set_spin(Duration::ZERO);
        outbound.set_spin(Duration::ZERO);
        outbound.set_consumer_doorbell(Some(lane.host_doorbell));
        out_lanes.push((outbound, inbound.read_position()));
        in_lanes.push(InLane {
            consumer: inbound,
            memo: HeaderMemo::new(),
        });
    }
    // `check_lanes` saw at least one lane.
    let in_lanes = Lanes::new(in_lanes).ok_or(ProcError::LaneCount {
        name: "lanes",
        count: 0,
        max: crate::protocol::MAX_LANES,
    })?;
    let name = params.id.name().clone();
    let outbox = Outbox::new(
        out_lanes,
        name,
        params.limits,
        params.proc_doorbell.as_ref(),
    )?;
    Ok(Proc {
        inbox: Inbox {
            lanes: in_lanes,
            next: 0,
            run: 0,
            frames_in_at_settle: 0,
            head: 0,
            unreleased: false,
            limits: params.limits,
            doorbell: params.proc_doorbell,
            async_doorbell: None,
            spin: DEFAULT_SPIN,
            answering_spin: ANSWERING_SPIN,
            sent_at_last_wait: 0,
        },
        outbox,
        agent: Agent {
            service_name: params.service_name,
            stop_hook: None,
            stop_requested: false,
            signals: None,
            async_signal: None,
            frames_in: 0,
            bytes_in: 0,
            requests: 0,
        },
        id: params.id,
    })
}

/// What a receive with a timeout found.
#[derive(Debug)]
#[must_use]
pub enum Recv<'a> {
    /// An application message.
    Message(Message<'a>),
    /// Nothing arrived in time.
    TimedOut,
    /// A stop was requested (agent `Stop` or SIGTERM), the stop hook ran and
    /// every frame received before it was handed out: finish and exit.
    Stopped,
    /// The host closed every inbound ring (every lane) and nothing is left
    /// in them.
    Closed,
}

/// What a batch receive did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum BatchRecv {
    /// This many messages were handed to the closure (at least one).
    Delivered(usize),
    /// Nothing arrived in time.
    TimedOut,
    /// See [`Recv::Stopped`].
    Stopped,
    /// See [`Recv::Closed`].
    Closed,
}

struct Agent {
    service_name: ProcName,
    stop_hook: Option<Box<dyn FnMut() + Send>>,
    stop_requested: bool,
    signals: Option<StopSignals>,
    async_signal: Option<AsyncSignal>,
    frames_in: u64,
    bytes_in: u64,
    requests: u64,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("service_name", &self.service_name)
            .field("stop_requested", &self.stop_requested)
            .field("handles_signals", &self.signals.is_some())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Runs the stop hook once and marks the proc stopping.
    fn request_stop(&mut self) {
        if !self.stop_requested {
            self.stop_requested = true;
            if let Some(mut hook) = self.stop_hook.take() {
                hook();
            }
        }
    }

    /// Whether a stop was requested, by the agent or by a signal.
    fn stopping(&mut self) -> bool {
        if !self.stop_requested && self.signals.as_ref().is_some_and(StopSignals::raised) {
            self.request_stop();
        }
        self.stop_requested
    }
}

/// What the heads of the inbound rings hold once agent requests are answered.
enum Head {
    Empty,
    /// An application frame is at the head of this lane (peeked; also in
    /// `inbox.head`). On a one-lane proc it is the constant 0, which lets
    /// the inlined receive paths reach lane 0 without looking it up.
    Application(usize),
}

/// The raw port and kind of a frame, read from fixed offsets without
/// validation (the host is trusted; the full decode follows). Inlined: it
/// runs once per received frame.
#[inline(always)]
fn peek_port_kind(record: &[u8]) -> Option<(u32, u8)> {
    let header_len = u32::from_le_bytes(record.get(4..8)?.try_into().ok()?) as usize;
    let root = (PREFIX_LEN + header_len).checked_sub(hostmux_wire::HEADER_ROOT_LEN)?;
    let port = u32::from_le_bytes(record.get(root + 8..root + 12)?.try_into().ok()?);
    Some((port, *record.get(root + 14)?))
}

/// A proc: its lanes' rings, its agent, and the API to receive and send
/// frames.
///
/// Single-threaded by design: one thread (or task) owns the proc, as one
/// consumer owns each inbound ring. Receives read every lane, round robin
/// (see the crate docs). The agent is not a thread either: agent requests
/// are answered inside the receive calls, so a proc answers its host while
/// (and only while) it receives.
#[derive(Debug)]
pub struct Proc {
    inbox: Inbox,
    outbox: Outbox,
    agent: Agent,
    id: ProcId,
}

impl Proc {
    /// The proc's id (its host's frontend address and its name).
    pub fn id(&self) -> &ProcId {
        &self.id
    }

    /// The proc's name.
    pub fn name(&self) -> &ProcName {
        self.id.name()
    }

    /// The sending side, to send frames outside message handling.
    pub fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// Installs the hook run once when a stop is requested (agent `Stop` or
    /// SIGTERM), before the receive calls report [`Recv::Stopped`].
    pub fn on_stop(&mut self, hook: impl FnMut() + Send + 'static) {
        self.agent.stop_hook = Some(Box::new(hook));
    }

    /// Requests a stop from within the proc (same path as the agent's `Stop`).
    pub fn request_stop(&mut self) {
        self.agent.request_stop();
    }

    /// A handle to request a stop from another thread (an in-process
    /// proc's host side, a supervisor thread): the same path as SIGTERM.
    /// For a proc booted without signal handling (e.g. [`boot_from`]) this
    /// adds the stop-request pipe its receive calls then also wait on.
    pub fn stop_handle(&mut self) -> Result<StopHandle, ProcError> {
        let signals = match self.agent.signals.take() {
            Some(signals) => signals,
            None => StopSignals::in_process()?,
        };
        let handle = signals.handle();
        self.agent.signals = Some(signals);
        handle
    }

    /// How long blocking waits (receive, and sends into a full ring) spin
    /// before sleeping ([`DEFAULT_SPIN`]); see [`spin_for`](crate::spin_for).
    /// A receive that follows a send spins [`ANSWERING_SPIN`] instead, or
    /// `spin` if that is longer, and not at all if `spin` is zero.
    pub fn set_spin(&mut self, spin: Duration) {
        self.inbox.spin = spin;
        self.inbox.answering_spin = if spin.is_zero() {
            Duration::ZERO
        } else {
            spin.max(ANSWERING_SPIN)
        };
        self.outbox.set_spin(spin);
    }

    /// The counters the agent reports.
    pub fn stats(&self) -> AgentStats {
        AgentStats {
            frames_in: self.agent.frames_in,
            bytes_in: self.agent.bytes_in,
            frames_out: self.outbox.sent.frames,
            bytes_out: self.outbox.sent.bytes,
            agent_requests: self.agent.requests,
        }
    }

    /// Receives the next message, waiting as long as it takes. `None` once
    /// the proc is stopped or the host closed the ring.
    pub fn recv(&mut self) -> Result<Option<Message<'_>>, ProcError> {
        match self.recv_deadline(None)? {
            Recv::Message(message) => Ok(Some(message)),
            _ => Ok(None),
        }
    }

    /// Receives the next message, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Recv<'_>, ProcError> {
        self.recv_deadline(Some(Instant::now() + timeout))
    }

    /// Receives without waiting: a message if one is there.
    pub fn try_recv(&mut self) -> Result<Recv<'_>, ProcError> {
        self.recv_deadline(Some(Instant::now()))
    }

    /// Frees the last message's record and answers agent requests at the
    /// heads of the lanes, from the lane after the last message's on (round
    /// robin); tells whether an application message is at the head of a
    /// lane (then `inbox.head` is that lane, and its record is peeked).
    #[inline(always)]
    fn settle_head(&mut self) -> Result<Head, ProcError> {
        if self.inbox.lanes.is_single() {
            // One lane (a count fixed at boot): no round robin, and
            // `inbox.head` stays 0.
            self.inbox.release_handed_out(0)?;
            return Ok(if self.settle_lane(0)? {
                Head::Application(0)
            } else {
                Head::Empty
            });
        }
        self.settle_round_robin()
    }

    /// [`settle_head`](Self::settle_head) over several lanes, round robin
    /// with a quantum: a receive starts at `inbox.next`, the lane the last
    /// message came from until [`LANE_QUANTUM`] messages in a row came
    /// from it, then the lane after it (see `Inbox::count_run`). So a busy
    /// lane cannot keep the others waiting for more than a quantum, and a
    /// proc whose traffic comes on one lane looks at its empty lanes once a
    /// quantum instead of before every message (docs/benchmarks.md, "Empty
    /// lanes").
    fn settle_round_robin(&mut self) -> Result<Head, ProcError> {
        self.inbox.release_handed_out(self.inbox.head)?;
        // Whether a message went out since the last settle: a settle whose
        // head was not taken is done again for the same record, which must
        // not count twice.
        let handed_out = self.agent.frames_in != self.inbox.frames_in_at_settle;
        self.inbox.frames_in_at_settle = self.agent.frames_in;
        let count = self.inbox.lanes.len();
        let start = self.inbox.next;
        let mut lane = start;
        for _ in 0..count {
            if lane >= count {
                lane = 0;
            }
            if self.settle_lane(lane)? {
                self.inbox.head = lane;
                self.inbox.count_run(lane, lane == start, handed_out);
                return Ok(Head::Application(lane));
            }
            lane += 1;
        }
        Ok(Head::Empty)
    }

    /// Answers the agent requests at the head of `lane`, on that lane;
    /// `true` if an application frame is left at its head (peeked).
    #[inline(always)]
    fn settle_lane(&mut self, lane: usize) -> Result<bool, ProcError> {
        loop {
            let consumer = &mut self.inbox.lanes.get_mut(lane).consumer;
            let Some(record) = consumer.peek().map_err(ProcError::ring("inbound"))? else {
                return Ok(false);
            };
            match peek_port_kind(record) {
                Some((AGENT_PORT, kind)) if kind == FrameKind::Data as u8 => {}
                _ => return Ok(true),
            }
            self.answer_agent_at(lane)?;
        }
    }

    /// Answers the agent request peeked at the head of `lane`, on that
    /// lane, and releases it (off the hot path: one per agent request).
    #[cold]
    #[inline(never)]
    fn answer_agent_at(&mut self, lane: usize) -> Result<(), ProcError> {
        let Proc {
            inbox,
            outbox,
            agent,
            ..
        } = self;
        let consumer = &mut inbox.lanes.get_mut(lane).consumer;
        // The agent's answer is published at once: the request counts as
        // consumed before it (see `Message`).
        if let Some(end) = consumer.peeked_end() {
            outbox.lane(lane).read_position.mark(end);
        }
        let Some(record) = consumer.peeked() else {
            return Ok(());
        };
        let answered = answer_agent(agent, outbox, record, &inbox.limits, lane);
        consumer.release().map_err(ProcError::ring("inbound"))?;
        answered
    }

    /// Hands out the application message at the head of `lane` (after
    /// `settle_head` returned `Application(lane)`). The record is the one
    /// `settle_head` peeked, taken again with `Consumer::peeked`, which
    /// reads nothing from the ring: `settle_head` cannot hand the record
    /// over itself, because it goes on using the consumer when the head is
    /// an agent request, and the borrow checker (without Polonius) then
    /// refuses to let a borrow taken in the loop escape to the caller.
    #[inline(always)]
    fn take_head(&mut self, lane: usize) -> Result<Message<'_>, ProcError> {
        let Proc {
            inbox,
            outbox,
            agent,
            ..
        } = self;
        let InLane { consumer, memo } = inbox.lanes.get_mut(lane);
        let Some(record) = consumer.peeked() else {
            return Err(ProcError::Ring {
                ring: "inbound",
                source: hostmux_ring::RingError::Corrupted {
                    what: "no peeked record at the head of the ring",
                },
            });
        };
        // Released by the next receive, whether it decodes or not (a frame
        // the host should never have written is skipped).
        inbox.unreleased = true;
        outbox.handled_lane = lane;
        let read_end = consumer.peeked_end().unwrap_or_default();
        let frame = decode_frame_memo(record, &inbox.limits, memo)?;
        agent.frames_in += 1;
        agent.bytes_in += frame.payload().len() as u64;
        Ok(Message {
            frame,
            outbox,
            read_end,
        })
    }

    fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<Recv<'_>, ProcError> {
        loop {
            match self.settle_head()? {
                Head::Application(lane) => return self.take_head(lane).map(Recv::Message),
                Head::Empty => {}
            }
            if let Some(end) = self.idle_end()? {
                return Ok(end);
            }
            if !self.wait_inbound(deadline)? {
                // One last look: something may have arrived as time ran out.
                if let Head::Application(lane) = self.settle_head()? {
                    return self.take_head(lane).map(Recv::Message);
                }
                return Ok(Recv::TimedOut);
            }
        }
    }

    /// With every lane empty: `Stopped` or `Closed` if the proc should end.
    /// Publishes pending sends first (nothing may wait behind a sleep).
    fn idle_end<'a>(&mut self) -> Result<Option<Recv<'a>>, ProcError> {
        self.outbox.flush()?;
        if self.agent.stopping() {
            return Ok(Some(Recv::Stopped));
        }
        if self.inbox.closed_and_empty()? {
            return Ok(Some(Recv::Closed));
        }
        Ok(None)
    }

    /// Waits until a lane is readable, the host closed one, or a stop
    /// signal arrived (`true`), or until `deadline` (`false`).
    fn wait_inbound(&mut self, deadline: Option<Instant>) -> Result<bool, ProcError> {
        self.inbox.wait(
            deadline,
            self.outbox.sent.frames,
            self.agent.signals.as_ref(),
        )
    }

    /// Receives up to `max` messages at once, handing each to `handle`,
    /// waiting at most `timeout` for the first. Sends made while handling
    /// (replies) are published once, after the batch.
    pub fn recv_batch(
        &mut self,
        max: usize,
        timeout: Duration,
        mut handle: impl FnMut(Message<'_>),
    ) -> Result<BatchRecv, ProcError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.settle_head()? {
                Head::Application(_) => break,
                Head::Empty => {}
            }
            if let Some(end) = self.idle_end()? {
                return Ok(match end {
                    Recv::Stopped => BatchRecv::Stopped,
                    _ => BatchRecv::Closed,
                });
            }
            if !self.wait_inbound(Some(deadline))? {
                if let Head::Application(_) = self.settle_head()? {
                    break;
                }
                return Ok(BatchRecv::TimedOut);
            }
        }
        // `deliver` settles again, from where this settle left the round
        // robin: the same message first, unless its lane just used up its
        // quantum (that settle does not count the message twice).
        self.outbox.set_defer_publish(true);
        let mut delivered = 0;
        let result = self.deliver(max, &mut delivered, &mut handle);
        self.outbox.set_defer_publish(false);
        let flushed = self.outbox.flush();
        result?;
        flushed?;
        Ok(BatchRecv::Delivered(delivered))
    }

    /// Hands the application messages in the rings to `handle` until
    /// `delivered` reaches `max` or every lane is empty, round robin
    /// between lanes, answering agent requests in passing. The message is
    /// built here and handed over directly (as `take_head` does, without
    /// returning it through a `Result`): this is the batch hot path.
    fn deliver(
        &mut self,
        max: usize,
        delivered: &mut usize,
        handle: &mut impl FnMut(Message<'_>),
    ) -> Result<(), ProcError> {
        while *delivered < max {
            let Head::Application(lane) = self.settle_head()? else {
                return Ok(());
            };
            let Proc {
                inbox,
                outbox,
                agent,
                ..
            } = &mut *self;
            let InLane { consumer, memo } = inbox.lanes.get_mut(lane);
            let read_end = consumer.peeked_end().unwrap_or_default();
            let Some(record) = consumer.peeked() else {
                return Ok(());
            };
            let frame = decode_frame_memo(record, &inbox.limits, memo);
            // A frame that fails to decode is skipped by the next receive,
            // as in `take_head`.
            inbox.unreleased = true;
            outbox.handled_lane = lane;
            let frame = frame?;
            agent.frames_in += 1;
            agent.bytes_in += frame.payload().len() as u64;
            handle(Message {
                frame,
                outbox,
                read_end,
            });
            *delivered += 1;
        }
        Ok(())
    }

    /// Serves messages until the proc is stopped or the host closes the
    /// ring: the usual main loop of a proc. Returns `Ok(())` then.
    pub fn serve(
        &mut self,
        mut handle: impl FnMut(Message<'_>) -> Result<(), ProcError>,
    ) -> Result<(), ProcError> {
        while let Some(message) = self.recv()? {
            handle(message)?;
        }
        Ok(())
    }

    /// Async [`recv`](Proc::recv): sleeps on the proc doorbell through
    /// tokio's reactor (no blocked thread, no `spawn_blocking`). Needs the
    /// proc doorbell ([`ProcError::NoProcDoorbell`] otherwise) and a tokio
    /// runtime with I/O enabled.
    pub async fn recv_async(&mut self) -> Result<Option<Message<'_>>, ProcError> {
        loop {
            match self.settle_head()? {
                Head::Application(lane) => return self.take_head(lane).map(Some),
                Head::Empty => {}
            }
            if self.idle_end()?.is_some() {
                return Ok(None);
            }
            self.wait_inbound_async().await?;
        }
    }

    async fn wait_inbound_async(&mut self) -> Result<(), ProcError> {
        if self.agent.async_signal.is_none() {
            if let Some(signals) = &self.agent.signals {
                self.agent.async_signal = Some(AsyncSignal::new(signals.try_clone_fd()?)?);
            }
        }
        self.inbox
            .wait_async(self.agent.async_signal.as_ref())
            .await
    }
}

/// Answers one agent request (the record at the head of lane `lane`'s
/// inbound ring), on that lane.
/// Never answers anything but a data frame, so two agents cannot loop.
fn answer_agent(
    agent: &mut Agent,
    outbox: &mut Outbox,
    record: &[u8],
    limits: &Limits,
    lane: usize,
) -> Result<(), ProcError> {
    let frame = decode_frame(record, limits)?;
    if frame.kind() != FrameKind::Data {
        return Ok(());
    }
    agent.requests += 1;
    let from_host = matches!(frame.sender(), Sender::Proc { addr: "", name } if name == agent.service_name.as_str());
    let response = if !from_host {
        AgentResponse::Refused(AgentRefusal::NotFromHost)
    } else {
        match AgentRequest::decode(frame.payload()) {
            Err(_) => AgentResponse::Refused(AgentRefusal::Malformed),
            Ok(AgentRequest::Ping { nonce }) => AgentResponse::Pong { nonce },
            Ok(AgentRequest::Stats) => AgentResponse::Stats(AgentStats {
                frames_in: agent.frames_in,
                bytes_in: agent.bytes_in,
                frames_out: outbox.sent.frames,
                bytes_out: outbox.sent.bytes,
                agent_requests: agent.requests,
            }),
            Ok(AgentRequest::Stop) => {
                agent.request_stop();
                AgentResponse::Stopping
            }
        }
    };
    if frame.sender() == Sender::Anonymous {
        return Ok(());
    }
    #[repr(C, align(16))]
    struct Scratch([u8; AGENT_MESSAGE_MAX_LEN]);
    let mut scratch = Scratch([0; AGENT_MESSAGE_MAX_LEN]);
    let len = response.encode(&mut scratch.0)?;
    outbox.send_agent_reply(&frame, &scratch.0[..len], lane)?;
    outbox.flush()
}
