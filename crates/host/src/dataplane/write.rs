//! The one executor of routing decisions ([`Dataplane::deliver`]), for
//! frames from connections and from procs alike, and the slot lookups and
//! ring writes it and its callers share (notices: `notices.rs`). None of them
//! allocates once queues are warm (refusals of control requests aside).

use std::cell::Cell;
use std::time::Instant;

use hostmux_ring::{HeldRecord, Producer, RingError};
use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{
    decode_frame, decode_frame_memo, Flags, FrameKind, FramePrefix, FrameView, HeaderMemo, Limits,
    Sender, UndeliverableReason, WireError, FRAME_ALIGN, PREFIX_LEN,
};

use super::agent::agent_answer;
use super::conn::envelope_of;
use super::rules::{self, Party, ServiceUse};
use super::{
    service, ConnKey, ConnSlot, Dataplane, Event, Outcome, Peer, ProcKey, ProcSlot, ProcState,
    RingWrite, Route,
};

pub(super) fn slot_of(procs: &mut [Option<ProcSlot>], key: ProcKey) -> Option<&mut ProcSlot> {
    procs
        .get_mut(key.index as usize)?
        .as_mut()
        .filter(|s| s.generation == key.generation)
}

pub(super) fn slot_of_conn(conns: &mut [Option<ConnSlot>], key: ConnKey) -> Option<&mut ConnSlot> {
    conns
        .get_mut(key.index as usize)?
        .as_mut()
        .filter(|s| s.generation == key.generation)
}

pub(super) fn other_slot<'a>(
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

pub(super) fn mark_dirty(dirty: &mut Vec<u32>, index: u32, slot: &mut ProcSlot) {
    if !slot.dirty {
        slot.dirty = true;
        dirty.push(index);
    }
}

/// Counts a client frame of `len` bytes written into `slot`'s inbound ring
/// (it has room again) and marks the ring for publication.
pub(super) fn count_written(dirty: &mut Vec<u32>, index: u32, slot: &mut ProcSlot, len: u64) {
    count_written_run(dirty, index, slot, 1, len);
}

/// Counts `frames` client frames, `bytes` in all, written into `slot`'s
/// inbound ring in one run (see [`count_written`]).
pub(super) fn count_written_run(
    dirty: &mut Vec<u32>,
    index: u32,
    slot: &mut ProcSlot,
    frames: u64,
    bytes: u64,
) {
    slot.full_since = None;
    slot.zero_copy_defer = false;
    slot.stats.frames_in += frames;
    slot.stats.bytes_in += bytes;
    mark_dirty(dirty, index, slot);
}

pub(super) fn write_record(ring: &mut Producer, bytes: &[u8]) -> RingWrite {
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

/// Copies the prefix and routing header of `record` (a proc's ring record,
/// memory the proc may rewrite at any time) into the host-local `scratch`
/// and validates them there. Returns a view of the copy (its payload is
/// empty: the copy's prefix is rewritten to a payload-less frame for the
/// check) and the original prefix, whose payload range locates the payload
/// in `record`. Routing decisions read only the copy, so a proc cannot turn
/// a validated header into an invalid one behind the host's back. The
/// header is checked through the proc's `memo`: a run of records that
/// differ only in message id and port is validated once (the comparison
/// is against the memo's own copy, so it is as safe as a full check).
/// Allocation-free once `scratch` has room for `16 + max_header_len` bytes.
pub(crate) fn copy_head<'s>(
    record: &[u8],
    scratch: &'s mut AlignedVec<FRAME_ALIGN>,
    memo: &'s mut HeaderMemo,
    limits: &Limits,
) -> Result<(FrameView<'s>, FramePrefix), WireError> {
    let room = PREFIX_LEN + limits.max_header_len.next_multiple_of(FRAME_ALIGN);
    scratch.clear();
    scratch.extend_from_slice(&record[..record.len().min(room)]);
    let prefix = FramePrefix::parse(scratch, limits)?;
    if record.len() < prefix.frame_len() {
        return Err(WireError::Truncated {
            needed: prefix.frame_len(),
            available: record.len(),
        });
    }
    let head_len = prefix.payload_offset();
    let head_only = FramePrefix::for_lengths(prefix.header_len(), 0, limits)?;
    scratch[..PREFIX_LEN].copy_from_slice(&head_only.to_bytes());
    let scratch: &'s AlignedVec<FRAME_ALIGN> = scratch;
    let view = decode_frame_memo(&scratch[..head_len], limits, memo)?;
    Ok((view, prefix))
}

