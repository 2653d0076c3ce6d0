//! The shared table: `SHARD_COUNT` shards, each an immutable snapshot
//! published through its own `ArcSwap` and replaced whole by serialized
//! writers that copy only the shard they change.

use std::fmt;
use std::hash::BuildHasher;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hashbrown::HashTable;
use hostmux_wire::ProcName;
use parking_lot::Mutex;

use crate::key::NameKey;
use crate::reader::RouteReader;
use crate::RouterError;

/// The hasher the table uses unless told otherwise: foldhash seeded with
/// per-process and per-table randomness (see the crate docs for why).
pub type RouteHasher = foldhash::fast::RandomState;

/// How many shards a table has: a power of two. An update copies one shard,
/// about `1 / SHARD_COUNT` of the routes.
pub(crate) const SHARD_COUNT: usize = 64;

/// Where the shard index sits in a name's 64-bit hash. hashbrown takes the
/// bucket index from the low bits and the 7-bit control tag from the top
/// bits; the shard index comes from bits 32 and up, which neither uses, so
/// names in one shard still spread over its buckets and tags.
const SHARD_SHIFT: u32 = 32;

/// The shard that holds the name with this hash.
#[inline]
pub(crate) fn shard_of(hash: u64) -> usize {
    (hash >> SHARD_SHIFT) as usize & (SHARD_COUNT - 1)
}

/// One immutable version of one shard. Readers hold it through an `Arc`;
/// writers never change a published one. The map is keyed by the name's
/// hash, computed once per lookup and used for both the shard and the probe.
pub(crate) struct Snapshot<R> {
    pub(crate) routes: HashTable<(NameKey, R)>,
}

impl<R> Snapshot<R> {
    #[inline]
    pub(crate) fn get(&self, hash: u64, name: &[u8]) -> Option<&R> {
        self.routes
            .find(hash, |(key, _)| key.as_bytes() == name)
            .map(|(_, route)| route)
    }
}

/// One shard's current snapshot, on a cache line of its own so that a
/// writer publishing one shard does not invalidate the line a reader loads
/// another shard's pointer from.
#[repr(align(64))]
struct Shard<R> {
    current: ArcSwap<Snapshot<R>>,
}

/// A shared handle on one shard's `ArcSwap`: what a reader's per-shard
/// cache watches.
pub(crate) struct ShardRef<R>(Arc<Shard<R>>);

impl<R> Deref for ShardRef<R> {
    type Target = ArcSwap<Snapshot<R>>;

    #[inline]
    fn deref(&self) -> &Self::Target {
        &self.0.current
    }
}

impl<R> Clone for ShardRef<R> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// What the table shares with every [`RouteReader`] and [`RouteSnapshot`].
pub(crate) struct Shared<R, S> {
    pub(crate) hasher: S,
    pub(crate) shards: [ShardRef<R>; SHARD_COUNT],
    /// The number of bound routes, written by writers under their mutex.
    pub(crate) len: AtomicUsize,
}

