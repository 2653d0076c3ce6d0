//! A data plane with no I/O around it, for the fuzz entry points and the
//! crate's own tests: the service route, then procs on real shared-memory
//! rings and client connections added one call each.

use std::sync::Arc;

use hostmux_ring::{Consumer, Producer, SharedRing};
use hostmux_wire::ProcName;

use super::{ConnKey, Dataplane, ProcKey, Route, Table};
use crate::config::HostConfig;
use crate::identity::Identity;

/// A [`Dataplane`] with its routing table, as the I/O thread would own them.
pub(crate) struct Rig {
    pub(crate) dp: Dataplane,
    pub(crate) table: Arc<Table>,
}

/// The proc's side of a proc added to a [`Rig`].
pub(crate) struct RigProc {
    pub(crate) key: ProcKey,
    /// The proc's end of its inbound ring (host → proc).
    pub(crate) inbound: Consumer,
    /// The proc's end of its outbound ring (proc → host).
    pub(crate) outbound: Producer,
}

impl Rig {
    /// A data plane with only the service proc routed, of a host at
    /// `tcp:127.0.0.1:9`.
    pub(crate) fn new(cfg: HostConfig) -> Rig {
        Rig::with_identity(cfg, Identity::single("tcp:127.0.0.1:9"))
    }

    /// [`Rig::new`] for a host with the addresses `identity`.
    pub(crate) fn with_identity(cfg: HostConfig, identity: Identity) -> Rig {
        let service = ProcName::new("service").expect("valid name");
        let table = Arc::new(Table::new());
        table
            .insert(service.clone(), Route::Service)
            .expect("empty table");
        let dp = Dataplane::new(Arc::new(cfg), service, table.clone(), identity);
        Rig { dp, table }
    }

    /// Adds a ready proc called `name` with rings of the given capacities
    /// and routes its name to it.
    pub(crate) fn add_proc(
        &mut self,
        name: &str,
        inbound_bytes: usize,
        outbound_bytes: usize,
    ) -> RigProc {
        let inbound = SharedRing::create(inbound_bytes).expect("memfd");
        let memfd = inbound.memfd().try_clone_to_owned().expect("dup");
        let (host_in, proc_in) = inbound.split().expect("split");
        let (proc_out, host_out) = SharedRing::create(outbound_bytes)
            .expect("memfd")
            .split()
            .expect("split");
        let name = ProcName::new(name).expect("valid name");
        let key = self.dp.add_proc(name.clone(), host_in, memfd, host_out);
        self.dp.mark_ready(key, false);
        self.table
            .insert(name, Route::Proc(key))
            .expect("free name");
        RigProc {
            key,
            inbound: proc_in,
            outbound: proc_out,
        }
    }

    /// Adds a client connection that said hello as `name`.
    pub(crate) fn add_conn(&mut self, name: &str) -> ConnKey {
        self.dp
            .add_conn(ProcName::new(name).expect("valid name"))
            .expect("free name")
    }
}
