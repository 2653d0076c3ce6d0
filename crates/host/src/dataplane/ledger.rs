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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// What the entries of one stream have in common (sender, destination,
/// link): kept once in [`Routes`], so that a slot of
/// [`PeerLedger::order`] is 24 bytes, not 64. A full ledger holds
/// [`MAX_AWAITED`] slots, and its front and back are touched once per
/// forwarded frame: 1.5 MiB fits the cache where 4 MiB did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Route {
    sender_name: Peer,
    sender: LocalSender,
    went_to: Peer,
    link: ConnKey,
}

/// The routes of a ledger's slots, each with the number of slots using it.
#[derive(Default)]
struct Routes {
    list: Vec<(Route, u32)>,
    free: Vec<u32>,
    index: HashMap<Route, u32, RandomState>,
    /// The route interned last (a stream's frames come in runs).
    last: Option<(Route, u32)>,
}

impl Routes {
    /// The id of `route`, one more slot using it.
    fn intern(&mut self, route: Route) -> u32 {
        let id = match self.last {
            Some((last, id)) if last == route => id,
            _ => {
                let id = match self.index.get(&route) {
                    Some(&id) => id,
                    None => {
                        let id = match self.free.pop() {
                            Some(id) => {
                                self.list[id as usize] = (route, 0);
                                id
                            }
                            None => {
                                self.list.push((route, 0));
                                (self.list.len() - 1) as u32
                            }
                        };
                        self.index.insert(route, id);
                        id
                    }
                };
                self.last = Some((route, id));
                id
            }
        };
        self.list[id as usize].1 += 1;
        id
    }

    fn get(&self, id: u32) -> &Route {
        &self.list[id as usize].0
    }

    /// One slot fewer uses route `id`; the last one frees it.
    fn release(&mut self, id: u32) {
        let (route, uses) = &mut self.list[id as usize];
        *uses -= 1;
        if *uses == 0 {
            let route = *route;
            self.index.remove(&route);
            self.free.push(id);
            if self.last.is_some_and(|(_, last)| last == id) {
                self.last = None;
            }
        }
    }
}

/// One slot of [`PeerLedger::order`]: an entry (its route interned), and
/// (while it is in the unindexed suffix) whether it was answered.
#[derive(Debug, Clone, Copy)]
struct Slot {
    message_id: u64,
    seq: u64,
    route: u32,
    /// Meaningful in the unindexed suffix only: the indexed prefix keeps
    /// liveness in [`PeerLedger::counts`].
    answered: bool,
}

/// One peer's frames awaiting answers, and its tombstones.
///
/// The entries are kept in the order they were recorded. Only a prefix of
/// them is in the hash index (`counts`); the rest, the suffix, is indexed
/// lazily. An answer usually answers the oldest frame still awaited (a
/// request and its reply, or a pipeline of them, in order), so it is first
/// looked for among the suffix's first live entries, without a hash; and a
/// one-way stream, never answered, is evicted from the front without ever
/// being hashed. Only an answer (or a frame that is no answer) that the
/// front of the suffix cannot settle indexes the whole suffix, once per
/// entry, and is then looked up as before. Per forwarded frame, a flood
/// costs a push and a pop instead of two lookups in a table of
/// [`MAX_AWAITED`] entries (a cache miss each; 18 % of the sending host's
/// time at 64 B, docs/benchmarks.md).
pub(crate) struct PeerLedger {
    /// How many entries of each key are awaited, for the indexed prefix.
    counts: HashMap<Key, u32, RandomState>,
    /// Every entry in the order it was recorded; entries answered since are
    /// still here until they reach the front.
    order: VecDeque<Slot>,
    routes: Routes,
    /// `order[..indexed]` is the indexed prefix (counted in `counts`),
    /// `order[indexed..]` the unindexed suffix.
    indexed: usize,
    /// Every slot of `order[indexed..first_live]` is answered: where the
    /// suffix's first live entry may be.
    first_live: usize,
    awaited: usize,
    tombstones: HashSet<Key, RandomState>,
    tombstone_order: VecDeque<Key>,
    /// Acknowledged entries dropped to make room, answers dropped as late.
    pub(crate) evicted: u64,
    pub(crate) late_dropped: u64,
}

