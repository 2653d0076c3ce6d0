//! The per-thread reader handle for the host's I/O thread hot path.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use arc_swap::Cache;

use crate::table::{Published, Snapshot};

/// A per-thread handle on a [`RoutingTable`](crate::RoutingTable) that caches
/// the current snapshot.
///
/// While the table is unchanged a lookup costs one relaxed pointer load and
/// the hash probe; after an update the next lookup picks up the new snapshot
/// (an ordinary `ArcSwap` load) and caches it. Lookups take `&mut self`, so a
/// reader belongs to one thread at a time; it is `Send` and `'static`, so it
/// can be moved into the thread that uses it. Lookups allocate nothing.
///
/// The cached snapshot stays alive until the next lookup (or [`refresh`])
/// notices a newer one: an idle reader can keep a removed route alive. Call
/// [`refresh`] when going idle if that matters. Moving to a newer snapshot
/// never frees the old one on this thread; the table's writers do that (see
/// [`RoutingTable::reclaim`]).
///
/// [`refresh`]: Self::refresh
/// [`RoutingTable::reclaim`]: crate::RoutingTable::reclaim
pub struct RouteReader<R, S> {
    cache: Cache<Published<R, S>, Arc<Snapshot<R, S>>>,
}

impl<R, S: BuildHasher> RouteReader<R, S> {
    pub(crate) fn new(published: Published<R, S>) -> Self {
        Self {
            cache: Cache::new(published),
        }
    }

    /// The route bound to `name` in the latest snapshot, borrowed from it.
    ///
    /// The borrow lasts until the next call on this reader; clone the route
    /// to keep it longer. Bytes that are not a valid proc name find nothing.
    #[inline]
    pub fn lookup(&mut self, name: &[u8]) -> Option<&R> {
        self.cache.load().get(name)
    }

    /// Picks up the latest snapshot now, letting go of the cached one if it
    /// is stale.
    pub fn refresh(&mut self) {
        self.cache.load();
    }

    /// The number of routes in the latest snapshot.
    pub fn len(&mut self) -> usize {
        self.cache.load().routes.len()
    }

    /// Whether the latest snapshot has no routes.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }
}

impl<R, S> fmt::Debug for RouteReader<R, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteReader").finish_non_exhaustive()
    }
}
