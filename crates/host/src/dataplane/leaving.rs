//! A proc leaving the data plane: detached (its inbound ring closed),
//! failed (its ring corrupt), removed (every frame still in its inbound
//! ring answered `ProcExited`).

use std::time::Instant;

use hostmux_ring::{RingError, SharedRing};
use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{HeaderMemo, UndeliverableReason, FRAME_ALIGN};

use super::write::{copy_head, slot_of};
use super::{agent, Dataplane, Drain, Event, ProcKey, ProcState, Route, HISTORY};

impl Dataplane {
    /// Closes the proc's inbound ring (it sees end of stream once it has
    /// read what is there). Its route must already be unbound.
    pub(crate) fn detach_proc(&mut self, key: ProcKey) {
        let Dataplane { procs, events, .. } = self;
        if let Some(slot) = slot_of(procs, key) {
            slot.state = ProcState::Detached;
            // A queued agent `Stop` closes the ring once it is written.
            let keep_open = slot.agent_stop == agent::AgentStop::Queued;
            if let Some(mut inbound) = slot.inbound.take_if(|_| !keep_open) {
                let _ = inbound.publish();
            }
            slot.dirty = false;
            // Woken readers retry and find the proc detached.
            events.extend(slot.conn_waiters.drain(..).map(Event::WakeReader));
        }
    }

    /// The proc broke the ring protocol: unbind it, close its inbound ring,
    /// stop draining it, and report it (see [`Dataplane::take_failed`]) so
    /// the control side kills it; its removal then returns what it left.
    pub(crate) fn fail_proc(&mut self, key: ProcKey) {
        self.abandon_agent_stop(key);
        if !self.unbind_and_detach(key) {
            return;
        }
        self.drop_agent_waiters(key);
        if !self.failed.contains(&key) {
            self.failed.push(key);
        }
    }

    /// Removes `key`'s route if it still points at this incarnation, and
    /// detaches it (see [`Dataplane::detach_proc`]). False if there is no
    /// such proc.
    fn unbind_and_detach(&mut self, key: ProcKey) -> bool {
        let Some(slot) = self.proc_mut(key) else {
            return false;
        };
        let name = slot.name.clone();
        self.table.remove_if(name.as_bytes(), Route::Proc(key));
        self.detach_proc(key);
        true
    }

    /// Procs failed since the last call.
    pub(crate) fn take_failed(&mut self, out: &mut Vec<ProcKey>) {
        out.append(&mut self.failed);
    }

    /// The proc is gone: deliver what it sent, return what it left unread
    /// (`ProcExited`), release its slot. Unbinds its route if still bound.
    pub(crate) fn remove_proc(&mut self, key: ProcKey, now: Instant) {
        self.abandon_agent_stop(key);
        if !self.unbind_and_detach(key) {
            return;
        }
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
            // the consumer validates every record against it. The proc may
            // still write this memory: headers are validated from a copy.
            let mut scratch = AlignedVec::<FRAME_ALIGN>::new();
            let mut memo = HeaderMemo::new();
            while let Ok(Some(record)) = consumer.peek() {
                stats.left_in_ring += 1;
                if let Ok((frame, _)) = copy_head(record, &mut scratch, &mut memo, &self.limits) {
                    let fields = frame.fields();
                    stats.returned_for.add(UndeliverableReason::ProcExited);
                    self.notify_sender(&fields, UndeliverableReason::ProcExited);
                }
                if consumer.release().is_err() {
                    break;
                }
            }
        }
        self.drop_agent_waiters(key);
        if self.gone_procs.len() == HISTORY {
            self.gone_procs.pop_front();
        }
        self.gone_procs.push_back(stats);
        self.flush();
    }
}
