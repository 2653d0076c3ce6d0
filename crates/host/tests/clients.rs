//! The library's clients against a real host: the blocking client (what the
//! CLI, the demo and the load generator use) and the errors every client
//! gives, each naming the host.

use std::time::Duration;

use hostmux_host::{BlockingClient, FrontendKind, HostConfig, HostError};
use hostmux_wire::{Addr, FrameKind};

use crate::support::{echo_proc, every_frontend, serve, serve_at, WAIT};

fn token_config() -> HostConfig {
    HostConfig {
        token: Some("sesame".to_owned()),
        ..HostConfig::default()
    }
}

/// Runs `f` on a blocking thread (the blocking client must not block the
/// runtime the host and its procs run on).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn blocking_client_batches_and_receives_in_place(kind: FrontendKind) {
    let (host, _serving) = serve(kind, token_config()).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let addr = host.addr().clone();
    let sent = blocking(move || {
        let mut client =
            BlockingClient::connect(&addr, "batcher", b"sesame", "service", WAIT).unwrap();
        assert_eq!(client.name(), "batcher");
        client.set_read_timeout(Some(WAIT)).unwrap();
        // Three queued frames go out in one write.
        for id in 0..3 {
            client.queue("echo", 0, id, &id.to_le_bytes()).unwrap();
        }
        assert!(client.queued() > 0);
        client.flush().unwrap();
        assert_eq!(client.queued(), 0);
        for id in 0..3 {
            let echo = client.recv().unwrap().expect("an echo");
            assert_eq!((echo.kind, echo.message_id), (FrameKind::Data, id));
            assert_eq!(echo.sender, "echo");
            assert_eq!(echo.payload, id.to_le_bytes());
        }
        // A prepared batch, written as it is, read back in place.
        let mut prepared = Vec::new();
        for id in 10..20u64 {
            client
                .encoder()
                .encode_to(&mut prepared, "echo", 0, id, &id.to_le_bytes())
                .unwrap();
        }
        client.write_raw(&prepared).unwrap();
        for id in 10..20 {
            let got = client
                .recv_with(|frame| (frame.kind(), frame.message_id()))
                .unwrap();
            assert_eq!(got, Some((FrameKind::Data, id)));
        }
        13
    })
    .await;
    let stats = host.stats().await.unwrap();
    let conn = stats.conn("batcher").unwrap();
    assert_eq!((conn.accepted, conn.delivered), (sent, sent));
}
every_frontend!(blocking_client_batches_and_receives_in_place);

async fn blocking_client_read_timeout_names_the_wait(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    let addr = host.addr().clone();
    blocking(move || {
        let mut client = BlockingClient::connect(&addr, "patient", b"", "service", WAIT).unwrap();
        // Nobody sends this client anything: the wait ends at the timeout.
        client
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        match client.recv() {
            Err(HostError::ReceiveTimeout {
                addr: shown,
                waited,
            }) => {
                assert_eq!(shown, addr.to_string());
                assert_eq!(waited, Duration::from_millis(50));
            }
            other => panic!("expected a receive timeout, got {other:?}"),
        }
    })
    .await;
}
every_frontend!(blocking_client_read_timeout_names_the_wait);

