//! The shared table: one immutable snapshot published through an `ArcSwap`,
//! replaced whole by serialized writers.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hostmux_wire::ProcName;
use parking_lot::Mutex;

use crate::key::NameKey;
use crate::reader::RouteReader;
use crate::RouterError;

/// The hasher the table uses unless told otherwise: foldhash seeded with
/// per-process and per-table randomness (see the crate docs for why).
pub type RouteHasher = foldhash::fast::RandomState;

/// One immutable version of the table. Readers hold it through an `Arc`;
/// writers never change a published one.
pub(crate) struct Snapshot<R, S> {
    pub(crate) routes: HashMap<NameKey, R, S>,
}

impl<R, S: BuildHasher> Snapshot<R, S> {
    #[inline]
    pub(crate) fn get(&self, name: &[u8]) -> Option<&R> {
        self.routes.get(name)
    }
}

/// The current snapshot, shared by the table and every [`RouteReader`].
pub(crate) type Published<R, S> = Arc<ArcSwap<Snapshot<R, S>>>;

/// Maps proc names to routes. Lookups are lock-free and allocation-free;
/// updates copy the map, publish the copy atomically and are serialized by a
/// mutex.
///
/// `R` is the route value (for the host, an enum over ring handles, the
/// service proc, client connections and remote hosts). It should be cheap to
/// clone: [`lookup`](Self::lookup) returns a clone and every update clones all
/// routes into the new snapshot. Share the table between threads with an
/// `Arc<RoutingTable<R>>`; give each hot-path thread its own
/// [`RouteReader`].
///
/// Every lookup sees one whole snapshot: the table as it was after some
/// completed update, never half of one. Updates are linearizable: once
/// [`insert`](Self::insert) or [`remove`](Self::remove) has returned, every
/// later lookup on any thread sees its effect.
pub struct RoutingTable<R, S = RouteHasher> {
    current: Published<R, S>,
    /// Serializes writers (so that no update is lost between loading the
    /// current snapshot and publishing its successor) and holds the
    /// snapshots they replaced.
    writer: Mutex<Retired<R, S>>,
}

/// Replaced snapshots that a reader may still hold, kept so that the last
/// reference is dropped by a writer and not by a reader: freeing a snapshot
/// costs O(routes) and must never land on the I/O thread's lookup.
///
/// Soundness does not depend on this: whoever drops the last `Arc` frees the
/// snapshot. It works because once `ArcSwap::swap` has returned the old
/// snapshot, no reader can take a new reference to it (arc-swap has paid
/// every reader's debt on it), so its count only falls, and a count of one
/// means only this list holds it.
struct Retired<R, S> {
    snapshots: Vec<Arc<Snapshot<R, S>>>,
}

impl<R, S> Retired<R, S> {
    /// Keeps `replaced` until no reader holds it and frees every retired
    /// snapshot that no reader holds any more.
    fn retire(&mut self, replaced: Arc<Snapshot<R, S>>) {
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
        let empty = Snapshot {
            routes: HashMap::with_hasher(hasher),
        };
        Self {
            current: Arc::new(ArcSwap::from_pointee(empty)),
            writer: Mutex::new(Retired {
                snapshots: Vec::new(),
            }),
        }
    }

    /// The route bound to `name`, cloned out of the current snapshot.
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
        self.current.load().get(name).cloned()
    }

    /// Whether a route is bound to `name`.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.current.load().get(name).is_some()
    }

    /// The number of bound routes.
    pub fn len(&self) -> usize {
        self.current.load().routes.len()
    }

    /// Whether no route is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A consistent point-in-time view of the whole table, for listing.
    /// Holding it keeps that version's routes alive; it never changes.
    pub fn snapshot(&self) -> RouteSnapshot<R, S> {
        RouteSnapshot {
            inner: self.current.load_full(),
        }
    }

    /// A per-thread reader handle whose lookups skip even the atomic
    /// bookkeeping of [`lookup`](Self::lookup) while the table is unchanged.
    pub fn reader(&self) -> RouteReader<R, S> {
        RouteReader::new(Arc::clone(&self.current))
    }
}

impl<R: Clone, S: BuildHasher + Clone> RoutingTable<R, S> {
    /// Binds `route` to `name`.
    ///
    /// Fails with [`RouterError::Exists`] if `name` is already bound; the
    /// table is then unchanged. Costs a copy of the whole map (O(routes)):
    /// updates happen on spawn and exit, lookups on every frame.
    pub fn insert(&self, name: ProcName, route: R) -> Result<(), RouterError> {
        self.insert_all([(name, route)])
    }

    /// Binds every `(name, route)` pair in one update: either all are bound
    /// or, if any name is already bound or repeats within `routes`, none is
    /// and the error names the first offender. Use it to fill a table with
    /// many routes at the price of one copy.
    pub fn insert_all<I>(&self, routes: I) -> Result<(), RouterError>
    where
        I: IntoIterator<Item = (ProcName, R)>,
    {
        let mut writer = self.writer.lock();
        let mut next = self.current.load().routes.clone();
        for (name, route) in routes {
            if next.contains_key(name.as_bytes()) {
                return Err(RouterError::Exists { name });
            }
            next.insert(NameKey::new(&name), route);
        }
        writer.retire(self.current.swap(Arc::new(Snapshot { routes: next })));
        Ok(())
    }

    /// Frees the replaced snapshots that no reader holds any more (every
    /// update also does this). Call it after a [`remove`](Self::remove) when
    /// the removed route should be dropped promptly, for example to unmap a
    /// ring, and readers have moved on since (see [`RouteReader::refresh`]).
    pub fn reclaim(&self) {
        self.writer.lock().free_unused();
    }

    /// Unbinds `name` and returns the route it had, or `None` (and leaves the
    /// table unchanged) if it was not bound. The name is free again once this
    /// returns. The table's own copy of the route is dropped once no reader
    /// holds the snapshot it was in, by the next update or
    /// [`reclaim`](Self::reclaim); a reader never frees a snapshot.
    pub fn remove(&self, name: &[u8]) -> Option<R> {
        let mut writer = self.writer.lock();
        let mut next = {
            let current = self.current.load();
            if !current.routes.contains_key(name) {
                return None;
            }
            current.routes.clone()
        };
        let removed = next.remove(name);
        writer.retire(self.current.swap(Arc::new(Snapshot { routes: next })));
        removed
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
/// [`RoutingTable::snapshot`]. Iteration order is unspecified.
pub struct RouteSnapshot<R, S = RouteHasher> {
    inner: Arc<Snapshot<R, S>>,
}

impl<R, S: BuildHasher> RouteSnapshot<R, S> {
    /// The route bound to `name` in this version.
    pub fn get(&self, name: &[u8]) -> Option<&R> {
        self.inner.get(name)
    }

    /// The number of routes in this version.
    pub fn len(&self) -> usize {
        self.inner.routes.len()
    }

    /// Whether this version has no routes.
    pub fn is_empty(&self) -> bool {
        self.inner.routes.is_empty()
    }

    /// Every `(name, route)` pair in this version; the names are valid proc
    /// names.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &R)> + '_ {
        self.inner
            .routes
            .iter()
            .map(|(key, route)| (key.as_str(), route))
    }
}

impl<R, S> Clone for RouteSnapshot<R, S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<R: fmt::Debug, S: BuildHasher> fmt::Debug for RouteSnapshot<R, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}
