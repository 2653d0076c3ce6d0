//! The sans-IO routing core both frontends drive.
//!
//! [`Dataplane`] owns every ring end of every proc, the per-connection
//! reply queues and all counters. It has no sockets, no runtime and no clock
//! of its own: entry points take `now`. The I/O thread calls, in any order:
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
//! * [`Dataplane::take_outbox`] from a connection's writer.
//!
//! Nothing here allocates per frame once queues have reached their working
//! size (checked by a counting-allocator test); control-plane requests to
//! the service proc may allocate.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use hostmux_ring::{Consumer, Producer, RingError, SharedRing};
use hostmux_router::{RouteHasher, RouteReader, RoutingTable};
use hostmux_wire::{
    encode_frame, encode_frame_to_vec, encoded_len, split_frame, FrameHeader, FrameView, Limits,
    ProcName, Sender, Undeliverable, UndeliverableReason, UNDELIVERABLE_LEN,
};
use tokio::sync::Notify;

use crate::config::HostConfig;
use crate::service;
use crate::stats::{ConnStats, HostStats, ProcStats};

mod remote;

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

/// Where a name routes. The routing table's value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A local proc's inbound ring.
    Proc(ProcKey),
    /// A connected client's reply queue.
    Client(ConnKey),
    /// The host's service proc.
    Service,
}

pub(crate) type Table = RoutingTable<Route>;

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
    state: ProcState,
    inbound: Option<Producer>,
    inbound_memfd: OwnedFd,
    outbound: Consumer,
    stats: ProcStats,
    /// Written since the last flush.
    dirty: bool,
    /// Outbound ring armed on the host doorbell (nothing to drain).
    outbound_armed: bool,
    /// Connections waiting for room in the inbound ring.
    conn_waiters: Vec<ConnKey>,
    /// Procs whose outbound drain waits for room in this inbound ring.
    proc_waiters: Vec<ProcKey>,
    /// This proc's outbound drain is stuck on a full ring since then.
    drain_blocked: Option<(ProcKey, Instant)>,
    /// The inbound ring has refused client frames for lack of room since
    /// then; once that is longer than the overload wait, frames for it are
    /// returned `Overloaded` at once until a write succeeds again.
    full_since: Option<Instant>,
}

struct ConnSlot {
    generation: u32,
    name: ProcName,
    outbox: Vec<u8>,
    stats: ConnStats,
    wake_writer: Rc<Notify>,
    wake_reader: Rc<Notify>,
    /// The reader is done: the writer sends what is queued, then stops.
    closing: bool,
    /// A link this host dialled to another host: the frames queued are
    /// forwards, and it is not in the routing table.
    dialled: Option<Box<str>>,
    /// Dialled and not yet connected: the writer does not run yet.
    connecting: bool,
}

/// What a connection's writer found in its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outbox {
    /// Bytes were swapped into the buffer.
    Bytes,
    /// Nothing queued; wait for a wake-up.
    Empty,
    /// The connection is closing and everything was sent, or it is gone.
    Closed,
}

/// What became of a frame from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Delivered or returned: the caller is done with it.
    Done,
    /// The destination ring is full: keep the frame, stop reading this
    /// client, wait for its reader wake-up or the deadline (then
    /// [`Dataplane::give_up_conn_frame`]), and retry.
    Blocked(ProcKey, Instant),
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
    Delivered,
    Returned(UndeliverableReason),
    Full(ProcKey, Instant),
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
    procs: Vec<Option<ProcSlot>>,
    conns: Vec<Option<ConnSlot>>,
    generation: u32,
    dirty: Vec<u32>,
    gone_procs: VecDeque<ProcStats>,
    closed_conns: VecDeque<ConnStats>,
    /// Whether a proc's outbound drain is blocked (timers needed).
    blocked_drains: usize,
    /// Procs that broke the ring protocol, for the control side to kill.
    failed: Vec<ProcKey>,
    /// This host's frontend address text (frames for it are local).
    own_addr: Box<str>,
    /// Links to other hosts.
    remotes: remote::Remotes,
}

impl Dataplane {
    pub(crate) fn new(
        cfg: Arc<HostConfig>,
        service_name: ProcName,
        table: Arc<Table>,
        own_addr: &str,
    ) -> Self {
        Self {
            limits: cfg.limits,
            cfg,
            service_name,
            reader: table.reader(),
            table,
            procs: Vec::new(),
            conns: Vec::new(),
            generation: 0,
            dirty: Vec::new(),
            gone_procs: VecDeque::new(),
            closed_conns: VecDeque::new(),
            blocked_drains: 0,
            failed: Vec::new(),
            own_addr: own_addr.into(),
            remotes: remote::Remotes::default(),
        }
    }

    fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        self.generation
    }

    /// Registers a proc's host-side ring ends (state: starting, so frames to
    /// it are returned `NotReady` until [`Dataplane::mark_ready`]).
    pub(crate) fn add_proc(
        &mut self,
        name: ProcName,
        inbound: Producer,
        inbound_memfd: OwnedFd,
        outbound: Consumer,
    ) -> ProcKey {
        let generation = self.next_generation();
        let stats = ProcStats {
            name: name.as_str().to_owned(),
            inbound_capacity: inbound.capacity() as u64,
            ..ProcStats::default()
        };
        let slot = ProcSlot {
            generation,
            name,
            state: ProcState::Starting,
            inbound: Some(inbound),
            inbound_memfd,
            outbound,
            stats,
            dirty: false,
            outbound_armed: false,
            conn_waiters: Vec::with_capacity(4),
            proc_waiters: Vec::with_capacity(4),
            drain_blocked: None,
            full_since: None,
        };
        let index = match self.procs.iter().position(Option::is_none) {
            Some(i) => {
                self.procs[i] = Some(slot);
                i
            }
            None => {
                self.procs.push(Some(slot));
                self.procs.len() - 1
            }
        };
        self.dirty
            .reserve(self.procs.len().saturating_sub(self.dirty.len()));
        ProcKey {
            index: index as u32,
            generation,
        }
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
    pub(crate) fn mark_ready(&mut self, key: ProcKey) {
        if let Some(slot) = self.proc_mut(key) {
            if slot.state == ProcState::Starting {
                slot.state = ProcState::Ready;
                slot.stats.ready = true;
            }
        }
    }

    /// Closes the proc's inbound ring (it sees end of stream once it has
    /// read what is there). Its route must already be unbound.
    pub(crate) fn detach_proc(&mut self, key: ProcKey) {
        let Dataplane { procs, conns, .. } = self;
        if let Some(slot) = slot_of(procs, key) {
            slot.state = ProcState::Detached;
            if let Some(mut inbound) = slot.inbound.take() {
                let _ = inbound.publish();
            }
            slot.dirty = false;
            for conn in slot.conn_waiters.drain(..) {
                // Woken readers retry and find the proc detached.
                if let Some(Some(c)) = conns.get(conn.index as usize) {
                    c.wake_reader.notify_one();
                }
            }
        }
    }

    /// The proc broke the ring protocol: unbind it, close its inbound ring,
    /// stop draining it, and report it (see [`Dataplane::take_failed`]) so
    /// the control side kills it; its removal then returns what it left.
    pub(crate) fn fail_proc(&mut self, key: ProcKey) {
        let Some(slot) = self.proc_mut(key) else {
            return;
        };
        let name = slot.name.clone();
        if self.table.lookup(name.as_bytes()) == Some(Route::Proc(key)) {
            self.table.remove(name.as_bytes());
        }
        self.detach_proc(key);
        if !self.failed.contains(&key) {
            self.failed.push(key);
        }
    }

    /// Procs failed since the last call.
    pub(crate) fn take_failed(&mut self, out: &mut Vec<ProcKey>) {
        out.append(&mut self.failed);
    }

    /// The proc is gone: deliver what it sent, return what it left unread
    /// (`ProcExited`), release its slot. Unbinds its route if still bound.
    pub(crate) fn remove_proc(&mut self, key: ProcKey, now: Instant) {
        let Some(slot) = self.proc_mut(key) else {
            return;
        };
        let name = slot.name.clone();
        if self.table.lookup(name.as_bytes()) == Some(Route::Proc(key)) {
            self.table.remove(name.as_bytes());
        }
        self.detach_proc(key);
        // Deliver everything it managed to send; nothing can block on it now.
        while let Drain::More | Drain::Blocked(_) = self.drain_outbound_inner(key, now, true) {}
        let slot = self.procs[key.index as usize]
            .take()
            .expect("checked above");
        if slot.drain_blocked.is_some() {
            self.blocked_drains -= 1;
        }
        let mut stats = slot.stats;
        for waiter in slot.proc_waiters {
            if let Some(p) = self.proc_mut(waiter) {
                p.outbound_armed = false;
            }
        }
        // Frames still in its inbound ring: read them back through a
        // second mapping and return each to its sender.
        let leftovers = slot
            .inbound_memfd
            .try_clone()
            .map_err(|e| RingError::Os {
                op: "dup",
                source: e,
            })
            .and_then(SharedRing::attach)
            .and_then(SharedRing::into_consumer);
        drop(slot.outbound);
        if let Ok(mut consumer) = leftovers {
            // Bounded: the host's producer is gone, so the tail is fixed and
            // the consumer validates every record against it.
            while let Ok(Some(record)) = consumer.peek() {
                stats.left_in_ring += 1;
                if let Ok((frame, _)) = split_frame(record, &self.limits) {
                    let fields = frame.fields();
                    stats.returned_for.add(UndeliverableReason::ProcExited);
                    self.notify_sender(&fields, UndeliverableReason::ProcExited);
                }
                if consumer.release().is_err() {
                    break;
                }
            }
        }
        if self.gone_procs.len() == HISTORY {
            self.gone_procs.pop_front();
        }
        self.gone_procs.push_back(stats);
        self.flush();
    }

    /// Returns `original` to its sender, found by name (used where the
    /// frame's source connection or proc is not at hand).
    fn notify_sender(&mut self, original: &FrameHeader<'_>, reason: UndeliverableReason) {
        let name = match original.sender {
            Sender::Client { name } | Sender::Proc { name, .. } => name,
            Sender::Anonymous => return,
        };
        match self.reader.lookup(name.as_bytes()).copied() {
            Some(Route::Client(c)) => {
                let limits = self.limits;
                let from = self.service_name.clone();
                if let Some(conn) = self.conn_mut(c) {
                    push_notice(conn, original, reason, from.as_str(), &limits);
                }
            }
            Some(Route::Proc(p)) => {
                let limits = self.limits;
                let from = self.service_name.clone();
                if let Some(slot) = slot_of(&mut self.procs, p) {
                    notice_into_ring(slot, original, reason, from.as_str(), &limits);
                    mark_dirty(&mut self.dirty, p.index, slot);
                }
            }
            _ => {}
        }
    }

    /// Registers a client that completed its hello. Fails if the name is
    /// bound (to a proc or another client).
    pub(crate) fn add_conn(
        &mut self,
        name: ProcName,
        wake_writer: Rc<Notify>,
        wake_reader: Rc<Notify>,
    ) -> Option<ConnKey> {
        let generation = self.next_generation();
        let index = self
            .conns
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.conns.len());
        let key = ConnKey {
            index: index as u32,
            generation,
        };
        self.table.insert(name.clone(), Route::Client(key)).ok()?;
        let slot = ConnSlot {
            generation,
            stats: ConnStats {
                name: name.as_str().to_owned(),
                ..ConnStats::default()
            },
            name,
            outbox: Vec::with_capacity(64 * 1024),
            wake_writer,
            wake_reader,
            closing: false,
            dialled: None,
            connecting: false,
        };
        if index == self.conns.len() {
            self.conns.push(Some(slot));
        } else {
            self.conns[index] = Some(slot);
        }
        Some(key)
    }

    /// Forgets a closed connection; its name is free again.
    pub(crate) fn remove_conn(&mut self, key: ConnKey) {
        let Some(slot) = self.conn_mut(key) else {
            return;
        };
        let name = slot.name.clone();
        let dialled = slot.dialled.is_some();
        if self.table.lookup(name.as_bytes()) == Some(Route::Client(key)) {
            self.table.remove(name.as_bytes());
        }
        if dialled {
            self.return_queued_forwards(key);
        }
        let slot = self.conns[key.index as usize]
            .take()
            .expect("checked above");
        if let Some(addr) = &slot.dialled {
            self.remotes.forget(addr, key);
        }
        for proc in self.procs.iter_mut().flatten() {
            proc.conn_waiters.retain(|c| *c != key);
        }
        if self.closed_conns.len() == HISTORY {
            self.closed_conns.pop_front();
        }
        self.closed_conns.push_back(slot.stats);
    }

    /// Whether the client's reply queue is over half its bound: stop
    /// reading from it until its writer catches up. (Replies for it are
    /// queued up to the full bound, then returned `Overloaded`; pausing at
    /// half leaves room for replies to requests already in flight.)
    pub(crate) fn outbox_full(&mut self, key: ConnKey) -> bool {
        let pause_at = self.cfg.client_outbox_bytes / 2;
        self.conn_mut(key)
            .is_some_and(|c| c.outbox.len() >= pause_at)
    }

    /// Swaps the client's queued bytes into `buf` (which must be empty);
    /// wakes its reader if the queue was over its bound.
    pub(crate) fn take_outbox(&mut self, key: ConnKey, buf: &mut Vec<u8>) -> Outbox {
        let cap = self.cfg.client_outbox_bytes;
        let Some(conn) = self.conn_mut(key) else {
            return Outbox::Closed;
        };
        debug_assert!(buf.is_empty());
        if conn.connecting {
            return Outbox::Empty;
        }
        if conn.outbox.is_empty() {
            return if conn.closing {
                Outbox::Closed
            } else {
                Outbox::Empty
            };
        }
        let was_full = conn.outbox.len() >= cap / 2;
        std::mem::swap(&mut conn.outbox, buf);
        if was_full {
            conn.wake_reader.notify_one();
        }
        Outbox::Bytes
    }

    /// Queues raw frame bytes for a client (the hello ack).
    pub(crate) fn queue_raw(&mut self, key: ConnKey, bytes: &[u8]) {
        if let Some(conn) = self.conn_mut(key) {
            conn.outbox.extend_from_slice(bytes);
            conn.wake_writer.notify_one();
        }
    }

    /// The client's stream broke the framing: queue a `Malformed` notice
    /// (message id 0) and mark the connection closing.
    pub(crate) fn fail_conn(&mut self, key: ConnKey) {
        let limits = self.limits;
        let service = self.service_name.clone();
        if let Some(conn) = self.conn_mut(key) {
            let name = conn.name.clone();
            let original = FrameHeader {
                sender: Sender::Client {
                    name: name.as_str(),
                },
                ..FrameHeader::data(service.as_str(), 0)
            };
            push_notice(
                conn,
                &original,
                UndeliverableReason::Malformed,
                service.as_str(),
                &limits,
            );
            conn.closing = true;
            conn.wake_writer.notify_one();
        }
    }

    /// The client's reader is done: the writer flushes and stops.
    pub(crate) fn close_conn(&mut self, key: ConnKey) {
        if let Some(conn) = self.conn_mut(key) {
            conn.closing = true;
            conn.wake_writer.notify_one();
        }
    }

    /// Routes one frame from client `conn`. `fresh` is false on a retry of
    /// a frame that was `Blocked` (it is counted once).
    pub(crate) fn handle_conn_frame(
        &mut self,
        key: ConnKey,
        frame: &FrameView<'_>,
        fresh: bool,
        blocked_on: Option<ProcKey>,
        now: Instant,
    ) -> Delivery {
        let Some(conn) = self.conn_mut(key) else {
            return Delivery::Done;
        };
        if fresh {
            conn.stats.accepted += 1;
            conn.stats.bytes_in += frame.as_bytes().len() as u64;
        }
        let sender_ok = conn.dialled.is_some()
            || match frame.sender() {
                Sender::Anonymous => true,
                Sender::Client { name } => name == conn.name.as_str(),
                // Another host relaying its proc's frame.
                Sender::Proc { addr, .. } => !addr.is_empty() && addr != &*self.own_addr,
            };
        let outcome = if sender_ok {
            self.route(frame, Source::Conn(key), blocked_on, now)
        } else {
            Outcome::Returned(UndeliverableReason::Malformed)
        };
        let Dataplane {
            conns,
            service_name,
            limits,
            ..
        } = self;
        let conn = slot_of_conn(conns, key).expect("looked up above");
        match outcome {
            Outcome::Delivered => conn.stats.delivered += 1,
            Outcome::Returned(reason) => {
                conn.stats.returned.add(reason);
                push_notice(conn, &frame.fields(), reason, service_name.as_str(), limits);
            }
            Outcome::Full(p, deadline) => {
                if let Some(slot) = self.proc_mut(p) {
                    if !slot.conn_waiters.contains(&key) {
                        slot.conn_waiters.push(key);
                    }
                    let len = frame.as_bytes().len();
                    let armed = slot
                        .inbound
                        .as_mut()
                        .is_some_and(|r| r.arm_doorbell(len).unwrap_or(false));
                    if !armed {
                        // Room appeared (or the ring closed) meanwhile: retry now.
                        if let Some(c) = self.conn_mut(key) {
                            c.wake_reader.notify_one();
                        }
                    }
                }
                return Delivery::Blocked(p, deadline);
            }
        }
        Delivery::Done
    }

    /// The blocked frame waited its limit: return it as `Overloaded`.
    pub(crate) fn give_up_conn_frame(&mut self, key: ConnKey, frame: &FrameView<'_>, on: ProcKey) {
        let limits = self.limits;
        let service = self.service_name.clone();
        if let Some(slot) = self.proc_mut(on) {
            slot.conn_waiters.retain(|c| *c != key);
            slot.stats.returned_for.add(UndeliverableReason::Overloaded);
        }
        if let Some(conn) = self.conn_mut(key) {
            conn.stats.returned.add(UndeliverableReason::Overloaded);
            push_notice(
                conn,
                &frame.fields(),
                UndeliverableReason::Overloaded,
                service.as_str(),
                &limits,
            );
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
                }
            }
        }
        for conn in self.conns.iter().flatten() {
            if !conn.outbox.is_empty() {
                conn.wake_writer.notify_one();
            }
        }
    }

    /// After the host doorbell fired: wakes connections and procs waiting
    /// for room in rings that now have it, and pushes into `to_drain` every
    /// proc whose outbound ring needs draining. Allocation-free once
    /// `to_drain` has room for every proc.
    pub(crate) fn poll_doorbell(&mut self, to_drain: &mut Vec<ProcKey>) {
        let Dataplane { procs, conns, .. } = self;
        let mut wake_procs = false;
        for (index, slot) in procs.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if let Some(inbound) = slot.inbound.as_mut() {
                if inbound.take_pending() {
                    for conn in slot.conn_waiters.drain(..) {
                        if let Some(Some(c)) = conns.get(conn.index as usize) {
                            c.wake_reader.notify_one();
                        }
                    }
                    wake_procs |= !slot.proc_waiters.is_empty();
                }
            }
            if slot.outbound.take_pending() || !slot.outbound_armed {
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

    /// Drains up to the budget from one proc's outbound ring and routes
    /// every frame. Re-arms the ring on the doorbell when it is empty.
    pub(crate) fn drain_outbound(&mut self, key: ProcKey, now: Instant) -> Drain {
        let drain = self.drain_outbound_inner(key, now, false);
        self.flush();
        drain
    }

    fn drain_outbound_inner(&mut self, key: ProcKey, now: Instant, exiting: bool) -> Drain {
        for _ in 0..self.cfg.drain_budget {
            if let Some(drain) = self.route_from_proc(key, now, exiting) {
                return drain;
            }
        }
        Drain::More
    }

    /// Routes the record at the front of `key`'s outbound ring, releases it
    /// unless it is blocked. `None`: go on draining.
    fn route_from_proc(&mut self, key: ProcKey, now: Instant, exiting: bool) -> Option<Drain> {
        let limits = self.limits;
        let overload_wait = self.cfg.overload_wait;
        let pi = key.index as usize;
        // Empty ring, corruption and unreadable records first.
        {
            let slot = self.proc_mut(key)?;
            slot.outbound_armed = false;
            match slot.outbound.peek() {
                Ok(Some(record)) => {
                    if let Err(e) = split_frame(record, &limits) {
                        let len = record.len() as u64;
                        tracing::warn!(proc = %slot.name, error = %e, "malformed record in outbound ring");
                        slot.stats.frames_out += 1;
                        slot.stats.bytes_out += len;
                        slot.stats
                            .outbound_returned
                            .add(UndeliverableReason::Malformed);
                        let _ = slot.outbound.release();
                        return None;
                    }
                }
                Ok(None) if exiting => return Some(Drain::Idle),
                Ok(None) => match slot.outbound.arm_doorbell() {
                    Ok(true) => {
                        slot.outbound_armed = true;
                        return Some(Drain::Idle);
                    }
                    Ok(false) => return None,
                    Err(e) => {
                        tracing::warn!(proc = %slot.name, error = %e, "outbound ring corrupted; failing the proc");
                        slot.outbound_armed = true;
                        self.fail_proc(key);
                        return Some(Drain::Idle);
                    }
                },
                Err(e) => {
                    tracing::warn!(proc = %slot.name, error = %e, "outbound ring corrupted; failing the proc");
                    slot.outbound_armed = true;
                    self.fail_proc(key);
                    return Some(Drain::Idle);
                }
            }
        }
        // Split the slot vector so the source slot's outbound record can be
        // borrowed while writing into another slot's inbound ring.
        let Dataplane {
            procs,
            conns,
            reader,
            service_name,
            dirty,
            blocked_drains,
            cfg,
            remotes,
            generation,
            own_addr,
            ..
        } = self;
        let (left, rest) = procs.split_at_mut(pi);
        let (src, right) = rest.split_first_mut().expect("slot exists");
        let src = src.as_mut().expect("slot exists");
        let ProcSlot {
            name: src_name,
            outbound,
            inbound: src_inbound,
            stats: src_stats,
            drain_blocked,
            dirty: src_dirty,
            full_since: src_full_since,
            ..
        } = src;
        let record = match outbound.peek() {
            Ok(Some(record)) => record,
            _ => return Some(Drain::Idle),
        };
        let (frame, _) = split_frame(record, &limits).ok()?;
        let frame_len = frame.as_bytes().len();
        let retry = drain_blocked.is_some();
        if !retry {
            src_stats.frames_out += 1;
            src_stats.bytes_out += frame_len as u64;
        }
        let sender_ok = match frame.sender() {
            Sender::Anonymous => true,
            Sender::Proc { name, addr } => name == src_name.as_str() && addr.is_empty(),
            Sender::Client { .. } => false,
        };
        let outcome = if !sender_ok {
            Outcome::Returned(UndeliverableReason::Malformed)
        } else if !(frame.dest_addr().is_empty() || frame.dest_addr() == &**own_addr) {
            remote::forward(conns, remotes, generation, own_addr, &limits, cfg, &frame)
        } else {
            match reader.lookup(frame.dest_name_bytes()).copied() {
                None => Outcome::Returned(UndeliverableReason::NoSuchProc),
                Some(Route::Service) => {
                    let response = service::respond(
                        &frame,
                        &limits,
                        service_name,
                        procs_stats_left_right(left, right, src_stats),
                    );
                    let wrote = match src_inbound.as_mut() {
                        Some(ring) => write_record(ring, response.as_slice()),
                        None => RingWrite::Closed,
                    };
                    if matches!(wrote, RingWrite::Written) {
                        mark_src_dirty(dirty, pi, src_dirty);
                    } else {
                        src_stats.notices_dropped += 1;
                    }
                    Outcome::Delivered
                }
                Some(Route::Client(c)) => {
                    match conns.get_mut(c.index as usize).and_then(Option::as_mut) {
                        Some(conn) if conn.generation == c.generation => {
                            if conn.outbox.len() + frame_len > cfg.client_outbox_bytes {
                                Outcome::Returned(UndeliverableReason::Overloaded)
                            } else {
                                conn.outbox.extend_from_slice(frame.as_bytes());
                                conn.stats.frames_out += 1;
                                conn.stats.bytes_out += frame_len as u64;
                                conn.stats.outbox_high_water =
                                    conn.stats.outbox_high_water.max(conn.outbox.len() as u64);
                                Outcome::Delivered
                            }
                        }
                        _ => Outcome::Returned(UndeliverableReason::NoSuchProc),
                    }
                }
                Some(Route::Proc(q)) => {
                    let qi = q.index as usize;
                    let (ring, stats, state, q_dirty, full_since) = if qi == pi {
                        (
                            src_inbound.as_mut(),
                            &mut *src_stats,
                            ProcState::Ready,
                            &mut *src_dirty,
                            &mut *src_full_since,
                        )
                    } else {
                        match other_slot(left, right, pi, qi)
                            .filter(|s| s.generation == q.generation)
                        {
                            Some(dst) => (
                                dst.inbound.as_mut(),
                                &mut dst.stats,
                                dst.state,
                                &mut dst.dirty,
                                &mut dst.full_since,
                            ),
                            None => (
                                None,
                                &mut *src_stats,
                                ProcState::Detached,
                                &mut *src_dirty,
                                &mut *src_full_since,
                            ),
                        }
                    };
                    match (state, ring) {
                        (ProcState::Starting, _) => {
                            stats.returned_for.add(UndeliverableReason::NotReady);
                            Outcome::Returned(UndeliverableReason::NotReady)
                        }
                        (_, None) | (ProcState::Detached, _) => {
                            Outcome::Returned(UndeliverableReason::ProcExited)
                        }
                        (ProcState::Ready, Some(ring)) => {
                            match write_record(ring, frame.as_bytes()) {
                                RingWrite::Written => {
                                    *full_since = None;
                                    stats.frames_in += 1;
                                    stats.bytes_in += frame_len as u64;
                                    if !*q_dirty {
                                        *q_dirty = true;
                                        dirty.push(q.index);
                                    }
                                    Outcome::Delivered
                                }
                                RingWrite::Full if exiting => {
                                    Outcome::Returned(UndeliverableReason::Overloaded)
                                }
                                RingWrite::Full => {
                                    // The ring's own "full since" mark: once it has
                                    // refused frames longer than the wait, frames
                                    // for it come back at once until it has room.
                                    let since = *full_since.get_or_insert(now);
                                    if now.duration_since(since) >= overload_wait {
                                        stats.returned_for.add(UndeliverableReason::Overloaded);
                                        Outcome::Returned(UndeliverableReason::Overloaded)
                                    } else {
                                        if ring.arm_doorbell(frame_len).unwrap_or(false) {
                                            if drain_blocked.is_none() {
                                                *blocked_drains += 1;
                                            }
                                            *drain_blocked = Some((q, since));
                                            if qi != pi {
                                                if let Some(dst) = other_slot(left, right, pi, qi) {
                                                    if !dst.proc_waiters.contains(&key) {
                                                        dst.proc_waiters.push(key);
                                                    }
                                                }
                                            }
                                            return Some(Drain::Blocked(since + overload_wait));
                                        }
                                        // Room appeared meanwhile: try again next round.
                                        return None;
                                    }
                                }
                                RingWrite::Oversized => {
                                    stats.returned_for.add(UndeliverableReason::Oversized);
                                    Outcome::Returned(UndeliverableReason::Oversized)
                                }
                                RingWrite::Closed => {
                                    stats.returned_for.add(UndeliverableReason::ProcExited);
                                    Outcome::Returned(UndeliverableReason::ProcExited)
                                }
                            }
                        }
                    }
                }
            }
        };
        if drain_blocked.take().is_some() {
            *blocked_drains -= 1;
        }
        match outcome {
            Outcome::Delivered => src_stats.outbound_delivered += 1,
            Outcome::Returned(reason) => {
                src_stats.outbound_returned.add(reason);
                let fields = frame.fields();
                let wrote = match src_inbound.as_mut() {
                    Some(ring) => {
                        write_notice(ring, &fields, reason, service_name.as_str(), &limits)
                    }
                    None => false,
                };
                if wrote {
                    mark_src_dirty(dirty, pi, src_dirty);
                } else {
                    src_stats.notices_dropped += 1;
                }
            }
            Outcome::Full(..) => unreachable!("proc-to-proc blocking handled above"),
        }
        let _ = outbound.release();
        None
    }

    /// Routes a frame from a connection (see [`Dataplane::handle_conn_frame`]).
    fn route(
        &mut self,
        frame: &FrameView<'_>,
        source: Source,
        blocked_on: Option<ProcKey>,
        now: Instant,
    ) -> Outcome {
        let overload_wait = self.cfg.overload_wait;
        if !self.is_local_addr(frame.dest_addr()) {
            let Dataplane {
                conns,
                remotes,
                generation,
                own_addr,
                limits,
                cfg,
                ..
            } = self;
            return remote::forward(conns, remotes, generation, own_addr, limits, cfg, frame);
        }
        let Source::Conn(from) = source;
        let route = self.reader.lookup(frame.dest_name_bytes()).copied();
        let exited = |dp: &mut Dataplane| match blocked_on {
            Some(p) => dp
                .proc_mut(p)
                .is_none_or(|s| s.state == ProcState::Detached),
            None => false,
        };
        match route {
            None if exited(self) => Outcome::Returned(UndeliverableReason::ProcExited),
            None => Outcome::Returned(UndeliverableReason::NoSuchProc),
            Some(Route::Service) => {
                let limits = self.limits;
                let response = {
                    let stats = self.procs.iter().flatten().map(|s| &s.stats);
                    service::respond(frame, &limits, &self.service_name, stats)
                };
                match self.conn_mut(from) {
                    Some(conn) => {
                        conn.outbox.extend_from_slice(&response);
                        conn.stats.frames_out += 1;
                        conn.stats.bytes_out += response.len() as u64;
                        Outcome::Delivered
                    }
                    None => Outcome::Delivered,
                }
            }
            Some(Route::Client(c)) => {
                let cap = self.cfg.client_outbox_bytes;
                match self.conn_mut(c) {
                    Some(conn) if conn.outbox.len() + frame.as_bytes().len() <= cap => {
                        conn.outbox.extend_from_slice(frame.as_bytes());
                        conn.stats.frames_out += 1;
                        conn.stats.bytes_out += frame.as_bytes().len() as u64;
                        conn.stats.outbox_high_water =
                            conn.stats.outbox_high_water.max(conn.outbox.len() as u64);
                        Outcome::Delivered
                    }
                    Some(_) => Outcome::Returned(UndeliverableReason::Overloaded),
                    None => Outcome::Returned(UndeliverableReason::NoSuchProc),
                }
            }
            Some(Route::Proc(p)) => {
                let Dataplane { procs, dirty, .. } = self;
                let Some(slot) = procs
                    .get_mut(p.index as usize)
                    .and_then(Option::as_mut)
                    .filter(|s| s.generation == p.generation)
                else {
                    return Outcome::Returned(UndeliverableReason::ProcExited);
                };
                let reason = match (slot.state, slot.inbound.as_mut()) {
                    (ProcState::Starting, _) => UndeliverableReason::NotReady,
                    (ProcState::Detached, _) | (_, None) => UndeliverableReason::ProcExited,
                    (ProcState::Ready, Some(ring)) => match write_record(ring, frame.as_bytes()) {
                        RingWrite::Written => {
                            slot.full_since = None;
                            slot.stats.frames_in += 1;
                            slot.stats.bytes_in += frame.as_bytes().len() as u64;
                            mark_dirty(dirty, p.index, slot);
                            return Outcome::Delivered;
                        }
                        RingWrite::Full => {
                            let since = *slot.full_since.get_or_insert(now);
                            if now.duration_since(since) < overload_wait {
                                return Outcome::Full(p, since + overload_wait);
                            }
                            UndeliverableReason::Overloaded
                        }
                        RingWrite::Oversized => UndeliverableReason::Oversized,
                        RingWrite::Closed => UndeliverableReason::ProcExited,
                    },
                };
                slot.stats.returned_for.add(reason);
                Outcome::Returned(reason)
            }
        }
    }

    /// A snapshot of every counter.
    pub(crate) fn stats(&self) -> HostStats {
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
        }
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

#[derive(Clone, Copy)]
enum Source {
    Conn(ConnKey),
}

fn procs_stats_left_right<'a>(
    left: &'a [Option<ProcSlot>],
    right: &'a [Option<ProcSlot>],
    src: &'a ProcStats,
) -> impl Iterator<Item = &'a ProcStats> + 'a {
    left.iter()
        .flatten()
        .map(|s| &s.stats)
        .chain(std::iter::once(src))
        .chain(right.iter().flatten().map(|s| &s.stats))
}

fn slot_of(procs: &mut [Option<ProcSlot>], key: ProcKey) -> Option<&mut ProcSlot> {
    procs
        .get_mut(key.index as usize)?
        .as_mut()
        .filter(|s| s.generation == key.generation)
}

fn slot_of_conn(conns: &mut [Option<ConnSlot>], key: ConnKey) -> Option<&mut ConnSlot> {
    conns
        .get_mut(key.index as usize)?
        .as_mut()
        .filter(|s| s.generation == key.generation)
}

fn other_slot<'a>(
    left: &'a mut [Option<ProcSlot>],
    right: &'a mut [Option<ProcSlot>],
    pi: usize,
    qi: usize,
) -> Option<&'a mut ProcSlot> {
    if qi < pi {
        left.get_mut(qi)?.as_mut()
    } else {
        right.get_mut(qi - pi - 1)?.as_mut()
    }
}

