//! Routing between hosts: dialled, cached links to configured peers only;
//! failures come back.

use std::time::Duration;

use hostmux_host::{FrontendKind, HostConfig};
use hostmux_wire::Addr;
use hostmux_wire::{FrameHeader, FrameKind, Sender, UndeliverableReason};

use crate::support::{
    echo_proc, every_frontend, free_port, reply, ring_proc, serve, serve_at, Client, Frame, WAIT,
};

/// A host config whose only peers are `peers`, with the peer token they
/// share (a link is accepted only from a connection that presented it).
fn with_peers(peers: &[&str]) -> HostConfig {
    HostConfig {
        peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
        peer_token: Some("shared-by-peers".to_owned()),
        ..HostConfig::default()
    }
}

async fn procs_and_clients_reach_another_host(kind: FrontendKind) {
    // Each host is the other's peer (host B dials host A for the replies).
    let (a_addr, b_addr) = (
        Addr::tcp("127.0.0.1", free_port()).unwrap(),
        Addr::tcp("127.0.0.1", free_port()).unwrap(),
    );
    let (host_a, _serving_a) = serve_at(kind, a_addr.clone(), with_peers(&[b_addr.as_str()])).await;
    let (host_b, _serving_b) = serve_at(kind, b_addr, with_peers(&[a_addr.as_str()])).await;
    host_b.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let b_addr = host_b.addr().to_string();

    // A client of host A talks to a proc of host B; the reply finds its way
    // back (host B dials host A for it).
    let mut client = Client::connect(&host_a, "traveller").await;
    for id in 0..20 {
        client.send_to("echo", &b_addr, id, b"far away").await;
        let reply = client.recv().await;
        assert_eq!(
            (reply.kind, reply.message_id),
            (FrameKind::Data, id),
            "{reply:?}"
        );
        assert_eq!(
            (reply.sender.as_str(), reply.sender_addr.as_str()),
            ("echo", b_addr.as_str())
        );
        assert_eq!(reply.payload, b"far away");
    }

    // A proc of host A talks to a proc of host B.
    let far = b_addr.clone();
    let caller = ring_proc(move |endpoint, poke| {
        let me = endpoint.name.clone();
        let header = FrameHeader {
            dest_addr: &far,
            sender: Sender::Proc {
                addr: "",
                name: me.as_str(),
            },
            ..FrameHeader::data("echo", 77)
        };
        endpoint
            .send(&header, b"ring to ring to ring", WAIT)
            .unwrap();
        let got = endpoint.recv(WAIT, Frame::from_view).unwrap();
        let hostmux_host::Received::Frame(echo) = got else {
            panic!("no echo from the other host");
        };
        assert_eq!(echo.message_id, 77);
        assert_eq!(echo.sender_addr, far);
        reply(endpoint, &poke, &echo.payload);
        true
    });
    host_a.spawn("caller", caller).await.unwrap();
    client.send("caller", 1, b"go").await;
    let relayed = client.recv().await;
    assert_eq!(relayed.payload, b"ring to ring to ring");

    let stats = host_a.stats().await.unwrap();
    let link = stats.conn(&b_addr).expect("a cached link to host B");
    assert_eq!(link.frames_out, 21, "{link:?}");
}
every_frontend!(procs_and_clients_reach_another_host);

async fn unreachable_host_returns_frames(kind: FrontendKind) {
    // A peer nobody listens on (port 1).
    let (host, _serving) = serve(kind, with_peers(&["tcp:127.0.0.1:1"])).await;
    let mut client = Client::connect(&host, "hopeful").await;
    // Nothing listens on port 1.
    for id in 0..3 {
        client
            .send_to("ghost", "tcp:127.0.0.1:1", id, b"anyone?")
            .await;
    }
    let mut returned = Vec::new();
    for _ in 0..3 {
        let notice = client.recv().await;
        assert_eq!(
            notice.undeliverable().reason,
            UndeliverableReason::HostUnreachable
        );
        returned.push(notice.message_id);
    }
    returned.sort_unstable();
    assert_eq!(returned, [0, 1, 2]);
    // A Unix address names no peer (links are TCP).
    client.send_to("ghost", "unix:/nowhere", 9, b"?").await;
    assert_eq!(
        client.recv().await.undeliverable().reason,
        UndeliverableReason::NotAPeer
    );
}
every_frontend!(unreachable_host_returns_frames);

