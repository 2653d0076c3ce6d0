//! Frames reach the right place, in order, intact.

use std::collections::HashMap;

use hostmux_host::{FrontendKind, HostConfig};
use hostmux_wire::{
    ControlRequest, ControlResponse, FrameHeader, FrameKind, Sender, UndeliverableReason,
};

use crate::support::{
    assert_conn_adds_up, echo_proc, every_frontend, next_frame, reply, ring_proc, serve, Client,
    Frame, WAIT,
};

fn payload(client: usize, proc: usize, seq: u64) -> Vec<u8> {
    // Varying lengths, recognisable bytes.
    let len = 1 + (seq as usize * 7 + client * 13 + proc) % 300;
    (0..len)
        .map(|i| (i as u64 ^ seq ^ (client as u64) << 3) as u8)
        .collect()
}

async fn two_clients_three_procs_in_order(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    let procs = ["p0", "p1", "p2"];
    for name in procs {
        host.spawn(name, echo_proc(usize::MAX)).await.unwrap();
    }
    const PER_PROC: u64 = 200;
    let mut tasks = Vec::new();
    for c in 0..2usize {
        let client = Client::connect(&host, &format!("client-{c}")).await;
        tasks.push(tokio::spawn(async move {
            // Interleave destinations in one stream; message ids count per proc.
            let mut out = Vec::new();
            for seq in 0..PER_PROC {
                for (p, name) in procs.iter().enumerate() {
                    client.encode(name, seq, &payload(c, p, seq), &mut out);
                }
            }
            let (mut write_half, mut read_half) = client.into_split();
            // Keep the write half open until the replies are in: the host treats
            // end of stream as the client leaving.
            let writer = tokio::spawn(async move {
                write_half.write_raw(&out).await.unwrap();
                write_half
            });
            let mut next: HashMap<String, u64> = HashMap::new();
            for _ in 0..PER_PROC * 3 {
                let frame = next_frame(&mut read_half)
                    .await
                    .expect("host closed the connection early");
                assert_eq!(frame.kind, FrameKind::Data, "{frame:?}");
                let p = procs.iter().position(|n| *n == frame.sender).unwrap();
                let expected = next.entry(frame.sender.clone()).or_insert(0);
                assert_eq!(
                    frame.message_id, *expected,
                    "per-sender order from {}",
                    frame.sender
                );
                assert_eq!(
                    frame.payload,
                    payload(c, p, frame.message_id),
                    "payload intact"
                );
                *expected += 1;
            }
            drop(writer.await.unwrap());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = host.stats().await.unwrap();
    for c in 0..2 {
        let conn = stats.conn(&format!("client-{c}")).unwrap();
        assert_conn_adds_up(conn);
        assert_eq!(conn.accepted, PER_PROC * 3);
        assert_eq!(conn.delivered, PER_PROC * 3);
    }
    for name in procs {
        let p = stats.proc(name).unwrap();
        assert_eq!(p.frames_in, PER_PROC * 2);
        assert_eq!(p.frames_out, PER_PROC * 2);
        assert_eq!(p.outbound_delivered, PER_PROC * 2);
    }
}
every_frontend!(two_clients_three_procs_in_order);

async fn proc_to_proc_via_host(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    // "caller" sends 100 frames to "echo" when poked by a client, collects
    // the echoes, then tells the client how many came back in order.
    let caller = ring_proc(|endpoint, poke| {
        let me = endpoint.name.clone();
        for id in 0..100u64 {
            let header = FrameHeader {
                sender: Sender::Proc {
                    addr: "",
                    name: me.as_str(),
                },
                ..FrameHeader::data("echo", id)
            };
            endpoint.send(&header, &id.to_le_bytes(), WAIT).unwrap();
        }
        let mut in_order = 0u64;
        while in_order < 100 {
            let got = endpoint.recv(WAIT, Frame::from_view).unwrap();
            let hostmux_host::Received::Frame(Frame {
                sender,
                message_id: id,
                payload: body,
                ..
            }) = got
            else {
                panic!("no echo within the wait");
            };
            assert_eq!(sender, "echo");
            assert_eq!(id, in_order);
            assert_eq!(body, id.to_le_bytes());
            in_order += 1;
        }
        reply(endpoint, &poke, &in_order.to_le_bytes());
        true
    });
    host.spawn("caller", caller).await.unwrap();
    let mut client = Client::connect(&host, "tester").await;
    client.send("caller", 7, b"go").await;
    let answer = client.recv().await;
    assert_eq!(answer.message_id, 7);
    assert_eq!(answer.sender, "caller");
    assert_eq!(answer.payload, 100u64.to_le_bytes());
    let stats = host.stats().await.unwrap();
    assert_eq!(stats.proc("echo").unwrap().frames_in, 100);
    assert_eq!(stats.proc("caller").unwrap().outbound_delivered, 101);
}
every_frontend!(proc_to_proc_via_host);

async fn unknown_proc_is_returned(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    let mut client = Client::connect(&host, "lost").await;
    client.send("nobody", 42, b"hello?").await;
    let notice = client.recv().await;
    assert_eq!(notice.message_id, 42);
    let undeliverable = notice.undeliverable();
    assert_eq!(undeliverable.original_message_id, 42);
    assert_eq!(undeliverable.reason, UndeliverableReason::NoSuchProc);
    // Frames for another host are returned too (remote routing is not built yet).
    let stats = host.stats().await.unwrap();
    let conn = stats.conn("lost").unwrap();
    assert_conn_adds_up(conn);
    assert_eq!(conn.returned.get(UndeliverableReason::NoSuchProc), 1);
}
every_frontend!(unknown_proc_is_returned);

fn stats_request() -> Vec<u8> {
    ControlRequest::Stats { name: None }
        .to_bytes()
        .unwrap()
        .to_vec()
}

/// Sends a `Stats` request from `client` and decodes the response.
async fn ask_stats(client: &mut Client, id: u64) -> ControlResponse {
    let mut out = Vec::new();
    client.encode_kind(
        FrameKind::ControlRequest,
        "service",
        id,
        &stats_request(),
        &mut out,
    );
    client.write_all(&out).await;
    let response = client.recv().await;
    assert_eq!(response.kind, FrameKind::ControlResponse);
    assert_eq!(response.message_id, id);
    ControlResponse::decode(&aligned(&response.payload)).unwrap()
}

fn is_unauthorized(response: &ControlResponse) -> bool {
    matches!(
        response,
        ControlResponse::Error {
            kind: hostmux_wire::ControlErrorKind::Unauthorized,
            ..
        }
    )
}

async fn control_requests_over_the_data_plane_need_the_token(kind: FrontendKind) {
    // Without a token nobody on the frontend is privileged: clients and
    // procs get `Unauthorized`.
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let mut client = Client::connect(&host, "ops").await;
    let response = ask_stats(&mut client, 5).await;
    assert!(is_unauthorized(&response), "{response:?}");

    // From a proc: it asks the service when poked and relays the answer.
    let asker = ring_proc(|endpoint, poke| {
        if poke.sender != "ops" {
            return true;
        }
        let me = endpoint.name.clone();
        let header = FrameHeader {
            kind: FrameKind::ControlRequest,
            sender: Sender::Proc {
                addr: "",
                name: me.as_str(),
            },
            ..FrameHeader::data("service", 9)
        };
        endpoint.send(&header, &stats_request(), WAIT).unwrap();
        let got = endpoint
            .recv(WAIT, |view| {
                (view.kind(), view.message_id(), view.payload().to_vec())
            })
            .unwrap();
        let hostmux_host::Received::Frame((kind, id, body)) = got else {
            panic!("no response from the service proc");
        };
        assert_eq!((kind, id), (FrameKind::ControlResponse, 9));
        reply(endpoint, &poke, &body);
        true
    });
    host.spawn("asker", asker).await.unwrap();
    client.send("asker", 1, b"ask").await;
    let relayed = client.recv().await;
    assert_eq!(relayed.sender, "asker", "{relayed:?}");
    let response = ControlResponse::decode(&aligned(&relayed.payload)).unwrap();
    assert!(is_unauthorized(&response), "{response:?}");
    // Nothing changed, and the refusals were counted as delivered answers.
    assert_eq!(host.procs().len(), 2);
    let stats = host.stats().await.unwrap();
    assert_conn_adds_up(stats.conn("ops").unwrap());

    // With a token, a client that presented it may ask.
    let config = HostConfig {
        token: Some("s3cret".to_owned()),
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let mut client = Client::connect_with_token(&host, "ops", b"s3cret")
        .await
        .unwrap();
    let ControlResponse::Procs(procs) = ask_stats(&mut client, 6).await else {
        panic!("expected a proc list");
    };
    assert!(procs.iter().any(|p| p.name == "echo"), "{procs:?}");
}
every_frontend!(control_requests_over_the_data_plane_need_the_token);

fn aligned(bytes: &[u8]) -> hostmux_wire::rkyv::util::AlignedVec<16> {
    let mut v = hostmux_wire::rkyv::util::AlignedVec::<16>::new();
    v.extend_from_slice(bytes);
    v
}

async fn unix_socket_frontend(kind: FrontendKind) {
    use hostmux_host::Host;
    let name = format!("hostmux-test-{}-{kind:?}", std::process::id());
    let config = HostConfig {
        frontend: kind,
        // One lane per proc (`ProcEndpoint`), whatever the machine.
        io_threads: 1,
        ..HostConfig::default()
    };
    let (host, _serving) = Host::serve(
        hostmux_lifecycle::LocalProcManager::new(),
        hostmux_wire::Addr::unix_abstract(&name).unwrap(),
        config,
    )
    .await
    .unwrap();
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let socket = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let std = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
        std.set_nonblocking(true).unwrap();
        tokio::net::UnixStream::from_std(std).unwrap()
    };
    let (read_half, write_half) = socket.into_split();
    let peer = host.addr().to_string();
    let mut client =
        hostmux_host::Client::over_stream(&peer, read_half, write_half, "local", None, "service")
            .await
            .expect("the hello over the abstract socket is acknowledged");
    client.send("echo", 0, 5, b"over unix").await.unwrap();
    let echo = tokio::time::timeout(WAIT, client.recv())
        .await
        .unwrap()
        .unwrap()
        .expect("the echo, not end of stream");
    assert_eq!(
        (echo.message_id, echo.payload.as_slice()),
        (5, &b"over unix"[..])
    );
}
every_frontend!(unix_socket_frontend);

/// `Auto`, the default, runs io_uring on the io-uring crate where the
/// kernel has io_uring, and frames flow through it.
#[test]
fn the_default_frontend_is_io_uring_direct_where_io_uring_is_available() {
    if !crate::support::io_uring_or_report() {
        return;
    }
    crate::support::runtime().block_on(async {
        // One I/O thread: the suite's echo proc serves one lane.
        let config = HostConfig {
            io_threads: 1,
            ..HostConfig::default()
        };
        assert_eq!(config.frontend, FrontendKind::Auto);
        let (host, serving) = hostmux_host::Host::serve(
            hostmux_lifecycle::LocalProcManager::new(),
            hostmux_wire::Addr::tcp("127.0.0.1", 0).unwrap(),
            config,
        )
        .await
        .unwrap();
        assert_eq!(serving.frontend(), FrontendKind::IoUringDirect);
        host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
        for (i, name) in ["first", "second"].into_iter().enumerate() {
            let mut client = Client::connect(&host, name).await;
            client.send("echo", i as u64, b"ping").await;
            let answer = tokio::time::timeout(WAIT, client.recv()).await.unwrap();
            assert_eq!(
                (answer.message_id, answer.payload.as_slice()),
                (i as u64, &b"ping"[..])
            );
        }
    });
}
