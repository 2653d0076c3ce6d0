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
/// [`PeerLedger::order`] is 24 bytes, not 64: a ledger full of
/// unnumbered frames (a run each) holds [`MAX_AWAITED`] slots, and its
/// front and back are touched once per forwarded frame: 1.5 MiB fits the
/// cache where 4 MiB did not.
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

/// One slot of [`PeerLedger::order`]: a *run* of `len` entries on one
/// route whose message ids and link sequence numbers both count up by one
/// (`message_id + i`, `seq + i` for `i < len`): a client's or a proc's
/// stream of numbered frames down one link is one slot, however long, so
/// recording a frame of it is an increment and evicting a stretch of it
/// is a subtraction.
///
/// In the unindexed suffix every entry of a run is awaited: an answer
/// there is only ever taken from a run's front (the run then starts one
/// later), and a run taken whole is left with `len == 0` until it reaches
/// the front. In the indexed prefix, [`PeerLedger::counts`] says which
/// entries are still awaited.
#[derive(Debug, Clone, Copy)]
struct Slot {
    message_id: u64,
    seq: u64,
    route: u32,
    len: u32,
}

impl Slot {
    /// The run without its first entry.
    fn advance(&mut self) {
        self.message_id = self.message_id.wrapping_add(1);
        self.seq = self.seq.wrapping_add(1);
        self.len -= 1;
    }
}

