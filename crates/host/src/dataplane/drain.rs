//! Draining procs' outbound rings: every frame a proc sends is routed here.

use std::time::Instant;

use hostmux_wire::{FrameKind, UndeliverableReason};

use super::agent::agent_answer;
use super::conn::envelope_of;
use super::rules::{self, Origin, Refusal, ServiceUse};
use super::write::{
    copy_head, count_written, extend_parts, mark_src_dirty, other_slot, write_notice, write_parts,
    write_record,
};
use super::{
    remote, service, Dataplane, Drain, Outcome, ProcKey, ProcSlot, ProcState, RingWrite, Route,
};

impl Dataplane {
    /// Drains up to the budget from one proc's outbound ring and routes
    /// every frame. Re-arms the ring on the doorbell when it is empty.
    pub(crate) fn drain_outbound(&mut self, key: ProcKey, now: Instant) -> Drain {
        let drain = self.drain_outbound_inner(key, now, false);
        self.flush();
        drain
    }

    pub(super) fn drain_outbound_inner(
        &mut self,
        key: ProcKey,
        now: Instant,
        exiting: bool,
    ) -> Drain {
        let mut left = self.cfg.drain_budget;
        while left > 0 {
            left -= self.drain_repeats(key, left);
            if left == 0 {
                break;
            }
            if let Some(drain) = self.route_from_proc(key, now, exiting) {
                return drain;
            }
            left -= 1;
        }
        Drain::More
    }

    /// The fast lane of the drain: records at the front of `key`'s outbound
    /// ring whose header repeats the previous record's (same destination,
    /// sender, kind and flags: the proc's header memo says so) go to the
    /// proc the previous record went to, as long as no routing table change
    /// has started since that route was looked up. Each record is copied
    /// whole into the destination's ring first and checked *there*: that
    /// copy is out of the sending proc's reach, so it cannot change a record
    /// between the check and the copy (the destination proc could, but only
    /// to its own harm, and the host reads nothing back). A record that
    /// fails the check is abandoned in the destination ring, unpublished,
    /// and left for [`route_from_proc`](Self::route_from_proc), as is every
    /// record this lane cannot write (full ring, closed ring, oversized).
    /// Delivers at most `budget` records; returns how many it delivered.
    /// Allocation-free.
    #[inline]
    fn drain_repeats(&mut self, key: ProcKey, budget: usize) -> usize {
        let changes = self.table.changes();
        let limits = self.limits;
        let pi = key.index as usize;
        let Dataplane { procs, dirty, .. } = self;
        let Some(Some(src)) = procs.get(pi) else {
            return 0;
        };
        let q = match src.repeat_route {
            Some((q, seen))
                if seen == changes
                    && src.generation == key.generation
                    && src.drain_blocked.is_none()
                    && q.index as usize != pi =>
            {
                q
            }
            _ => return 0,
        };
        let (left, rest) = procs.split_at_mut(pi);
        let (src, right) = rest.split_first_mut().expect("slot exists");
        let src = src.as_mut().expect("slot exists");
        let Some(dst) = other_slot(left, right, pi, q.index as usize)
            .filter(|d| d.generation == q.generation && d.state == ProcState::Ready)
        else {
            return 0;
        };
        let ProcSlot {
            outbound,
            stats: src_stats,
            header_memo,
            outbound_armed,
            ..
        } = src;
        let mut delivered = 0;
        while delivered < budget {
            let Some(ring) = dst.inbound.as_mut().filter(|r| !r.is_consumer_closed()) else {
                break;
            };
            let Ok(Some(record)) = outbound.peek() else {
                break;
            };
            // The whole record is copied; the copy must be exactly one
            // frame that repeats the memo (a record with bytes after its
            // frame takes the full path, which writes only the frame).
            let len = record.len();
            let Ok(mut copy) = ring.try_reserve(len) else {
                break;
            };
            copy.copy_from_slice(record);
            if header_memo.repeated_frame_len(&copy, &limits) != Some(len) {
                break;
            }
            copy.commit();
            let _ = outbound.release();
            src_stats.frames_out += 1;
            src_stats.bytes_out += len as u64;
            src_stats.outbound_delivered += 1;
            count_written(dirty, q.index, dst, len as u64);
            delivered += 1;
        }
        if delivered > 0 {
            *outbound_armed = false;
        }
        #[cfg(test)]
        {
            self.drain_fast_lane += delivered as u64;
        }
        delivered
    }

