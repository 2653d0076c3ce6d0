//! Proc keys that mean the same proc on every I/O thread.
//!
//! With several I/O threads every thread runs its own [`Dataplane`], and
//! the routing table they all read holds one [`Route::Proc`](super::Route)
//! key per proc. So a key is not chosen by a data plane: the control side
//! allocates it from [`ProcKeys`] (one allocator per host) and sends it in
//! each thread's `AddProc`, and every data plane puts the proc in exactly
//! that slot ([`Dataplane::insert_proc`]). Keys agree by construction. A
//! key is given back ([`ProcKeys::release`]) only once every thread has
//! removed the proc, so no thread can still hold a slot the key's index
//! is handed out for again; the generation tells incarnations apart.

use std::os::fd::OwnedFd;
use std::sync::Mutex;

use hostmux_ring::{Consumer, Producer};
use hostmux_wire::{HeaderMemo, ProcName};

use super::{agent, Dataplane, OutboundEnd, Peer, ProcKey, ProcSlot, ProcState};
use crate::stats::ProcStats;

/// The host's allocator of proc keys (index + generation).
#[derive(Debug, Default)]
pub(crate) struct ProcKeys {
    slots: Mutex<KeySlots>,
}

#[derive(Debug, Default)]
struct KeySlots {
    /// Per index, the generation last handed out.
    generations: Vec<u32>,
    /// Indices free for reuse, the most recently freed last.
    free: Vec<u32>,
}

impl ProcKeys {
    /// A key no live proc holds: a free index (lowest reuse first is not
    /// needed; any free one) with its next generation.
    pub(crate) fn allocate(&self) -> ProcKey {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let index = match slots.free.pop() {
            Some(index) => index,
            None => {
                slots.generations.push(0);
                (slots.generations.len() - 1) as u32
            }
        };
        let generation = &mut slots.generations[index as usize];
        *generation = generation.wrapping_add(1);
        ProcKey {
            index,
            generation: *generation,
        }
    }

    /// Gives `key` back once no thread holds its proc. A key that is not
    /// the current one of its index (released twice) is ignored.
    pub(crate) fn release(&self, key: ProcKey) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let current = slots.generations.get(key.index as usize).copied();
        if current == Some(key.generation) && !slots.free.contains(&key.index) {
            slots.free.push(key.index);
        }
    }
}

impl Dataplane {
    /// Registers a proc's host-side ring ends in a slot of this data
    /// plane's choosing (tests and single-plane rigs; the host uses
    /// [`Dataplane::insert_proc`] with a key from [`ProcKeys`]).
    pub(crate) fn add_proc(
        &mut self,
        name: ProcName,
        inbound: Producer,
        inbound_memfd: OwnedFd,
        outbound: Consumer,
    ) -> ProcKey {
        let generation = self.next_generation();
        let index = self
            .procs
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.procs.len());
        let key = ProcKey {
            index: index as u32,
            generation,
        };
        self.insert_proc(key, name, inbound, inbound_memfd, outbound);
        key
    }

    /// Registers a proc's host-side ring ends (this thread's lane) under
    /// `key` (state: starting, so frames to it are returned `NotReady`
    /// until [`Dataplane::mark_ready`]). False, and nothing changed, if
    /// the slot is taken (a key must be released only after every thread
    /// removed its proc).
    pub(crate) fn insert_proc(
        &mut self,
        key: ProcKey,
        name: ProcName,
        inbound: Producer,
        inbound_memfd: OwnedFd,
        outbound: Consumer,
    ) -> bool {
        let index = key.index as usize;
        if self.procs.len() <= index {
            self.procs.resize_with(index + 1, || None);
        }
        if self.procs[index].is_some() {
            tracing::error!(proc = %name, ?key, "proc slot taken; the proc is not added");
            return false;
        }
        let stats = ProcStats {
            name: name.as_str().to_owned(),
            inbound_capacity: inbound.capacity() as u64,
            ..ProcStats::default()
        };
        self.procs[index] = Some(ProcSlot {
            generation: key.generation,
            peer: Peer::named(name.as_str().as_bytes()),
            name,
            state: ProcState::Starting,
            inbound: Some(inbound),
            inbound_memfd,
            outbound: Some(Box::new(OutboundEnd {
                ring: outbound,
                memo: HeaderMemo::new(),
            })),
            stats,
            dirty: false,
            outbound_armed: false,
            conn_waiters: Vec::with_capacity(4),
            zero_copy_defer: false,
            proc_waiters: Vec::with_capacity(4),
            drain_blocked: None,
            full_since: None,
            agent: false,
            agent_stop: agent::AgentStop::NotAsked,
            repeat_route: None,
        });
        self.dirty
            .reserve(self.procs.len().saturating_sub(self.dirty.len()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_reused_only_after_release_and_with_a_new_generation() {
        let keys = ProcKeys::default();
        let a = keys.allocate();
        let b = keys.allocate();
        assert_ne!(a.index, b.index);
        keys.release(a);
        keys.release(a);
        let c = keys.allocate();
        assert_eq!(c.index, a.index);
        assert_ne!(c.generation, a.generation);
        let d = keys.allocate();
        assert!(d.index != b.index && d.index != c.index, "released once");
    }
}
