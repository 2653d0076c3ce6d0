//! Zero-copy receive: a large frame from a client, or from another host
//! over a link, read from its socket straight into the destination proc's
//! inbound ring.
//!
//! The I/O thread's read loop (`crate::io::zero_copy`) calls
//! [`Dataplane::begin_zero_copy`] once the prefix and routing header of a
//! frame of at least [`HostConfig::zero_copy_threshold`] bytes are in the
//! connection's decoder. If the frame would go to a local, ready proc whose
//! ring can take it whole now, the whole frame is reserved there as a
//! [`HeldRecord`] (the ring takes no other record until it is committed or
//! dropped: publication is in order), the bytes the decoder holds are
//! copied in, and the I/O thread reads the rest of the payload into it.
//! Then [`Dataplane::finish_zero_copy`] runs the one routing decision
//! ([`Dataplane::handle_conn_pieces`], the same as for a copied frame, so
//! every counter, the answers ledger and every notice are the same), whose
//! ring write commits the held record instead of copying. If the route
//! changed meanwhile (the proc exited or was replaced), the record comes
//! back unpublished for the caller to move out of the ring and finish the
//! copied way ([`Dataplane::zero_copy_moved_back`]); so does a sender that
//! stalls (`crate::io::zero_copy`). Whenever a hold ends, what waited for
//! room in that ring meanwhile is woken.
//!
//! [`HostConfig::zero_copy_threshold`]: crate::HostConfig::zero_copy_threshold

use std::cell::Cell;
use std::time::Instant;

use hostmux_ring::HeldRecord;
use hostmux_wire::{Flags, FrameKind, FramePrefix, FrameView};

use super::conn::envelope_of;
use super::rules::{self, Origin};
use super::write::{slot_of, slot_of_conn, Pieces};
use super::{ConnKey, Dataplane, Event, ProcKey, ProcState, Route};

impl Dataplane {
    /// The header of a frame of `frame_len` bytes from connection `key` (a
    /// client or a link) is in
    /// (`head`, validated; `front`, the frame's bytes received so far):
    /// reserves the whole frame in its proc's ring and copies `front` in,
    /// if the frame is a data frame for a local proc that is
    /// ready, admits it, has no connection waiting for room (nor was one
    /// woken by the last hold's end and has not written yet), and has room
    /// now. `None` (nothing done, nothing counted) in every other case:
    /// the frame takes the copied path.
    pub(crate) fn begin_zero_copy(
        &mut self,
        key: ConnKey,
        head: &FrameView<'_>,
        front: &[u8],
        frame_len: usize,
    ) -> Option<(HeldRecord, ProcKey)> {
        if head.kind() != FrameKind::Data
            || head.flags().contains(Flags::TO_CLIENT)
            || front.len() > frame_len
            || !self.is_local_addr(head.dest_addr())
        {
            return None;
        }
        let max_hops = self.cfg.max_hops;
        let Dataplane {
            conns,
            procs,
            route_cache,
            table,
            reader,
            cfg,
            ..
        } = self;
        let conn = slot_of_conn(conns, key)?;
        // (A link's status frames are control responses: not data, above.)
        if conn.closing {
            return None;
        }
        // A link's frame (a request from the far host's client or proc, or
        // a reply to one of this host's procs) is admitted as a link's;
        // the rest of what a link's frame needs (the ledger's answer or
        // late check, the far host's acknowledgement) happens in the one
        // routing decision that commits it.
        let envelope = envelope_of(head);
        let origin = if conn.is_link(&envelope, &cfg.peers) {
            Origin::Link
        } else {
            Origin::Client {
                name: conn.name.as_str(),
            }
        };
        rules::admit(origin, &envelope, max_hops).ok()?;
        let Some(Route::Proc(q)) = route_cache.lookup(table, reader, head.dest_name_bytes()) else {
            return None;
        };
        let slot = slot_of(procs, q)?;
        if slot.state != ProcState::Ready || !slot.conn_waiters.is_empty() || slot.zero_copy_defer {
            return None;
        }
        let ring = slot.inbound.as_mut()?;
        if ring.is_consumer_closed() || frame_len > ring.max_payload() {
            return None;
        }
        let mut held = ring.hold(frame_len).ok()?;
        held.bytes_mut()[..front.len()].copy_from_slice(front);
        slot.stats.zero_copy_holds += 1;
        Some((held, q))
    }

    /// The frame held in `q`'s ring (`held`, whole; `prefix` and `head`,
    /// its validated prefix and header copy) arrived: delivers it through
    /// the one routing decision, counted as a fresh frame from `key`, if
    /// it still routes to `q`'s ring. Otherwise gives the record back,
    /// unpublished, nothing counted: the caller moves it out, drops it and
    /// calls [`zero_copy_moved_back`](Self::zero_copy_moved_back).
    pub(crate) fn finish_zero_copy(
        &mut self,
        key: ConnKey,
        q: ProcKey,
        (prefix, head): (&FramePrefix, &FrameView<'_>),
        held: HeldRecord,
        now: Instant,
    ) -> Result<(), HeldRecord> {
        let routes_there = {
            let Dataplane {
                procs,
                route_cache,
                table,
                reader,
                ..
            } = self;
            route_cache.lookup(table, reader, head.dest_name_bytes()) == Some(Route::Proc(q))
                && slot_of(procs, q).is_some_and(|slot| {
                    slot.state == ProcState::Ready
                        && slot.inbound.as_ref().is_some_and(|ring| ring.is_held())
                })
        };
        if !routes_there {
            return Err(held);
        }
        let len = held.len() as u64;
        let held = Cell::new(Some(held));
        let pieces = Pieces::Held {
            prefix,
            head,
            held: &held,
        };
        // A held frame is never `Blocked`: its ring write is the commit.
        let _ = self.handle_conn_pieces(key, pieces, true, None, now);
        let committed = held.take().is_none();
        if let Some(slot) = slot_of(&mut self.procs, q).filter(|_| committed) {
            slot.stats.zero_copy_frames += 1;
            slot.stats.zero_copy_bytes += len;
        }
        self.hold_released(q);
        Ok(())
    }

    /// The frame held in `q`'s ring was moved out of it and its record
    /// dropped (abandoned, unpublished): counted, and the ring is free.
    pub(crate) fn zero_copy_moved_back(&mut self, q: ProcKey) {
        if let Some(slot) = slot_of(&mut self.procs, q) {
            slot.stats.zero_copy_moved_back += 1;
        }
        self.hold_released(q);
    }

    /// `q`'s ring holds no record any more: the connections and drains
    /// that found it busy retry now (they waited as for a full ring).
    fn hold_released(&mut self, q: ProcKey) {
        let Dataplane {
            procs,
            events,
            conn_room,
            ..
        } = self;
        let Some(slot) = slot_of(procs, q) else {
            return;
        };
        let waited = !slot.conn_waiters.is_empty() || !slot.proc_waiters.is_empty();
        slot.zero_copy_defer = waited;
        events.extend(slot.conn_waiters.drain(..).map(Event::WakeReader));
        if !slot.proc_waiters.is_empty() {
            *conn_room = true;
            events.push_back(Event::ReplyQueueRoom);
        }
    }
}