/// The validated header of the partial frame at the front of a
/// connection's buffer (`front`: its prefix, header and maybe some
/// payload), copied into `scratch` as a payload-less frame, with the
/// original prefix (as [`copy_head`] does for a ring record). `None` unless
/// the prefix and the whole header are in and the frame is not.
/// Allocation-free once `scratch` has room for `16 + max_header_len` bytes.
pub(crate) fn copy_partial_head<'s>(
    front: &[u8],
    scratch: &'s mut AlignedVec<FRAME_ALIGN>,
    limits: &Limits,
) -> Option<(FrameView<'s>, FramePrefix)> {
    let prefix = FramePrefix::parse(front, limits).ok()?;
    let head_len = prefix.payload_offset();
    if front.len() < head_len || front.len() >= prefix.frame_len() {
        return None;
    }
    let head_only = FramePrefix::for_lengths(prefix.header_len(), 0, limits).ok()?;
    scratch.clear();
    scratch.extend_from_slice(&front[..head_len]);
    scratch[..PREFIX_LEN].copy_from_slice(&head_only.to_bytes());
    let scratch: &'s AlignedVec<FRAME_ALIGN> = scratch;
    let view = decode_frame(&scratch[..head_len], limits).ok()?;
    Some((view, prefix))
}

/// Writes a frame from its parts into a ring record: the original prefix,
/// the validated header copy (`head` is a [`copy_head`] view), the payload
/// (straight from the source ring: the one copy) and zero padding.
pub(super) fn write_parts(
    ring: &mut Producer,
    prefix: &FramePrefix,
    head: &FrameView<'_>,
    payload: &[u8],
) -> RingWrite {
    if ring.is_consumer_closed() {
        return RingWrite::Closed;
    }
    let len = prefix.frame_len();
    if len > ring.max_payload() {
        return RingWrite::Oversized;
    }
    match ring.try_reserve(len) {
        Ok(mut slot) => {
            fill_parts(&mut slot, prefix, head, payload);
            slot.commit();
            RingWrite::Written
        }
        Err(RingError::Full) => RingWrite::Full,
        Err(RingError::TooLarge { .. }) => RingWrite::Oversized,
        Err(_) => RingWrite::Closed,
    }
}

/// Appends a frame from its parts to a client's queue (see [`write_parts`]).
pub(super) fn extend_parts(
    out: &mut Vec<u8>,
    prefix: &FramePrefix,
    head: &FrameView<'_>,
    payload: &[u8],
) {
    // Appended piece by piece: zero-filling the frame first and then
    // overwriting it wrote every byte twice.
    let head_len = prefix.payload_offset();
    let end = out.len() + prefix.frame_len();
    out.reserve(prefix.frame_len());
    out.extend_from_slice(&prefix.to_bytes());
    out.extend_from_slice(&head.as_bytes()[PREFIX_LEN..head_len]);
    out.extend_from_slice(payload);
    out.resize(end, 0);
}

fn fill_parts(out: &mut [u8], prefix: &FramePrefix, head: &FrameView<'_>, payload: &[u8]) {
    let head_len = prefix.payload_offset();
    out[..PREFIX_LEN].copy_from_slice(&prefix.to_bytes());
    out[PREFIX_LEN..head_len].copy_from_slice(&head.as_bytes()[PREFIX_LEN..head_len]);
    let range = prefix.payload_range();
    out[range.clone()].copy_from_slice(payload);
    out[range.end..].fill(0);
}

