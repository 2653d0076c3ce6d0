//! The shared table: one immutable snapshot published through an `ArcSwap`,
//! replaced whole by serialized writers.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hostmux_wire::ProcName;
use parking_lot::Mutex;

use crate::reader::RouteReader;
use crate::RouterError;

/// The hasher the table uses unless told otherwise: foldhash seeded with
/// per-process and per-table randomness (see the crate docs for why).
pub type RouteHasher = foldhash::fast::RandomState;

/// A proc name as a hash-map key that hashes and compares as its bytes, so a
/// lookup can borrow `&[u8]` straight from a frame header.
///
/// `ProcName` itself hashes as a `str`, which differs from how `[u8]` hashes;
/// `Borrow<[u8]>` requires the two to agree, hence this wrapper.
#[derive(Clone)]
pub(crate) struct NameKey(pub(crate) ProcName);

impl Hash for NameKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_bytes().hash(state);
    }
}

impl PartialEq for NameKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes() == other.0.as_bytes()
    }
}

impl Eq for NameKey {}

impl Borrow<[u8]> for NameKey {
    fn borrow(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

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
    /// Serializes writers so that no update is lost between loading the
    /// current snapshot and publishing its successor.
    update_lock: Mutex<()>,
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
            update_lock: Mutex::new(()),
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
        let _writer = self.update_lock.lock();
        let current = self.current.load();
        let mut next = current.routes.clone();
        for (name, route) in routes {
            if next.contains_key(name.as_bytes()) {
                return Err(RouterError::Exists { name });
            }
            next.insert(NameKey(name), route);
        }
        self.current.store(Arc::new(Snapshot { routes: next }));
        Ok(())
    }

    /// Unbinds `name` and returns the route it had, or `None` (and leaves the
    /// table unchanged) if it was not bound. The name is free again once this
    /// returns. Readers still holding an older snapshot may use the route
    /// until they next look something up.
    pub fn remove(&self, name: &[u8]) -> Option<R> {
        let _writer = self.update_lock.lock();
        let current = self.current.load();
        if !current.routes.contains_key(name) {
            return None;
        }
        let mut next = current.routes.clone();
        let removed = next.remove(name);
        self.current.store(Arc::new(Snapshot { routes: next }));
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

    /// Every `(name, route)` pair in this version.
    pub fn iter(&self) -> impl Iterator<Item = (&ProcName, &R)> + '_ {
        self.inner.routes.iter().map(|(key, route)| (&key.0, route))
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
