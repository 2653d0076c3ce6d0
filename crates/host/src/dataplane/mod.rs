//! The sans-IO routing core both frontends drive.
//!
//! [`Dataplane`] owns every ring end of every proc, the per-connection
//! reply queues and all counters. It has no sockets, no runtime objects (no
//! task, channel or wake-up primitive) and no clock of its own: entry points
//! take `now`, and whatever must happen outside it (wake a connection's
//! writer or reader, dial a link, hand a control request to the control
//! side) comes out as an [`Event`] from [`Dataplane::poll_event`], which the
//! I/O shell (`crate::io::Shared`) polls whenever a call returns. What may
//! be delivered where, and what is answered, is decided once, in
//! [`rules`]. The I/O thread calls, in any order:
//!
//! * [`Dataplane::handle_conn_frame`] for each frame decoded from a client;
//!   it writes the frame into a ring (one copy), a client queue or the
//!   service proc, or queues an `Undeliverable` notice for the client, or
//!   says `Blocked` (ring full: the caller keeps the frame, stops reading that
//!   client and retries when woken, or gives up with
//!   [`Dataplane::give_up_conn_frame`] after the configured wait);
//! * [`Dataplane::flush`] after each batch, to publish every ring written
//!   since the last flush with one index store each (and wake sleepers);
//! * [`Dataplane::poll_doorbell`] after the host doorbell fired, then
//!   [`Dataplane::drain_outbound`] for each proc it lists;
//! * [`Dataplane::take_outbox`] from a connection's writer;
//! * [`Dataplane::poll_event`] after any of these, until it returns `None`.
//!
//! Nothing here allocates per frame once queues have reached their working
//! size (checked by a counting-allocator test); control-plane requests to
//! the service proc may allocate.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use hostmux_ring::{Consumer, Producer};
use hostmux_router::{RouteHasher, RouteReader};
use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{
    FrameHeader, HeaderMemo, Limits, ProcName, Sender, UndeliverableReason, FRAME_ALIGN, PREFIX_LEN,
};

use crate::config::HostConfig;
use crate::stats::{ConnClass, ConnClassStats, ConnStats, HostStats, ProcStats};

mod agent;
mod answers;
mod clients;
mod conn;
mod drain;
mod event;
mod forward_lane;
mod handoff;
mod leaving;
mod ledger;
mod link;
mod notices;
mod proc_keys;
mod remote;
pub(crate) mod rig;
mod routes;
pub(crate) mod rules;
pub(crate) mod service;
mod write;
mod zero_copy;

pub(crate) use agent::AgentWaiter;
use answers::{AwaitedAnswers, Peer};
pub(crate) use clients::ClientNames;
pub(crate) use event::Event;
pub(crate) use handoff::HandedFrame;
pub(crate) use link::Heartbeat;
pub(crate) use proc_keys::ProcKeys;
/// For `identity`'s test that its alias check agrees with the peer match.
#[cfg(test)]
pub(crate) use remote::same_endpoint;
pub(crate) use remote::{PeerAddr, CLOSED_BY_PEER};
#[cfg(test)]
pub(crate) use write::copy_head;
pub(crate) use write::copy_partial_head;

use notices::{notice_into_ring, push_notice};
use write::{mark_dirty, slot_of, slot_of_conn};

/// How many closed connections and gone procs keep their final counters.
const HISTORY: usize = 64;

/// A proc slot in the data plane (index + generation, so a stale key never
/// reaches a reused slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ProcKey {
    index: u32,
    generation: u32,
}

/// A connection slot in the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey {
    index: u32,
    generation: u32,
}

impl ConnKey {
    /// The slot's index (keys of live connections have distinct indices).
    pub(crate) fn index(self) -> u32 {
        self.index
    }
}

/// Where a proc name routes. The routing table's value type: the table
/// holds procs and the service proc only; clients have their own
/// namespace ([`clients::Clients`]), looked up for `TO_CLIENT` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A local proc's inbound ring.
    Proc(ProcKey),
    /// The host's service proc.
    Service,
}

