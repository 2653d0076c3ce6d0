//! Simulated procs: the proc ends of real shared-memory rings, driven step
//! by step as a proc would drive them (peek, answer, release, publish), so
//! a crash can be placed between any two of those.

use std::collections::VecDeque;

use hostmux_ring::{Consumer, Producer, RingError};
use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{
    decode_frame, encode_frame_to_vec, Flags, FrameHeader, FrameKind, FrameView, Limits, Sender,
    Undeliverable, UndeliverableReason, FRAME_ALIGN,
};

use super::event::{Behaviour, CrashPoint};
use super::ledger::{Ledger, Who, REPLY, REQUEST};
use crate::dataplane::ProcKey;

pub(super) struct SimProc {
    pub(super) who: Who,
    pub(super) name: &'static str,
    pub(super) key: ProcKey,
    pub(super) behaviour: Behaviour,
    pub(super) ready: bool,
    pub(super) stopping: bool,
    pub(super) inbound: Consumer,
    pub(super) outbound: Producer,
    /// Frames it wrote that are not in its ring yet (the ring was full).
    pending: VecDeque<Vec<u8>>,
    /// Requests it released whose answer is not published yet.
    in_hand: Vec<u64>,
    committed: u64,
    /// Records it published into its outbound ring.
    pub(super) published: u64,
    /// The host's last drain of it ended blocked on a full destination.
    pub(super) drain_blocked: bool,
    /// It publishes its read position before each outbound publication.
    linked_read_position: bool,
}

/// Whether a step ran to its end or the proc died at its crash point.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stepped {
    Done,
    Crashed,
}

impl SimProc {
    pub(super) fn new(
        slot: u8,
        name: &'static str,
        key: ProcKey,
        behaviour: Behaviour,
        inbound: Consumer,
        outbound: Producer,
        linked_read_position: bool,
    ) -> SimProc {
        SimProc {
            who: Who::Proc(slot),
            name,
            key,
            behaviour,
            ready: false,
            stopping: false,
            inbound,
            outbound,
            pending: VecDeque::new(),
            in_hand: Vec::new(),
            committed: 0,
            published: 0,
            drain_blocked: false,
            linked_read_position,
        }
    }

    /// Nothing waits to be written.
    pub(super) fn is_caught_up(&self) -> bool {
        self.pending.is_empty()
    }

