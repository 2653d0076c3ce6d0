//! The frames this host's senders sent to another host that still await
//! an answer from it: the sending side's half of the link contract.
//!
//! A frame forwarded over a link may be lost with the link: unacknowledged
//! in the dialler's queue or in flight, in the far host's rings when that
//! host is killed, or as a reply on the way back when the far host's link
//! to this one breaks. The far host cannot tell anyone then, so this host
//! does: for each peer it keeps a [`PeerLedger`] of the frames its own
//! clients and procs sent there that may be answered, by (message id, the
//! local sender), until an answer with that id comes back from that host
//! (a reply from the proc, or a notice or response from its host). When a
//! link with that peer fails, every frame still awaited is answered here,
//! once, with `LinkFailed` (or `HostUnreachable` / `PeerRefused` for a
//! link that never came up), and its key becomes a *tombstone*: a late
//! answer with that key is dropped, so each frame gets exactly one answer.
//!
//! Frames that are never answered (one-way messages, and replies, which
//! look like any data frame to the host) stay awaited until pushed out:
//! the ledger keeps at most [`MAX_AWAITED`] entries per peer and drops the
//! oldest once the far host has acknowledged it (a frame that reached the
//! far host's ring and was never answered). Unacknowledged entries are
//! never dropped: the link window bounds them to far fewer. Tombstones are
//! bounded the same way ([`MAX_TOMBSTONES`], oldest forgotten first).
//!
//! Sans-IO and allocation-free once its tables have their working size
//! (reserved when a peer's ledger is made).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};

// Keys come from senders (message ids): a randomly seeded hash, so none
// can choose colliding ones.
use foldhash::fast::RandomState;

use super::answers::Peer;
use super::{ConnKey, ProcKey};

/// Entries kept per peer before the oldest acknowledged ones are dropped.
pub(crate) const MAX_AWAITED: usize = 65_536;
/// Tombstones kept per peer before the oldest are forgotten.
pub(crate) const MAX_TOMBSTONES: usize = 65_536;

/// Who sent a frame on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalSender {
    /// A client connection.
    Client(ConnKey),
    /// A proc.
    Proc(ProcKey),
}

/// One frame awaiting an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Awaited {
    /// The frame's message id (the id its answer carries).
    pub(crate) message_id: u64,
    /// Its sender on this host, by name hash (clients hashed apart), as an
    /// answer names it in its destination.
    pub(crate) sender_name: Peer,
    /// Its sender, to hand the notice to.
    pub(crate) sender: LocalSender,
    /// Who the sender's frame went to, as the half-close table of a client
    /// keys it (the other host's address).
    pub(crate) went_to: Peer,
    /// The link it was queued on and its sequence number there.
    pub(crate) link: ConnKey,
    pub(crate) seq: u64,
}

type Key = (u64, Peer);

/// What an arriving frame from the peer is to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// The answer to an awaited frame (now no longer awaited).
    Answer,
    /// An answer to a frame already answered with a notice here: drop it.
    Late,
    /// Anything else (a request from the peer, a one-way message).
    Other,
}

/// One peer's frames awaiting answers, and its tombstones.
pub(crate) struct PeerLedger {
    /// How many entries of each key are awaited.
    counts: HashMap<Key, u32, RandomState>,
    /// Every entry in the order it was recorded; entries answered since are
    /// still here (their key's count went down) until they reach the front.
    order: VecDeque<Awaited>,
    awaited: usize,
    tombstones: HashSet<Key, RandomState>,
    tombstone_order: VecDeque<Key>,
    /// Acknowledged entries dropped to make room, answers dropped as late.
    pub(crate) evicted: u64,
    pub(crate) late_dropped: u64,
}

impl Default for PeerLedger {
    fn default() -> Self {
        Self::with_capacity(1024)
    }
}