pub(crate) use routes::Table;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcState {
    Starting,
    Ready,
    /// Unbound and its inbound ring closed; waiting for it to exit.
    Detached,
}

struct ProcSlot {
    generation: u32,
    name: ProcName,
    /// Who it is to the clients awaiting its answers (its name's hash, in
    /// the proc namespace).
    peer: Peer,
    state: ProcState,
    inbound: Option<Producer>,
    inbound_memfd: OwnedFd,
    /// Its outbound ring's end and header memo; `None` only while a drain
    /// of this ring runs (the drain holds them, see `drain_outbound_inner`;
    /// boxed so that taking and putting them back moves a pointer).
    outbound: Option<Box<OutboundEnd>>,
    stats: ProcStats,
    /// Written since the last flush.
    dirty: bool,
    /// Outbound ring armed on the host doorbell (nothing to drain).
    outbound_armed: bool,
    /// Connections waiting for room in the inbound ring.
    conn_waiters: Vec<ConnKey>,
    /// Procs whose outbound drain waits for room in this inbound ring.
    proc_waiters: Vec<ProcKey>,
    /// A frame held in this ring for zero-copy receive was let go while
    /// others waited: the next frame is written the ordinary way, by
    /// whoever comes first, before another is held (so a stream of large
    /// frames cannot starve them). Cleared by any write.
    zero_copy_defer: bool,
    /// This proc's outbound drain is stuck on a full ring since then.
    drain_blocked: Option<(ProcKey, Instant)>,
    /// The inbound ring has refused client frames for lack of room since
    /// then; once that is longer than the overload wait, frames for it are
    /// returned `Overloaded` at once until a write succeeds again.
    full_since: Option<Instant>,
    /// It runs an agent (answers `AGENT_PORT` requests).
    agent: bool,
    /// Where its agent's `Stop` stands (queued while its ring is full).
    agent_stop: agent::AgentStop,
    /// The proc the last record from its outbound ring was written to, and
    /// the routing table's change counter read before that route was looked
    /// up: records whose header repeats that one take the same way while
    /// the counter is unchanged (see `Dataplane::drain_repeats`).
    repeat_route: Option<(ProcKey, u64)>,
}

/// The host's end of a proc's outbound ring.
struct OutboundEnd {
    ring: Consumer,
    /// The last header validated from the ring (see `copy_head`).
    memo: HeaderMemo,
}

struct ConnSlot {
    generation: u32,
    name: ProcName,
    outbox: Vec<u8>,
    stats: ConnStats,
    /// The reader is done: the writer sends what is queued, then stops.
    closing: bool,
    /// A link this host dialled to another host: the frames queued are
    /// forwards, and it is not in the routing table.
    dialled: Option<Box<str>>,
    /// Dialled and not yet connected: the writer does not run yet.
    connecting: bool,
    /// May use the control plane: it came through the control socket (peer
    /// credentials checked) or presented the host's token.
    privileged: bool,
    /// Presented the peer token: another host's link (never privileged).
    peer_link: bool,
    /// The reply queue has refused proc frames for lack of room since then;
    /// after the overload wait they are returned `Overloaded` at once.
    full_since: Option<Instant>,
    /// A proc's drain waits for room in this reply queue.
    drains_waiting: bool,
    /// The answers it awaits: frames it sent that were delivered and may be
    /// answered, by (message id, where they went), less the answers queued
    /// for it since (replies, responses, notices about delivered frames).
    /// After a half-close the host keeps the connection until none is
    /// awaited or the linger ends.
    answers: AwaitedAnswers,
    /// Its peer half-closed: it is kept only for the answers it awaits.
    lingering: bool,
    /// Bytes of its queue counted in `Dataplane::reply_bytes` (queued by
    /// `deliver_to_client` since its writer last took the queue), and those
    /// of the buffer its writer took last and is writing (counted until the
    /// writer takes again, which it does only once that is written).
    reply_bytes: usize,
    reply_bytes_in_flight: usize,
    /// The proc this connection's last frame was delivered to, and the
    /// table's change counter read before its route was looked up. A next
    /// frame whose header repeats that frame's goes to the same proc while
    /// the counter is unchanged (see `Dataplane::deliver_repeat`).
    repeat_route: Option<(ProcKey, u64)>,
    /// Who that proc is, for the answers awaited from it (`None`: the
    /// frames are anonymous, and no answer can come).
    repeat_peer: Option<Peer>,
    /// The link this client's last frame was forwarded on, for repeats of
    /// its header (see `forward_lane`).
    forward_lane: forward_lane::ForwardLane,
    /// A link between this host and another (dialled by either): its
    /// sequence numbers, acknowledgements, window and heartbeats.
    flow: Option<Box<link::LinkFlow>>,
}

