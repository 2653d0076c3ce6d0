//! Frames for a client another I/O thread owns.
//!
//! With several I/O threads a client lives on one thread, but a proc may
//! send to it on any lane (its lane for a destination is chosen by the pair
//! of names), and a link may relay an answer for it to any thread. A frame
//! marked `TO_CLIENT` whose client this thread does not hold, but another
//! does (per the host-wide [`ClientNames`](super::ClientNames), consulted
//! only on this miss), is copied out ([`HandedFrame`]: one allocation per
//! such frame, on this rare path only) and handed to the owning thread
//! through [`Event::HandOff`] (the shell puts it in that thread's command
//! queue and rings its doorbell). The owning thread carries it out as it
//! would its own ([`Dataplane::take_handed_frame`]); nothing is silently
//! dropped: if the client has gone meanwhile, the sender is answered
//! `Undeliverable` with the usual counters.
//!
//! Counting: a proc's frame is counted (`frames_out`, then delivered or
//! returned) by the thread that carries it out, on that thread's entry of
//! the proc, never by the thread that handed it on; so each thread's
//! `frames_out = delivered + returned + dropped` holds, and so do the host
//! totals. A frame from a connection (a link relaying an answer, or a
//! client's frame for another client) counts as delivered by its
//! connection once handed on, and a notice that comes back for it is an
//! answer to a delivered frame (as when a proc exits with frames unread).

use std::time::Instant;

use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{decode_frame, UndeliverableReason, FRAME_ALIGN};

use super::notices::return_to_proc;
use super::rules::Party;
use super::write::{slot_of, Pieces, Source};
use super::{ConnKey, Dataplane, Event, Outcome, ProcKey};

/// A frame on its way to the thread that owns its client.
#[derive(Debug)]
pub(crate) struct HandedFrame {
    /// The whole frame, as validated by the thread that handed it on.
    bytes: Vec<u8>,
    /// Who sent it.
    from: HandedFrom,
}

/// Where a handed frame came from.
#[derive(Debug, Clone, Copy)]
enum HandedFrom {
    /// A proc's outbound ring (the proc's key is the same on every thread).
    Proc(ProcKey),
    /// A connection of the kind given (a client or a link).
    Conn(Party),
}

impl Dataplane {
    /// The thread that holds client `name`, if another thread does (this
    /// thread does not: called on a miss of its own map). Takes the lock of
    /// the host-wide names; `None` with one thread.
    pub(super) fn client_elsewhere(&self, name: &[u8]) -> Option<usize> {
        self.clients.holder_elsewhere(name)
    }

    /// Hands a frame for a client on `thread` to that thread.
    pub(super) fn hand_off(
        &mut self,
        thread: usize,
        pieces: Pieces<'_, '_>,
        source: Source,
    ) -> Outcome {
        let mut bytes = Vec::with_capacity(pieces.len());
        pieces.append_to(&mut bytes);
        let from = match source {
            Source::Proc { key, .. } => HandedFrom::Proc(key),
            Source::Conn { party, .. } => HandedFrom::Conn(party),
        };
        self.events.push_back(Event::HandOff {
            thread,
            frame: HandedFrame { bytes, from },
        });
        Outcome::HandedOff
    }