    /// The front of `key`'s outbound ring held no record: arm the ring on
    /// the doorbell (`Idle`), or go on draining if a record arrived
    /// meanwhile (`None`), or fail a proc that corrupted its ring.
    fn drain_found_nothing(&mut self, key: ProcKey, exiting: bool) -> Option<Drain> {
        let slot = self.proc_mut(key)?;
        slot.outbound_armed = false;
        match slot.outbound.peek() {
            Ok(Some(_)) => None,
            Ok(None) if exiting => Some(Drain::Idle),
            Ok(None) => match slot.outbound.arm_doorbell() {
                Ok(true) => {
                    slot.outbound_armed = true;
                    Some(Drain::Idle)
                }
                Ok(false) => None,
                Err(e) => {
                    tracing::warn!(proc = %slot.name, error = %e, "outbound ring corrupted; failing the proc");
                    slot.outbound_armed = true;
                    self.fail_proc(key);
                    Some(Drain::Idle)
                }
            },
            Err(e) => {
                tracing::warn!(proc = %slot.name, error = %e, "outbound ring corrupted; failing the proc");
                slot.outbound_armed = true;
                self.fail_proc(key);
                Some(Drain::Idle)
            }
        }
    }

    /// Routes the record at the front of `key`'s outbound ring, releases it
    /// unless it is blocked. `None`: go on draining.
    ///
    /// The record's prefix and header are copied into the host's scratch
    /// buffer and validated and routed from there ([`copy_head`]); only the
    /// payload is copied ring to ring. The proc can rewrite its ring at any
    /// time, so nothing read from it is trusted after it was checked.
    fn route_from_proc(&mut self, key: ProcKey, now: Instant, exiting: bool) -> Option<Drain> {
        let limits = self.limits;
        let overload_wait = self.cfg.overload_wait;
        let pi = key.index as usize;
        // A stale key (slot gone or reused) routes nothing.
        self.proc_mut(key)?;
        // Split the slot vector so the source slot's outbound record can be
        // borrowed while writing into another slot's inbound ring.
        let Dataplane {
            procs,
            conns,
            reader,
            table,
            drain_route_cache,
            service_name,
            dirty,
            blocked_drains,
            cfg,
            remotes,
            events,
            generation,
            own_addr,
            scratch,
            agent_pending,
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
            outbound_armed,
            header_memo,
            repeat_route,
            ..
        } = src;
        *outbound_armed = false;
        // One validated peek per record; an empty or corrupted ring is
        // handled off the hot path.
        let record = match outbound.peek() {
            Ok(Some(record)) => record,
            _ => return self.drain_found_nothing(key, exiting),
        };
        // Set again below if this record goes to another proc.
        *repeat_route = None;
        let (frame, prefix) = match copy_head(record, scratch, header_memo, &limits) {
            Ok(head) => head,
            Err(e) => {
                src_stats.frames_out += 1;
                src_stats.bytes_out += record.len() as u64;
                src_stats
                    .outbound_returned
                    .add(UndeliverableReason::Malformed);
                // Per-frame logging stays at trace: a proc writing garbage
                // must not flood the log. Its first one is worth a warning;
                // the counter tells how many followed.
                if src_stats
                    .outbound_returned
                    .get(UndeliverableReason::Malformed)
                    == 1
                {
                    tracing::warn!(proc = %src_name, error = %e, "malformed record in outbound ring (further ones are counted, logged at trace)");
                } else {
                    tracing::trace!(proc = %src_name, error = %e, "malformed record in outbound ring");
                }
                let _ = outbound.release();
                return None;
            }
        };
        let payload = &record[prefix.payload_range()];
        let frame_len = prefix.frame_len();
        let retry = drain_blocked.is_some();
        if !retry {
            src_stats.frames_out += 1;
            src_stats.bytes_out += frame_len as u64;
        }
        let envelope = envelope_of(&frame);
        let origin = Origin::Proc {
            name: src_name.as_str(),
        };
        let outcome = if let Err(reason) = rules::admit(origin, &envelope, cfg.max_hops) {
            Outcome::Returned(reason)
        } else if !(frame.dest_addr().is_empty() || frame.dest_addr() == &**own_addr) {
            remote::forward(
                conns, remotes, events, generation, own_addr, &limits, cfg, &frame, payload,
            )
        } else {
            let changes = table.changes();
            match drain_route_cache.lookup(table, reader, frame.dest_name_bytes()) {
                None => Outcome::Returned(UndeliverableReason::NoSuchProc),
                // Control requests are for the service proc only.
                Some(Route::Client(_) | Route::Proc(_))
                    if envelope.kind == FrameKind::ControlRequest =>
                {
                    Outcome::Returned(UndeliverableReason::Malformed)
                }
                Some(Route::Service) => {
                    match rules::service_use(origin.party(), &envelope, false) {
                        ServiceUse::AgentAnswer => {
                            agent_answer(agent_pending, events, key, frame.message_id(), payload);
                            Outcome::Delivered
                        }
                        ServiceUse::Consume => Outcome::Consumed,
                        // Procs have no control-plane privilege.
                        ServiceUse::Unauthorized | ServiceUse::ControlPlane => {
                            let response = service::refuse(&frame, &limits, service_name, false);
                            let wrote = match src_inbound.as_mut() {
                                Some(ring) => write_record(ring, response.as_slice()),
                                None => RingWrite::Closed,
                            };
                            if matches!(wrote, RingWrite::Written) {
                                mark_src_dirty(dirty, pi, src_dirty);
                            } else {
                                src_stats.notices_dropped += 1;
                            }
                            Outcome::Answered
                        }
                    }
                }
                Some(Route::Client(c)) => {
                    match conns.get_mut(c.index as usize).and_then(Option::as_mut) {
                        Some(conn) if conn.generation == c.generation => {
                            if conn.outbox.len() + frame_len > cfg.client_outbox_bytes {
                                // A full reply queue slows the proc like a full
                                // ring: the frame stays in its outbound ring
                                // until the client's writer makes room, for at
                                // most the overload wait.
                                let since = *conn.full_since.get_or_insert(now);
                                if exiting || now.duration_since(since) >= overload_wait {
                                    Outcome::Returned(UndeliverableReason::Overloaded)
                                } else {
                                    conn.drains_waiting = true;
                                    if drain_blocked.is_none() {
                                        *blocked_drains += 1;
                                    }
                                    *drain_blocked = Some((key, since));
                                    return Some(Drain::Blocked(since + overload_wait));
                                }
                            } else {
                                conn.full_since = None;
                                extend_parts(&mut conn.outbox, &prefix, &frame, payload);
                                conn.count_queued(frame_len, true);
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
                            match write_parts(ring, &prefix, &frame, payload) {
                                RingWrite::Written => {
                                    *full_since = None;
                                    stats.frames_in += 1;
                                    stats.bytes_in += frame_len as u64;
                                    if !*q_dirty {
                                        *q_dirty = true;
                                        dirty.push(q.index);
                                    }
                                    // Repeats of this header may take the same
                                    // way while no table change has started (an
                                    // odd counter: one is in progress).
                                    if changes % 2 == 0 && qi != pi {
                                        *repeat_route = Some((q, changes));
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
            Outcome::Delivered | Outcome::Answered => src_stats.outbound_delivered += 1,
            // Consumed by the service proc: nobody answers it.
            Outcome::Consumed => src_stats
                .outbound_dropped
                .add(UndeliverableReason::NoSuchProc),
            Outcome::Returned(reason) => match rules::refusal(envelope.kind, reason) {
                Refusal::Notice(reason) => {
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
                Refusal::Drop(reason) => src_stats.outbound_dropped.add(reason),
            },
            Outcome::Full(..) => unreachable!("proc-to-proc blocking handled above"),
        }
        let _ = outbound.release();
        None
    }
}
