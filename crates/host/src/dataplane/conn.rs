//! Client connections (and links from other hosts): their frames, their
//! arrival and departure, and their reply queues.

use std::time::Instant;

use hostmux_wire::{
    frame_message_id, Addr, Flags, FrameDecoder, FrameHeader, FrameView, ProcName, Sender,
    UndeliverableReason,
};

use super::rules::{self, Envelope, Origin};

use super::ledger::Arrival;
use super::notices::push_notice;
use super::write::{count_written_run, slot_of_conn, Pieces, Source};
use super::{
    Blocker, ConnKey, ConnSlot, Dataplane, Delivery, Event, Outbox, Outcome, Peer, ProcKey,
    ProcState, HISTORY,
};

impl Dataplane {
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
        if fresh && frame.repeats_previous_header() && self.deliver_repeat(key, frame.as_bytes()) {
            return Delivery::Done;
        }
        self.handle_conn_pieces(key, Pieces::Whole(frame), fresh, blocked_on, now)
    }

    /// [`handle_conn_frame`](Self::handle_conn_frame) for a frame in pieces:
    /// the one decision for every frame from a connection, whole or held in
    /// a ring (`dataplane::zero_copy`).
    pub(super) fn handle_conn_pieces(
        &mut self,
        key: ConnKey,
        pieces: Pieces<'_, '_>,
        fresh: bool,
        blocked_on: Option<ProcKey>,
        now: Instant,
    ) -> Delivery {
        let frame = pieces.head();
        self.last_now = now;
        let max_hops = self.cfg.max_hops;
        let Some(conn) = slot_of_conn(&mut self.conns, key) else {
            return Delivery::Done;
        };
        if conn.flow.is_some() {
            Self::heard_on_link(conn, now);
            // Link status frames are the link's own: never routed, never
            // counted among its frames. (Links' frames always come whole.)
            if hostmux_wire::is_link_status(frame) {
                // The next frame repeats this one's header, not that of the
                // frame the fast lane's route came from: it must not take
                // that route (it would land in a proc's ring).
                conn.repeat_route = None;
                if let Some(status) = hostmux_wire::link_status(frame) {
                    self.receive_link_status(key, status, now);
                }
                return Delivery::Done;
            }
        }
        let Dataplane { conns, cfg, .. } = self;
        let conn = slot_of_conn(conns, key).expect("looked up above");
        // Set again below if this frame goes to a proc (or another host).
        conn.repeat_route = None;
        conn.forward_lane.close();
        if fresh {
            conn.stats.accepted += 1;
            conn.stats.bytes_in += pieces.len() as u64;
        }
        let envelope = envelope_of(frame);
        let link = conn.is_link(&envelope, &cfg.peers);
        if link && fresh && self.late_from_peer(key, frame) {
            return self.handled(key, pieces.len(), now);
        }
        let conn = slot_of_conn(&mut self.conns, key).expect("looked up above");
        let origin = if link {
            Origin::Link
        } else {
            Origin::Client {
                name: conn.name.as_str(),
            }
        };
        let source = Source::Conn {
            key,
            party: origin.party(),
            blocked_on,
        };
        let outcome = match rules::admit(origin, &envelope, max_hops) {
            Ok(()) => self.deliver(pieces, source, now),
            Err(reason) => Outcome::Returned(reason),
        };
        // A delivered anonymous frame has no return address: nothing can
        // answer it, so nothing is awaited.
        let awaited = (matches!(outcome, Outcome::Delivered)
            && rules::may_be_answered(envelope.kind)
            && !matches!(envelope.sender, Sender::Anonymous))
        .then(|| {
            let to_client = frame.flags().contains(Flags::TO_CLIENT);
            self.peer_of(frame.dest_name(), frame.dest_addr(), to_client)
        });
        let Dataplane {
            conns,
            service_name,
            limits,
            own_addr,
            events,
            cfg,
            ..
        } = self;
        let conn = slot_of_conn(conns, key).expect("looked up above");
        match outcome {
            Outcome::Delivered => {
                conn.stats.delivered += 1;
                if let Some(peer) = awaited {
                    conn.answers.expect(frame.message_id(), peer);
                }
            }
            // Answered, or handed to the thread that owns its client.
            Outcome::Answered | Outcome::HandedOff => conn.stats.delivered += 1,
            // Consumed by the service proc: nobody answers it.
            Outcome::Consumed => conn.stats.dropped.add(UndeliverableReason::NoSuchProc),
            Outcome::Returned(reason) => {
                conn.refuse(
                    &frame.fields(),
                    reason,
                    service_name.as_str(),
                    own_addr,
                    limits,
                );
            }
            // The executor registered this connection to wait for room.
            Outcome::Full(p, deadline) => return Delivery::Blocked(Blocker::Ring(p), deadline),
            Outcome::LinkFull(l, deadline) => return Delivery::Blocked(Blocker::Link(l), deadline),
            Outcome::Retry => unreachable!("only a proc's drain retries at once"),
        }
        let len = pieces.len();
        if conn
            .flow
            .as_mut()
            .is_some_and(|flow| flow.count_handled(len, now, cfg))
        {
            events.push_back(Event::WakeWriter(key));
        }
        Delivery::Done
    }

    /// A frame from link `key` was disposed of without being routed (a late
    /// answer dropped): it is acknowledged like any other.
    fn handled(&mut self, key: ConnKey, len: usize, now: Instant) -> Delivery {
        let Dataplane {
            conns, events, cfg, ..
        } = self;
        let flow = slot_of_conn(conns, key).and_then(|c| c.flow.as_mut());
        if flow.is_some_and(|flow| flow.count_handled(len, now, cfg)) {
            events.push_back(Event::WakeWriter(key));
        }
        Delivery::Done
    }

    /// Whether `frame`, from link `key`, answers a frame of this host that
    /// was already answered here (its link failed meanwhile): such a late
    /// answer is dropped (and counted), so each frame gets one answer. An
    /// answer to a frame still awaited stops awaiting it.
    fn late_from_peer(&mut self, key: ConnKey, frame: &FrameView<'_>) -> bool {
        if !self.is_local_addr(frame.dest_addr()) {
            return false;
        }
        let Dataplane { conns, cfg, .. } = self;
        let peers = &cfg.peers;
        let Some(conn) = slot_of_conn(conns, key) else {
            return false;
        };
        let Some(flow) = conn.flow.as_mut() else {
            return false;
        };
        let peer = match flow.peer {
            Some(peer) => peer,
            None => {
                let Some(peer) = super::remote::configured_peer_index(peers, frame.sender().addr())
                else {
                    return false;
                };
                flow.peer = Some(peer);
                if !flow.dialled {
                    self.remotes.peer_mut(peer).accepted = Some(key);
                }
                peer
            }
        };
        let to = if frame.flags().contains(Flags::TO_CLIENT) {
            Peer::client(frame.dest_name_bytes())
        } else {
            Peer::named(frame.dest_name_bytes())
        };
        match self.arrive_from_peer(peer, frame.message_id(), to) {
            Arrival::Late => {
                if let Some(conn) = self.conn_mut(key) {
                    conn.stats.dropped.add(UndeliverableReason::LinkFailed);
                }
                true
            }
            Arrival::Answer | Arrival::Other => false,
        }
    }

    /// Delivers the run of frames at the front of `decoder` whose headers
    /// repeat the previous one, straight to the proc the previous frame
    /// went to, without building frame views; stops at the first frame it
    /// cannot deliver that way (left for `next_frame` and the full path).
    /// The I/O thread calls it before every `next_frame`.
    ///
    /// Frames that repeat the previous header have the same destination,
    /// sender, kind and flags, so the same sender check, locality and
    /// route, as long as no table change has started since that route was
    /// looked up. What does not change within a run (the connection's
    /// route, the table's change counter, the link ledger's quiet state,
    /// the proc's slot and readiness, whether its consumer closed) is
    /// checked once per run; per frame there is only the ring write, the
    /// answers entry and the link's acknowledgement count, and the
    /// counters are added once at the end. A run to a proc on another host
    /// takes the forward lane ([`Dataplane::forward_repeat`]) frame by
    /// frame.
    #[inline]
    pub(crate) fn deliver_repeats(&mut self, key: ConnKey, source: &mut impl RunsRepeats) -> usize {
        source.run_repeats(|run| self.deliver_run(key, run))
    }

    /// The fast path for one frame (`bytes`, validated) whose header
    /// repeats the previous frame's on this connection
    /// ([`FrameView::repeats_previous_header`]): true if it was delivered
    /// (written and counted) as [`Dataplane::deliver_repeats`] would;
    /// false (nothing done, nothing counted) whenever anything differs or
    /// the write does not succeed, and the full path decides.
    #[inline]
    fn deliver_repeat(&mut self, key: ConnKey, bytes: &[u8]) -> bool {
        self.deliver_run(key, &mut OneFrame(Some(bytes))) == 1
    }

    /// The run of repeats `source` yields, delivered (see
    /// [`Dataplane::deliver_repeats`]); returns how many.
    #[inline]
    fn deliver_run(&mut self, key: ConnKey, source: &mut impl RepeatSource) -> usize {
        let Some(route) = slot_of_conn(&mut self.conns, key).map(|conn| conn.repeat_route) else {
            return 0;
        };
        let Some((p, seen)) = route else {
            let mut forwarded = 0;
            while source
                .take(|bytes| self.forward_repeat(key, bytes).then_some(()))
                .is_some()
            {
                forwarded += 1;
            }
            return forwarded;
        };
        if seen != self.table.changes() {
            return 0;
        }
        let now = self.last_now;
        let Dataplane {
            conns,
            procs,
            dirty,
            remotes,
            events,
            cfg,
            ..
        } = self;
        let Some(conn) = slot_of_conn(conns, key) else {
            return 0;
        };
        // A link's frame may be an answer the peer's ledger awaits (or a
        // late one to drop): the lane is open to links only while that
        // ledger awaits nothing and buried nothing.
        if let Some(flow) = conn.flow.as_ref() {
            if !flow.peer.is_some_and(|peer| remotes.ledger_is_quiet(peer)) {
                return 0;
            }
        }
        let Some(slot) = procs
            .get_mut(p.index as usize)
            .and_then(Option::as_mut)
            .filter(|s| s.generation == p.generation && s.state == ProcState::Ready)
        else {
            return 0;
        };
        let Some(ring) = slot.inbound.as_mut() else {
            return 0;
        };
        if ring.is_consumer_closed() {
            return 0;
        }
        let max_payload = ring.max_payload();
        let (mut frames, mut bytes) = (0u64, 0u64);
        let mut wake_writer = false;
        while source
            .take(|frame| {
                if frame.len() > max_payload {
                    return None;
                }
                // Full, or anything else: the full path decides.
                let mut reserved = ring.try_reserve(frame.len()).ok()?;
                reserved.copy_from_slice(frame);
                reserved.commit();
                frames += 1;
                bytes += frame.len() as u64;
                // Only data frames take this lane (see
                // `Dataplane::remember_route`); an anonymous one cannot be
                // answered.
                if let Some(peer) = conn.repeat_peer {
                    conn.answers.expect_with(|| frame_message_id(frame), peer);
                }
                // One more frame for the peer's acknowledgement.
                if conn
                    .flow
                    .as_mut()
                    .is_some_and(|flow| flow.count_handled(frame.len(), now, cfg))
                {
                    wake_writer = true;
                }
                Some(())
            })
            .is_some()
        {}
        if frames > 0 {
            count_written_run(dirty, p.index, slot, frames, bytes);
            conn.stats.accepted += frames;
            conn.stats.bytes_in += bytes;
            conn.stats.delivered += frames;
        }
        if wake_writer {
            events.push_back(Event::WakeWriter(key));
        }
        frames as usize
    }

    /// The blocked frame waited its limit: return it as `Overloaded`.
    pub(crate) fn give_up_conn_frame(&mut self, key: ConnKey, frame: &FrameView<'_>, on: Blocker) {
        match on {
            Blocker::Ring(on) => {
                if let Some(slot) = self.proc_mut(on) {
                    slot.conn_waiters.retain(|c| *c != key);
                    slot.stats.returned_for.add(UndeliverableReason::Overloaded);
                }
            }
            Blocker::Link(link) => {
                if let Some(flow) = self.conn_mut(link).and_then(|c| c.flow.as_mut()) {
                    flow.reader_waiters.retain(|c| *c != key);
                }
            }
        }
        let Dataplane {
            conns,
            service_name,
            limits,
            own_addr,
            ..
        } = self;
        if let Some(conn) = slot_of_conn(conns, key) {
            conn.refuse(
                &frame.fields(),
                UndeliverableReason::Overloaded,
                service_name.as_str(),
                own_addr,
                limits,
            );
        }
    }
}

