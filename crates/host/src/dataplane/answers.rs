//! Which answers a connection still awaits: one entry per frame it sent
//! that was delivered and may be answered, keyed by (message id, the peer
//! it went to), so that a frame queued for it later is known to be one of
//! those answers, or not.
//!
//! The key is what a correct answer repeats: its message id (replies,
//! notices and control responses carry the id they answer) and who it
//! comes from (the proc, client or host the frame was sent to). A frame
//! whose key is not awaited (someone else's request, a stray reply) is not
//! an answer, so it cannot end a half-closed client's linger before its own
//! answers came. Keys are 64-bit fingerprints of (id, peer) in an
//! open-addressing table with linear probing and backward-shift deletion:
//! no tombstones, and no allocation once the table has grown to the
//! connection's window. Two keys share a fingerprint with probability
//! about 2^-64 per pair.
//!
//! Bounded: past [`MAX_TRACKED`] distinct awaited keys (a client that
//! pipelines more than that to procs that answer late, or to sinks that
//! never answer) the table is dropped and only the number awaited is kept:
//! any frame queued for the connection then counts as an answer, as before
//! this table existed, until the count is back at zero, when tracking
//! starts again.

/// Distinct (id, peer) keys tracked per connection before it falls back
/// to counting (the table then holds at most twice as many 16-byte slots:
/// 128 KiB).
pub(crate) const MAX_TRACKED: usize = 4096;
const FIRST_SLOTS: usize = 64;

/// Who a frame was sent to, or who an answer comes from, as a hash of
/// their name (a local proc or the service proc; a local client, hashed
/// apart since client names are a namespace of their own) or of their
/// host's address (anything on another host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Peer(u64);

impl Peer {
    /// A proc (or the service proc) on this host, by name.
    pub(crate) fn named(name: &[u8]) -> Peer {
        Peer(hash_bytes(name, 0x9e37_79b9_7f4a_7c15))
    }

    /// A client connection of this host, by its hello name (not the proc
    /// of that name, if there is one).
    pub(crate) fn client(name: &[u8]) -> Peer {
        Peer(hash_bytes(name, 0x1656_67b1_9e37_79f9))
    }

    /// Whatever lives on the host at `addr`.
    pub(crate) fn remote(addr: &[u8]) -> Peer {
        Peer(hash_bytes(addr, 0xc2b2_ae3d_27d4_eb4f))
    }
}

/// FNV-1a over 8-byte words, then a final mix (names and addresses are
/// short; this runs once per route, not per frame, on the fast lanes).
fn hash_bytes(bytes: &[u8], seed: u64) -> u64 {
    let mut hash = seed ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        hash = (hash ^ word).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    hash = (hash ^ u64::from_le_bytes(last)).wrapping_mul(0x0000_0100_0000_01b3);
    mix(hash)
}

/// A 64-bit finaliser (splitmix64's).
#[inline]
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The fingerprint of an answer's key; never 0 (0 marks an empty slot).
#[inline]
fn fingerprint(message_id: u64, peer: Peer) -> u64 {
    mix(message_id ^ peer.0.rotate_left(17)).max(1)
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    fingerprint: u64,
    count: u64,
}

/// The answers a connection awaits (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct AwaitedAnswers {
    slots: Vec<Slot>,
    /// Occupied slots.
    keys: usize,
    /// Answers awaited in all (with the table or without it).
    awaiting: u64,
    /// Past [`MAX_TRACKED`]: only `awaiting` is kept.
    counting_only: bool,
    /// The key expected last and its slot, while that slot still holds it:
    /// a run of frames with one id to one party (a client that does not
    /// number its frames) costs a compare, not a hash and a probe.
    last: Option<(u64, Peer, usize)>,
}

impl AwaitedAnswers {
    /// How many answers are awaited.
    #[inline]
    pub(crate) fn awaiting(&self) -> u64 {
        self.awaiting
    }

    /// A frame with `message_id` that may be answered was delivered to
    /// `peer`: one answer more is awaited.
    #[inline]
    pub(crate) fn expect(&mut self, message_id: u64, peer: Peer) {
        self.expect_with(|| Some(message_id), peer);
    }