/// One peer's frames awaiting answers, and its tombstones.
///
/// The entries are kept in the order they were recorded, in runs of
/// consecutive message ids and link sequence numbers on one route (a
/// [`Slot`] each). Only a prefix of them is in the hash index (`counts`);
/// the rest, the suffix, is indexed lazily. An answer usually answers the
/// oldest frame still awaited (a request and its reply, or a pipeline of
/// them, in order), so it is first looked for at the fronts of the
/// suffix's first live runs, without a hash; and a one-way stream, never
/// answered, is evicted from the front without ever being hashed. Only an
/// answer (or a frame that is no answer) that the front of the suffix
/// cannot settle indexes the whole suffix, once per entry, and is then
/// looked up as before. Per forwarded frame of a numbered stream, a flood
/// costs an increment at the back and a subtraction at the front, where
/// it once cost two lookups in a table of [`MAX_AWAITED`] entries (a cache
/// miss each; 18 % of the sending host's time at 64 B, docs/benchmarks.md)
/// and then a 24-byte slot pushed and popped per frame.
pub(crate) struct PeerLedger {
    /// How many entries of each key are awaited, for the indexed prefix.
    counts: HashMap<Key, u32, RandomState>,
    /// Every entry in the order it was recorded, in runs; entries answered
    /// in the indexed prefix are still here until they reach the front.
    order: VecDeque<Slot>,
    /// Entries in `order` (the sum of its runs' lengths): what
    /// [`MAX_AWAITED`] bounds.
    held: usize,
    routes: Routes,
    /// `order[..indexed]` is the indexed prefix (counted in `counts`),
    /// `order[indexed..]` the unindexed suffix.
    indexed: usize,
    /// Every run of `order[indexed..first_live]` was taken whole
    /// (`len == 0`): where the suffix's first live run may be.
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
            held: 0,
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
        // unindexed.
        if self.held >= MAX_AWAITED || self.order.len() >= MAX_AWAITED {
            self.evict_oldest(&acked);
        }
        let key = (entry.message_id, entry.sender_name);
        // A key answered with a notice and now sent again is live again.
        if !self.tombstones.is_empty() && self.tombstones.remove(&key) {
            self.tombstone_order.retain(|k| *k != key);
        }
        self.awaited += 1;
        self.held += 1;
        let route = Route {
            sender_name: entry.sender_name,
            sender: entry.sender,
            went_to: entry.went_to,
            link: entry.link,
        };
        // The next entry of the newest run, if that run is in the unindexed
        // suffix (where all its entries are awaited) and this one follows it.
        if self.order.len() > self.indexed {
            if let Some(back) = self.order.back_mut() {
                if back.len > 0
                    && back.len < u32::MAX
                    && entry.message_id == back.message_id.wrapping_add(u64::from(back.len))
                    && entry.seq == back.seq.wrapping_add(u64::from(back.len))
                    && *self.routes.get(back.route) == route
                {
                    back.len += 1;
                    return;
                }
            }
        }
        let route = self.routes.intern(route);
        self.order.push_back(Slot {
            message_id: entry.message_id,
            seq: entry.seq,
            route,
            len: 1,
        });
        // Answered entries at the front go now (keeps `order` near the
        // number awaited in a request/reply flow).
        self.drop_answered_front();
    }

    /// Drops the oldest entries, acknowledged ones or answered ones, until
    /// [`EVICT_RUN`] are free or the front is unacknowledged.
    fn evict_oldest(&mut self, acked: &impl Fn(ConnKey, u64) -> bool) {
        let target = MAX_AWAITED - EVICT_RUN;
        while self.held > target || self.order.len() > target {
            let Some(&front) = self.order.front() else {
                break;
            };
            if front.len == 0 {
                self.pop_front();
                continue;
            }
            let link = self.routes.get(front.route).link;
            if self.indexed > 0 {
                // Entry by entry: the index says which are awaited.
                let key = self.key_of(&front);
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
                self.trim_front(1);
            } else {
                // Every entry of a suffix run is awaited, and a link
                // acknowledges in order: as many as are needed at once if
                // the last of them is acknowledged, else one by one.
                let want = (self.held - target.min(self.held)).clamp(1, front.len as usize) as u32;
                let last = front.seq.wrapping_add(u64::from(want) - 1);
                let take = if acked(link, last) {
                    want
                } else if acked(link, front.seq) {
                    1
                } else {
                    break;
                };
                self.awaited -= take as usize;
                self.evicted += u64::from(take);
                self.trim_front(take);
            }
        }
    }

    /// Removes the front run's first `count` entries (the run itself
    /// once it is empty).
    fn trim_front(&mut self, count: u32) {
        let Some(front) = self.order.front_mut() else {
            return;
        };
        front.message_id = front.message_id.wrapping_add(u64::from(count));
        front.seq = front.seq.wrapping_add(u64::from(count));
        front.len -= count;
        self.held -= count as usize;
        if front.len == 0 {
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
        self.held = 0;
        for slot in kept.drain(..) {
            if slot.len == 0 {
                self.routes.release(slot.route);
                continue;
            }
            if !(all || self.routes.get(slot.route).link == link) {
                // Another link's run stays as it is (the index still says
                // which of its entries are awaited).
                self.held += slot.len as usize;
                self.order.push_back(slot);
                continue;
            }
            for i in 0..slot.len {
                let entry = self.awaited_of(&slot, i);
                let key = (entry.message_id, entry.sender_name);
                if self.take_indexed(key) {
                    answer(&entry);
                    self.bury(key);
                }
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

    /// Takes the first entry of one of the unindexed suffix's first
    /// [`FRONT_LOOK`] live runs if it has `key`; false if none has (or an
    /// older entry with `key` is inside one of those runs, or the suffix
    /// holds more than was looked at: then it must be indexed to tell).
    fn take_from_front(&mut self, key: Key) -> bool {
        let mut live_seen = 0;
        let mut at = self.first_live;
        while at < self.order.len() && live_seen < FRONT_LOOK {
            let slot = self.order[at];
            if slot.len > 0 {
                let sender_name = self.routes.get(slot.route).sender_name;
                if sender_name == key.1 {
                    let offset = key.0.wrapping_sub(slot.message_id);
                    if offset == 0 {
                        self.order[at].advance();
                        self.awaited -= 1;
                        self.held -= 1;
                        while self.first_live < self.order.len()
                            && self.order[self.first_live].len == 0
                        {
                            self.first_live += 1;
                        }
                        return true;
                    }
                    if offset < u64::from(slot.len) {
                        // Inside the run: the index takes it.
                        return false;
                    }
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
            for i in 0..slot.len {
                let key = (
                    slot.message_id.wrapping_add(u64::from(i)),
                    self.routes.get(slot.route).sender_name,
                );
                *self.counts.entry(key).or_insert(0) += 1;
                any = true;
            }
        }
        // Runs taken whole (`len == 0`) count nothing, so they read as
        // answered in the prefix too.
        self.indexed = self.order.len();
        self.first_live = self.indexed;
        any
    }

    fn pop_front(&mut self) {
        if let Some(slot) = self.order.pop_front() {
            self.held -= slot.len as usize;
            self.routes.release(slot.route);
        }
        if self.indexed > 0 {
            self.indexed -= 1;
        }
        self.first_live = self.first_live.saturating_sub(1).max(self.indexed);
    }

    fn drop_answered_front(&mut self) {
        while let Some(&front) = self.order.front() {
            if front.len == 0 {
                self.pop_front();
                continue;
            }
            // Every entry held is awaited (a one-way stream, or a suffix
            // front, whose entries all are): none to drop, no lookup.
            if self.held == self.awaited || self.indexed == 0 {
                break;
            }
            if self.counts.contains_key(&self.key_of(&front)) {
                break;
            }
            self.trim_front(1);
        }
    }

    /// The key the answer to a run's first entry carries.
    fn key_of(&self, slot: &Slot) -> Key {
        (slot.message_id, self.routes.get(slot.route).sender_name)
    }

    /// Entry `i` of a run, as it was recorded.
    fn awaited_of(&self, slot: &Slot, i: u32) -> Awaited {
        let route = self.routes.get(slot.route);
        Awaited {
            message_id: slot.message_id.wrapping_add(u64::from(i)),
            sender_name: route.sender_name,
            sender: route.sender,
            went_to: route.went_to,
            link: route.link,
            seq: slot.seq.wrapping_add(u64::from(i)),
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
#[path = "ledger_tests.rs"]
mod tests;