impl<R, S: BuildHasher> Shared<R, S> {
    #[inline]
    pub(crate) fn hash(&self, name: &[u8]) -> u64 {
        self.hasher.hash_one(name)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &ArcSwap<Snapshot<R>> {
        &self.shards[shard_of(hash)]
    }
}

/// Maps proc names to routes. Lookups are lock-free and allocation-free;
/// updates copy the one shard they change, publish the copy atomically and
/// are serialized by a mutex.
///
/// `R` is the route value (for the host, an enum over ring handles, the
/// service proc, client connections and remote hosts). It should be cheap to
/// clone: [`lookup`](Self::lookup) returns a clone and every update clones
/// the routes of the shard it changes into that shard's new snapshot. Share
/// the table between threads with an `Arc<RoutingTable<R>>`; give each
/// hot-path thread its own [`RouteReader`].
///
/// Every lookup sees one whole version of the name's shard: that shard as it
/// was after some completed update, never half of one. Updates are
/// linearizable per name: once [`insert`](Self::insert) or
/// [`remove`](Self::remove) has returned, every later lookup on any thread
/// sees its effect (and that of [`remove_if`](Self::remove_if)). [`snapshot`](Self::snapshot) is a consistent cut of all
/// shards.
pub struct RoutingTable<R, S = RouteHasher> {
    shared: Arc<Shared<R, S>>,
    /// Serializes writers (so that no update is lost between loading a
    /// shard's snapshot and publishing its successor, and so that
    /// [`snapshot`](Self::snapshot) sees no update half done) and holds the
    /// snapshots they replaced.
    writer: Mutex<Retired<R>>,
}

/// Replaced shard snapshots that a reader may still hold, kept so that the
/// last reference is dropped by a writer and not by a reader: freeing a
/// snapshot costs O(routes in the shard) and must never land on the I/O
/// thread's lookup. One list serves every shard, so that any update frees
/// whatever readers have let go of, whichever shard it was in.
///
/// Soundness does not depend on this: whoever drops the last `Arc` frees the
/// snapshot. It works because once `ArcSwap::swap` has returned the old
/// snapshot, no reader can take a new reference to it (arc-swap has paid
/// every reader's debt on it), so its count only falls, and a count of one
/// means only this list holds it. ([`RoutingTable::snapshot`] loads under the
/// writer mutex, so it never races a swap.)
struct Retired<R> {
    snapshots: Vec<Arc<Snapshot<R>>>,
}

impl<R> Retired<R> {
    /// Keeps `replaced` until no reader holds it and frees every retired
    /// snapshot that no reader holds any more.
    fn retire(&mut self, replaced: Arc<Snapshot<R>>) {
        self.snapshots.push(replaced);
        self.free_unused();
    }

    fn free_unused(&mut self) {
        self.snapshots
            .retain(|snapshot| Arc::strong_count(snapshot) > 1);
    }
}

impl<R> RoutingTable<R> {
    /// An empty table with a freshly seeded [`RouteHasher`].
    pub fn new() -> Self {
        Self::with_hasher(RouteHasher::default())
    }
}

impl<R> Default for RoutingTable<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R, S: BuildHasher> RoutingTable<R, S> {
    /// An empty table hashing names with `hasher` (for example
    /// `std::hash::RandomState` to trade lookup speed for SipHash).
    pub fn with_hasher(hasher: S) -> Self {
        let shards = std::array::from_fn(|_| {
            ShardRef(Arc::new(Shard {
                current: ArcSwap::from_pointee(Snapshot {
                    routes: HashTable::new(),
                }),
            }))
        });
        Self {
            shared: Arc::new(Shared {
                hasher,
                shards,
                len: AtomicUsize::new(0),
            }),
            writer: Mutex::new(Retired {
                snapshots: Vec::new(),
            }),
        }
    }

    /// The route bound to `name`, cloned out of its shard's current snapshot.
    ///
    /// `name` is borrowed as-is (typically straight from a frame header);
    /// no string is built and nothing is allocated. Bytes that are not a
    /// valid proc name simply find nothing, since only valid names are ever
    /// inserted: the table does not re-validate.
    #[inline]
    pub fn lookup(&self, name: &[u8]) -> Option<R>
    where
        R: Clone,
    {
        let hash = self.shared.hash(name);
        self.shared.shard(hash).load().get(hash, name).cloned()
    }

    /// Whether a route is bound to `name`.
    pub fn contains(&self, name: &[u8]) -> bool {
        let hash = self.shared.hash(name);
        self.shared.shard(hash).load().get(hash, name).is_some()
    }

    /// The number of bound routes. While an [`insert_all`](Self::insert_all)
    /// is being published its routes may already be found but not yet
    /// counted here.
    pub fn len(&self) -> usize {
        self.shared.len.load(Ordering::Acquire)
    }