    /// Requests it held when it died: nobody will answer them.
    pub(super) fn take_in_hand(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.in_hand)
    }

    /// Moves pending frames into the outbound ring while they fit.
    fn write_pending(&mut self) {
        while let Some(front) = self.pending.front() {
            match self.outbound.try_reserve(front.len()) {
                Ok(mut slot) => {
                    slot.copy_from_slice(front);
                    slot.commit();
                    self.committed += 1;
                    self.pending.pop_front();
                }
                Err(RingError::Full) => return,
                // Larger than its ring: a proc cannot send it at all.
                Err(_) => {
                    self.pending.pop_front();
                }
            }
        }
    }

    fn publish(&mut self, ledger: &mut Ledger) {
        if self.linked_read_position {
            let _ = self.inbound.publish_released();
        }
        let _ = self.outbound.publish();
        ledger.put_in += self.committed - self.published;
        self.published = self.committed;
        if self.pending.is_empty() {
            self.in_hand.clear();
        }
    }

    /// Writes and publishes a frame of its own (or keeps it while its ring
    /// is full).
    pub(super) fn send(&mut self, bytes: Vec<u8>, ledger: &mut Ledger) {
        self.pending.push_back(bytes);
        self.write_pending();
        self.publish(ledger);
    }

    /// Reads up to `records` records and answers as its behaviour says;
    /// with `crash`, handles one record and dies at that point. A proc
    /// whose answers do not fit its outbound ring reads nothing more.
    /// With `linked_read_position` it releases a record before answering
    /// it and publishes its read position right before each publication of
    /// its outbound ring (the proc library's order); else it releases after
    /// answering, in batches (the library's order before issue 11).
    pub(super) fn step(
        &mut self,
        records: usize,
        crash: Option<CrashPoint>,
        ledger: &mut Ledger,
        limits: &Limits,
    ) -> Result<Stepped, String> {
        if crash == Some(CrashPoint::Idle) {
            return Ok(Stepped::Crashed);
        }
        self.write_pending();
        self.publish(ledger);
        let mut copy = AlignedVec::<FRAME_ALIGN>::new();
        for _ in 0..records {
            if !self.pending.is_empty() {
                break;
            }
            copy.clear();
            match self.inbound.peek() {
                Ok(Some(record)) => copy.extend_from_slice(record),
                Ok(None) => break,
                Err(e) => return Err(format!("{}'s inbound ring failed: {e}", self.name)),
            }
            let frame = decode_frame(&copy, limits).map_err(|e| {
                format!(
                    "the host wrote a record into {}'s ring that is not a frame: {e}",
                    self.name
                )
            })?;
            ledger.received(self.who, &frame)?;
            // Names and kinds: a proc never receives data meant for a
            // client. (Its own name may differ: `Rebind` points other
            // names at it, as a respawn under a reused name would.)
            let to_client = frame.flags().contains(Flags::TO_CLIENT);
            if frame.kind() == FrameKind::Data && to_client {
                return Err(format!(
                    "the host wrote a frame for {} (to a client: {}) into proc {}'s ring",
                    frame.dest_name(),
                    frame.flags().contains(Flags::TO_CLIENT),
                    self.name
                ));
            }
            let id = frame.message_id();
            let request =
                frame.kind() == FrameKind::Data && frame.payload().first() == Some(&REQUEST);
            match frame.kind() {
                // Its reply came back because the client's reply queue
                // stayed full: the client never gets an answer. (A reply
                // returned `NoSuchProc` is not excused: the host forgot a
                // client that was still owed it.)
                FrameKind::Undeliverable
                    if Undeliverable::decode(frame.payload())
                        .is_ok_and(|u| u.reason != UndeliverableReason::NoSuchProc) =>
                {
                    ledger.excuse(id)
                }
                _ if request && self.behaviour == Behaviour::Sink => ledger.excuse(id),
                _ => {}
            }
            if crash == Some(CrashPoint::AfterRead) {
                return Ok(Stepped::Crashed);
            }
            let answer = self.answer(&frame, limits);
            if self.linked_read_position {
                let _ = self.inbound.release();
                if request {
                    self.in_hand.push(id);
                }
            }
            if let Some(answer) = answer {
                ledger.sent(self.who, FrameKind::Data, id);
                self.pending.push_back(answer);
                self.write_pending();
            }
            if crash == Some(CrashPoint::MidReply) {
                return Ok(Stepped::Crashed);
            }
            self.publish(ledger);
            if crash == Some(CrashPoint::AfterReply) {
                return Ok(Stepped::Crashed);
            }
            if !self.linked_read_position {
                let _ = self.inbound.release();
                if request && !self.pending.is_empty() {
                    self.in_hand.push(id);
                }
            }
            if crash.is_some() {
                return Ok(Stepped::Crashed);
            }
        }
        Ok(Stepped::Done)
    }

    /// Its answer to `frame`: echoes answer data requests; the buggy echo
    /// answers everything that names a sender except data replies (notices
    /// and control responses included, as the echo of issue 11's case 1
    /// did; answering replies too would be a loop between two procs that
    /// no host can see as one).
    fn answer(&self, frame: &FrameView<'_>, limits: &Limits) -> Option<Vec<u8>> {
        let request = frame.kind() == FrameKind::Data && frame.payload().first() == Some(&REQUEST);
        let answers = match self.behaviour {
            Behaviour::Echo | Behaviour::Slow => request,
            Behaviour::Buggy => {
                frame.kind() != FrameKind::Data || frame.payload().first() != Some(&REPLY)
            }
            Behaviour::Sink => false,
        };
        if frame.sender() == Sender::Anonymous || !answers {
            return None;
        }
        // Addressed by the sender's kind: a client in the client namespace.
        let target = frame.fields().reply_target();
        let header = FrameHeader {
            kind: FrameKind::Data,
            flags: target.flags(),
            message_id: frame.message_id(),
            dest_name: target.name,
            dest_port: frame.dest_port(),
            dest_addr: target.addr,
            sender: Sender::Proc {
                addr: "",
                name: self.name,
            },
        };
        let mut payload = frame.payload().to_vec();
        payload.truncate(64);
        if payload.is_empty() {
            payload.push(REPLY);
        }
        payload[0] = REPLY;
        let mut out = Vec::new();
        encode_frame_to_vec(&mut out, &header, &payload, limits).ok()?;
        Some(out)
    }

    /// Reads nothing more and everything it wrote is published: a stopping
    /// proc in this state exits.
    pub(super) fn is_done(&mut self) -> bool {
        self.pending.is_empty()
            && self.inbound.is_producer_closed()
            && matches!(self.inbound.peek(), Ok(None))
    }

    /// A record that is not a frame.
    pub(super) fn garbage(&mut self, ledger: &mut Ledger) {
        let mut bytes = vec![0xEE; 48];
        bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        self.send(bytes, ledger);
    }
}
