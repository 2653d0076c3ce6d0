//! Routing between hosts: dialled, cached links; failures come back.

use hostmux_host::{FrontendKind, HostConfig};
use hostmux_wire::Addr;
use hostmux_wire::{FrameHeader, FrameKind, Sender, UndeliverableReason};

use crate::support::{
    both_frontends, echo_proc, reply, ring_proc, serve, serve_at, Client, Frame, WAIT,
};

async fn procs_and_clients_reach_another_host(kind: FrontendKind) {
    let (host_a, _serving_a) = serve(kind, HostConfig::default()).await;
    let (host_b, _serving_b) = serve(kind, HostConfig::default()).await;
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
both_frontends!(procs_and_clients_reach_another_host);

async fn unreachable_host_returns_frames(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
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
            UndeliverableReason::NoSuchProc
        );
        returned.push(notice.message_id);
    }
    returned.sort_unstable();
    assert_eq!(returned, [0, 1, 2]);
    // A Unix address names no other host.
    client.send_to("ghost", "unix:/nowhere", 9, b"?").await;
    assert_eq!(
        client.recv().await.undeliverable().reason,
        UndeliverableReason::NoSuchProc
    );
}
both_frontends!(unreachable_host_returns_frames);

/// A host that does not recognise an alias of its own address (bound to
/// 0.0.0.0, addressed as 127.0.0.1) forwards the frame to itself over a
/// link, again and again: the hop count ends it after `max_hops` links, and
/// the client gets exactly one answer, `HopLimit`.
async fn a_frame_circulating_between_hosts_ends_at_the_hop_limit(kind: FrontendKind) {
    let config = HostConfig {
        token: Some("loop-test".to_owned()),
        max_hops: 4,
        ..HostConfig::default()
    };
    let (host, _serving) = serve_at(kind, Addr::tcp("0.0.0.0", 0).unwrap(), config).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let port = host.addr().port().unwrap();
    let alias = format!("tcp:127.0.0.1:{port}");
    let mut client = Client::connect_with_token(&host, "looper", b"loop-test")
        .await
        .expect("hello accepted");
    client.send_to("echo", &alias, 5, b"round and round").await;
    let answer = client.recv().await;
    assert_eq!(answer.kind, FrameKind::Undeliverable, "{answer:?}");
    assert_eq!(answer.message_id, 5);
    assert_eq!(answer.undeliverable().reason, UndeliverableReason::HopLimit);
    // The frame crossed the link max_hops times, plus the notice once.
    let stats = host.stats().await.unwrap();
    let link = stats.conn(&alias).expect("the link to the alias");
    assert_eq!(link.frames_out, 4, "{link:?}");
    let echo = stats.proc("echo").unwrap();
    assert_eq!(echo.frames_in, 0, "the frame never reached echo");
}
both_frontends!(a_frame_circulating_between_hosts_ends_at_the_hop_limit);
