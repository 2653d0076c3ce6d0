//! Tests of forwarding to other hosts: peers, dials, notices over links,
//! a link's queue answered once when it fails.

use std::time::Instant;

use hostmux_wire::{
    decode_frame, encode_frame_to_vec, FrameDecoder, FrameHeader, FrameKind, Limits, Sender,
    Undeliverable, UndeliverableReason,
};

use super::*;
use crate::dataplane::rig::Rig;
use crate::dataplane::{Delivery, Drain, Outbox};

/// Not this host (the rig is `tcp:127.0.0.1:9`) and not a peer.
const STRANGER: &str = "tcp:127.0.0.1:7001";

fn config(peers: &[&str]) -> HostConfig {
    HostConfig {
        peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
        ..HostConfig::default()
    }
}

/// The addresses the data plane asked to dial since the last call.
fn dials(dp: &mut Dataplane) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(event) = dp.poll_event() {
        if let Event::Dial { peer, .. } = event {
            out.push(peer.as_str().to_owned());
        }
    }
    out
}

/// Client `conn` (called `name`) sends a data frame with `id` to
/// `echo` at `addr`.
fn client_sends(dp: &mut Dataplane, conn: ConnKey, name: &str, addr: &str, id: u64) {
    let header = FrameHeader {
        dest_addr: addr,
        sender: Sender::Client { name },
        ..FrameHeader::data("echo", id)
    };
    let mut bytes = Vec::new();
    encode_frame_to_vec(&mut bytes, &header, b"hello", &Limits::default()).unwrap();
    let mut decoder = FrameDecoder::new(Limits::default());
    decoder.feed(&bytes);
    let frame = decoder.next_frame().unwrap().unwrap();
    let delivery = dp.handle_conn_frame(conn, &frame, true, None, Instant::now());
    assert_eq!(delivery, Delivery::Done);
    dp.flush();
}

/// The (message id, reason) of each notice queued for `conn`.
fn notices(dp: &mut Dataplane, conn: ConnKey) -> Vec<(u64, UndeliverableReason)> {
    let mut buf = Vec::new();
    assert_eq!(
        dp.take_outbox(conn, &mut buf, Instant::now()),
        Outbox::Bytes
    );
    let mut decoder = FrameDecoder::new(Limits::default());
    decoder.feed(&buf);
    let mut out = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        assert_eq!(frame.kind(), FrameKind::Undeliverable);
        let notice = Undeliverable::decode(frame.payload()).unwrap();
        out.push((frame.message_id(), notice.reason));
    }
    out
}

#[test]
fn equivalent_spellings_of_a_peer_match_and_nothing_else_does() {
    let v4: Addr = "tcp:127.0.0.1:7000".parse().unwrap();
    let v6: Addr = "tcp:[::1]:7000".parse().unwrap();
    let name: Addr = "tcp:Peer-A.example:7000".parse().unwrap();
    assert!(same_endpoint(&v4, "tcp:127.0.0.1:7000"));
    assert!(same_endpoint(&v4, "tcp:[::ffff:127.0.0.1]:7000"));
    assert!(same_endpoint(&v6, "tcp:[0:0:0:0:0:0:0:1]:7000"));
    assert!(same_endpoint(&v6, "tcp:[::0001]:7000"));
    assert!(same_endpoint(&name, "tcp:peer-a.EXAMPLE:7000"));
    for other in [
        "tcp:127.0.0.1:7001",
        "tcp:127.0.0.2:7000",
        "tcp:localhost:7000",
        "tcp:[::1]:7000",
        "tcp:127.1:7000",
        "unix:/tmp/peer",
        "not an address",
    ] {
        assert!(!same_endpoint(&v4, other), "{other} matched {v4}");
    }
    assert!(!same_endpoint(&name, "tcp:peer-a.example.:7000"));
    assert!(!same_endpoint(&name, "tcp:peer-b.example:7000"));
    // Only TCP peers are ever matched (links are TCP).
    let unix: Addr = "unix:/tmp/peer".parse().unwrap();
    assert_eq!(configured_peer(&[unix], "unix:/tmp/peer"), None);
}

#[test]
fn a_client_frame_for_a_non_peer_is_answered_not_a_peer_without_a_dial() {
    // No peers at all (the default), and peers that do not include it.
    for peers in [&[][..], &["tcp:127.0.0.1:7000", "tcp:[::1]:7001"][..]] {
        let mut rig = Rig::new(config(peers));
        let conn = rig.add_conn("c");
        let dp = &mut rig.dp;
        for id in 1..=3 {
            client_sends(dp, conn, "c", STRANGER, id);
        }
        assert_eq!(dials(dp), Vec::<String>::new(), "peers {peers:?}");
        assert_eq!(
            notices(dp, conn),
            [1, 2, 3].map(|id| (id, UndeliverableReason::NotAPeer)),
            "peers {peers:?}"
        );
        let stats = dp.stats();
        let client = stats.conn("c").unwrap();
        assert_eq!(client.returned.get(UndeliverableReason::NotAPeer), 3);
        assert_eq!(client.delivered, 0);
        assert_eq!(stats.conns.len(), 1, "no link slot was made: {stats:?}");
        // The refusal was logged once, for the one address.
        assert_eq!(dp.remotes.refused_logged.len(), 1);
    }
}

