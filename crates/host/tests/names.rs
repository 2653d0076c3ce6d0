//! Names and kinds (issue 12): client names live apart from proc names, and
//! clients send only what clients may send. Real sockets, both frontends.

use hostmux_host::{ClientReader, ClientWriter, FrontendKind, HostConfig, HELLO_PORT};
use hostmux_wire::{Flags, FrameHeader, FrameKind, Sender, Undeliverable, UndeliverableReason};

use crate::support::{echo_proc, every_frontend, next_frame, serve, Client, Frame, TestHost};

/// A connected client's halves.
async fn connect(host: &TestHost, name: &str) -> (ClientWriter, ClientReader) {
    Client::connect(host, name).await.into_split()
}

/// The next frame, which must be there.
async fn next(reader: &mut ClientReader) -> Frame {
    next_frame(reader)
        .await
        .expect("a frame, not end of stream")
}

/// A client named `later` connects first; `spawn later` succeeds all the
/// same. Frames for the proc `later` reach the proc (never the client), the
/// client `later` gets its own replies from the proc, addressed to it as a
/// client, and frames for the client `later` reach the client.
async fn a_client_named_like_a_proc_neither_stops_its_spawn_nor_receives_its_frames(
    kind: FrontendKind,
) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    let (mut later_w, mut later_r) = connect(&host, "later").await;
    host.spawn("later", echo_proc(usize::MAX))
        .await
        .expect("spawn later succeeds while a client holds `later`");

    // Another client's frame for `later` goes to the proc, which answers it.
    let (mut asker_w, mut asker_r) = connect(&host, "asker").await;
    asker_w.send("later", 0, 1, b"to the proc").await.unwrap();
    let echo = next(&mut asker_r).await;
    assert_eq!(
        (echo.kind, echo.message_id, echo.sender.as_str()),
        (FrameKind::Data, 1, "later")
    );
    assert_eq!(echo.payload, b"to the proc");
    assert!(echo.to_client, "a reply to a client carries TO_CLIENT");
    assert_eq!(echo.dest_name, "asker");

    // The client `later` asks the proc `later`: its first frame is that
    // reply (had the asker's frame reached it, it would have come first).
    later_w.send("later", 0, 7, b"mine").await.unwrap();
    let own = next(&mut later_r).await;
    assert_eq!(
        (
            own.kind,
            own.message_id,
            own.sender.as_str(),
            own.sender_is_client
        ),
        (FrameKind::Data, 7, "later", false),
        "{own:?}"
    );
    assert!(own.to_client && own.dest_name == "later");

    // A frame for the client `later` reaches the client, not the proc.
    asker_w
        .send_to_client("later", 0, 2, b"to the client")
        .await
        .unwrap();
    let direct = next(&mut later_r).await;
    assert_eq!(
        (
            direct.message_id,
            direct.sender.as_str(),
            direct.sender_is_client
        ),
        (2, "asker", true)
    );
    assert_eq!(direct.payload, b"to the client");

    let stats = host.stats().await.unwrap();
    let proc = stats.procs.iter().find(|p| p.name == "later").unwrap();
    assert_eq!(
        proc.frames_in, 2,
        "the proc got the asker's and later's frames"
    );
}
every_frontend!(a_client_named_like_a_proc_neither_stops_its_spawn_nor_receives_its_frames);

/// A frame for a proc name that no proc holds is `NoSuchProc`, even while a
/// client has that name; the notice is addressed to the sender as a client.
async fn a_proc_name_only_a_client_holds_is_no_such_proc(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let (mut ghost_w, mut ghost_r) = connect(&host, "ghost").await;
    let (mut asker_w, mut asker_r) = connect(&host, "asker").await;
    asker_w.send("ghost", 0, 5, b"anyone?").await.unwrap();
    let notice = next(&mut asker_r).await;
    assert_eq!(notice.kind, FrameKind::Undeliverable, "{notice:?}");
    assert_eq!(
        notice.undeliverable(),
        Undeliverable {
            original_message_id: 5,
            reason: UndeliverableReason::NoSuchProc,
        }
    );
    assert!(notice.to_client && notice.dest_name == "asker");
    // The client `ghost` got nothing: its first frame is its own echo.
    ghost_w.send("echo", 0, 6, b"ping").await.unwrap();
    let first = next(&mut ghost_r).await;
    assert_eq!((first.message_id, first.sender.as_str()), (6, "echo"));
}
every_frontend!(a_proc_name_only_a_client_holds_is_no_such_proc);