impl PeerLedger {
    fn with_capacity(capacity: usize) -> Self {
        PeerLedger {
            counts: HashMap::with_capacity_and_hasher(capacity, RandomState::default()),
            order: VecDeque::with_capacity(capacity),
            awaited: 0,
            tombstones: HashSet::with_capacity_and_hasher(
                capacity.min(MAX_TOMBSTONES),
                RandomState::default(),
            ),
            tombstone_order: VecDeque::with_capacity(capacity.min(MAX_TOMBSTONES)),
            evicted: 0,
            late_dropped: 0,
        }
    }

    /// Nothing awaited, nothing buried: an arriving frame can be neither an
    /// answer nor a late one.
    pub(crate) fn is_quiet(&self) -> bool {
        self.awaited == 0 && self.tombstones.is_empty()
    }

    /// How many frames await an answer.
    pub(crate) fn awaited(&self) -> usize {
        self.awaited
    }

    /// Records a frame forwarded to the peer. `acked(link, seq)` says
    /// whether the far host acknowledged a frame (used to drop the oldest
    /// acknowledged entry when full; an unacknowledged one is never
    /// dropped, and the ledger then grows past its bound).
    pub(crate) fn record(&mut self, entry: Awaited, acked: impl Fn(ConnKey, u64) -> bool) {
        // One table lookup per step: this runs once per forwarded frame,
        // and a full ledger (a one-way stream) evicts one entry per frame.
        while self.order.len() >= MAX_AWAITED {
            let Some(front) = self.order.front().copied() else {
                break;
            };
            match self.counts.entry((front.message_id, front.sender_name)) {
                Entry::Occupied(mut count) => {
                    if !acked(front.link, front.seq) {
                        break;
                    }
                    *count.get_mut() -= 1;
                    if *count.get() == 0 {
                        count.remove();
                    }
                    self.awaited -= 1;
                    self.evicted += 1;
                }
                // Answered already.
                Entry::Vacant(_) => {}
            }
            self.order.pop_front();
        }
        let key = (entry.message_id, entry.sender_name);
        // A key answered with a notice and now sent again is live again.
        if !self.tombstones.is_empty() && self.tombstones.remove(&key) {
            self.tombstone_order.retain(|k| *k != key);
        }
        *self.counts.entry(key).or_insert(0) += 1;
        self.awaited += 1;
        self.order.push_back(entry);
        // Answered entries at the front go now (keeps `order` near the
        // number awaited in a request/reply flow).
        self.drop_answered_front();
    }

    /// A frame from the peer with `message_id` for the local party named
    /// `to` (its destination, hashed as [`Awaited::sender_name`]).
    pub(crate) fn arrive(&mut self, message_id: u64, to: Peer) -> Arrival {
        let key = (message_id, to);
        if self.counts.contains_key(&key) {
            self.take(key);
            self.drop_answered_front();
            Arrival::Answer
        } else if self.tombstones.contains(&key) {
            self.late_dropped += 1;
            Arrival::Late
        } else {
            Arrival::Other
        }
    }

    /// The link `link` failed: every entry queued on it that is still
    /// awaited, or (`all`) every entry awaited on any link, is handed to
    /// `answer` once and becomes a tombstone.
    pub(crate) fn fail(&mut self, link: ConnKey, all: bool, mut answer: impl FnMut(&Awaited)) {
        let mut kept = VecDeque::new();
        std::mem::swap(&mut kept, &mut self.order);
        for entry in kept.drain(..) {
            let key = (entry.message_id, entry.sender_name);
            let live = self.counts.get(&key).copied().unwrap_or(0) > 0;
            if !live {
                continue;
            }
            if all || entry.link == link {
                self.take(key);
                answer(&entry);
                self.bury(key);
            } else {
                self.order.push_back(entry);
            }
        }
    }

    fn take(&mut self, key: Key) {
        if let Some(count) = self.counts.get_mut(&key) {
            *count -= 1;
            self.awaited -= 1;
            if *count == 0 {
                self.counts.remove(&key);
            }
        }
    }