// The loop this file once showed (a host bound to 0.0.0.0, addressed as
// 127.0.0.1, linking to itself until the hop limit) cannot happen any
// more: see `identity.rs`. The hop limit itself is checked by
// `dataplane::rules`' `the_hop_limit_ends_circulating_frames`.

/// How long a listener that is not a peer waits for a connection after the
/// sender already has its `NotAPeer` notice (the host refuses before any
/// dial, so nothing can come; this only bounds the check).
const NO_DIAL_GRACE: Duration = Duration::from_millis(300);

/// Issue 12's dial policy from outside: a client and a proc name a TCP
/// listener on this machine that is not a peer; both get `NotAPeer` and the
/// listener never gets a connection (so never sees the host's token).
async fn a_frame_for_a_non_peer_never_opens_a_connection(kind: FrontendKind) {
    let stranger = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stranger_addr = format!("tcp:127.0.0.1:{}", stranger.local_addr().unwrap().port());
    let config = HostConfig {
        token: Some("never-to-strangers".to_owned()),
        ..with_peers(&["tcp:127.0.0.1:1"])
    };
    let (host, _serving) = serve(kind, config).await;

    // A client.
    let mut client = Client::connect_with_token(&host, "curious", b"never-to-strangers")
        .await
        .expect("hello accepted");
    client.send_to("anyone", &stranger_addr, 1, b"psst").await;
    let notice = client.recv().await;
    assert_eq!(
        (notice.kind, notice.message_id),
        (FrameKind::Undeliverable, 1)
    );
    assert_eq!(notice.undeliverable().reason, UndeliverableReason::NotAPeer);

    // A proc: it tells the client the reason it got back.
    let target = stranger_addr.clone();
    let prober = ring_proc(move |endpoint, go| {
        let me = endpoint.name.clone();
        let header = FrameHeader {
            dest_addr: &target,
            sender: Sender::Proc {
                addr: "",
                name: me.as_str(),
            },
            ..FrameHeader::data("anyone", 2)
        };
        endpoint.send(&header, b"psst", WAIT).unwrap();
        let got = endpoint.recv(WAIT, Frame::from_view).unwrap();
        let hostmux_host::Received::Frame(notice) = got else {
            panic!("no answer to the proc's frame");
        };
        assert_eq!(notice.kind, FrameKind::Undeliverable, "{notice:?}");
        reply(endpoint, &go, &[notice.undeliverable().reason as u8]);
        true
    });
    host.spawn("prober", prober).await.unwrap();
    client.send("prober", 3, b"go").await;
    let told = client.recv().await;
    assert_eq!(told.message_id, 3);
    assert_eq!(told.payload, [UndeliverableReason::NotAPeer as u8]);

    // Both senders have their answers: no connection was, or will be, made.
    let accepted = tokio::time::timeout(NO_DIAL_GRACE, stranger.accept()).await;
    assert!(
        accepted.is_err(),
        "the host connected to a non-peer: {accepted:?}"
    );
    let stats = host.stats().await.unwrap();
    assert!(
        stats.conn(&stranger_addr).is_none(),
        "a link to the stranger"
    );
    assert_eq!(
        stats
            .conn("curious")
            .unwrap()
            .returned
            .get(UndeliverableReason::NotAPeer),
        1
    );
    assert_eq!(
        stats
            .proc("prober")
            .unwrap()
            .outbound_returned
            .get(UndeliverableReason::NotAPeer),
        1
    );
}
every_frontend!(a_frame_for_a_non_peer_never_opens_a_connection);

/// The control case for the test above: the same listener, configured as
/// a peer, does get the host's connection (so the check above can fail).
async fn a_frame_for_a_peer_opens_a_connection_to_it(kind: FrontendKind) {
    let peer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = format!("tcp:127.0.0.1:{}", peer.local_addr().unwrap().port());
    let (host, _serving) = serve(kind, with_peers(&[&peer_addr])).await;
    let mut client = Client::connect(&host, "curious").await;
    client.send_to("anyone", &peer_addr, 1, b"hi").await;
    let accepted = tokio::time::timeout(WAIT, peer.accept()).await;
    assert!(
        matches!(accepted, Ok(Ok(_))),
        "the host did not dial its peer: {accepted:?}"
    );
}
every_frontend!(a_frame_for_a_peer_opens_a_connection_to_it);