/// A routed frame's bytes, as its source holds them.
#[derive(Clone, Copy)]
pub(crate) enum Pieces<'a, 'f> {
    /// A whole validated frame (a connection's).
    Whole(&'a FrameView<'f>),
    /// A proc's record: its original prefix, the validated copy of its
    /// header ([`copy_head`]) and its payload, read straight from the proc's
    /// ring (the one copy is into the destination).
    Parts {
        prefix: &'a FramePrefix,
        head: &'a FrameView<'f>,
        payload: &'a [u8],
    },
    /// A client's large frame already in a proc's ring (read there from the
    /// socket, see `dataplane::zero_copy`): its validated header copy (a
    /// [`copy_head`]-style view) and the held record, which delivering it
    /// commits. For the ring it is held in only: the caller checks that the
    /// frame routes there first (another ring refuses it as closed; a
    /// client, link or the service proc would get an empty payload).
    Held {
        prefix: &'a FramePrefix,
        head: &'a FrameView<'f>,
        held: &'a Cell<Option<HeldRecord>>,
    },
}

impl<'f> Pieces<'_, 'f> {
    /// The validated header (for a whole frame, the frame).
    pub(super) fn head(&self) -> &FrameView<'f> {
        match self {
            Pieces::Whole(frame) => frame,
            Pieces::Parts { head, .. } | Pieces::Held { head, .. } => head,
        }
    }

    /// The payload (empty for a held frame: it is in ring memory, and goes
    /// nowhere but its ring).
    fn payload(&self) -> &[u8] {
        match self {
            Pieces::Whole(frame) => frame.payload(),
            Pieces::Parts { payload, .. } => payload,
            Pieces::Held { .. } => &[],
        }
    }

    /// The frame's length on the wire.
    pub(super) fn len(&self) -> usize {
        match self {
            Pieces::Whole(frame) => frame.as_bytes().len(),
            Pieces::Parts { prefix, .. } | Pieces::Held { prefix, .. } => prefix.frame_len(),
        }
    }

    fn write_into(&self, ring: &mut Producer) -> RingWrite {
        match self {
            Pieces::Whole(frame) => write_record(ring, frame.as_bytes()),
            Pieces::Parts {
                prefix,
                head,
                payload,
            } => write_parts(ring, prefix, head, payload),
            Pieces::Held { held, .. } => match held.take().map(|record| ring.commit_held(record)) {
                Some(Ok(())) => RingWrite::Written,
                Some(Err(record)) => {
                    held.set(Some(record));
                    RingWrite::Closed
                }
                None => RingWrite::Closed,
            },
        }
    }

    pub(super) fn append_to(&self, out: &mut Vec<u8>) {
        match self {
            Pieces::Whole(frame) => out.extend_from_slice(frame.as_bytes()),
            Pieces::Parts {
                prefix,
                head,
                payload,
            } => extend_parts(out, prefix, head, payload),
            // Never routed to a client (the caller checked the route).
            Pieces::Held { prefix, head, .. } => extend_parts(out, prefix, head, &[]),
        }
    }
}

/// Where a routed frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// A connection: a client or a link (`party`). `blocked_on`: the proc
    /// whose full ring held this frame back (it is a retry).
    Conn {
        key: ConnKey,
        party: Party,
        blocked_on: Option<ProcKey>,
    },
    /// A proc's outbound ring. `exiting`: the proc is gone and its last
    /// frames are delivered; its drain may not wait for room.
    Proc { key: ProcKey, exiting: bool },
}