/// Where a run of frames that repeat the previous header comes from: the
/// connection's decoder, or one frame the full path found to be a repeat.
/// Where a run of repeated frames comes from.
trait RepeatSource {
    /// Hands the next frame of the run to `take`; `None` when the run ends
    /// or `take` refuses the frame (it stays where it was).
    fn take(&mut self, take: impl FnOnce(&[u8]) -> Option<()>) -> Option<()>;
}

impl RepeatSource for hostmux_wire::Repeats<'_> {
    #[inline]
    fn take(&mut self, take: impl FnOnce(&[u8]) -> Option<()>) -> Option<()> {
        self.take_repeat(take)
    }
}

/// What holds runs of repeats: a decoder's buffer, or a chunk lent to it
/// (both hand out [`hostmux_wire::Repeats`], so the fast lane is compiled
/// once: measured, a second copy cost the forwarding lane instructions
/// per frame through lost inlining).
pub(crate) trait RunsRepeats {
    fn run_repeats<T>(&mut self, run: impl FnOnce(&mut hostmux_wire::Repeats<'_>) -> T) -> T;
}

impl RunsRepeats for FrameDecoder {
    #[inline]
    fn run_repeats<T>(&mut self, run: impl FnOnce(&mut hostmux_wire::Repeats<'_>) -> T) -> T {
        FrameDecoder::run_repeats(self, run)
    }
}

impl RunsRepeats for hostmux_wire::LentChunk<'_, '_> {
    #[inline]
    fn run_repeats<T>(&mut self, run: impl FnOnce(&mut hostmux_wire::Repeats<'_>) -> T) -> T {
        hostmux_wire::LentChunk::run_repeats(self, run)
    }
}

/// A run of one frame.
struct OneFrame<'a>(Option<&'a [u8]>);

impl RepeatSource for OneFrame<'_> {
    #[inline]
    fn take(&mut self, take: impl FnOnce(&[u8]) -> Option<()>) -> Option<()> {
        take(self.0.take()?)
    }
}

/// The parts of a frame's header the delivery rules read.
pub(super) fn envelope_of<'a>(frame: &FrameView<'a>) -> Envelope<'a> {
    let flags = frame.flags();
    Envelope {
        kind: frame.kind(),
        sender: frame.sender(),
        dest_port: frame.dest_port(),
        hops: flags.hops(),
        to_client: flags.contains(Flags::TO_CLIENT),
        from_client: flags.contains(Flags::FROM_CLIENT),
    }
}