    /// Carries out a frame another thread handed to this one: queued for
    /// its client, or answered to its sender if the client is gone (or
    /// its queue full: handed frames never wait).
    pub(crate) fn take_handed_frame(&mut self, handed: HandedFrame, now: Instant) {
        let mut bytes = AlignedVec::<FRAME_ALIGN>::with_capacity(handed.bytes.len());
        bytes.extend_from_slice(&handed.bytes);
        let limits = self.limits;
        let Ok(frame) = decode_frame(&bytes, &limits) else {
            // Validated by the thread that handed it on: cannot happen.
            tracing::error!("a frame handed over by another I/O thread does not decode");
            return;
        };
        let client = self.clients.lookup(frame.dest_name_bytes());
        let source = match handed.from {
            HandedFrom::Proc(key) => {
                let Some(slot) = slot_of(&mut self.procs, key) else {
                    // The proc is gone from this thread: nobody to count
                    // it for or to answer.
                    return;
                };
                slot.stats.frames_out += 1;
                slot.stats.bytes_out += bytes.len() as u64;
                // Never waits: a full queue returns it `Overloaded`.
                Source::Proc { key, exiting: true }
            }
            HandedFrom::Conn(party) => Source::Conn {
                // No connection of this thread sent it.
                key: ConnKey {
                    index: u32::MAX,
                    generation: 0,
                },
                party,
                blocked_on: None,
            },
        };
        let outcome = match client {
            Some(c) => self.deliver_to_client(c, Pieces::Whole(&frame), source, now),
            None => Outcome::Returned(UndeliverableReason::NoSuchProc),
        };
        let reason = match outcome {
            Outcome::Returned(reason) => Some(reason),
            _ => None,
        };
        match (handed.from, reason) {
            (HandedFrom::Proc(key), reason) => {
                let Dataplane {
                    procs,
                    dirty,
                    service_name,
                    ..
                } = self;
                let Some(slot) = slot_of(procs, key) else {
                    return;
                };
                let Some(reason) = reason else {
                    slot.stats.outbound_delivered += 1;
                    self.flush();
                    return;
                };
                return_to_proc(
                    slot,
                    key.index,
                    dirty,
                    &frame.fields(),
                    reason,
                    service_name.as_str(),
                    &limits,
                );
            }
            (HandedFrom::Conn(_), Some(reason)) => self.notify_sender(&frame.fields(), reason),
            (HandedFrom::Conn(_), None) => {}
        }
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hostmux_ring::{Consumer, Producer, SharedRing};
    use hostmux_wire::{
        encode_frame, encoded_len, Flags, FrameHeader, FrameKind, ProcName, Sender, Undeliverable,
    };

    use super::super::rig::{Rig, RigProc};
    use super::super::{ClientNames, Drain};
    use super::*;
    use crate::config::HostConfig;
    use crate::identity::Identity;

    /// Thread 0 (a rig with proc `p`) and thread 1 (a second data plane on
    /// the same table, with `p`'s lane 1 under the same key), sharing the
    /// client names.
    fn two_planes() -> (Rig, RigProc, Dataplane, (Consumer, Producer)) {
        let mut rig = Rig::new(HostConfig::default());
        let names = Arc::new(ClientNames::default());
        rig.dp.share_client_names(names.clone(), 0);
        let p = rig.add_proc("p", 1 << 16, 1 << 16);
        let mut other = Dataplane::new(
            Arc::new(HostConfig::default()),
            ProcName::new("service").unwrap(),
            rig.table.clone(),
            Identity::single("tcp:127.0.0.1:9"),
        );
        other.share_client_names(names, 1);
        let inbound = SharedRing::create(1 << 16).unwrap();
        let memfd = inbound.memfd().try_clone_to_owned().unwrap();
        let (host_in, proc_in) = inbound.split().unwrap();
        let (proc_out, host_out) = SharedRing::create(1 << 16).unwrap().split().unwrap();
        let name = ProcName::new("p").unwrap();
        assert!(other.insert_proc(p.key, name, host_in, memfd, host_out));
        other.mark_ready(p.key, false);
        (rig, p, other, (proc_in, proc_out))
    }

    /// `p` sends a data frame to client `to` on its lane 0.
    fn send_on_lane_0(p: &mut RigProc, to: &str, message_id: u64) {
        let header = FrameHeader {
            flags: Flags::TO_CLIENT,
            sender: Sender::Proc {
                addr: "",
                name: "p",
            },
            ..FrameHeader::data(to, message_id)
        };
        let mut slot = p.outbound.try_reserve(encoded_len(&header, 3)).unwrap();
        encode_frame(&mut slot, &header, b"abc", &Default::default()).unwrap();
        slot.commit();
        p.outbound.publish().unwrap();
    }

    fn handed(dp: &mut Dataplane) -> (usize, HandedFrame) {
        std::iter::from_fn(|| dp.poll_event())
            .find_map(|event| match event {
                Event::HandOff { thread, frame } => Some((thread, frame)),
                _ => None,
            })
            .expect("a hand-off")
    }

    #[test]
    fn a_frame_for_the_other_threads_client_is_delivered_there_or_answered_once() {
        let (mut rig, mut p, mut other, (mut lane1_in, _lane1_out)) = two_planes();
        let now = Instant::now();
        let client = other.add_conn(ProcName::new("c").unwrap()).unwrap();

        // Delivered: thread 0 hands it on, thread 1 queues it for `c` and
        // counts it on its entry of `p`; thread 0 counts nothing for it.
        send_on_lane_0(&mut p, "c", 1);
        assert_eq!(rig.dp.drain_outbound(p.key, now), Drain::Idle);
        let (thread, frame) = handed(&mut rig.dp);
        assert_eq!(thread, 1);
        other.take_handed_frame(frame, now);
        let mut queued = Vec::new();
        assert_eq!(
            other.take_outbox(client, &mut queued, Instant::now()),
            super::super::Outbox::Bytes
        );
        assert!(!queued.is_empty());

        // The client leaves while the next one is on its way: answered to
        // `p` on lane 1 (`NoSuchProc`), counted there.
        send_on_lane_0(&mut p, "c", 2);
        assert_eq!(rig.dp.drain_outbound(p.key, now), Drain::Idle);
        let (_, frame) = handed(&mut rig.dp);
        other.remove_conn(client);
        other.take_handed_frame(frame, now);
        let record = lane1_in.peek().unwrap().expect("a notice on lane 1");
        let mut aligned = AlignedVec::<FRAME_ALIGN>::new();
        aligned.extend_from_slice(record);
        let notice = decode_frame(&aligned, &Default::default()).unwrap();
        assert_eq!(
            (notice.kind(), notice.message_id()),
            (FrameKind::Undeliverable, 2)
        );
        let mut payload = AlignedVec::<FRAME_ALIGN>::new();
        payload.extend_from_slice(notice.payload());
        let reason = Undeliverable::decode(&payload).unwrap().reason;
        assert_eq!(reason, UndeliverableReason::NoSuchProc);
        lane1_in.release().unwrap();
        assert!(lane1_in.peek().unwrap().is_none(), "answered once");

        let lane0 = rig.dp.stats().procs.remove(0);
        assert_eq!((lane0.frames_out, lane0.outbound_delivered), (0, 0));
        let lane1 = other.stats().procs.remove(0);
        assert_eq!(lane1.frames_out, 2);
        assert_eq!(lane1.outbound_delivered, 1);
        assert_eq!(
            lane1.outbound_returned.get(UndeliverableReason::NoSuchProc),
            1
        );
    }

    #[test]
    fn a_client_no_thread_holds_is_answered_on_the_senders_lane() {
        let (mut rig, mut p, _other, _lane1) = two_planes();
        send_on_lane_0(&mut p, "nobody", 3);
        rig.dp.drain_outbound(p.key, Instant::now());
        assert!(
            std::iter::from_fn(|| rig.dp.poll_event())
                .all(|event| !matches!(event, Event::HandOff { .. })),
            "nothing handed on"
        );
        let record = p.inbound.peek().unwrap().expect("a notice on lane 0");
        let mut aligned = AlignedVec::<FRAME_ALIGN>::new();
        aligned.extend_from_slice(record);
        let notice = decode_frame(&aligned, &Default::default()).unwrap();
        assert_eq!(
            (notice.kind(), notice.message_id()),
            (FrameKind::Undeliverable, 3)
        );
        let lane0 = rig.dp.stats().procs.remove(0);
        assert_eq!(
            lane0.outbound_returned.get(UndeliverableReason::NoSuchProc),
            1
        );
    }
}
