//! Spawn, readiness, terminate, and the security rules of `serve`.

use std::time::{Duration, Instant};

use hostmux_host::{FrontendKind, Host, HostConfig, HostError, LocalProc};
use hostmux_lifecycle::LocalProcManager;
use hostmux_wire::{Addr, UndeliverableReason};

use crate::support::{echo_proc, every_frontend, serve, Client};

/// A proc that never reports ready and waits to be stopped.
fn never_ready() -> LocalProc {
    LocalProc::new(|mut cx, rings| async move {
        let _rings = rings;
        cx.stopped().await;
        Ok(())
    })
}

/// A proc that reports ready after `delay`, then runs until stopped.
fn ready_after(delay: Duration) -> LocalProc {
    LocalProc::new(move |mut cx, rings| async move {
        let _endpoint = rings.attach().map_err(|e| e.to_string())?;
        tokio::time::sleep(delay).await;
        cx.report_ready();
        cx.stopped().await;
        Ok(())
    })
}

async fn duplicate_spawn_is_rejected(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    let id = host.spawn("twin", echo_proc(usize::MAX)).await.unwrap();
    assert_eq!(id.name().as_str(), "twin");
    assert_eq!(id.addr(), host.addr());
    let again = host.spawn("twin", echo_proc(usize::MAX)).await;
    assert!(
        matches!(again, Err(HostError::ProcExists(ref n)) if n.as_str() == "twin"),
        "{again:?}"
    );
    // The service proc's name is reserved, and said to be.
    let service = host.spawn("service", echo_proc(usize::MAX)).await;
    assert!(
        matches!(service, Err(HostError::ReservedName(ref n)) if n.as_str() == "service"),
        "{service:?}"
    );
    // A name is free again once its proc is gone.
    let status = host
        .terminate_proc("twin", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    host.spawn("twin", echo_proc(usize::MAX)).await.unwrap();
}
every_frontend!(duplicate_spawn_is_rejected);

async fn spawn_ready_timeout_is_honoured(kind: FrontendKind) {
    let config = HostConfig {
        spawn_ready_timeout: Duration::from_millis(200),
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    let started = Instant::now();
    let err = host.spawn("sloth", never_ready()).await.unwrap_err();
    assert!(
        matches!(err, HostError::ReadyTimeout { ref name, timeout } if name.as_str() == "sloth" && timeout == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(err.to_string().contains("200ms"), "{err}");
    // The proc was killed and its name is free.
    assert!(host.manager_has_no("sloth"));
    host.spawn("sloth", echo_proc(usize::MAX)).await.unwrap();
}
every_frontend!(spawn_ready_timeout_is_honoured);

async fn spawn_ready_timeout_zero_disables_it(kind: FrontendKind) {
    let config = HostConfig {
        spawn_ready_timeout: Duration::ZERO,
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    host.spawn("patient", ready_after(Duration::from_millis(300)))
        .await
        .unwrap();
    let stats = host.stats().await.unwrap();
    assert!(stats.proc("patient").unwrap().ready);
}
every_frontend!(spawn_ready_timeout_zero_disables_it);

async fn frames_before_ready_are_not_ready(kind: FrontendKind) {
    let config = HostConfig {
        spawn_ready_timeout: Duration::ZERO,
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let gated = LocalProc::new(move |mut cx, rings| async move {
        let _endpoint = rings.attach().map_err(|e| e.to_string())?;
        let _ = release_rx.await;
        cx.report_ready();
        cx.stopped().await;
        Ok(())
    });
    let spawning = {
        let host = host.clone();
        tokio::spawn(async move { host.spawn("gated", gated).await })
    };
    let mut client = Client::connect(&host, "early").await;
    // Until the route is bound the name is unknown; once bound but not
    // ready, frames come back NotReady.
    let reason = loop {
        client.send("gated", 1, b"too soon").await;
        let reason = client.recv().await.undeliverable().reason;
        if reason != UndeliverableReason::NoSuchProc {
            break reason;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(reason, UndeliverableReason::NotReady);
    release_tx.send(()).unwrap();
    spawning.await.unwrap().unwrap();
}
every_frontend!(frames_before_ready_are_not_ready);

async fn terminate_children_unbinds_and_stops_all(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    for i in 0..5 {
        host.spawn(&format!("w{i}"), echo_proc(usize::MAX))
            .await
            .unwrap();
    }
    let summary = host.terminate_children(Duration::from_secs(5), 2).await;
    assert_eq!((summary.attempted, summary.ok, summary.failed), (5, 5, 0));
    assert!(host.procs().is_empty());
    let mut client = Client::connect(&host, "after").await;
    client.send("w0", 3, b"anyone?").await;
    assert_eq!(
        client.recv().await.undeliverable().reason,
        UndeliverableReason::NoSuchProc
    );
    // `ps` still lists it as ended, so a stop says how it ended.
    assert!(matches!(
        host.terminate_proc("w0", Duration::from_secs(1)).await,
        Err(HostError::AlreadyEnded { .. })
    ));
}
every_frontend!(terminate_children_unbinds_and_stops_all);

#[test]
fn non_loopback_bind_without_token_is_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let err = Host::serve(
            LocalProcManager::new(),
            Addr::tcp("0.0.0.0", 0).unwrap(),
            HostConfig::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HostError::InsecureBind { .. }), "{err:?}");
        assert!(err.to_string().contains("tcp:0.0.0.0:0"), "{err}");
        assert!(err.to_string().contains("token"), "{err}");
    });
}

async fn hello_needs_the_token(kind: FrontendKind) {
    let config = HostConfig {
        token: Some("sesame".to_owned()),
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    assert!(Client::connect_with_token(&host, "intruder", b"guess")
        .await
        .is_none());
    assert!(Client::connect_with_token(&host, "nobody", b"")
        .await
        .is_none());
    assert!(Client::connect_with_token(&host, "friend", b"sesame")
        .await
        .is_some());
}
every_frontend!(hello_needs_the_token);

trait ManagerProbe {
    fn manager_has_no(&self, name: &str) -> bool;
}

impl ManagerProbe for Host<LocalProcManager> {
    fn manager_has_no(&self, name: &str) -> bool {
        use hostmux_lifecycle::ProcManager;
        self.manager()
            .get(&hostmux_wire::ProcName::new(name).unwrap())
            .is_none()
            && !self.procs().iter().any(|p| p.as_str() == name)
    }
}