    fn drop_answered_front(&mut self) {
        // Every entry is awaited (a one-way stream): none to drop, no lookup.
        if self.order.len() == self.awaited {
            return;
        }
        while let Some(front) = self.order.front() {
            if self
                .counts
                .contains_key(&(front.message_id, front.sender_name))
            {
                break;
            }
            self.order.pop_front();
        }
    }

    fn bury(&mut self, key: Key) {
        if !self.tombstones.insert(key) {
            return;
        }
        if self.tombstone_order.len() >= MAX_TOMBSTONES {
            if let Some(old) = self.tombstone_order.pop_front() {
                self.tombstones.remove(&old);
            }
        }
        self.tombstone_order.push_back(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32) -> ConnKey {
        ConnKey {
            index,
            generation: index + 1,
        }
    }

    fn entry(id: u64, sender: &str, on: ConnKey, seq: u64) -> Awaited {
        Awaited {
            message_id: id,
            sender_name: Peer::client(sender.as_bytes()),
            sender: LocalSender::Client(link(99)),
            went_to: Peer::remote(b"tcp:10.0.0.3:7000"),
            link: on,
            seq,
        }
    }

    #[test]
    fn answers_clear_entries_and_a_failure_answers_the_rest_once() {
        let mut ledger = PeerLedger::default();
        for id in 1..=5 {
            ledger.record(entry(id, "a", link(1), id), |_, _| false);
        }
        let a = Peer::client(b"a");
        assert_eq!(ledger.arrive(2, a), Arrival::Answer);
        assert_eq!(ledger.arrive(2, a), Arrival::Other, "answered once");
        assert_eq!(ledger.arrive(3, Peer::client(b"b")), Arrival::Other);
        assert_eq!(ledger.awaited(), 4);
        let mut failed = Vec::new();
        ledger.fail(link(1), false, |e| failed.push(e.message_id));
        assert_eq!(failed, [1, 3, 4, 5]);
        assert_eq!(ledger.awaited(), 0);
        // Late answers are dropped, once each key; others pass.
        assert_eq!(ledger.arrive(3, a), Arrival::Late);
        assert_eq!(ledger.arrive(2, a), Arrival::Other);
        let mut again = Vec::new();
        ledger.fail(link(1), true, |e| again.push(e.message_id));
        assert!(again.is_empty(), "a failure answers each entry once");
    }

    #[test]
    fn a_failure_of_one_link_leaves_entries_on_another() {
        let mut ledger = PeerLedger::default();
        ledger.record(entry(1, "a", link(1), 1), |_, _| false);
        ledger.record(entry(2, "a", link(2), 1), |_, _| false);
        let mut failed = Vec::new();
        ledger.fail(link(1), false, |e| failed.push(e.message_id));
        assert_eq!(failed, [1]);
        assert_eq!(ledger.awaited(), 1);
        ledger.fail(link(3), true, |e| failed.push(e.message_id));
        assert_eq!(failed, [1, 2]);
    }

    #[test]
    fn the_oldest_acknowledged_entries_make_room_and_unacknowledged_ones_stay() {
        let mut ledger = PeerLedger::default();
        let total = MAX_AWAITED as u64 + 10;
        for id in 0..total {
            // The first 5 are acknowledged; the rest are not.
            ledger.record(entry(id, "a", link(1), id), |_, seq| seq < 5);
        }
        assert_eq!(ledger.evicted, 5);
        assert_eq!(ledger.awaited(), total as usize - 5);
        let mut failed = 0;
        ledger.fail(link(1), false, |_| failed += 1);
        assert_eq!(failed, total - 5);
    }

    #[test]
    fn a_key_sent_again_after_its_notice_is_awaited_again() {
        let mut ledger = PeerLedger::default();
        let a = Peer::client(b"a");
        ledger.record(entry(7, "a", link(1), 1), |_, _| false);
        ledger.fail(link(1), false, |_| {});
        ledger.record(entry(7, "a", link(2), 1), |_, _| false);
        assert_eq!(ledger.arrive(7, a), Arrival::Answer);
        assert_eq!(ledger.arrive(7, a), Arrival::Other);
    }
}