/// The executor of routing decisions: every frame the rules admitted, from
/// a connection or a proc, is carried out here.
impl Dataplane {
    /// Forwards an admitted frame to another host, or delivers it to the
    /// service proc, a client's reply queue or a proc's ring. A frame
    /// marked `TO_CLIENT` is looked up among the clients only, any other
    /// in the routing table (procs and the service proc) only: a client
    /// never receives a frame meant for a proc, and never shadows one. The
    /// source
    /// decides only how a full destination is waited on (a connection's
    /// frame is held by its reader; a proc's drain blocks), which of the
    /// two route caches is used and which fast lane may repeat the route.
    pub(super) fn deliver(
        &mut self,
        pieces: Pieces<'_, '_>,
        source: Source,
        now: Instant,
    ) -> Outcome {
        let frame = pieces.head();
        if !self.is_local_addr(frame.dest_addr()) {
            return self.forward(frame.fields(), pieces.payload(), Some(source), now);
        }
        let control = frame.kind() == FrameKind::ControlRequest;
        if frame.flags().contains(Flags::TO_CLIENT) {
            // Control requests are for the service proc only.
            if control {
                return Outcome::Returned(UndeliverableReason::Malformed);
            }
            return match self.clients.lookup(frame.dest_name_bytes()) {
                Some(c) => self.deliver_to_client(c, pieces, source, now),
                // Another I/O thread's client (see `handoff`).
                None => match self.client_elsewhere(frame.dest_name_bytes()) {
                    Some(thread) => self.hand_off(thread, pieces, source),
                    None => Outcome::Returned(UndeliverableReason::NoSuchProc),
                },
            };
        }
        let changes = self.table.changes();
        let from_conn = matches!(source, Source::Conn { .. });
        let cache = if from_conn {
            &mut self.route_cache
        } else {
            &mut self.drain_route_cache
        };
        let route = cache.lookup(&self.table, &mut self.reader, frame.dest_name_bytes());
        match route {
            // Control requests are for the service proc only (a proc's for
            // no name at all is answered `NoSuchProc`).
            Some(Route::Proc(_)) if control => Outcome::Returned(UndeliverableReason::Malformed),
            None if control && from_conn => Outcome::Returned(UndeliverableReason::Malformed),
            None => Outcome::Returned(self.unrouted(source)),
            Some(Route::Service) => self.deliver_to_service(frame, pieces.payload(), source),
            Some(Route::Proc(q)) => self.deliver_to_proc(q, pieces, source, changes, now),
        }
    }

    /// Why a frame whose name routes nowhere is returned: its proc exited
    /// while the frame waited for room in its ring, or there is no such proc.
    fn unrouted(&mut self, source: Source) -> UndeliverableReason {
        match source {
            Source::Conn {
                blocked_on: Some(p),
                ..
            } if self
                .proc_mut(p)
                .is_none_or(|s| s.state == ProcState::Detached) =>
            {
                UndeliverableReason::ProcExited
            }
            _ => UndeliverableReason::NoSuchProc,
        }
    }

    fn deliver_to_service(
        &mut self,
        frame: &FrameView<'_>,
        payload: &[u8],
        source: Source,
    ) -> Outcome {
        let (party, privileged) = match source {
            Source::Conn { key, party, .. } => {
                (party, self.conn_mut(key).is_some_and(|c| c.privileged))
            }
            // Procs have no control-plane privilege.
            Source::Proc { .. } => (Party::Proc, false),
        };
        match (
            rules::service_use(party, &envelope_of(frame), privileged),
            source,
        ) {
            (ServiceUse::ControlPlane, Source::Conn { key, .. }) => {
                let job = service::ControlJob::new(key, frame);
                self.events.push_back(Event::Control(job));
                Outcome::Delivered
            }
            (ServiceUse::AgentAnswer, Source::Proc { key, .. }) => {
                agent_answer(
                    &mut self.agent_pending,
                    &mut self.events,
                    key,
                    frame.message_id(),
                    payload,
                );
                Outcome::Delivered
            }
            (ServiceUse::AgentAnswer | ServiceUse::Consume, _) => Outcome::Consumed,
            (ServiceUse::Unauthorized | ServiceUse::ControlPlane, _) => {
                self.answer_from_service(frame, source);
                Outcome::Answered
            }
        }
    }

    /// The service proc answers a control request it will not carry out
    /// (unprivileged, or no control plane running) to where it came from.
    fn answer_from_service(&mut self, frame: &FrameView<'_>, source: Source) {
        let response = service::refuse(frame, &self.limits, &self.service_name, false);
        match source {
            Source::Conn { key, .. } => {
                if let Some(conn) = self.conn_mut(key) {
                    conn.outbox.extend_from_slice(&response);
                    conn.count_queued(response.len());
                }
            }
            Source::Proc { key, .. } => {
                let Dataplane { procs, dirty, .. } = self;
                if let Some(slot) = slot_of(procs, key) {
                    let wrote = slot.inbound.as_mut().is_some_and(|ring| {
                        matches!(write_record(ring, &response), RingWrite::Written)
                    });
                    if wrote {
                        mark_dirty(dirty, key.index, slot);
                    } else {
                        slot.stats.notices_dropped += 1;
                    }
                }
            }
        }
    }