impl ConnSlot {
    /// A fresh connection slot: a client named `name` (`dialled: None`),
    /// or a link this host dials to `dialled` (connecting until its hello
    /// is acknowledged). `stats_name` names it in the counters.
    fn new(generation: u32, name: ProcName, stats_name: String, dialled: Option<Box<str>>) -> Self {
        ConnSlot {
            generation,
            name,
            outbox: Vec::with_capacity(64 * 1024),
            stats: ConnStats {
                name: stats_name,
                class: if dialled.is_some() {
                    ConnClass::LinkDialled
                } else {
                    ConnClass::Client
                },
                ..ConnStats::default()
            },
            closing: false,
            connecting: dialled.is_some(),
            dialled,
            privileged: false,
            peer_link: false,
            full_since: None,
            drains_waiting: false,
            answers: AwaitedAnswers::default(),
            reply_bytes: 0,
            reply_bytes_in_flight: 0,
            lingering: false,
            repeat_route: None,
            repeat_peer: None,
            forward_lane: forward_lane::ForwardLane::new(),
            flow: None,
        }
    }
}

/// What a connection's writer found in its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outbox {
    /// Bytes were swapped into the buffer.
    Bytes,
    /// Nothing queued; wait for a wake-up.
    Empty,
    /// Nothing queued but a link status held back until then (see
    /// [`HostConfig::link_ack_delay`](crate::HostConfig::link_ack_delay)):
    /// take again then, or at a wake-up.
    Later(Instant),
    /// The connection is closing and everything was sent, or it is gone.
    Closed,
}

/// What became of a frame from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Delivered or returned: the caller is done with it.
    Done,
    /// The destination ring (or link) is full: keep the frame, stop
    /// reading this client, wait for its reader wake-up or the deadline
    /// (then [`Dataplane::give_up_conn_frame`]), and retry.
    Blocked(Blocker, Instant),
}

/// What holds a connection's frame back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocker {
    /// A proc's full inbound ring.
    Ring(ProcKey),
    /// A link to another host whose window is full.
    Link(ConnKey),
}

impl Blocker {
    /// The proc whose ring it is, if it is one.
    pub(crate) fn ring(self) -> Option<ProcKey> {
        match self {
            Blocker::Ring(p) => Some(p),
            Blocker::Link(_) => None,
        }
    }
}

/// What a drain of one proc's outbound ring ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drain {
    /// Empty and armed on the doorbell.
    Idle,
    /// The budget ran out; drain again soon.
    More,
    /// Stuck on a full destination ring until it has room or the deadline.
    Blocked(Instant),
}

enum Outcome {
    /// Written where it was going.
    Delivered,
    /// Answered on the spot by the host (the service proc's refusal of a
    /// control request): delivered, and no further answer is awaited.
    Answered,
    /// Consumed by the service proc without an answer (see
    /// [`rules::ServiceUse::Consume`]).
    Consumed,
    /// Refused or undeliverable: disposed of as [`rules::refusal`] says.
    Returned(UndeliverableReason),
    /// The destination (this proc's ring, or for a proc's frame a client's
    /// reply queue) is full: the sender was registered to wait for room
    /// until the deadline; keep the frame and retry it then.
    Full(ProcKey, Instant),
    /// A proc's frame met a full ring that got room while the drain armed
    /// it: keep the frame and retry it at once.
    Retry,
    /// A connection's frame met a full link window: the connection was
    /// registered to wait for acknowledgements until the deadline.
    LinkFull(ConnKey, Instant),
    /// For a client another I/O thread owns: handed to that thread, which
    /// counts and carries it out (see `handoff`).
    HandedOff,
}

