//! `LocalProc::booted`: an in-process proc written on `hostmux-proc`'s API
//! in one call (no hand-built `BootParams`, no `spawn_blocking` loop),
//! echoing through a real host, stopped by the host's terminate.

use std::time::Duration;

use hostmux_host::{FrontendKind, HostConfig, LocalProc};
use hostmux_lifecycle::{ProcHandle as _, ProcManager as _, TerminalStatus};
use hostmux_proc::{ProcError, Recv};
use hostmux_wire::{FrameKind, ProcName};

use crate::support::{every_frontend, serve, Client};

/// Replies to every data message with its payload, until asked to stop.
fn echo() -> LocalProc {
    LocalProc::booted(|mut proc| {
        proc.serve(|mut message| {
            if message.kind() != FrameKind::Data {
                return Ok(());
            }
            let payload = message.payload();
            match message.reply(payload) {
                Err(ProcError::NoReplyAddress { .. }) => Ok(()),
                other => other,
            }
        })
    })
}

async fn a_booted_proc_echoes_through_the_host_and_stops_on_terminate(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    let id = host.spawn("echo", echo()).await.unwrap();
    assert_eq!(id.name().as_str(), "echo");

    let mut client = Client::connect(&host, "cli").await;
    for message_id in 1..=3u64 {
        let payload = format!("hello {message_id}");
        client.send("echo", message_id, payload.as_bytes()).await;
        let reply = client.recv().await;
        assert_eq!(reply.kind, FrameKind::Data, "{reply:?}");
        assert_eq!(
            (
                reply.message_id,
                reply.sender.as_str(),
                reply.payload.as_slice()
            ),
            (message_id, "echo", payload.as_bytes())
        );
    }

    // The terminate reaches the blocking loop through its stop handle:
    // `serve` returns and the proc exits 0, well before the grace ends.
    let status = host
        .terminate_proc("echo", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        status,
        TerminalStatus::Exited {
            code: 0,
            output: None
        }
    );
}
every_frontend!(a_booted_proc_echoes_through_the_host_and_stops_on_terminate);

async fn a_booted_proc_whose_body_fails_reports_the_error(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    // Fails on its first application message.
    let failing = LocalProc::booted(|mut proc| loop {
        if let Recv::Message(message) = proc.recv_timeout(Duration::from_secs(60))? {
            return Err(ProcError::NotAnswerable {
                kind: message.kind(),
                message_id: message.message_id(),
            });
        }
    });
    host.spawn("failing", failing).await.unwrap();
    let handle = host
        .manager()
        .get(&ProcName::new("failing").unwrap())
        .expect("a live proc");
    let mut client = Client::connect(&host, "cli").await;
    client.send("failing", 7, b"boom").await;

    let status = tokio::time::timeout(Duration::from_secs(30), handle.wait())
        .await
        .expect("the proc ends")
        .unwrap();
    match status {
        TerminalStatus::Failed { reason, .. } => {
            assert!(reason.contains("in-process proc 'failing'"), "{reason}");
            assert!(reason.contains("message 7"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
every_frontend!(a_booted_proc_whose_body_fails_reports_the_error);
