//! The host's client connections by name: a namespace of their own.
//!
//! A client's hello name is looked up here and nowhere else, and only for
//! frames that say they are for a client ([`Flags::TO_CLIENT`]) or answers
//! to a client; the shared routing [`Table`](super::Table) holds procs and
//! the service proc only. So a client can neither take a proc's name (a
//! spawn never fails because of a client), nor shadow one (a frame for a
//! proc name reaches that proc or is answered `NoSuchProc`), nor receive
//! frames meant for a proc. Only the I/O thread touches clients (a
//! connection is added after its hello and removed when it closes), so
//! this is a plain map owned by the data plane, not a lock-free table.
//!
//! [`Flags::TO_CLIENT`]: hostmux_wire::Flags::TO_CLIENT

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hostmux_router::RouteHasher;

use super::{ConnKey, Dataplane};

/// Every I/O thread's clients by name: which thread holds each name.
#[derive(Debug, Default)]
pub(crate) struct ClientNames {
    holders: Mutex<HashMap<Box<[u8]>, usize, RouteHasher>>,
}

impl ClientNames {
    /// The thread holding `name`, if a client holds it.
    #[cfg(test)]
    pub(crate) fn holder(&self, name: &[u8]) -> Option<usize> {
        let holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        holders.get(name).copied()
    }
}

/// Connected clients by hello name.
#[derive(Default)]
pub(super) struct Clients {
    by_name: HashMap<Box<[u8]>, ConnKey, RouteHasher>,
    /// The host-wide names and this thread's index, with several threads.
    shared: Option<(Arc<ClientNames>, usize)>,
}

impl Clients {
    /// Binds `name` to `key`; false (nothing changed) if another client
    /// holds it, on this thread or another. Procs are not consulted: their
    /// names are another namespace.
    pub(super) fn insert(&mut self, name: &[u8], key: ConnKey) -> bool {
        if self.by_name.contains_key(name) {
            return false;
        }
        if let Some((shared, thread)) = &self.shared {
            let mut holders = shared.holders.lock().unwrap_or_else(|e| e.into_inner());
            if holders.contains_key(name) {
                return false;
            }
            holders.insert(name.into(), *thread);
        }
        self.by_name.insert(name.into(), key);
        true
    }

    /// Unbinds `name` if it is still bound to `key` (a newer holder is
    /// left alone).
    pub(super) fn remove_if(&mut self, name: &[u8], key: ConnKey) {
        if self.by_name.get(name) == Some(&key) {
            self.by_name.remove(name);
            if let Some((shared, thread)) = &self.shared {
                let mut holders = shared.holders.lock().unwrap_or_else(|e| e.into_inner());
                if holders.get(name) == Some(thread) {
                    holders.remove(name);
                }
            }
        }
    }

    /// The other I/O thread holding `name`, if another holds it (after a
    /// miss of [`lookup`](Self::lookup): takes the host-wide lock).
    pub(super) fn holder_elsewhere(&self, name: &[u8]) -> Option<usize> {
        let (shared, thread) = self.shared.as_ref()?;
        let holders = shared.holders.lock().unwrap_or_else(|e| e.into_inner());
        holders.get(name).copied().filter(|holder| holder != thread)
    }

    /// The connection holding `name`. Allocation-free.
    #[inline]
    pub(super) fn lookup(&self, name: &[u8]) -> Option<ConnKey> {
        self.by_name.get(name).copied()
    }
}

impl Dataplane {
    /// Makes client names unique across every data plane sharing
    /// `names`; this one is I/O thread `thread`. Call before any client
    /// binds.
    pub(crate) fn share_client_names(&mut self, names: Arc<ClientNames>, thread: usize) {
        self.clients.shared = Some((names, thread));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u32, generation: u32) -> ConnKey {
        ConnKey { index, generation }
    }

    #[test]
    fn a_name_has_one_holder_and_only_it_unbinds_it() {
        let mut clients = Clients::default();
        assert!(clients.insert(b"cli", key(0, 1)));
        assert!(!clients.insert(b"cli", key(1, 2)), "held");
        assert_eq!(clients.lookup(b"cli"), Some(key(0, 1)));
        clients.remove_if(b"cli", key(1, 2));
        assert_eq!(clients.lookup(b"cli"), Some(key(0, 1)), "not its holder");
        clients.remove_if(b"cli", key(0, 1));
        assert_eq!(clients.lookup(b"cli"), None);
        assert!(clients.insert(b"cli", key(1, 2)), "free again");
    }

    #[test]
    fn a_name_held_on_one_thread_is_refused_on_another_until_unbound() {
        let names = Arc::new(ClientNames::default());
        let mut first = Clients {
            shared: Some((names.clone(), 0)),
            ..Clients::default()
        };
        let mut second = Clients {
            shared: Some((names.clone(), 1)),
            ..Clients::default()
        };
        assert!(first.insert(b"cli", key(0, 1)));
        assert_eq!(names.holder(b"cli"), Some(0));
        assert!(!second.insert(b"cli", key(0, 1)), "held on thread 0");
        assert_eq!(second.lookup(b"cli"), None);
        second.remove_if(b"cli", key(0, 1));
        assert_eq!(names.holder(b"cli"), Some(0), "thread 1 holds nothing");
        first.remove_if(b"cli", key(0, 1));
        assert_eq!(names.holder(b"cli"), None);
        assert!(second.insert(b"cli", key(3, 4)));
        assert_eq!(names.holder(b"cli"), Some(1));
    }
}
