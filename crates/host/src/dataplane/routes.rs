//! The host's routing table with a change counter, and the I/O thread's
//! one-entry route cache that the counter keeps honest.
//!
//! A client usually sends every frame to the same destination, and a full
//! lookup (hash, shard snapshot, probe, compare) costs more than the rest of
//! the route decision. So the I/O thread remembers the last name it routed
//! and its route, and reuses them while no table change has started since
//! the lookup that filled the cache. Writers bump `changes` before and after
//! each change (seqlock style: odd while a change is in progress), so a hit
//! is exactly as fresh as a lookup made at the same moment.

use std::sync::atomic::{AtomicU64, Ordering};

use hostmux_router::{RouteHasher, RouteReader, RouterError, RoutingTable};
use hostmux_wire::ProcName;

use super::Route;

/// The routing table shared by the host's control side and its I/O thread.
pub(crate) struct Table {
    routes: RoutingTable<Route>,
    /// Bumped before and after every change: odd while one is in progress.
    changes: AtomicU64,
}

impl Table {
    pub(crate) fn new() -> Self {
        Self {
            routes: RoutingTable::new(),
            changes: AtomicU64::new(0),
        }
    }

    fn change<T>(&self, f: impl FnOnce(&RoutingTable<Route>) -> T) -> T {
        self.changes.fetch_add(1, Ordering::SeqCst);
        let out = f(&self.routes);
        self.changes.fetch_add(1, Ordering::SeqCst);
        out
    }

    /// Binds `name` (fails if it is bound).
    pub(crate) fn insert(&self, name: ProcName, route: Route) -> Result<(), RouterError> {
        self.change(|routes| routes.insert(name, route))
    }

    /// Unbinds `name`, returning what it was bound to (tests; the host
    /// itself removes only the route it looked up, see `remove_if`).
    #[cfg(test)]
    pub(crate) fn remove(&self, name: &[u8]) -> Option<Route> {
        self.change(|routes| routes.remove(name))
    }

    /// Unbinds `name` only if it is still bound to `expected` (the route
    /// the caller looked up); a newer binding of the name is left alone.
    /// Returns whether it removed it.
    pub(crate) fn remove_if(&self, name: &[u8], expected: Route) -> bool {
        self.change(|routes| routes.remove_if(name, &expected))
    }

    /// Whether `name` is bound.
    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        self.routes.contains(name)
    }

    /// A lock-free reader for the I/O thread.
    pub(crate) fn reader(&self) -> RouteReader<Route, RouteHasher> {
        self.routes.reader()
    }

    /// The change counter: odd while a change is in progress.
    pub(super) fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }
}

/// The last name routed and its route, valid while the table's change
/// counter still reads `changes`.
pub(super) struct RouteCache {
    name: Vec<u8>,
    route: Option<Route>,
    changes: u64,
    filled: bool,
}

impl RouteCache {
    /// Room for the longest name, so refilling never allocates.
    pub(super) fn new(max_name_len: usize) -> Self {
        Self {
            name: Vec::with_capacity(max_name_len),
            route: None,
            changes: 0,
            filled: false,
        }
    }

    /// The route of `name`: from the cache if the table has not started a
    /// change since it was filled, else from `reader` (refilling the cache
    /// when no change overlapped that lookup).
    #[inline]
    pub(super) fn lookup(
        &mut self,
        table: &Table,
        reader: &mut RouteReader<Route, RouteHasher>,
        name: &[u8],
    ) -> Option<Route> {
        let before = table.changes();
        if self.filled && self.changes == before && self.name == name {
            return self.route;
        }
        let route = reader.lookup(name).copied();
        if before % 2 == 0 && table.changes() == before && name.len() <= self.name.capacity() {
            self.name.clear();
            self.name.extend_from_slice(name);
            self.route = route;
            self.changes = before;
            self.filled = true;
        } else {
            self.filled = false;
        }
        route
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ProcKey;

    fn proc_route(index: u32) -> Route {
        Route::Proc(ProcKey {
            index,
            generation: 1,
        })
    }

    #[test]
    fn a_cached_route_follows_every_table_change() {
        let table = Table::new();
        let mut reader = table.reader();
        let mut cache = RouteCache::new(64);
        let echo = ProcName::new("echo").unwrap();
        assert_eq!(cache.lookup(&table, &mut reader, b"echo"), None);
        table.insert(echo.clone(), proc_route(1)).unwrap();
        assert_eq!(
            cache.lookup(&table, &mut reader, b"echo"),
            Some(proc_route(1))
        );
        // A hit, then another name, then the first again.
        assert_eq!(
            cache.lookup(&table, &mut reader, b"echo"),
            Some(proc_route(1))
        );
        assert_eq!(cache.lookup(&table, &mut reader, b"other"), None);
        assert_eq!(
            cache.lookup(&table, &mut reader, b"echo"),
            Some(proc_route(1))
        );
        // Rebinding the cached name is seen at once.
        assert_eq!(table.remove(b"echo"), Some(proc_route(1)));
        assert_eq!(cache.lookup(&table, &mut reader, b"echo"), None);
        table.insert(echo, proc_route(2)).unwrap();
        assert_eq!(
            cache.lookup(&table, &mut reader, b"echo"),
            Some(proc_route(2))
        );
        assert_eq!(
            cache.lookup(&table, &mut reader, b"echo"),
            Some(proc_route(2))
        );
    }
}
