//! `HostConfig::ring_memory` reaches the rings a spawned proc gets: on
//! demand, a proc's two rings hold their header pages only (also after
//! the proc mapped them); populated, every page from the spawn.

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use hostmux_host::{FrontendKind, HostConfig, LocalProc, RingMemory};
use tokio::sync::oneshot;

use crate::support::{run, serve};

const RING_BYTES: usize = 1 << 20;

/// Bytes of memory a memfd holds (`st_blocks` counts 512-byte units).
fn resident(memfd: &OwnedFd) -> u64 {
    let file = std::fs::File::from(memfd.try_clone().expect("dup"));
    file.metadata().expect("fstat").blocks() * 512
}

/// A proc that maps its rings, reports the memory of both memfds after
/// mapping them, reports ready and runs until stopped.
fn reporting(report: oneshot::Sender<(u64, u64)>) -> LocalProc {
    LocalProc::new(move |mut cx, rings| async move {
        let (inbound, outbound) = (
            rings.lanes[0]
                .inbound
                .try_clone()
                .map_err(|e| e.to_string())?,
            rings.lanes[0]
                .outbound
                .try_clone()
                .map_err(|e| e.to_string())?,
        );
        let _endpoint = rings.attach().map_err(|e| e.to_string())?;
        let _ = report.send((resident(&inbound), resident(&outbound)));
        cx.report_ready();
        cx.stopped().await;
        Ok(())
    })
}

async fn rings_of(memory: RingMemory) -> (u64, u64) {
    let config = HostConfig {
        ring_memory: memory,
        inbound_ring_bytes: RING_BYTES,
        outbound_ring_bytes: RING_BYTES,
        ..HostConfig::default()
    };
    let (host, _serving) = serve(FrontendKind::Epoll, config).await;
    let (report, reported) = oneshot::channel();
    host.spawn("idle", reporting(report)).await.unwrap();
    let resident = reported.await.expect("the proc reports its rings' memory");
    host.terminate_proc("idle", Duration::from_secs(5))
        .await
        .unwrap();
    resident
}

#[test]
fn on_demand_rings_of_an_idle_proc_hold_their_header_pages_only() {
    run(FrontendKind::Epoll, |_| async {
        let (inbound, outbound) = rings_of(RingMemory::OnDemand).await;
        assert!(
            inbound <= 4096 && outbound <= 4096,
            "{inbound} / {outbound} bytes"
        );
    });
}

#[test]
fn populated_rings_of_an_idle_proc_hold_every_page() {
    run(FrontendKind::Epoll, |_| async {
        let (inbound, outbound) = rings_of(RingMemory::Populated).await;
        let whole = RING_BYTES as u64 + 4096;
        assert!(
            inbound >= whole && outbound >= whole,
            "{inbound} / {outbound} bytes"
        );
    });
}