    /// Who `frame` comes from, as the answers a client awaits are keyed
    /// (see [`Dataplane::peer_of`]): a proc by its name, another host by its
    /// address, a client by its hello name (in the client namespace).
    fn answer_peer(&mut self, frame: &FrameView<'_>, source: Source) -> Peer {
        match source {
            Source::Proc { key, .. } => match slot_of(&mut self.procs, key) {
                Some(slot) => slot.peer,
                None => Peer::named(frame.sender().name().as_bytes()),
            },
            Source::Conn {
                party: Party::Link, ..
            } => Peer::remote(frame.sender().addr().as_bytes()),
            Source::Conn { key, .. } => match self.conn_mut(key) {
                Some(conn) => Peer::client(conn.name.as_str().as_bytes()),
                None => Peer::client(frame.sender().name().as_bytes()),
            },
        }
    }

    pub(super) fn deliver_to_client(
        &mut self,
        c: ConnKey,
        pieces: Pieces<'_, '_>,
        source: Source,
        now: Instant,
    ) -> Outcome {
        let cap = self.cfg.client_outbox_bytes;
        let overload_wait = self.cfg.overload_wait;
        let len = pieces.len();
        // Within the host-wide budget for frames queued for clients too.
        let host_room = self.reply_bytes + len <= self.cfg.reply_memory;
        let frame = pieces.head();
        let from = self
            .conn_mut(c)
            .is_some_and(|conn| conn.answers.awaiting() > 0)
            .then(|| self.answer_peer(frame, source));
        let Some(conn) = self.conn_mut(c) else {
            return Outcome::Returned(UndeliverableReason::NoSuchProc);
        };
        if conn.outbox.len() + len <= cap && host_room {
            if let Source::Proc { .. } = source {
                conn.full_since = None;
            }
            pieces.append_to(&mut conn.outbox);
            conn.count_queued(len);
            conn.reply_bytes += len;
            // One of the answers it awaits if it comes from where one of
            // its frames went, with that frame's id (anything else, such as
            // another party's request, leaves them awaited).
            if let Some(from) = from {
                conn.answers.answer(frame.message_id(), from);
            }
            self.reply_bytes += len;
            self.reply_bytes_high_water = self.reply_bytes_high_water.max(self.reply_bytes);
            return Outcome::Delivered;
        }
        let Source::Proc { key, exiting } = source else {
            return Outcome::Returned(UndeliverableReason::Overloaded);
        };
        if !host_room {
            // Any client's writer taking its queue makes room: wake the
            // drains then (see `take_outbox`).
            self.drains_wait_for_reply_memory = true;
        }
        let Some(conn) = self.conn_mut(c) else {
            return Outcome::Returned(UndeliverableReason::NoSuchProc);
        };
        // A full reply queue slows the proc like a full ring: the frame
        // stays in its outbound ring until the client's writer makes room,
        // for at most the overload wait.
        let since = *conn.full_since.get_or_insert(now);
        if exiting || now.duration_since(since) >= overload_wait {
            return Outcome::Returned(UndeliverableReason::Overloaded);
        }
        conn.drains_waiting = true;
        self.block_drain(key, key, since);
        Outcome::Full(key, since + overload_wait)
    }