    /// Whether no route is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A consistent point-in-time view of the whole table, for listing: it
    /// loads every shard under the writer mutex, so it holds every completed
    /// update and no part of any other. Holding it keeps that version's
    /// routes alive; it never changes. It costs one short wait for the
    /// writer mutex and an allocation for the shard list.
    pub fn snapshot(&self) -> RouteSnapshot<R, S> {
        let _writer = self.writer.lock();
        let shards = self
            .shared
            .shards
            .iter()
            .map(|shard| shard.load_full())
            .collect();
        RouteSnapshot {
            shared: Arc::clone(&self.shared),
            shards,
        }
    }

    /// A per-thread reader handle whose lookups skip even the atomic
    /// bookkeeping of [`lookup`](Self::lookup) while the name's shard is
    /// unchanged.
    pub fn reader(&self) -> RouteReader<R, S> {
        RouteReader::new(Arc::clone(&self.shared))
    }
}

impl<R: Clone, S: BuildHasher> RoutingTable<R, S> {
    /// Binds `route` to `name`.
    ///
    /// Fails with [`RouterError::Exists`] if `name` is already bound; the
    /// table is then unchanged. Costs a copy of the name's shard
    /// (O(routes / 64)): updates happen on spawn and exit, lookups on every
    /// frame.
    pub fn insert(&self, name: ProcName, route: R) -> Result<(), RouterError> {
        self.insert_all([(name, route)])
    }

    /// Binds every `(name, route)` pair in one update: either all are bound
    /// or, if any name is already bound or repeats within `routes`, none is
    /// and the error names the first offender. Every name is checked before
    /// anything is published, and each changed shard is copied once, so this
    /// fills a table at the price of one copy of it.
    ///
    /// The routes are published shard by shard: while this runs, a lookup on
    /// another thread may find some of them and not yet others (each one, once
    /// found, stays found). [`snapshot`](Self::snapshot) and later updates
    /// see all of them or none.
    pub fn insert_all<I>(&self, routes: I) -> Result<(), RouterError>
    where
        I: IntoIterator<Item = (ProcName, R)>,
    {
        let mut writer = self.writer.lock();
        let shared = &*self.shared;
        let mut changed: Vec<Option<HashTable<(NameKey, R)>>> =
            (0..SHARD_COUNT).map(|_| None).collect();
        let mut added = 0;
        for (name, route) in routes {
            let hash = shared.hash(name.as_bytes());
            let index = shard_of(hash);
            let next =
                changed[index].get_or_insert_with(|| shared.shards[index].load().routes.clone());
            if next
                .find(hash, |(key, _)| key.as_bytes() == name.as_bytes())
                .is_some()
            {
                return Err(RouterError::Exists { name });
            }
            next.insert_unique(hash, (NameKey::new(&name), route), |(key, _)| {
                shared.hash(key.as_bytes())
            });
            added += 1;
        }
        for (index, next) in changed.into_iter().enumerate() {
            if let Some(routes) = next {
                let replaced = shared.shards[index].swap(Arc::new(Snapshot { routes }));
                writer.retire(replaced);
            }
        }
        shared.len.fetch_add(added, Ordering::Release);
        Ok(())
    }

    /// Frees the replaced snapshots that no reader holds any more (every
    /// update also does this). Call it after a
    /// [`remove`](Self::remove) when the removed route should be dropped
    /// promptly, for example to unmap a ring, and readers have moved on since
    /// (see [`RouteReader::refresh`]).
    pub fn reclaim(&self) {
        self.writer.lock().free_unused();
    }

    /// Unbinds `name` and returns the route it had, or `None` (and leaves the
    /// table unchanged) if it was not bound. The name is free again once this
    /// returns. The table's own copy of the route is dropped once no reader
    /// holds the shard snapshot it was in, by a later update or
    /// [`reclaim`](Self::reclaim); a reader never frees a snapshot.
    pub fn remove(&self, name: &[u8]) -> Option<R> {
        self.remove_matching(name, |_| true)
    }

