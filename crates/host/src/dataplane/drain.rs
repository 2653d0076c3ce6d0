//! Draining procs' outbound rings: every frame a proc sends is routed here.

use std::time::Instant;

use hostmux_ring::Consumer;
use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{UndeliverableReason, WireError, FRAME_ALIGN};

use super::conn::envelope_of;
use super::notices::return_to_proc;
use super::rules::{self, Origin};
use super::write::{copy_head, count_written, other_slot, slot_of, Pieces, Source};
use super::{Dataplane, Drain, OutboundEnd, Outcome, ProcKey, ProcSlot, ProcState};

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
        // The drain holds the ring's end and the scratch buffer, so that a
        // record can borrow them while the executor writes elsewhere.
        let Some(mut outbound) = self.proc_mut(key).and_then(|s| s.outbound.take()) else {
            return Drain::More;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut drain = Drain::More;
        let mut left = self.cfg.drain_budget;
        while left > 0 {
            left -= self.drain_repeats(key, &mut outbound, left);
            if left == 0 {
                break;
            }
            if let Some(end) = self.route_from_proc(key, &mut outbound, &mut scratch, now, exiting)
            {
                drain = end;
                break;
            }
            left -= 1;
        }
        self.scratch = scratch;
        if let Some(slot) = self.proc_mut(key) {
            slot.outbound = Some(outbound);
        }
        drain
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
    fn drain_repeats(&mut self, key: ProcKey, outbound: &mut OutboundEnd, budget: usize) -> usize {
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
            stats: src_stats,
            outbound_armed,
            ..
        } = src;
        let OutboundEnd {
            ring: outbound,
            memo: header_memo,
        } = outbound;
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
    fn drain_found_nothing(
        &mut self,
        key: ProcKey,
        outbound: &mut Consumer,
        exiting: bool,
    ) -> Option<Drain> {
        let slot = self.proc_mut(key)?;
        slot.outbound_armed = false;
        match outbound.peek() {
            Ok(Some(_)) => None,
            Ok(None) if exiting => Some(Drain::Idle),
            Ok(None) => match outbound.arm_doorbell() {
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

    /// Routes the record at the front of `key`'s outbound ring (held by
    /// the drain: `outbound`), releases it unless it is blocked. `None`: go
    /// on draining.
    ///
    /// The record's prefix and header are copied into the host's scratch
    /// buffer and validated and routed from there ([`copy_head`]); only the
    /// payload is copied ring to ring. The proc can rewrite its ring at any
    /// time, so nothing read from it is trusted after it was checked.
    fn route_from_proc(
        &mut self,
        key: ProcKey,
        outbound: &mut OutboundEnd,
        scratch: &mut AlignedVec<FRAME_ALIGN>,
        now: Instant,
        exiting: bool,
    ) -> Option<Drain> {
        let limits = self.limits;
        let max_hops = self.cfg.max_hops;
        let OutboundEnd { ring, memo } = outbound;
        let slot = self.proc_mut(key)?;
        slot.outbound_armed = false;
        // One validated peek per record; an empty or corrupted ring is
        // handled off the hot path.
        let record = match ring.peek() {
            Ok(Some(record)) => record,
            _ => return self.drain_found_nothing(key, ring, exiting),
        };
        // Set again by the executor if this record goes to another proc.
        slot.repeat_route = None;
        let (frame, prefix) = match copy_head(record, scratch, memo, &limits) {
            Ok(head) => head,
            Err(e) => {
                slot.count_malformed_record(record.len(), &e);
                let _ = ring.release();
                return None;
            }
        };
        let payload = &record[prefix.payload_range()];
        if slot.drain_blocked.is_none() {
            slot.stats.frames_out += 1;
            slot.stats.bytes_out += prefix.frame_len() as u64;
        }
        let envelope = envelope_of(&frame);
        let origin = Origin::Proc {
            name: slot.name.as_str(),
        };
        let outcome = match rules::admit(origin, &envelope, max_hops) {
            Ok(()) => {
                let pieces = Pieces::Parts {
                    prefix: &prefix,
                    head: &frame,
                    payload,
                };
                self.deliver(pieces, Source::Proc { key, exiting }, now)
            }
            Err(reason) => Outcome::Returned(reason),
        };
        let Dataplane {
            procs,
            dirty,
            blocked_drains,
            service_name,
            ..
        } = self;
        let slot = slot_of(procs, key)?;
        match outcome {
            // The executor blocked the drain (or found room meanwhile):
            // the record stays.
            Outcome::Full(_, deadline) => return Some(Drain::Blocked(deadline)),
            Outcome::Retry => return None,
            _ => {}
        }
        if slot.drain_blocked.take().is_some() {
            *blocked_drains -= 1;
        }
        match outcome {
            Outcome::Delivered | Outcome::Answered => slot.stats.outbound_delivered += 1,
            // The owning thread counts it (see `handoff`).
            Outcome::HandedOff => {
                slot.stats.frames_out -= 1;
                slot.stats.bytes_out -= prefix.frame_len() as u64;
            }
            // Consumed by the service proc: nobody answers it.
            Outcome::Consumed => slot
                .stats
                .outbound_dropped
                .add(UndeliverableReason::NoSuchProc),
            Outcome::Returned(reason) => return_to_proc(
                slot,
                key.index,
                dirty,
                &frame.fields(),
                reason,
                service_name.as_str(),
                &limits,
            ),
            Outcome::Full(..) | Outcome::Retry => unreachable!("returned above"),
            Outcome::LinkFull(..) => unreachable!("a proc's drain blocks as `Full`"),
        }
        let _ = ring.release();
        None
    }
}

impl ProcSlot {
    /// Counts a record of `len` bytes in this proc's outbound ring that is
    /// not a valid frame. Per-frame logging stays at trace: a proc writing
    /// garbage must not flood the log. Its first one is worth a warning;
    /// the counter tells how many followed.
    fn count_malformed_record(&mut self, len: usize, error: &WireError) {
        self.stats.frames_out += 1;
        self.stats.bytes_out += len as u64;
        let malformed = &mut self.stats.outbound_returned;
        malformed.add(UndeliverableReason::Malformed);
        if malformed.get(UndeliverableReason::Malformed) == 1 {
            tracing::warn!(proc = %self.name, %error, "malformed record in outbound ring (further ones are counted, logged at trace)");
        } else {
            tracing::trace!(proc = %self.name, %error, "malformed record in outbound ring");
        }
    }
}
