//! Host identity from outside: a host bound to every interface keeps the
//! frames for any of its addresses, never links to itself, and names
//! itself to other hosts by its primary advertised address.

use hostmux_host::{FrontendKind, HostConfig};
use hostmux_wire::{Addr, FrameKind};

use crate::support::{echo_proc, every_frontend, free_port, serve_at, Client};

fn addr(text: &str) -> Addr {
    text.parse().unwrap()
}

/// Issue 13's loop: a host bound to `tcp:0.0.0.0:PORT`, addressed as
/// `tcp:127.0.0.1:PORT` (and as its other interface addresses), delivers
/// to its own proc and answers; it opens no link, even with those
/// addresses in its peer list (they are dropped from it at start), and
/// names itself by a real interface address, never `0.0.0.0`.
async fn a_host_bound_to_every_interface_keeps_frames_for_its_addresses(kind: FrontendKind) {
    let port = free_port();
    let loopback = format!("tcp:127.0.0.1:{port}");
    let unspecified = format!("tcp:0.0.0.0:{port}");
    let stranger_peer = "tcp:127.0.0.1:1";
    let config = HostConfig {
        token: Some("every-interface".to_owned()),
        // The same list every host of a cluster gets: this host is in it.
        peers: vec![addr(&loopback), addr(&unspecified), addr(stranger_peer)],
        peer_token: Some("shared-by-peers".to_owned()),
        ..HostConfig::default()
    };
    let (host, _serving) = serve_at(kind, Addr::tcp("0.0.0.0", port).unwrap(), config).await;
    assert_eq!(host.addr().as_str(), unspecified);
    // The peers that are this host were dropped; the other one stays.
    let peers: Vec<&str> = host.config().peers.iter().map(Addr::as_str).collect();
    assert_eq!(peers, [stranger_peer]);

    let advertised: Vec<String> = host.advertised().iter().map(Addr::to_string).collect();
    assert!(advertised.contains(&loopback), "{advertised:?}");
    let primary = advertised[0].clone();
    assert_ne!(primary, unspecified);
    let others: Vec<&String> = advertised.iter().filter(|a| **a != loopback).collect();
    if others.is_empty() {
        eprintln!("this machine has no non-loopback interface address: tried loopback only");
    } else {
        assert_ne!(primary, loopback, "a non-loopback address comes first");
    }
    let id = host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    assert_eq!(id.addr().as_str(), primary, "proc ids carry the primary");

    let mut client = Client::connect(&host, "local").await;
    let mut destinations = vec![
        loopback.clone(),
        unspecified.clone(),
        format!("tcp:[::ffff:127.0.0.1]:{port}"),
        format!("tcp:localhost:{port}"),
        String::new(),
    ];
    destinations.extend(others.into_iter().cloned());
    for (id, dest) in destinations.iter().enumerate() {
        client
            .send_to("echo", dest, id as u64, dest.as_bytes())
            .await;
        let reply = client.recv().await;
        assert_eq!(
            (reply.kind, reply.message_id),
            (FrameKind::Data, id as u64),
            "to {dest}: {reply:?}"
        );
        assert_eq!(reply.payload, dest.as_bytes());
    }
    let stats = host.stats().await.unwrap();
    let names: Vec<&str> = stats.conns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["local"], "no link was opened: {stats:?}");
    let echo = stats.proc("echo").unwrap();
    assert_eq!(echo.frames_in, destinations.len() as u64);
}
every_frontend!(a_host_bound_to_every_interface_keeps_frames_for_its_addresses);

/// A host bound to `0.0.0.0` with `advertise` names itself by the
/// advertised address in the frames it forwards: the far host, which
/// knows it by that address, routes its replies back (it would refuse a
/// frame from `0.0.0.0`, which is none of its peers).
async fn a_forwarded_frame_names_the_primary_advertised_address(kind: FrontendKind) {
    let (a_port, b_port) = (free_port(), free_port());
    let a_addr = format!("tcp:127.0.0.1:{a_port}");
    let b_advertised = format!("tcp:127.0.0.1:{b_port}");
    let peers = |list: &[&str]| HostConfig {
        peers: list.iter().map(|p| addr(p)).collect(),
        peer_token: Some("shared-by-peers".to_owned()),
        ..HostConfig::default()
    };
    // B, bound to every interface, is the client's host; A runs the echo.
    let b_config = HostConfig {
        token: Some("b-token".to_owned()),
        advertise: vec![addr(&b_advertised)],
        ..peers(&[&a_addr])
    };
    let (host_a, _serving_a) = serve_at(kind, addr(&a_addr), peers(&[&b_advertised])).await;
    let (host_b, _serving_b) =
        serve_at(kind, Addr::tcp("0.0.0.0", b_port).unwrap(), b_config).await;
    let advertised: Vec<&str> = host_b.advertised().iter().map(Addr::as_str).collect();
    assert_eq!(advertised, [b_advertised.as_str()]);
    host_a.spawn("echo", echo_proc(usize::MAX)).await.unwrap();

    let mut client = Client::connect(&host_b, "traveller").await;
    for id in 0..5 {
        client.send_to("echo", &a_addr, id, b"there and back").await;
        let reply = client.recv().await;
        assert_eq!(
            (reply.kind, reply.message_id),
            (FrameKind::Data, id),
            "{reply:?}"
        );
        assert_eq!(
            (reply.sender.as_str(), reply.sender_addr.as_str()),
            ("echo", a_addr.as_str())
        );
    }
    // A saw the frames come from B's advertised address: its link back to
    // B is named by it.
    let stats = host_a.stats().await.unwrap();
    let link = stats
        .conn(&b_advertised)
        .expect("A's link to B, named by B's advertised address");
    assert_eq!(link.frames_out, 5, "{link:?}");
}
every_frontend!(a_forwarded_frame_names_the_primary_advertised_address);