    /// Unbinds `name` only if it is bound to a route equal to `expected`
    /// (compare-and-remove); returns whether it did. Otherwise the table is
    /// unchanged.
    ///
    /// This is how to remove the route you looked up and no other: between
    /// a [`lookup`](Self::lookup) and the removal, another thread may have
    /// removed that route and bound the name to a new one (a proc that
    /// exited and a new proc of the same name); a plain
    /// [`remove`](Self::remove) would unbind the newcomer. The comparison
    /// happens under the writer mutex, against the name's current binding,
    /// so no update can slip between them. Give routes an identity that a
    /// rebinding changes (a ring handle, a generation number) so that equal
    /// means "the same binding".
    ///
    /// Freeing works as for [`remove`](Self::remove).
    ///
    /// ```
    /// use hostmux_router::RoutingTable;
    /// use hostmux_wire::ProcName;
    ///
    /// let table = RoutingTable::new();
    /// let echo = ProcName::new("echo").unwrap();
    /// table.insert(echo.clone(), 1u64).unwrap(); // generation 1
    /// let seen = table.lookup(b"echo").unwrap();
    /// // Meanwhile generation 1 exits and generation 2 takes the name.
    /// assert!(table.remove_if(b"echo", &1));
    /// table.insert(echo, 2).unwrap();
    /// // The stale remover must not unbind generation 2.
    /// assert!(!table.remove_if(b"echo", &seen));
    /// assert_eq!(table.lookup(b"echo"), Some(2));
    /// ```
    pub fn remove_if(&self, name: &[u8], expected: &R) -> bool
    where
        R: PartialEq,
    {
        self.remove_matching(name, |route| route == expected)
            .is_some()
    }

    /// Unbinds `name` if it is bound to a route for which `matches` holds,
    /// deciding under the writer mutex; returns the route it had. The
    /// removed route is returned (and so dropped) after the mutex is
    /// released.
    fn remove_matching(&self, name: &[u8], matches: impl FnOnce(&R) -> bool) -> Option<R> {
        let mut writer = self.writer.lock();
        let shared = &*self.shared;
        let hash = shared.hash(name);
        let index = shard_of(hash);
        let mut next = {
            let current = shared.shards[index].load();
            if !matches(current.get(hash, name)?) {
                return None;
            }
            current.routes.clone()
        };
        let ((_, removed), _) = next
            .find_entry(hash, |(key, _)| key.as_bytes() == name)
            .ok()?
            .remove();
        let replaced = shared.shards[index].swap(Arc::new(Snapshot { routes: next }));
        writer.retire(replaced);
        shared.len.fetch_sub(1, Ordering::Release);
        Some(removed)
    }
}

impl<R, S: BuildHasher> fmt::Debug for RoutingTable<R, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutingTable")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// One immutable version of a [`RoutingTable`], from
/// [`RoutingTable::snapshot`]: a consistent cut across its shards. Iteration
/// order is unspecified.
pub struct RouteSnapshot<R, S = RouteHasher> {
    /// For the hasher.
    shared: Arc<Shared<R, S>>,
    shards: Box<[Arc<Snapshot<R>>]>,
}

impl<R, S: BuildHasher> RouteSnapshot<R, S> {
    /// The route bound to `name` in this version.
    pub fn get(&self, name: &[u8]) -> Option<&R> {
        let hash = self.shared.hash(name);
        self.shards[shard_of(hash)].get(hash, name)
    }

    /// The number of routes in this version.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.routes.len()).sum()
    }

    /// Whether this version has no routes.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|shard| shard.routes.is_empty())
    }

    /// Every `(name, route)` pair in this version; the names are valid proc
    /// names.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &R)> + '_ {
        self.shards
            .iter()
            .flat_map(|shard| shard.routes.iter())
            .map(|(key, route)| (key.as_str(), route))
    }
}

impl<R, S> Clone for RouteSnapshot<R, S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            shards: self.shards.clone(),
        }
    }
}

impl<R: fmt::Debug, S: BuildHasher> fmt::Debug for RouteSnapshot<R, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}