    fn deliver_to_proc(
        &mut self,
        q: ProcKey,
        pieces: Pieces<'_, '_>,
        source: Source,
        changes: u64,
        now: Instant,
    ) -> Outcome {
        let overload_wait = self.cfg.overload_wait;
        let len = pieces.len();
        let kind = pieces.head().kind();
        let anonymous = matches!(pieces.head().sender(), Sender::Anonymous);
        let (to_itself, exiting) = match source {
            Source::Proc { key, exiting } => (key == q, exiting),
            Source::Conn { .. } => (false, false),
        };
        let Dataplane { procs, dirty, .. } = self;
        let Some(slot) = slot_of(procs, q) else {
            return Outcome::Returned(UndeliverableReason::ProcExited);
        };
        // A proc's frame to itself goes in whatever its state (it is running).
        let state = if to_itself {
            ProcState::Ready
        } else {
            slot.state
        };
        let reason = match (state, slot.inbound.as_mut()) {
            (ProcState::Starting, _) => UndeliverableReason::NotReady,
            // Counted against the exited proc only for a connection's frame.
            (ProcState::Detached, _) | (_, None) if matches!(source, Source::Proc { .. }) => {
                return Outcome::Returned(UndeliverableReason::ProcExited);
            }
            (ProcState::Detached, _) | (_, None) => UndeliverableReason::ProcExited,
            (ProcState::Ready, Some(ring)) => match pieces.write_into(ring) {
                RingWrite::Written => {
                    count_written(dirty, q.index, slot, len as u64);
                    self.remember_route(source, q, kind, anonymous, changes);
                    return Outcome::Delivered;
                }
                RingWrite::Full if exiting => {
                    return Outcome::Returned(UndeliverableReason::Overloaded);
                }
                RingWrite::Full => {
                    // The ring's own "full since" mark: once it has refused
                    // frames longer than the wait, frames for it come back
                    // at once until it has room.
                    let since = *slot.full_since.get_or_insert(now);
                    if now.duration_since(since) < overload_wait {
                        return self.wait_for_room(q, source, len, since);
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

    /// Repeats of the header just written into `q`'s ring may take the same
    /// way (the fast lanes) while no table change has started since
    /// `changes` was read (an odd counter: one was in progress).
    fn remember_route(
        &mut self,
        source: Source,
        q: ProcKey,
        kind: FrameKind,
        anonymous: bool,
        changes: u64,
    ) {
        if changes % 2 != 0 {
            return;
        }
        match source {
            // Only data frames take a connection's fast lane (a link's
            // only while its peer's ledger is quiet: `deliver_repeat`).
            Source::Conn { key, .. } if kind == FrameKind::Data => {
                let Some(peer) = self.proc_mut(q).map(|slot| slot.peer) else {
                    return;
                };
                if let Some(conn) = self.conn_mut(key) {
                    conn.repeat_route = Some((q, changes));
                    conn.repeat_peer = (!anonymous).then_some(peer);
                }
            }
            Source::Proc { key, .. } if key != q => {
                if let Some(slot) = self.proc_mut(key) {
                    slot.repeat_route = Some((q, changes));
                }
            }
            _ => {}
        }
    }

    /// `q`'s ring is full (since `since`) for a frame of `len` bytes: the
    /// source waits for room, on the ring's doorbell, until the overload
    /// wait ends. A connection's frame is held by its reader (woken at once
    /// if room appeared meanwhile); a proc's drain blocks, or retries at
    /// once if room appeared meanwhile.
    fn wait_for_room(&mut self, q: ProcKey, source: Source, len: usize, since: Instant) -> Outcome {
        let deadline = since + self.cfg.overload_wait;
        let Some(slot) = self.proc_mut(q) else {
            return Outcome::Returned(UndeliverableReason::ProcExited);
        };
        match source {
            Source::Conn { key, .. } => {
                if !slot.conn_waiters.contains(&key) {
                    slot.conn_waiters.push(key);
                }
                let armed = slot
                    .inbound
                    .as_mut()
                    .is_some_and(|r| r.arm_doorbell(len).unwrap_or(false));
                if !armed {
                    // Room appeared (or the ring closed) meanwhile: retry now.
                    self.events.push_back(Event::WakeReader(key));
                }
            }
            Source::Proc { key, .. } => {
                let armed = slot
                    .inbound
                    .as_mut()
                    .is_some_and(|r| r.arm_doorbell(len).unwrap_or(false));
                if !armed {
                    return Outcome::Retry;
                }
                if key != q && !slot.proc_waiters.contains(&key) {
                    slot.proc_waiters.push(key);
                }
                self.block_drain(key, q, since);
            }
        }
        Outcome::Full(q, deadline)
    }

    /// `src`'s drain is stuck on `on` (a proc, or itself for a client's
    /// reply queue) since `since`.
    pub(super) fn block_drain(&mut self, src: ProcKey, on: ProcKey, since: Instant) {
        let Dataplane {
            procs,
            blocked_drains,
            ..
        } = self;
        if let Some(slot) = slot_of(procs, src) {
            if slot.drain_blocked.is_none() {
                *blocked_drains += 1;
            }
            slot.drain_blocked = Some((on, since));
        }
    }
}