fn mark_dirty(dirty: &mut Vec<u32>, index: u32, slot: &mut ProcSlot) {
    if !slot.dirty {
        slot.dirty = true;
        dirty.push(index);
    }
}

fn mark_src_dirty(dirty: &mut Vec<u32>, index: usize, flag: &mut bool) {
    if !*flag {
        *flag = true;
        dirty.push(index as u32);
    }
}

fn write_record(ring: &mut Producer, bytes: &[u8]) -> RingWrite {
    if ring.is_consumer_closed() {
        return RingWrite::Closed;
    }
    if bytes.len() > ring.max_payload() {
        return RingWrite::Oversized;
    }
    match ring.try_reserve(bytes.len()) {
        Ok(mut slot) => {
            slot.copy_from_slice(bytes);
            slot.commit();
            RingWrite::Written
        }
        Err(RingError::Full) => RingWrite::Full,
        Err(RingError::TooLarge { .. }) => RingWrite::Oversized,
        Err(_) => RingWrite::Closed,
    }
}

fn notice_header<'a>(original: &FrameHeader<'a>, from: &'a str) -> FrameHeader<'a> {
    Undeliverable::reply_header(
        original,
        Sender::Proc {
            addr: "",
            name: from,
        },
    )
}

/// Encodes an `Undeliverable` notice straight into a proc's inbound ring.
fn write_notice(
    ring: &mut Producer,
    original: &FrameHeader<'_>,
    reason: UndeliverableReason,
    from: &str,
    limits: &Limits,
) -> bool {
    let header = notice_header(original, from);
    let payload = Undeliverable {
        original_message_id: original.message_id,
        reason,
    }
    .to_bytes();
    let len = encoded_len(&header, UNDELIVERABLE_LEN);
    if ring.is_consumer_closed() {
        return false;
    }
    match ring.try_reserve(len) {
        Ok(mut slot) => match encode_frame(&mut slot, &header, &payload, limits) {
            Ok(_) => {
                slot.commit();
                true
            }
            Err(_) => false,
        },
        Err(_) => false,
    }
}

fn notice_into_ring(
    slot: &mut ProcSlot,
    original: &FrameHeader<'_>,
    reason: UndeliverableReason,
    from: &str,
    limits: &Limits,
) {
    let wrote = slot
        .inbound
        .as_mut()
        .is_some_and(|ring| write_notice(ring, original, reason, from, limits));
    if !wrote {
        slot.stats.notices_dropped += 1;
    }
}

/// Queues an `Undeliverable` notice for a client (allocation-free once the
/// queue has grown to its working size).
fn push_notice(
    conn: &mut ConnSlot,
    original: &FrameHeader<'_>,
    reason: UndeliverableReason,
    from: &str,
    limits: &Limits,
) {
    let header = notice_header(original, from);
    let payload = Undeliverable {
        original_message_id: original.message_id,
        reason,
    }
    .to_bytes();
    if let Ok(range) = encode_frame_to_vec(&mut conn.outbox, &header, &payload, limits) {
        conn.stats.frames_out += 1;
        conn.stats.bytes_out += range.len() as u64;
        conn.stats.outbox_high_water = conn.stats.outbox_high_water.max(conn.outbox.len() as u64);
    }
}
