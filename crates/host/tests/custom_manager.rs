//! A custom proc manager served by a real host with one trait impl
//! (`ProcManager`): `WithoutSpawnRequests` stands in for `SpawnByRequest`,
//! `LocalProc` specs work for any manager whose config is a
//! `LocalProcConfig`, and bulk terminate comes with the trait.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hostmux_host::{FrontendKind, Host, HostConfig, LocalProc, WithoutSpawnRequests};
use hostmux_lifecycle::{
    LifecycleError, LocalHandle, LocalProcConfig, LocalProcManager, ProcManager, ProcName,
};
use hostmux_wire::{
    Addr, ControlErrorKind, ControlRequest, ControlResponse, FrameKind, SpawnRequest,
};

use crate::support::{every_frontend, next_frame};

/// A manager of the embedder's own: the in-process manager plus a count of
/// spawns. One `impl`.
#[derive(Default)]
struct CountingManager {
    procs: LocalProcManager,
    spawned: AtomicUsize,
}

impl ProcManager for CountingManager {
    type Handle = LocalHandle;
    type Config = LocalProcConfig;

    async fn spawn(
        &self,
        name: ProcName,
        config: LocalProcConfig,
    ) -> Result<LocalHandle, LifecycleError> {
        self.spawned.fetch_add(1, Ordering::SeqCst);
        self.procs.spawn(name, config).await
    }

    fn get(&self, name: &ProcName) -> Option<LocalHandle> {
        self.procs.get(name)
    }

    fn procs(&self) -> Vec<LocalHandle> {
        self.procs.procs()
    }
}

fn echo() -> LocalProc {
    LocalProc::booted(|mut proc| {
        proc.serve(|mut message| {
            let payload = message.payload();
            message.reply(payload)
        })
    })
}

async fn a_custom_manager_serves_spawns_routes_and_stops(kind: FrontendKind) {
    let config = HostConfig {
        frontend: kind,
        // One lane per proc (`ProcEndpoint`), whatever the machine.
        io_threads: 1,
        ..HostConfig::default()
    };
    let manager = WithoutSpawnRequests(CountingManager::default());
    let (host, _serving) = Host::serve(manager, Addr::tcp("127.0.0.1", 0).unwrap(), config)
        .await
        .unwrap();
    host.spawn("echo", echo()).await.unwrap();

    let addr = format!("127.0.0.1:{}", host.addr().port().unwrap());
    let client =
        hostmux_host::Client::connect_tcp(&addr, "cli", None, host.service_name().as_str())
            .await
            .unwrap();
    let (mut writer, mut reader) = client.into_split();
    writer
        .send("echo", 0, 5, b"through a custom manager")
        .await
        .unwrap();
    let reply = next_frame(&mut reader).await.expect("a reply");
    assert_eq!(reply.kind, FrameKind::Data, "{reply:?}");
    assert_eq!(reply.payload, b"through a custom manager");

    // The control plane refuses to start programs, saying why.
    let refused = host
        .handle_control(ControlRequest::Spawn(SpawnRequest {
            name: "other".to_owned(),
            program: "/bin/true".to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            inbound_ring_bytes: 0,
            outbound_ring_bytes: 0,
            ready_timeout_ms: 0,
            user: None,
            group: None,
            restart: Default::default(),
            ready: String::new(),
            watchdog_ms: 0,
        }))
        .await;
    match refused {
        ControlResponse::Error { kind, message } => {
            assert_eq!(kind, ControlErrorKind::SpawnFailed);
            assert!(message.contains("'/bin/true'"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let summary = host.terminate_children(Duration::from_secs(30), 4).await;
    assert_eq!((summary.attempted, summary.ok, summary.failed), (1, 1, 0));
    assert_eq!(host.manager().0.spawned.load(Ordering::SeqCst), 1);
    assert!(host.procs().is_empty(), "{:?}", host.procs());
}
every_frontend!(a_custom_manager_serves_spawns_routes_and_stops);