#[test]
fn frames_for_a_peer_in_any_spelling_dial_it_once_as_configured() {
    let mut rig = Rig::new(config(&["tcp:[::1]:7000"]));
    let conn = rig.add_conn("c");
    let dp = &mut rig.dp;
    client_sends(dp, conn, "c", "tcp:[0:0::1]:7000", 1);
    client_sends(dp, conn, "c", "tcp:[::1]:7000", 2);
    assert_eq!(dials(dp), ["tcp:[::1]:7000"]);
    let stats = dp.stats();
    let link = stats
        .conn("tcp:[::1]:7000")
        .expect("one link, named as configured");
    assert_eq!(link.frames_out, 2, "{link:?}");
    assert_eq!(stats.conn("c").unwrap().delivered, 2);
}

#[test]
fn a_proc_frame_for_a_non_peer_is_answered_not_a_peer_without_a_dial() {
    let mut rig = Rig::new(config(&["tcp:10.0.0.2:7000"]));
    let mut proc = rig.add_proc("p", 1 << 16, 1 << 16);
    let dp = &mut rig.dp;
    let header = FrameHeader {
        dest_addr: STRANGER,
        sender: Sender::Proc {
            addr: "",
            name: "p",
        },
        ..FrameHeader::data("echo", 41)
    };
    let mut bytes = Vec::new();
    encode_frame_to_vec(&mut bytes, &header, b"out", &Limits::default()).unwrap();
    let mut slot = proc.outbound.try_reserve(bytes.len()).unwrap();
    slot.copy_from_slice(&bytes);
    slot.commit();
    proc.outbound.publish().unwrap();
    while dp.drain_outbound(proc.key, Instant::now()) == Drain::More {}
    dp.flush();
    assert_eq!(dials(dp), Vec::<String>::new());
    let record = proc.inbound.peek().unwrap().expect("a notice for the proc");
    let notice = decode_frame(record, &Limits::default()).unwrap();
    assert_eq!(notice.kind(), FrameKind::Undeliverable);
    assert_eq!(notice.message_id(), 41);
    assert_eq!(
        Undeliverable::decode(notice.payload()).unwrap().reason,
        UndeliverableReason::NotAPeer
    );
    let stats = dp.stats();
    assert_eq!(
        stats
            .proc("p")
            .unwrap()
            .outbound_returned
            .get(UndeliverableReason::NotAPeer),
        1
    );
    assert!(stats.conns.is_empty(), "no link slot was made: {stats:?}");
}

#[test]
fn a_notice_goes_back_to_a_remote_sender_only_over_a_link_to_a_peer() {
    let mut rig = Rig::new(config(&["tcp:10.0.0.2:7000"]));
    let dp = &mut rig.dp;
    for (addr, dialled) in [(STRANGER, false), ("tcp:10.0.0.2:7000", true)] {
        let original = FrameHeader {
            sender: Sender::Proc { addr, name: "far" },
            ..FrameHeader::data("gone", 5)
        };
        dp.notify_remote_sender(&original, UndeliverableReason::ProcExited);
        let expected: Vec<String> = if dialled {
            vec![addr.to_owned()]
        } else {
            Vec::new()
        };
        assert_eq!(dials(dp), expected, "sender at {addr}");
    }
}

#[test]
fn a_link_removed_with_a_full_window_answers_every_frame_once() {
    let peer = "tcp:10.0.0.2:7000";
    let mut rig = Rig::new(config(&[peer]));
    let conn = rig.add_conn("c");
    let dp = &mut rig.dp;
    let mut link = None;
    for id in 0..30_000 {
        client_sends(dp, conn, "c", peer, id);
        while let Some(event) = dp.poll_event() {
            if let Event::Dial { link: key, .. } = event {
                link = Some(key);
            }
        }
    }
    let link = link.expect("a dial");
    dp.link_failed(
        link,
        UndeliverableReason::HostUnreachable,
        "test",
        Instant::now(),
    );
    dp.remove_conn(link);
    // Every frame queued on the link that never came up is answered
    // once, with the dial's reason (this once took a minute: the queue
    // was re-read one frame at a time through a growing decoder).
    let answers = notices(dp, conn);
    assert_eq!(answers.len(), 30_000);
    assert!(
        answers
            .iter()
            .enumerate()
            .all(|(i, &(id, reason))| id == i as u64
                && reason == UndeliverableReason::HostUnreachable)
    );
}

#[test]
fn refused_addresses_are_logged_a_bounded_number_of_times() {
    let mut rig = Rig::new(HostConfig::default());
    let conn = rig.add_conn("c");
    let dp = &mut rig.dp;
    for port in 0..(MAX_REFUSED_LOGGED as u64 + 10) {
        let addr = format!("tcp:10.9.9.9:{}", 1000 + port);
        client_sends(dp, conn, "c", &addr, port + 1);
        client_sends(dp, conn, "c", &addr, port + 1);
        let _ = notices(dp, conn);
    }
    assert_eq!(dp.remotes.refused_logged.len(), MAX_REFUSED_LOGGED);
    assert!(dp.remotes.refused_logging_stopped);
    assert_eq!(dials(dp), Vec::<String>::new());
}