/// How many live entries at the front of the unindexed suffix an arriving
/// frame is compared with before the suffix is indexed.
const FRONT_LOOK: usize = 4;

/// How many of the oldest entries a full ledger drops at once.
const EVICT_RUN: usize = 64;

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
            routes: Routes::default(),
            indexed: 0,
            first_live: 0,
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
    /// acknowledged entries when full; an unacknowledged one is never
    /// dropped, and the ledger then grows past its bound).
    pub(crate) fn record(&mut self, entry: Awaited, acked: impl Fn(ConnKey, u64) -> bool) {
        // A full ledger (a one-way stream) evicts a run of its oldest
        // entries at once, with no hash lookup while the front is
        // unindexed: consecutive slots, so the memory behind the first one
        // (written [`MAX_AWAITED`] frames ago, long out of cache) is
        // streamed in once for the run instead of missed once per frame.
        if self.order.len() >= MAX_AWAITED {
            self.evict_oldest(&acked);
        }
        let key = (entry.message_id, entry.sender_name);
        // A key answered with a notice and now sent again is live again.
        if !self.tombstones.is_empty() && self.tombstones.remove(&key) {
            self.tombstone_order.retain(|k| *k != key);
        }
        self.awaited += 1;
        let route = self.routes.intern(Route {
            sender_name: entry.sender_name,
            sender: entry.sender,
            went_to: entry.went_to,
            link: entry.link,
        });
        self.order.push_back(Slot {
            message_id: entry.message_id,
            seq: entry.seq,
            route,
            answered: false,
        });
        // Answered entries at the front go now (keeps `order` near the
        // number awaited in a request/reply flow).
        self.drop_answered_front();
    }

    /// Drops the oldest entries, acknowledged ones or answered ones, until
    /// [`EVICT_RUN`] slots are free or the front is unacknowledged.
    fn evict_oldest(&mut self, acked: &impl Fn(ConnKey, u64) -> bool) {
        while self.order.len() > MAX_AWAITED - EVICT_RUN {
            let Some(front) = self.order.front().copied() else {
                break;
            };
            let key = self.key_of(&front);
            let link = self.routes.get(front.route).link;
            if self.indexed > 0 {
                match self.counts.entry(key) {
                    Entry::Occupied(mut count) => {
                        if !acked(link, front.seq) {
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
            } else if !front.answered {
                if !acked(link, front.seq) {
                    break;
                }
                self.awaited -= 1;
                self.evicted += 1;
            }
            self.pop_front();
        }
    }

    /// A frame from the peer with `message_id` for the local party named
    /// `to` (its destination, hashed as [`Awaited::sender_name`]).
    pub(crate) fn arrive(&mut self, message_id: u64, to: Peer) -> Arrival {
        let key = (message_id, to);
        if self.take_indexed(key) || self.take_from_front(key) {
            self.drop_answered_front();
            return Arrival::Answer;
        }
        if self.index_suffix() && self.take_indexed(key) {
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
        self.index_suffix();
        let mut kept = VecDeque::new();
        std::mem::swap(&mut kept, &mut self.order);
        for slot in kept.drain(..) {
            let entry = self.awaited_of(&slot);
            let key = (entry.message_id, entry.sender_name);
            let live = self.counts.get(&key).copied().unwrap_or(0) > 0;
            if live && !(all || entry.link == link) {
                self.order.push_back(slot);
                continue;
            }
            if live {
                self.take_indexed(key);
                answer(&entry);
                self.bury(key);
            }
            self.routes.release(slot.route);
        }
        self.indexed = self.order.len();
        self.first_live = self.indexed;
    }

    /// Takes one awaited entry of `key` from the indexed prefix, if any.
    fn take_indexed(&mut self, key: Key) -> bool {
        let Some(count) = self.counts.get_mut(&key) else {
            return false;
        };
        *count -= 1;
        self.awaited -= 1;
        if *count == 0 {
            self.counts.remove(&key);
        }
        true
    }

    /// Marks one of the unindexed suffix's first [`FRONT_LOOK`] live
    /// entries answered if it has `key`; false if none has (or the suffix
    /// holds more than was looked at: then it must be indexed to tell).
    fn take_from_front(&mut self, key: Key) -> bool {
        let mut live_seen = 0;
        let mut at = self.first_live;
        while at < self.order.len() && live_seen < FRONT_LOOK {
            let slot = self.order[at];
            if !slot.answered {
                if self.key_of(&slot) == key {
                    self.order[at].answered = true;
                    self.awaited -= 1;
                    while self.first_live < self.order.len() && self.order[self.first_live].answered
                    {
                        self.first_live += 1;
                    }
                    return true;
                }
                live_seen += 1;
            }
            at += 1;
        }
        false
    }

    /// Counts the unindexed suffix's live entries in `counts`; returns
    /// whether it held any.
    fn index_suffix(&mut self) -> bool {
        let mut any = false;
        for at in self.first_live..self.order.len() {
            let slot = self.order[at];
            if !slot.answered {
                let key = self.key_of(&slot);
                *self.counts.entry(key).or_insert(0) += 1;
                any = true;
            }
        }
        // Answered slots indexed here are not counted, so they read as
        // answered in the prefix too (for a key sent once at a time).
        self.indexed = self.order.len();
        self.first_live = self.indexed;
        any
    }

    fn pop_front(&mut self) {
        if let Some(slot) = self.order.pop_front() {
            self.routes.release(slot.route);
        }
        if self.indexed > 0 {
            self.indexed -= 1;
        }
        self.first_live = self.first_live.saturating_sub(1).max(self.indexed);
    }

    fn drop_answered_front(&mut self) {
        // Every entry is awaited (a one-way stream): none to drop, no lookup.
        if self.order.len() == self.awaited {
            return;
        }
        while let Some(&front) = self.order.front() {
            let answered = if self.indexed > 0 {
                !self.counts.contains_key(&self.key_of(&front))
            } else {
                front.answered
            };
            if !answered {
                break;
            }
            self.pop_front();
        }
    }

    /// The key a slot's answer carries.
    fn key_of(&self, slot: &Slot) -> Key {
        (slot.message_id, self.routes.get(slot.route).sender_name)
    }

    /// A slot as the entry it was recorded from.
    fn awaited_of(&self, slot: &Slot) -> Awaited {
        let route = self.routes.get(slot.route);
        Awaited {
            message_id: slot.message_id,
            sender_name: route.sender_name,
            sender: route.sender,
            went_to: route.went_to,
            link: route.link,
            seq: slot.seq,
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
    fn a_slot_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }

    #[test]
    fn a_one_way_stream_is_evicted_without_being_indexed() {
        let mut ledger = PeerLedger::default();
        let total = MAX_AWAITED as u64 + 1000;
        for id in 0..total {
            ledger.record(entry(id, "a", link(1), id), |_, _| true);
        }
        // Runs of the oldest went, never more than a run below the bound.
        let evicted = ledger.evicted;
        assert!(
            (1000..1000 + EVICT_RUN as u64).contains(&evicted),
            "{evicted}"
        );
        assert_eq!(ledger.awaited() as u64, total - evicted);
        assert!(ledger.counts.is_empty(), "no entry was hashed");
        // The oldest kept entry is still answered, then found by the index.
        let a = Peer::client(b"a");
        assert_eq!(ledger.arrive(evicted, a), Arrival::Answer);
        assert_eq!(ledger.arrive(total - 1, a), Arrival::Answer);
        assert_eq!(ledger.arrive(evicted - 1, a), Arrival::Other, "evicted");
        assert_eq!(ledger.awaited() as u64, total - evicted - 2);
    }

    #[test]
    fn answers_in_order_are_taken_without_the_index_and_leave_nothing() {
        let mut ledger = PeerLedger::default();
        let a = Peer::client(b"a");
        // A pipeline of 8 ahead, answered in order.
        for id in 0..1000u64 {
            ledger.record(entry(id, "a", link(1), id), |_, _| false);
            if id >= 8 {
                assert_eq!(ledger.arrive(id - 8, a), Arrival::Answer);
            }
        }
        for id in 992..1000 {
            assert_eq!(ledger.arrive(id, a), Arrival::Answer);
        }
        assert!(ledger.counts.is_empty());
        assert_eq!(ledger.awaited(), 0);
        assert!(ledger.order.is_empty(), "answered entries were dropped");
    }

    #[test]
    fn an_answer_past_the_front_indexes_the_rest_and_a_failure_answers_them() {
        let mut ledger = PeerLedger::default();
        let a = Peer::client(b"a");
        for id in 0..10 {
            ledger.record(entry(id, "a", link(1), id), |_, _| false);
        }
        assert_eq!(ledger.arrive(0, a), Arrival::Answer, "the front");
        assert_eq!(ledger.arrive(9, a), Arrival::Answer, "past the front");
        assert_eq!(ledger.counts.len(), 8, "the rest was indexed");
        ledger.record(entry(10, "a", link(1), 10), |_, _| false);
        assert_eq!(ledger.arrive(5, a), Arrival::Answer);
        let mut failed = Vec::new();
        ledger.fail(link(1), false, |e| failed.push(e.message_id));
        assert_eq!(failed, [1, 2, 3, 4, 6, 7, 8, 10]);
        assert_eq!(ledger.awaited(), 0);
        assert_eq!(ledger.arrive(10, a), Arrival::Late);
    }

    /// Random records, answers (in order, out of order, unknown, late)
    /// and link failures against a plain model: every arrival is classed
    /// as the model says, and a failure answers exactly the model's live
    /// entries on that link. Seeds replay exactly.
    #[test]
    fn the_ledger_agrees_with_a_model_under_random_traffic() {
        for seed in 1..=20u64 {
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = move |bound: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % bound
            };
            let mut ledger = PeerLedger::default();
            // The model: live entries in order, and the buried keys.
            let mut live: Vec<(u64, &str, u32)> = Vec::new();
            let mut buried: HashSet<(u64, &str)> = HashSet::default();
            let senders = ["a", "b", "c"];
            let mut next_id = 0u64;
            for step in 0..5000 {
                match next(10) {
                    0..=3 => {
                        let sender = senders[next(3) as usize];
                        // Now and then a key answered by a failure comes back.
                        let id = match buried.iter().find(|k| k.1 == sender) {
                            Some(&(id, _)) if next(4) == 0 => id,
                            _ => {
                                next_id += 1;
                                next_id
                            }
                        };
                        buried.remove(&(id, sender));
                        let on = 1 + next(2) as u32;
                        ledger.record(entry(id, sender, link(on), step), |_, _| false);
                        live.push((id, sender, on));
                    }
                    4..=7 => {
                        // Mostly the oldest live of a sender; else anything.
                        let (id, sender) = match next(4) {
                            0 if !live.is_empty() => {
                                let (id, sender, _) = live[next(live.len() as u64) as usize];
                                (id, sender)
                            }
                            1 => (next(next_id + 2), senders[next(3) as usize]),
                            _ => {
                                let sender = senders[next(3) as usize];
                                match live.iter().find(|e| e.1 == sender) {
                                    Some(&(id, sender, _)) => (id, sender),
                                    None => (next_id + 1, sender),
                                }
                            }
                        };
                        let expected = if let Some(at) =
                            live.iter().position(|e| (e.0, e.1) == (id, sender))
                        {
                            live.remove(at);
                            Arrival::Answer
                        } else if buried.contains(&(id, sender)) {
                            Arrival::Late
                        } else {
                            Arrival::Other
                        };
                        let got = ledger.arrive(id, Peer::client(sender.as_bytes()));
                        assert_eq!(got, expected, "seed {seed} step {step}: id {id} {sender}");
                    }
                    _ => {
                        let on = 1 + next(2) as u32;
                        let all = next(4) == 0;
                        let mut failed = Vec::new();
                        ledger.fail(link(on), all, |e| failed.push(e.message_id));
                        let mut expected = Vec::new();
                        live.retain(|&(id, sender, link_of)| {
                            if all || link_of == on {
                                expected.push(id);
                                buried.insert((id, sender));
                                false
                            } else {
                                true
                            }
                        });
                        assert_eq!(failed, expected, "seed {seed} step {step}");
                    }
                }
                assert_eq!(ledger.awaited(), live.len(), "seed {seed} step {step}");
            }
            // Every slot gone, every route is released.
            ledger.fail(link(1), true, |_| {});
            assert!(ledger.order.is_empty());
            assert!(ledger.routes.index.is_empty(), "seed {seed}");
            assert!(ledger.routes.list.iter().all(|(_, uses)| *uses == 0));
        }
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
