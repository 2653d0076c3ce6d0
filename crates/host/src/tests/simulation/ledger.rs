//! What every simulated party sent and received, and the delivery
//! invariants checked against it.
//!
//! Message ids come from one counter, so an id names one originated frame
//! and everything that answers it (replies and notices keep the id).

use std::collections::{BTreeMap, BTreeSet};

use hostmux_wire::{FrameKind, FrameView, Undeliverable, UndeliverableReason};

/// A party of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Who {
    /// A client, by slot.
    Client(u8),
    /// A proc, by slot (every incarnation).
    Proc(u8),
    /// The other host, at the far end of the link.
    Far,
}

/// First payload byte of a data request.
pub(super) const REQUEST: u8 = 0x51;
/// First payload byte of a data reply.
pub(super) const REPLY: u8 = 0x52;

/// Frames written with one message id beyond which the host is looping.
/// The longest legitimate chain (a buggy proc answering a notice about its
/// reply, and the answer to that) writes fewer than half of this.
pub(super) const MAX_WRITES_PER_ID: u32 = 8;

#[derive(Debug, Default)]
struct Track {
    /// Data frames and control requests it sent with this id.
    sent: u32,
    /// Answers (replies, notices, responses) with this id that reached it.
    answers: u32,
}

/// The simulation's books.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    next_id: u64,
    tracks: BTreeMap<(Who, u64), Track>,
    writes_by_id: BTreeMap<u64, u32>,
    /// Frames the parties handed to the host (client frames it read,
    /// records procs published, frames the other host sent).
    pub(super) put_in: u64,
    /// Frames the host wrote that a party read (ring records, client
    /// queues, the link).
    pub(super) host_writes: u64,
    /// Ids whose requests may legitimately go unanswered (taken by a sink,
    /// a client or a proc that died holding them; a reply returned).
    excused: BTreeSet<u64>,
    /// Ids of frames sent to a host that is not a peer: the only frame the
    /// host may write with such an id is a `NotAPeer` notice.
    to_stranger: BTreeSet<u64>,
}

impl Ledger {
    pub(super) fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// `who` wrote a frame of `kind` with `id` (counted when it may be
    /// answered).
    pub(super) fn sent(&mut self, who: Who, kind: FrameKind, id: u64) {
        if matches!(kind, FrameKind::Data | FrameKind::ControlRequest) {
            self.tracks.entry((who, id)).or_default().sent += 1;
        }
    }

    /// The frame with `id` was sent to a host that is not a peer.
    pub(super) fn sent_to_stranger(&mut self, id: u64) {
        self.to_stranger.insert(id);
    }

    /// `who` read `frame`, written by the host.
    pub(super) fn received(&mut self, who: Who, frame: &FrameView<'_>) -> Result<(), String> {
        self.host_writes += 1;
        let id = frame.message_id();
        if self.to_stranger.contains(&id) {
            let not_a_peer = frame.kind() == FrameKind::Undeliverable
                && Undeliverable::decode(frame.payload())
                    .is_ok_and(|u| u.reason == UndeliverableReason::NotAPeer);
            if !not_a_peer {
                return Err(format!(
                    "not a peer: message id {id}, sent to a host that is not a peer, reached {who:?} as a {:?} from {:?} (only a NotAPeer notice may)",
                    frame.kind(),
                    frame.sender()
                ));
            }
        }
        let writes = self.writes_by_id.entry(id).or_default();
        *writes += 1;
        // Id 0 is the host's own: the `Malformed` notice it sends a
        // connection whose stream broke the framing, once per connection
        // (the simulation numbers frames from 1). Bounded by connections,
        // not by frames.
        let connection_notice = id == 0 && frame.kind() == FrameKind::Undeliverable;
        if *writes > MAX_WRITES_PER_ID && !connection_notice {
            return Err(format!(
                "loop: the host wrote {writes} frames with message id {id} (last {:?} to {who:?} from {:?}); bound {MAX_WRITES_PER_ID}",
                frame.kind(),
                frame.sender()
            ));
        }
        let answer = match frame.kind() {
            FrameKind::Undeliverable | FrameKind::ControlResponse => true,
            FrameKind::Data => frame.payload().first() == Some(&REPLY),
            FrameKind::ControlRequest => false,
        };
        if !answer {
            return Ok(());
        }
        let Some(track) = self.tracks.get_mut(&(who, id)) else {
            return Ok(());
        };
        if track.sent == 0 {
            return Ok(());
        }
        track.answers += 1;
        if track.answers > track.sent {
            return Err(format!(
                "answered twice: {who:?} sent message id {id} {} time(s) and got {} answers (the last a {:?} from {:?})",
                track.sent,
                track.answers,
                frame.kind(),
                frame.sender()
            ));
        }
        Ok(())
    }

    /// The request with `id` may go unanswered.
    pub(super) fn excuse(&mut self, id: u64) {
        self.excused.insert(id);
    }

    /// No loop: the host never writes more than twice what it was given
    /// (each frame is delivered or returned, and a delivered frame may
    /// still come back once when its proc dies with it unread).
    pub(super) fn check_ratio(&self) -> Result<(), String> {
        if self.host_writes > 2 * self.put_in {
            return Err(format!(
                "loop: the host wrote {} frames for {} put in (bound: 2x)",
                self.host_writes, self.put_in
            ));
        }
        Ok(())
    }

    /// At quiescence: `who`'s request `id` got exactly one answer, unless
    /// it was excused (then at most one, checked all along).
    pub(super) fn check_answered(&self, who: Who, id: u64) -> Result<(), String> {
        if self.excused.contains(&id) {
            return Ok(());
        }
        let answers = self.tracks.get(&(who, id)).map_or(0, |t| t.answers);
        if answers != 1 {
            return Err(format!(
                "unanswered: {who:?}'s request {id} got {answers} answers at quiescence (expected exactly one)"
            ));
        }
        Ok(())
    }
}
