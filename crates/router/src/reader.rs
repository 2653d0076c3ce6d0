//! The per-thread reader handle for the host's I/O thread hot path.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use arc_swap::Cache;

use crate::table::{shard_of, ShardRef, Shared, Snapshot, SHARD_COUNT};

/// One cached snapshot per shard.
type ShardCaches<R> = [Cache<ShardRef<R>, Arc<Snapshot<R>>>; SHARD_COUNT];

/// A per-thread handle on a [`RoutingTable`](crate::RoutingTable) that caches
/// the current snapshot of every shard.
///
/// While the name's shard is unchanged a lookup costs the hash, one relaxed
/// pointer load and the probe; after an update of that shard the next lookup
/// in it picks up the new snapshot (an ordinary `ArcSwap` load) and caches
/// it. Updates to other shards cost it nothing. Lookups take `&mut self`, so
/// a reader belongs to one thread at a time; it is `Send` and `'static`, so it
/// can be moved into the thread that uses it. Lookups allocate nothing.
///
/// A cached snapshot stays alive until a lookup in its shard (or [`refresh`])
/// notices a newer one: an idle reader can keep a removed route alive. Call
/// [`refresh`] when going idle if that matters. Moving to a newer snapshot
/// never frees the old one on this thread; the table's writers do that (see
/// [`RoutingTable::reclaim`]).
///
/// [`refresh`]: Self::refresh
/// [`RoutingTable::reclaim`]: crate::RoutingTable::reclaim
pub struct RouteReader<R, S> {
    shared: Arc<Shared<R, S>>,
    caches: Box<ShardCaches<R>>,
}

impl<R, S: BuildHasher> RouteReader<R, S> {
    pub(crate) fn new(shared: Arc<Shared<R, S>>) -> Self {
        let caches = Box::new(std::array::from_fn(|index| {
            Cache::new(shared.shards[index].clone())
        }));
        Self { shared, caches }
    }

    /// The route bound to `name` in the latest snapshot of its shard,
    /// borrowed from it.
    ///
    /// The borrow lasts until the next call on this reader; clone the route
    /// to keep it longer. Bytes that are not a valid proc name find nothing.
    #[inline]
    pub fn lookup(&mut self, name: &[u8]) -> Option<&R> {
        let hash = self.shared.hash(name);
        let snapshot = self.caches[shard_of(hash)].load();
        // The cache checks its shard with a relaxed load. This fence makes
        // that load acquire the writer's earlier updates to other shards, so
        // that a reader that has seen one update sees every update that
        // returned before it, whatever the shard (free on x86).
        fence(Ordering::Acquire);
        snapshot.get(hash, name)
    }

    /// Picks up the latest snapshot of every shard now, letting go of the
    /// cached ones that are stale.
    pub fn refresh(&mut self) {
        for cache in self.caches.iter_mut() {
            cache.load();
        }
    }

    /// The number of bound routes (see [`RoutingTable::len`]).
    ///
    /// [`RoutingTable::len`]: crate::RoutingTable::len
    pub fn len(&mut self) -> usize {
        self.shared.len.load(Ordering::Acquire)
    }

    /// Whether no route is bound.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }
}

impl<R, S> fmt::Debug for RouteReader<R, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteReader").finish_non_exhaustive()
    }
}