async fn a_busy_polling_client_round_trips_and_times_out(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let addr = host.addr().clone();
    blocking(move || {
        let mut client = BlockingClient::connect(&addr, "spinner", b"", "service", WAIT).unwrap();
        client.set_busy_poll(true).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        // Round trips, one frame at a time, then a batch bigger than one
        // socket read: every echo arrives, in order.
        for id in 0..50u64 {
            client.send("echo", 0, id, &id.to_le_bytes()).unwrap();
            let echo = client.recv().unwrap().expect("an echo");
            assert_eq!((echo.kind, echo.message_id), (FrameKind::Data, id));
            assert_eq!(echo.payload, id.to_le_bytes());
        }
        let payload = vec![7u8; 4096];
        for id in 100..400u64 {
            client.queue("echo", 0, id, &payload).unwrap();
        }
        client.flush().unwrap();
        for id in 100..400u64 {
            let got = client
                .recv_with(|frame| (frame.message_id(), frame.payload().len()))
                .unwrap();
            assert_eq!(got, Some((id, payload.len())));
        }
        // Nothing more comes: the spin ends at the read timeout.
        client
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        match client.recv() {
            Err(HostError::ReceiveTimeout { waited, .. }) => {
                assert_eq!(waited, Duration::from_millis(50))
            }
            other => panic!("expected a receive timeout, got {other:?}"),
        }
        // Back to blocking: the same connection still works.
        client.set_busy_poll(false).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        client.send("echo", 0, 999, b"done").unwrap();
        let echo = client.recv().unwrap().expect("an echo");
        assert_eq!(echo.message_id, 999);
    })
    .await;
}
every_frontend!(a_busy_polling_client_round_trips_and_times_out);

async fn refused_hellos_and_closed_ports_are_typed_errors(kind: FrontendKind) {
    let (host, _serving) = serve(kind, token_config()).await;
    let addr = host.addr().clone();
    blocking(move || {
        for token in [&b"guess"[..], b""] {
            match BlockingClient::connect(&addr, "intruder", token, "service", WAIT) {
                Err(HostError::HelloRefused {
                    addr: shown,
                    client,
                }) => {
                    assert_eq!(shown, addr.to_string());
                    assert_eq!(client, "intruder");
                }
                other => panic!("expected a refused hello, got {other:?}"),
            }
        }
        // A port nobody listens on (taken, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let closed = Addr::tcp("127.0.0.1", port).unwrap();
        match BlockingClient::connect(&closed, "lost", b"", "service", WAIT) {
            Err(error @ HostError::Connect { .. }) => {
                assert!(error.to_string().contains(&port.to_string()), "{error}");
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
        let abstract_addr = Addr::unix_abstract("hostmux-nowhere").unwrap();
        assert!(matches!(
            BlockingClient::connect(&abstract_addr, "lost", b"", "service", WAIT),
            Err(HostError::InvalidAddr { .. })
        ));
    })
    .await;
}
every_frontend!(refused_hellos_and_closed_ports_are_typed_errors);

async fn blocking_client_over_a_unix_path(kind: FrontendKind) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frontend.sock");
    let addr = Addr::unix_path(path.to_str().unwrap()).unwrap();
    let (host, _serving) = serve_at(kind, addr.clone(), HostConfig::default()).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    blocking(move || {
        let mut client = BlockingClient::connect(&addr, "local", b"", "service", WAIT).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        client.send("echo", 0, 7, b"over a path").unwrap();
        let echo = client.recv().unwrap().expect("the echo");
        assert_eq!(
            (echo.message_id, echo.payload.as_slice()),
            (7, &b"over a path"[..])
        );
    })
    .await;
}
every_frontend!(blocking_client_over_a_unix_path);

async fn a_half_closed_client_gets_every_reply_then_the_end(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let addr = format!("127.0.0.1:{}", host.addr().port().unwrap());
    let client = hostmux_host::Client::connect_tcp(&addr, "halfway", None, "service")
        .await
        .unwrap();
    let (mut writer, mut reader) = client.into_split();
    for id in 0..100u64 {
        writer.queue("echo", 0, id, &id.to_le_bytes()).unwrap();
    }
    // Flushes the batch, then shuts the write side down.
    writer.shutdown().await.unwrap();
    for id in 0..100u64 {
        let echo = tokio::time::timeout(WAIT, reader.recv())
            .await
            .expect("a reply within the wait")
            .unwrap()
            .expect("every reply before the end");
        assert_eq!((echo.kind, echo.message_id), (FrameKind::Data, id));
    }
    let end = tokio::time::timeout(WAIT, reader.recv())
        .await
        .expect("the host closes once everything is answered")
        .unwrap();
    assert_eq!(end, None);
}
every_frontend!(a_half_closed_client_gets_every_reply_then_the_end);