enum RingWrite {
    Written,
    Full,
    Oversized,
    Closed,
}

/// The routing core. See the module docs for the call order.
pub(crate) struct Dataplane {
    cfg: Arc<HostConfig>,
    limits: Limits,
    service_name: ProcName,
    table: Arc<Table>,
    reader: RouteReader<Route, RouteHasher>,
    /// Connected clients by hello name (their own namespace).
    clients: clients::Clients,
    /// The last destination a client frame was routed to.
    route_cache: routes::RouteCache,
    /// The last destination a proc's frame was routed to (replies mostly
    /// go to one client, so the two directions keep separate entries).
    drain_route_cache: routes::RouteCache,
    procs: Vec<Option<ProcSlot>>,
    conns: Vec<Option<ConnSlot>>,
    generation: u32,
    dirty: Vec<u32>,
    gone_procs: VecDeque<ProcStats>,
    closed_conns: VecDeque<ConnStats>,
    /// Every closed connection's final counters, summed by class (index:
    /// `ConnClass as usize`), so the per-class totals only grow.
    closed_classes: [ConnClassStats; ConnClass::ALL.len()],
    /// Whether a proc's outbound drain is blocked (timers needed).
    blocked_drains: usize,
    /// Procs that broke the ring protocol, for the control side to kill.
    failed: Vec<ProcKey>,
    /// This host's primary address text, the one it names itself by
    /// (frames for it are local: the one-compare fast case).
    own_addr: Box<str>,
    /// Every address that means this host (frames for any are local).
    identity: crate::identity::Identity,
    /// Links to other hosts.
    remotes: remote::Remotes,
    /// Agent requests waiting for their answers.
    agent_pending: Vec<agent::PendingAgent>,
    /// Message id of the last agent request.
    next_agent_id: u64,
    /// Procs whose agent `Stop` waits for room in their inbound ring.
    queued_stops: Vec<ProcKey>,
    /// A reply queue a proc's drain waited on has room again (or is gone).
    conn_room: bool,
    /// Bytes queued for clients by `deliver_to_client` and not yet written
    /// to their sockets, over all connections (`HostConfig::reply_memory`
    /// bounds it), and the most ever queued at once.
    reply_bytes: usize,
    reply_bytes_high_water: usize,
    /// A proc's drain waits because `reply_bytes` was at the budget.
    drains_wait_for_reply_memory: bool,
    /// What the I/O shell must do, in order (see [`Dataplane::poll_event`]).
    events: VecDeque<Event>,
    /// The configured peers' addresses, as configured, that are not this
    /// host (a frame for one of them is forwarded without the alias check).
    foreign_peers: Vec<Box<str>>,
    /// The latest time an entry point was given (for cold paths that have
    /// none of their own, such as notices sent back over links).
    last_now: Instant,
    /// A host-local, 16-aligned copy of the prefix and header of the proc
    /// record being routed: the host validates and routes from this copy,
    /// never from ring memory the proc can rewrite after validation.
    scratch: AlignedVec<FRAME_ALIGN>,
    /// Records the drain's fast lane delivered (tests check that it ran).
    #[cfg(test)]
    pub(crate) drain_fast_lane: u64,
}