    /// As [`expect`](Self::expect), reading the message id only if it is
    /// tracked (`None`: counted, not tracked).
    #[inline]
    pub(crate) fn expect_with(&mut self, message_id: impl FnOnce() -> Option<u64>, peer: Peer) {
        self.awaiting += 1;
        if self.counting_only {
            return;
        }
        let Some(message_id) = message_id() else {
            return;
        };
        if let Some((id, last_peer, i)) = self.last {
            if id == message_id && last_peer == peer {
                self.slots[i].count += 1;
                return;
            }
        }
        if self.keys * 2 >= self.slots.len() && !self.grow() {
            // Too many to track: count only, until all are answered.
            self.slots = Vec::new();
            self.keys = 0;
            self.last = None;
            self.counting_only = true;
            return;
        }
        let fingerprint = fingerprint(message_id, peer);
        let mask = self.slots.len() - 1;
        let mut i = fingerprint as usize & mask;
        loop {
            let slot = &mut self.slots[i];
            if slot.fingerprint == fingerprint {
                slot.count += 1;
                self.last = Some((message_id, peer, i));
                return;
            }
            if slot.fingerprint == 0 {
                *slot = Slot {
                    fingerprint,
                    count: 1,
                };
                self.keys += 1;
                self.last = Some((message_id, peer, i));
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Like [`answer`](Self::answer), but only while keys are tracked: when
    /// only counting, says `false` and changes nothing (a frame that may
    /// not be an answer is never taken for one).
    #[inline]
    pub(crate) fn answer_if_tracked(&mut self, message_id: u64, peer: Peer) -> bool {
        !self.counting_only && self.answer(message_id, peer)
    }

    /// A frame with `message_id` from `peer` is queued for the
    /// connection: returns whether it is one of the awaited answers (and
    /// if so, one fewer is awaited).
    #[inline]
    pub(crate) fn answer(&mut self, message_id: u64, peer: Peer) -> bool {
        if self.awaiting == 0 {
            return false;
        }
        if self.counting_only {
            self.awaiting -= 1;
            if self.awaiting == 0 {
                self.counting_only = false;
            }
            return true;
        }
        let fingerprint = fingerprint(message_id, peer);
        let mask = self.slots.len() - 1;
        let mut i = fingerprint as usize & mask;
        loop {
            let slot = &mut self.slots[i];
            if slot.fingerprint == 0 {
                return false;
            }
            if slot.fingerprint == fingerprint {
                slot.count -= 1;
                if slot.count == 0 {
                    self.remove_at(i);
                }
                self.awaiting -= 1;
                return true;
            }
            i = (i + 1) & mask;
        }
    }

    /// Empties slot `hole` and shifts back the entries after it that
    /// probed past it, so no lookup chain is broken.
    fn remove_at(&mut self, mut hole: usize) {
        // Entries move: the remembered slot may not hold its key any more.
        self.last = None;
        let mask = self.slots.len() - 1;
        self.keys -= 1;
        let mut next = (hole + 1) & mask;
        loop {
            let slot = self.slots[next];
            if slot.fingerprint == 0 {
                break;
            }
            let home = slot.fingerprint as usize & mask;
            // The entry at `next` may move into the hole unless its home
            // lies cyclically in (hole, next].
            let stays = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !stays {
                self.slots[hole] = slot;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.slots[hole] = Slot::default();
    }

    /// Doubles the table (or makes the first one); false past the bound.
    fn grow(&mut self) -> bool {
        let size = (self.slots.len() * 2).max(FIRST_SLOTS);
        if size > MAX_TRACKED * 2 {
            return false;
        }
        self.last = None;
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); size]);
        let mask = size - 1;
        for slot in old.into_iter().filter(|s| s.fingerprint != 0) {
            let mut i = slot.fingerprint as usize & mask;
            while self.slots[i].fingerprint != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn an_answer_counts_only_from_the_party_the_frame_went_to() {
        let echo = Peer::named(b"echo");
        let other = Peer::named(b"other");
        let mut awaited = AwaitedAnswers::default();
        awaited.expect(7, echo);
        assert_eq!(awaited.awaiting(), 1);
        assert!(!awaited.answer(7, other), "same id, another peer");
        assert!(!awaited.answer(8, echo), "same peer, another id");
        assert_eq!(awaited.awaiting(), 1);
        assert!(awaited.answer(7, echo));
        assert_eq!(awaited.awaiting(), 0);
        assert!(!awaited.answer(7, echo), "answered once only");
    }

    #[test]
    fn names_and_addresses_are_different_peers() {
        assert_ne!(
            Peer::named(b"tcp:1.2.3.4:5"),
            Peer::remote(b"tcp:1.2.3.4:5")
        );
        assert_ne!(Peer::named(b"a"), Peer::named(b"b"));
        // A client and a proc may share a name: they are different peers.
        assert_ne!(Peer::named(b"later"), Peer::client(b"later"));
        assert_ne!(Peer::client(b"later"), Peer::remote(b"later"));
        assert_eq!(Peer::named(b"echo-12345678"), Peer::named(b"echo-12345678"));
    }

    #[test]
    fn repeated_ids_are_counted() {
        let echo = Peer::named(b"echo");
        let mut awaited = AwaitedAnswers::default();
        for _ in 0..3 {
            awaited.expect(1, echo);
        }
        assert!(awaited.answer(1, echo));
        assert!(awaited.answer(1, echo));
        assert!(awaited.answer(1, echo));
        assert!(!awaited.answer(1, echo));
    }

    /// Random expects and answers (many colliding into the same chains)
    /// against a map: the same decisions and the same count, through
    /// growth and backward-shift deletions.
    #[test]
    fn agrees_with_a_map_model() {
        run_against_a_map_model(0x1234_5678, 1000, false);
    }

    /// The same with runs of one key (the remembered last slot), broken by
    /// answers that move entries and by other keys.
    #[test]
    fn runs_of_one_key_agree_with_a_map_model() {
        run_against_a_map_model(0x8765_4321, 40, true);
    }

    fn run_against_a_map_model(seed: u64, ids: u64, runs: bool) {
        let mut state = seed;
        let mut next = move || {
            state = mix(state.wrapping_add(0x9e37_79b9_7f4a_7c15));
            state
        };
        let peers = [Peer::named(b"a"), Peer::named(b"b"), Peer::remote(b"x")];
        let mut awaited = AwaitedAnswers::default();
        let mut model: HashMap<(u64, u64), u64> = HashMap::new();
        let mut previous = (0, peers[0]);
        for _ in 0..200_000 {
            let (id, peer) = if runs && next() % 4 != 0 {
                previous
            } else {
                (next() % ids, peers[(next() % 3) as usize])
            };
            previous = (id, peer);
            if next() % 2 == 0 {
                awaited.expect(id, peer);
                *model.entry((id, peer.0)).or_default() += 1;
            } else {
                let in_model = model.get(&(id, peer.0)).copied().unwrap_or(0) > 0;
                assert_eq!(awaited.answer(id, peer), in_model, "id {id}");
                if in_model {
                    *model.get_mut(&(id, peer.0)).unwrap() -= 1;
                }
            }
            assert_eq!(awaited.awaiting(), model.values().sum::<u64>());
            assert!(!awaited.counting_only, "stays under the bound");
        }
    }

    #[test]
    fn past_the_bound_it_counts_and_recovers_once_all_are_answered() {
        let sink = Peer::named(b"sink");
        let mut awaited = AwaitedAnswers::default();
        let many = MAX_TRACKED as u64 + 10;
        for id in 0..many {
            awaited.expect(id, sink);
        }
        assert!(awaited.counting_only);
        assert_eq!(awaited.awaiting(), many);
        // Counting only: any frame is taken as an answer.
        assert!(awaited.answer(u64::MAX, Peer::named(b"anyone")));
        for _ in 1..many {
            assert!(awaited.answer(0, sink));
        }
        assert_eq!(awaited.awaiting(), 0);
        assert!(!awaited.counting_only, "tracking again");
        awaited.expect(5, sink);
        assert!(!awaited.answer(5, Peer::named(b"anyone")));
        assert!(awaited.answer(5, sink));
    }
}