/// Whether a frame on an accepted connection relays another host (the
/// connection is that host's link to this one): the connection presented
/// the peer token (`peer_link`, a secret clients do not hold) and the
/// frame's sender is a proc of a configured peer. Anything else on an
/// accepted connection is a client's, so a client that names a proc of
/// another host as its sender is refused (`Malformed`) instead of being
/// taken for a link that may relay notices and responses. (Links this host
/// dialled are links whatever they carry.)
fn relays_a_peer(peer_link: bool, envelope: &Envelope<'_>, peers: &[Addr]) -> bool {
    peer_link
        && matches!(envelope.sender, Sender::Proc { addr, .. }
            if super::remote::configured_peer(peers, addr).is_some())
}

impl ConnSlot {
    /// Whether a frame with `envelope` on this connection is a link's (a
    /// link this host dialled, or a peer's link relaying a peer's frame)
    /// rather than a client's.
    pub(super) fn is_link(&self, envelope: &Envelope<'_>, peers: &[Addr]) -> bool {
        self.dialled.is_some() || relays_a_peer(self.peer_link, envelope, peers)
    }
}

/// Connections coming and going, and their reply queues.
impl Dataplane {
    /// Registers a client that completed its hello. Fails if another
    /// client holds the name; procs' names are another namespace (a client
    /// may be called like a proc, and neither hinders the other).
    pub(crate) fn add_conn(&mut self, name: ProcName) -> Option<ConnKey> {
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
        if !self.clients.insert(name.as_bytes(), key) {
            return None;
        }
        let stats_name = name.as_str().to_owned();
        let slot = ConnSlot::new(generation, name, stats_name, None);
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
        if slot.drains_waiting {
            // Blocked drains retry and find it gone.
            self.conn_room = true;
            self.events.push_back(Event::ReplyQueueRoom);
        }
        let Some(slot) = self.conn_mut(key) else {
            return;
        };
        let name = slot.name.clone();
        let dialled = slot.dialled.is_some();
        let link = slot.flow.as_mut().map(|flow| {
            let reason = flow.failure.unwrap_or(if flow.dialled && !flow.up {
                UndeliverableReason::HostUnreachable
            } else {
                UndeliverableReason::LinkFailed
            });
            let waiters = std::mem::take(&mut flow.reader_waiters);
            (flow.peer, flow.dialled, reason, waiters)
        });
        if !dialled {
            self.clients.remove_if(name.as_bytes(), key);
        }
        if let Some((peer, link_dialled, reason, waiters)) = link {
            // Connections held back by its window retry (and find it gone).
            self.events
                .extend(waiters.into_iter().map(Event::WakeReader));
            if link_dialled {
                self.return_queued_forwards(key, reason);
            }
            // Whatever awaits an answer through it is answered here: on a
            // link this host dialled, the frames sent on it; on a link the
            // peer dialled (its answers came that way), every frame
            // awaiting that peer.
            if let Some(peer) = peer {
                let state = self.remotes.peer_mut(peer);
                if state.accepted == Some(key) {
                    state.accepted = None;
                }
                self.answer_awaited(peer, key, !link_dialled, reason);
            }
        }
        let slot = self.conns[key.index as usize]
            .take()
            .expect("checked above");
        // Its queue goes with it: that memory is free again.
        self.release_reply_bytes(slot.reply_bytes + slot.reply_bytes_in_flight);
        if let Some(addr) = &slot.dialled {
            self.remotes.forget(addr, key);
        }
        for proc in self.procs.iter_mut().flatten() {
            proc.conn_waiters.retain(|c| *c != key);
        }
        self.events.push_back(Event::ConnRemoved(key));
        let class = &mut self.closed_classes[slot.stats.class as usize];
        class.closed += 1;
        class.totals.add_all(&slot.stats);
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
    pub(crate) fn take_outbox(&mut self, key: ConnKey, buf: &mut Vec<u8>, now: Instant) -> Outbox {
        let cap = self.cfg.client_outbox_bytes;
        let Some(conn) = self.conn_mut(key) else {
            return Outbox::Closed;
        };
        debug_assert!(buf.is_empty());
        // The writer takes again only once it wrote what it took last time:
        // those bytes leave the host's budget for client queues now.
        let written = std::mem::take(&mut conn.reply_bytes_in_flight);
        if written > 0 {
            self.release_reply_bytes(written);
        }
        let Some(conn) = self.conn_mut(key) else {
            return Outbox::Closed;
        };
        if conn.connecting {
            return Outbox::Empty;
        }
        let mut status_later = None;
        if conn.flow.is_some() {
            let Dataplane {
                conns,
                service_name,
                ..
            } = self;
            if let Some(conn) = slot_of_conn(conns, key) {
                status_later = super::link::queue_status(conn, service_name.as_str(), now);
            }
        }
        let Some(conn) = self.conn_mut(key) else {
            return Outbox::Closed;
        };
        if conn.outbox.is_empty() {
            return match status_later {
                _ if conn.closing => Outbox::Closed,
                Some(at) => Outbox::Later(at),
                None => Outbox::Empty,
            };
        }
        let was_full = conn.outbox.len() >= cap / 2;
        std::mem::swap(&mut conn.outbox, buf);
        // Still host memory until written (counted until the next take).
        conn.reply_bytes_in_flight = std::mem::take(&mut conn.reply_bytes);
        let drains_waited = std::mem::take(&mut conn.drains_waiting);
        if was_full {
            self.events.push_back(Event::WakeReader(key));
        }
        if drains_waited {
            self.conn_room = true;
            self.events.push_back(Event::ReplyQueueRoom);
        }
        Outbox::Bytes
    }

    /// `bytes` queued for clients left the host: wakes the drains that
    /// waited for the host-wide budget.
    fn release_reply_bytes(&mut self, bytes: usize) {
        self.reply_bytes -= bytes;
        if bytes > 0 && std::mem::take(&mut self.drains_wait_for_reply_memory) {
            self.conn_room = true;
            self.events.push_back(Event::ReplyQueueRoom);
        }
    }

    /// If a reply queue got room since the last call, the procs whose drain
    /// is blocked (to retry them).
    pub(crate) fn take_conn_room(&mut self, out: &mut Vec<ProcKey>) {
        if std::mem::take(&mut self.conn_room) {
            self.blocked_drains(out);
        }
    }

    /// Queues raw frame bytes for a client (the hello ack).
    pub(crate) fn queue_raw(&mut self, key: ConnKey, bytes: &[u8]) {
        if let Some(conn) = self.conn_mut(key) {
            conn.outbox.extend_from_slice(bytes);
            self.events.push_back(Event::WakeWriter(key));
        }
    }

    /// Queues the control plane's response to a control request the client
    /// sent (one answer fewer awaited).
    pub(crate) fn queue_answer(&mut self, key: ConnKey, frame: &[u8]) {
        let message_id = frame_message_id(frame);
        let service = Peer::named(self.service_name.as_str().as_bytes());
        if let Some(conn) = self.conn_mut(key) {
            conn.outbox.extend_from_slice(frame);
            conn.count_queued(frame.len());
            if let Some(message_id) = message_id {
                conn.answers.answer(message_id, service);
            }
            self.events.push_back(Event::WakeWriter(key));
        }
    }

    /// The client half-closed (end of stream on its side, cleanly between
    /// frames): keep it, and its name, only for the answers it awaits.
    /// Returns whether any are awaited.
    pub(crate) fn half_close(&mut self, key: ConnKey) -> bool {
        match self.conn_mut(key) {
            Some(conn) => {
                conn.lingering = true;
                conn.answers.awaiting() > 0
            }
            None => false,
        }
    }

    /// Whether a half-closed client still awaits answers.
    pub(crate) fn awaits_answers(&mut self, key: ConnKey) -> bool {
        self.conn_mut(key).is_some_and(|c| c.answers.awaiting() > 0)
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
                "",
                &limits,
            );
            conn.closing = true;
            self.events.push_back(Event::WakeWriter(key));
        }
    }

    /// The client's reader is done: the writer flushes and stops.
    pub(crate) fn close_conn(&mut self, key: ConnKey) {
        if let Some(conn) = self.conn_mut(key) {
            conn.closing = true;
            self.events.push_back(Event::WakeWriter(key));
        }
    }
}