impl Dataplane {
    pub(crate) fn new(
        cfg: Arc<HostConfig>,
        service_name: ProcName,
        table: Arc<Table>,
        identity: crate::identity::Identity,
    ) -> Self {
        let head_room = PREFIX_LEN + cfg.limits.max_header_len.next_multiple_of(FRAME_ALIGN);
        let max_name_len = cfg.limits.max_name_len;
        let foreign_peers = cfg
            .peers
            .iter()
            .filter(|peer| !identity.is_alias(peer.as_str()))
            .map(|peer| peer.as_str().into())
            .collect();
        Self {
            foreign_peers,
            limits: cfg.limits,
            cfg,
            service_name,
            reader: table.reader(),
            clients: clients::Clients::default(),
            route_cache: routes::RouteCache::new(max_name_len),
            drain_route_cache: routes::RouteCache::new(max_name_len),
            table,
            procs: Vec::new(),
            conns: Vec::new(),
            generation: 0,
            dirty: Vec::new(),
            gone_procs: VecDeque::new(),
            closed_conns: VecDeque::new(),
            closed_classes: ConnClass::ALL.map(|class| ConnClassStats {
                class,
                ..ConnClassStats::default()
            }),
            blocked_drains: 0,
            failed: Vec::new(),
            own_addr: identity.primary().as_str().into(),
            identity,
            remotes: remote::Remotes::default(),
            agent_pending: Vec::new(),
            next_agent_id: 0,
            queued_stops: Vec::new(),
            conn_room: false,
            reply_bytes: 0,
            reply_bytes_high_water: 0,
            drains_wait_for_reply_memory: false,
            events: VecDeque::with_capacity(64),
            last_now: Instant::now(),
            scratch: AlignedVec::with_capacity(head_room),
            #[cfg(test)]
            drain_fast_lane: 0,
        }
    }

    fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        self.generation
    }

    fn proc_mut(&mut self, key: ProcKey) -> Option<&mut ProcSlot> {
        self.procs
            .get_mut(key.index as usize)?
            .as_mut()
            .filter(|s| s.generation == key.generation)
    }

    fn conn_mut(&mut self, key: ConnKey) -> Option<&mut ConnSlot> {
        self.conns
            .get_mut(key.index as usize)?
            .as_mut()
            .filter(|s| s.generation == key.generation)
    }

    /// The proc reported ready: frames to it are delivered from now on.
    /// `agent`: it runs an agent (it is asked to stop through it).
    pub(crate) fn mark_ready(&mut self, key: ProcKey, agent: bool) {
        if let Some(slot) = self.proc_mut(key) {
            if slot.state == ProcState::Starting {
                slot.state = ProcState::Ready;
                slot.stats.ready = true;
                slot.agent = agent;
            }
        }
    }

    /// The next thing the I/O shell must do, in the order they arose. The
    /// shell polls after every call into the data plane (its `Shared`
    /// handle does it whenever a borrow ends); events are not lost if it
    /// polls late, only delayed.
    #[must_use]
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Lets a connection use the control plane.
    /// The connection presented the peer token: another host's link, whose
    /// frames may relay that host's procs (see `conn::relays_a_peer`).
    /// `peer`: the configured peer (index in `HostConfig::peers`) that
    /// dialled, if its hello says which.
    pub(crate) fn set_peer_link(&mut self, key: ConnKey, peer: Option<usize>) {
        if let Some(conn) = self.conn_mut(key) {
            conn.peer_link = true;
            conn.stats.class = ConnClass::LinkAccepted;
            conn.flow = Some(link::LinkFlow::new(false, peer));
            if let Some(peer) = peer {
                self.remotes.peer_mut(peer).accepted = Some(key);
            }
        }
    }

    pub(crate) fn set_privileged(&mut self, key: ConnKey) {
        if let Some(conn) = self.conn_mut(key) {
            conn.privileged = true;
        }
    }

    /// Answers `original`, a frame that was delivered (it reached a ring or
    /// a link) but then came back (its proc exited before reading it, its
    /// link failed), with a notice to its sender, found by name. The frame
    /// stays counted delivered by its sender (the notice is its one answer,
    /// as a reply would have been): a name may have a new holder by now,
    /// whose counters must not move for a frame it never sent. The
    /// destination proc counts it in `left_in_ring` / `returned_for`.
    fn notify_sender(&mut self, original: &FrameHeader<'_>, reason: UndeliverableReason) {
        if !rules::may_be_answered(original.kind) {
            // A notice or response that did not arrive: never answered.
            return;
        }
        match original.sender {
            // A sender that names this host is local: a frame queued on a
            // link carries this host's address (see `remote::forward`).
            Sender::Proc { addr, .. } if !self.is_local_addr(addr) => {
                // Another host's proc or client: the notice goes back over
                // a link.
                self.notify_remote_sender(original, reason);
                return;
            }
            Sender::Anonymous => return,
            Sender::Client { .. } | Sender::Proc { .. } => {}
        }
        // The sender is found by its kind: a client (one of ours, or one
        // this host relayed as `FROM_CLIENT`) in the client namespace, a
        // proc in the routing table; a proc's name never reaches a client.
        let target = original.reply_target();
        let peer = self.peer_of(original.dest_name, original.dest_addr, original.to_client());
        let limits = self.limits;
        if target.to_client {
            let Some(c) = self.clients.lookup(target.name.as_bytes()) else {
                return;
            };
            let from = self.service_name.clone();
            if let Some(conn) = self.conn_mut(c) {
                push_notice(conn, original, reason, from.as_str(), "", &limits);
                // It answers a frame that was delivered (the frame stays
                // counted delivered: the notice is its answer, as a reply
                // would be, and the name's holder now may not be the
                // connection that sent it).
                conn.answers.answer(original.message_id, peer);
            }
        } else if let Some(Route::Proc(p)) = self.reader.lookup(target.name.as_bytes()).copied() {
            let from = self.service_name.clone();
            if let Some(slot) = slot_of(&mut self.procs, p) {
                notice_into_ring(slot, original, reason, from.as_str(), &limits);
                mark_dirty(&mut self.dirty, p.index, slot);
            }
        }
    }

    /// Publishes every ring written since the last flush (one index store
    /// each; a wake-up only for a consumer that announced it sleeps) and wakes
    /// the writers of connections with queued bytes.
    pub(crate) fn flush(&mut self) {
        for index in self.dirty.drain(..) {
            if let Some(Some(slot)) = self.procs.get_mut(index as usize) {
                slot.dirty = false;
                if let Some(inbound) = slot.inbound.as_mut() {
                    let _ = inbound.publish();
                    // Occupancy after each batch: one validated load of the
                    // proc's index (per batch, not per frame). An upper bound
                    // by the proc's unpublished releases.
                    if let Ok(used) = inbound.refresh_used() {
                        slot.stats.inbound_used = used as u64;
                        slot.stats.inbound_high_water =
                            slot.stats.inbound_high_water.max(used as u64);
                    }
                }
            }
        }
        for (index, conn) in self.conns.iter_mut().enumerate() {
            let Some(conn) = conn else { continue };
            let key = ConnKey {
                index: index as u32,
                generation: conn.generation,
            };
            if !conn.outbox.is_empty() {
                self.events.push_back(Event::WakeWriter(key));
            }
            if conn.lingering && conn.answers.awaiting() == 0 {
                // A half-closed client got its last answer: its reader
                // task closes it (woken once).
                conn.lingering = false;
                self.events.push_back(Event::WakeReader(key));
            }
        }
    }

    /// After the host doorbell fired: wakes connections and procs waiting
    /// for room in rings that now have it, and pushes into `to_drain` every
    /// proc whose outbound ring needs draining. Allocation-free once
    /// `to_drain` has room for every proc.
    pub(crate) fn poll_doorbell(&mut self, to_drain: &mut Vec<ProcKey>) {
        let Dataplane { procs, events, .. } = self;
        let mut wake_procs = false;
        for (index, slot) in procs.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if let Some(inbound) = slot.inbound.as_mut() {
                if inbound.take_pending() {
                    events.extend(slot.conn_waiters.drain(..).map(Event::WakeReader));
                    wake_procs |= !slot.proc_waiters.is_empty();
                }
            }
            let pending = slot
                .outbound
                .as_mut()
                .is_some_and(|o| o.ring.take_pending());
            if pending || !slot.outbound_armed {
                to_drain.push(ProcKey {
                    index: index as u32,
                    generation: slot.generation,
                });
            }
        }
        if wake_procs {
            for (index, slot) in procs.iter_mut().enumerate() {
                let Some(slot) = slot else { continue };
                let key = ProcKey {
                    index: index as u32,
                    generation: slot.generation,
                };
                if slot.drain_blocked.is_some() && !to_drain.contains(&key) {
                    to_drain.push(key);
                }
            }
        }
    }

    /// Whether a live proc has published frames the host has not drained
    /// (one validated index load per proc; for the I/O thread's spin).
    pub(crate) fn outbound_ready(&mut self) -> bool {
        self.procs.iter_mut().flatten().any(|slot| {
            slot.state != ProcState::Detached
                && slot
                    .outbound
                    .as_mut()
                    .is_some_and(|o| o.ring.is_readable().unwrap_or(false))
        })
    }

    /// A doorbell wake-up that found no work: a proc rang without marking a
    /// ring pending, which a well-behaved proc never does. Checks every
    /// live proc's outbound indices (one validated load each) and fails
    /// the procs that corrupted them, so a proc that breaks its ring and
    /// then stays silent is still found.
    pub(crate) fn sweep_corruption(&mut self) {
        for index in 0..self.procs.len() {
            let Some(slot) = self.procs[index].as_mut() else {
                continue;
            };
            if slot.state == ProcState::Detached {
                continue;
            }
            let Some(outbound) = slot.outbound.as_mut() else {
                continue;
            };
            if let Err(e) = outbound.ring.refresh_used() {
                tracing::warn!(proc = %slot.name, error = %e, "outbound ring corrupted; failing the proc");
                let key = ProcKey {
                    index: index as u32,
                    generation: slot.generation,
                };
                self.fail_proc(key);
            }
        }
    }

    /// Whether any proc's drain waits on a full ring (so the driver needs a
    /// timer for the overload deadline).
    pub(crate) fn earliest_drain_deadline(&self) -> Option<Instant> {
        if self.blocked_drains == 0 {
            return None;
        }
        self.procs
            .iter()
            .flatten()
            .filter_map(|s| {
                s.drain_blocked
                    .map(|(_, since)| since + self.cfg.overload_wait)
            })
            .min()
    }

    /// All procs with a blocked drain (to retry them at a deadline).
    pub(crate) fn blocked_drains(&self, out: &mut Vec<ProcKey>) {
        for (index, slot) in self.procs.iter().enumerate() {
            if let Some(slot) = slot.as_ref().filter(|s| s.drain_blocked.is_some()) {
                out.push(ProcKey {
                    index: index as u32,
                    generation: slot.generation,
                });
            }
        }
    }

    /// A snapshot of every counter (inbound occupancy refreshed now).
    pub(crate) fn stats(&mut self) -> HostStats {
        for slot in self.procs.iter_mut().flatten() {
            if let Some(used) = slot.inbound.as_mut().and_then(|r| r.refresh_used().ok()) {
                slot.stats.inbound_used = used as u64;
                slot.stats.inbound_high_water = slot.stats.inbound_high_water.max(used as u64);
            }
        }
        HostStats {
            procs: self
                .procs
                .iter()
                .flatten()
                .map(|s| s.stats.clone())
                .collect(),
            conns: self
                .conns
                .iter()
                .flatten()
                .map(|c| c.stats.clone())
                .collect(),
            closed_conns: self.closed_conns.iter().cloned().collect(),
            gone_procs: self.gone_procs.iter().cloned().collect(),
            reply_memory: crate::stats::ReplyMemoryStats {
                limit: self.cfg.reply_memory as u64,
                used: self.reply_bytes as u64,
                high_water: self.reply_bytes_high_water as u64,
            },
            links: self.link_stats(),
            conn_classes: self.conn_class_stats(),
            ..HostStats::default()
        }
    }

    /// Per class: the closed connections' sums plus the open ones'.
    fn conn_class_stats(&self) -> Vec<ConnClassStats> {
        let mut classes = self.closed_classes.to_vec();
        for class in &mut classes {
            class.totals.name = class.class.as_str().to_owned();
        }
        for conn in self.conns.iter().flatten() {
            let class = &mut classes[conn.stats.class as usize];
            class.open += 1;
            class.totals.add_all(&conn.stats);
        }
        classes
    }

    /// The proc's name, if it is still here.
    pub(crate) fn proc_name(&mut self, key: ProcKey) -> Option<ProcName> {
        self.proc_mut(key).map(|s| s.name.clone())
    }

    /// Number of proc slots (for sizing the drain list).
    pub(crate) fn proc_capacity(&self) -> usize {
        self.procs.len()
    }
}