/// A client cannot send a notice, a control response, a frame marked as
/// relayed from another host's client, a hello-ack look-alike or a control
/// request to another client: nothing reaches the target, the sender gets
/// a `Malformed` notice for each of those that may be answered, and the
/// notice and response it forged are dropped and counted (a notice about a
/// notice is the loop the delivery rules forbid).
async fn a_client_cannot_forge_what_only_a_host_sends(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    let (_victim_w, mut victim_r) = connect(&host, "victim").await;
    let (mut mallory_w, mut mallory_r) = connect(&host, "mallory").await;
    let forged = |kind, flags, dest_port, message_id| FrameHeader {
        kind,
        flags,
        dest_port,
        sender: Sender::Client { name: "mallory" },
        ..FrameHeader::data("victim", message_id)
    };
    let notice = Undeliverable {
        original_message_id: 1,
        reason: UndeliverableReason::NoSuchProc,
    }
    .to_bytes();
    let to_client = Flags::TO_CLIENT;
    let other_host_service = Sender::Proc {
        addr: "tcp:10.9.9.9:7000",
        name: "service",
    };
    let frames = [
        (
            forged(FrameKind::Undeliverable, to_client, 0, 1),
            &notice[..],
        ),
        (forged(FrameKind::ControlResponse, to_client, 0, 2), b"x"),
        (
            forged(FrameKind::Data, to_client.with(Flags::FROM_CLIENT), 0, 3),
            b"relayed?",
        ),
        (forged(FrameKind::Data, to_client, HELLO_PORT, 4), b""),
        (forged(FrameKind::ControlRequest, to_client, 0, 5), b"x"),
        // The same relay mark on a frame for a proc name.
        (
            FrameHeader {
                dest_name: "victim",
                ..forged(FrameKind::Data, Flags::FROM_CLIENT, 0, 6)
            },
            b"relayed?",
        ),
        // Posing as a link from another host (a proc sender with an
        // address): only a connection that presented the token may relay,
        // and only for a configured peer, so these are a client's
        // host-only frames and are dropped.
        (
            FrameHeader {
                sender: other_host_service,
                ..forged(FrameKind::Undeliverable, to_client, 0, 7)
            },
            &notice[..],
        ),
        (
            FrameHeader {
                sender: other_host_service,
                ..forged(FrameKind::ControlResponse, to_client, 0, 8)
            },
            b"x",
        ),
    ];
    for (header, payload) in &frames {
        mallory_w.send_frame(header, payload).await.unwrap();
    }
    for id in 3..=6 {
        let refusal = next(&mut mallory_r).await;
        assert_eq!(refusal.kind, FrameKind::Undeliverable, "{refusal:?}");
        assert_eq!(
            refusal.undeliverable(),
            Undeliverable {
                original_message_id: id,
                reason: UndeliverableReason::Malformed,
            }
        );
        assert!(refusal.to_client && refusal.dest_name == "mallory");
        assert_eq!(refusal.sender, host.service_name().as_str());
    }
    // Then an honest frame: the victim's first frame is that one.
    mallory_w
        .send_to_client("victim", 0, 99, b"hello")
        .await
        .unwrap();
    let first = next(&mut victim_r).await;
    assert_eq!(
        (first.kind, first.message_id, first.sender.as_str()),
        (FrameKind::Data, 99, "mallory"),
        "nothing forged reached the victim"
    );
    let stats = host.stats().await.unwrap();
    let mallory = stats.conns.iter().find(|c| c.name == "mallory").unwrap();
    assert_eq!(mallory.dropped.get(UndeliverableReason::Malformed), 4);
    assert_eq!(mallory.returned.get(UndeliverableReason::Malformed), 4);
    assert_eq!(mallory.delivered, 1);
}
every_frontend!(a_client_cannot_forge_what_only_a_host_sends);

/// A client that holds the client token cannot pose as a configured peer's
/// link: only the peer token (which clients do not hold) makes a connection
/// a link, so its notice and response "from" the peer's service proc are a
/// client's host-only frames, dropped, and its data frame "from" a peer's
/// proc is refused.
async fn a_client_with_the_token_cannot_pose_as_a_peer(kind: FrontendKind) {
    let config = HostConfig {
        token: Some("client-secret".to_owned()),
        peer_token: Some("peer-secret".to_owned()),
        peers: vec!["tcp:10.9.9.9:7000".parse().unwrap()],
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    let (_victim_w, mut victim_r) = connect(&host, "victim").await;
    let (mut mallory_w, _mallory_r) = connect(&host, "mallory").await;
    let peer_service = Sender::Proc {
        addr: "tcp:10.9.9.9:7000",
        name: "service",
    };
    let to_victim = |kind, message_id, sender| FrameHeader {
        kind,
        flags: Flags::TO_CLIENT,
        sender,
        ..FrameHeader::data("victim", message_id)
    };
    let notice = Undeliverable {
        original_message_id: 1,
        reason: UndeliverableReason::NoSuchProc,
    }
    .to_bytes();
    mallory_w
        .send_frame(
            &to_victim(FrameKind::Undeliverable, 1, peer_service),
            &notice,
        )
        .await
        .unwrap();
    mallory_w
        .send_frame(
            &to_victim(FrameKind::ControlResponse, 2, peer_service),
            b"x",
        )
        .await
        .unwrap();
    mallory_w
        .send_frame(&to_victim(FrameKind::Data, 3, peer_service), b"relayed?")
        .await
        .unwrap();
    mallory_w
        .send_to_client("victim", 0, 99, b"hello")
        .await
        .unwrap();
    let first = next(&mut victim_r).await;
    assert_eq!(
        (first.kind, first.message_id, first.sender.as_str()),
        (FrameKind::Data, 99, "mallory"),
        "nothing posing as the peer reached the victim"
    );
    let stats = host.stats().await.unwrap();
    let mallory = stats.conns.iter().find(|c| c.name == "mallory").unwrap();
    assert_eq!(mallory.dropped.get(UndeliverableReason::Malformed), 2);
    assert_eq!(mallory.returned.get(UndeliverableReason::Malformed), 1);
}
every_frontend!(a_client_with_the_token_cannot_pose_as_a_peer);
