//! Zero-copy receive (issue 15): large frames read from the socket straight
//! into the proc's ring arrive intact and are counted as such; a stalled
//! sender holds the ring no longer than the hold; a sender that closes, or
//! a proc removed, mid-payload leaves the ring consistent and every frame
//! answered once, as the copied path would.

use std::time::Duration;

use hostmux_host::{FrontendKind, HostConfig, ProcStats};
use hostmux_wire::{FrameKind, UndeliverableReason};

use crate::support::{
    assert_conn_adds_up, every_frontend, reply, ring_proc, serve, Client, TestHost, WAIT,
};

/// Rings that take a 1 MiB frame whole.
fn config() -> HostConfig {
    HostConfig {
        inbound_ring_bytes: 4 << 20,
        ..HostConfig::default()
    }
}

/// What the sink answers for a payload: its length and an FNV-1a hash.
fn digest(payload: &[u8]) -> Vec<u8> {
    let hash = payload.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut out = (payload.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&hash.to_le_bytes());
    out
}

/// Recognisable bytes, different per message.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(seed) as u8)
        .collect()
}

/// A proc that answers each data frame with its payload's digest.
async fn spawn_sink(host: &TestHost, name: &str) {
    let sink = ring_proc(|endpoint, frame| {
        if frame.kind == FrameKind::Data {
            reply(endpoint, &frame, &digest(&frame.payload));
        }
        true
    });
    host.spawn(name, sink).await.unwrap();
}

async fn proc_stats(host: &TestHost, name: &str) -> ProcStats {
    let stats = host.stats().await.unwrap();
    stats.proc(name).expect("the proc is there").clone()
}

/// Waits (bounded) until the proc's counters satisfy `done`.
async fn until(host: &TestHost, name: &str, what: &str, done: impl Fn(&ProcStats) -> bool) {
    let reached = tokio::time::timeout(WAIT, async {
        loop {
            if done(&proc_stats(host, name).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{what}: {:?}",
        proc_stats(host, name).await
    );
}

/// The bytes of a data frame of `payload_len` bytes from `client`.
fn encoded(client: &Client, id: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    client.encode("sink", id, payload, &mut out);
    out
}

async fn expect_digest(client: &mut Client, id: u64, payload: &[u8]) {
    let answer = client.recv().await;
    assert_eq!(
        (answer.kind, answer.message_id),
        (FrameKind::Data, id),
        "{answer:?}"
    );
    assert_eq!(answer.payload, digest(payload), "payload of frame {id}");
}

/// Sends each payload to the sink in turn and checks its digest; returns
/// the frames' lengths.
async fn send_each(client: &mut Client, payloads: &[Vec<u8>]) -> Vec<usize> {
    let mut lens = Vec::new();
    for (id, payload) in payloads.iter().enumerate() {
        let frame = encoded(client, id as u64, payload);
        lens.push(frame.len());
        client.write_all(&frame).await;
        expect_digest(client, id as u64, payload).await;
    }
    lens
}

/// 1 MiB and 64 KiB + 1 payloads go straight into the ring under the
/// default threshold (the read chunk is 64 KiB, so no such frame is ever
/// whole in the connection's buffer), small ones take the copied path.
/// Every payload arrives intact.
async fn large_frames_go_straight_into_the_ring(kind: FrontendKind) {
    let (host, _serving) = serve(kind, config()).await;
    spawn_sink(&host, "sink").await;
    let mut client = Client::connect(&host, "big").await;
    let payloads = [1 << 20, (64 << 10) + 1, 64, 4096, 1 << 20]
        .iter()
        .enumerate()
        .map(|(seed, &len)| pattern(len, seed as u64))
        .collect::<Vec<_>>();
    let lens = send_each(&mut client, &payloads).await;
    let large = lens.iter().filter(|&&len| len > 64 << 10);
    let expected = (large.clone().count() as u64, large.sum::<usize>() as u64);
    assert_eq!(expected.0, 3);
    let sink = proc_stats(&host, "sink").await;
    assert_eq!(sink.frames_in, payloads.len() as u64);
    assert_eq!(
        (sink.zero_copy_frames, sink.zero_copy_bytes),
        expected,
        "{sink:?}"
    );
    assert_eq!((sink.zero_copy_holds, sink.zero_copy_moved_back), (3, 0));
    let stats = host.stats().await.unwrap();
    let conn = stats.conn("big").unwrap();
    assert_conn_adds_up(conn);
    assert_eq!(conn.delivered, payloads.len() as u64);
    // What `ps --json`, `stats --json` and /metrics read.
    let listed = host.list().await.unwrap();
    let counters = listed.iter().find(|p| p.name == "sink").unwrap().counters;
    assert_eq!(
        (
            counters.zero_copy_frames,
            counters.zero_copy_bytes,
            counters.zero_copy_moved_back
        ),
        (expected.0, expected.1, 0)
    );
}
every_frontend!(large_frames_go_straight_into_the_ring);

/// A frame of exactly the threshold goes straight into the ring; one 16
/// bytes shorter (the next smaller frame length) takes the copied path.
/// (Both are larger than the 64 KiB read chunk, so both arrive partial.)
async fn the_threshold_is_inclusive(kind: FrontendKind) {
    let at = pattern(100_000, 1);
    let below = pattern(100_000 - 16, 2);
    let threshold = {
        let (host, _serving) = serve(kind, config()).await;
        let client = Client::connect(&host, "probe").await;
        encoded(&client, 0, &at).len()
    };
    let config = HostConfig {
        zero_copy_threshold: threshold,
        ..config()
    };
    let (host, _serving) = serve(kind, config).await;
    spawn_sink(&host, "sink").await;
    let mut client = Client::connect(&host, "big").await;
    let lens = send_each(&mut client, &[at, below]).await;
    assert_eq!(lens, [threshold, threshold - 16]);
    let sink = proc_stats(&host, "sink").await;
    assert_eq!(sink.frames_in, 2);
    assert_eq!(
        (sink.zero_copy_frames, sink.zero_copy_bytes),
        (1, threshold as u64),
        "{sink:?}"
    );
}
every_frontend!(the_threshold_is_inclusive);

/// A threshold of 0 turns it off.
async fn a_zero_threshold_copies_every_frame(kind: FrontendKind) {
    let config = HostConfig {
        zero_copy_threshold: 0,
        ..config()
    };
    let (host, _serving) = serve(kind, config).await;
    spawn_sink(&host, "sink").await;
    let mut client = Client::connect(&host, "big").await;
    let payload = pattern(1 << 20, 7);
    client.write_all(&encoded(&client, 7, &payload)).await;
    expect_digest(&mut client, 7, &payload).await;
    let sink = proc_stats(&host, "sink").await;
    assert_eq!((sink.frames_in, sink.zero_copy_holds), (1, 0), "{sink:?}");
}
every_frontend!(a_zero_threshold_copies_every_frame);

/// A client sends half a 1 MiB frame and stalls. Another client's frames to
/// the same proc wait for the held ring only until the hold ends (well
/// within the overload wait: were the ring held for as long as the
/// stalled client likes, they would come back `Overloaded`); then the
/// stalled client finishes and its frame is delivered the copied way.
/// Every frame is answered once.
async fn a_stalled_sender_holds_the_ring_only_for_the_hold(kind: FrontendKind) {
    let config = HostConfig {
        zero_copy_hold: Duration::from_millis(200),
        overload_wait: Duration::from_secs(5),
        ..config()
    };
    let (host, _serving) = serve(kind, config).await;
    spawn_sink(&host, "sink").await;
    let mut slow = Client::connect(&host, "slow").await;
    let mut other = Client::connect(&host, "other").await;
    let big = pattern(1 << 20, 1);
    let frame = encoded(&slow, 1, &big);
    let half = frame.len() / 2;
    slow.write_all(&frame[..half]).await;
    until(&host, "sink", "the ring is held", |s| {
        s.zero_copy_holds == 1
    })
    .await;
    for id in 0..10 {
        other.send("sink", id, &pattern(100, id)).await;
    }
    for id in 0..10 {
        expect_digest(&mut other, id, &pattern(100, id)).await;
    }
    // The others went in while the slow client still stalls: its frame
    // was moved out of the ring.
    let sink = proc_stats(&host, "sink").await;
    assert_eq!(
        (sink.frames_in, sink.zero_copy_moved_back),
        (10, 1),
        "{sink:?}"
    );
    slow.write_all(&frame[half..]).await;
    expect_digest(&mut slow, 1, &big).await;
    // One answer each: a probe's answer comes next.
    for client in [&mut slow, &mut other] {
        client.send("sink", 99, b"probe").await;
        expect_digest(client, 99, b"probe").await;
    }
    let stats = host.stats().await.unwrap();
    for name in ["slow", "other"] {
        let conn = stats.conn(name).unwrap();
        assert_conn_adds_up(conn);
        assert_eq!(conn.returned.total(), 0, "{conn:?}");
        assert_eq!(conn.frames_out, conn.accepted, "{conn:?}");
    }
    let sink = stats.proc("sink").unwrap();
    assert_eq!((sink.frames_in, sink.zero_copy_frames), (13, 0), "{sink:?}");
}
every_frontend!(a_stalled_sender_holds_the_ring_only_for_the_hold);

/// A client that ends its stream mid-payload is told `Malformed` and
/// closed, as on the copied path; nothing of its frame reaches the proc,
/// and the ring takes the next large frame whole.
async fn a_close_mid_payload_abandons_the_held_frame(kind: FrontendKind) {
    let config = HostConfig {
        zero_copy_hold: Duration::from_secs(30),
        overload_wait: Duration::from_secs(60),
        ..config()
    };
    let (host, _serving) = serve(kind, config).await;
    spawn_sink(&host, "sink").await;
    let leaver = Client::connect(&host, "leaver").await;
    let frame = encoded(&leaver, 1, &pattern(1 << 20, 1));
    let (mut writer, mut reader) = leaver.into_split();
    writer.write_raw(&frame[..frame.len() / 2]).await.unwrap();
    until(&host, "sink", "the ring is held", |s| {
        s.zero_copy_holds == 1
    })
    .await;
    writer.shutdown().await.unwrap();
    let notice = crate::support::next_frame(&mut reader)
        .await
        .expect("a notice before the close");
    assert_eq!(notice.message_id, 0, "{notice:?}");
    assert_eq!(
        notice.undeliverable().reason,
        UndeliverableReason::Malformed
    );
    assert!(crate::support::next_frame(&mut reader).await.is_none());
    let sink = proc_stats(&host, "sink").await;
    assert_eq!(
        (sink.frames_in, sink.zero_copy_moved_back),
        (0, 1),
        "{sink:?}"
    );
    let mut next = Client::connect(&host, "next").await;
    let payload = pattern(1 << 20, 2);
    next.write_all(&encoded(&next, 2, &payload)).await;
    expect_digest(&mut next, 2, &payload).await;
    let sink = proc_stats(&host, "sink").await;
    assert_eq!((sink.frames_in, sink.zero_copy_frames), (1, 1), "{sink:?}");
}
every_frontend!(a_close_mid_payload_abandons_the_held_frame);

/// The proc is removed while its ring holds a frame being read: the frame,
/// once whole, is answered as the copied path answers a frame for a proc
/// that is gone, once, and nothing else is lost.
async fn a_proc_removed_mid_payload_gets_its_frame_answered(kind: FrontendKind) {
    let config = HostConfig {
        zero_copy_hold: Duration::from_secs(30),
        overload_wait: Duration::from_secs(60),
        ..config()
    };
    let (host, _serving) = serve(kind, config).await;
    spawn_sink(&host, "sink").await;
    let mut client = Client::connect(&host, "orphan").await;
    let frame = encoded(&client, 5, &pattern(1 << 20, 5));
    let half = frame.len() / 2;
    client.write_all(&frame[..half]).await;
    until(&host, "sink", "the ring is held", |s| {
        s.zero_copy_holds == 1
    })
    .await;
    tokio::time::timeout(WAIT, host.kill_proc("sink"))
        .await
        .expect("killed within the wait")
        .unwrap();
    client.write_all(&frame[half..]).await;
    let answer = client.recv().await;
    assert_eq!(answer.message_id, 5, "{answer:?}");
    let reason = answer.undeliverable().reason;
    assert!(
        matches!(
            reason,
            UndeliverableReason::ProcExited | UndeliverableReason::NoSuchProc
        ),
        "{reason:?}"
    );
    // Exactly once: the next answer is the probe's.
    client.send("sink", 6, b"probe").await;
    let probe = client.recv().await;
    assert_eq!(probe.message_id, 6, "{probe:?}");
    let stats = host.stats().await.unwrap();
    let conn = stats.conn("orphan").unwrap();
    assert_conn_adds_up(conn);
    assert_eq!((conn.accepted, conn.returned.total()), (2, 2), "{conn:?}");
    let gone = stats
        .gone_procs
        .iter()
        .find(|p| p.name == "sink")
        .expect("the sink's final counters");
    // Its counters were final before the frame was moved back.
    assert_eq!((gone.frames_in, gone.zero_copy_holds), (0, 1), "{gone:?}");
}
every_frontend!(a_proc_removed_mid_payload_gets_its_frame_answered);

/// A large frame from another host, over the link, goes straight into the
/// proc's ring too (the far host's reads are the same reads), and its
/// answer goes back over the link: a client on host A sends 1 MiB frames
/// to a sink on host B; every digest is intact, B's sink counts them as
/// zero-copy frames, and every frame forwarded on the link was answered.
async fn a_links_large_frames_go_straight_into_the_ring(kind: FrontendKind) {
    use hostmux_wire::Addr;

    let (a_addr, b_addr) = (
        Addr::tcp("127.0.0.1", crate::support::free_port()).unwrap(),
        Addr::tcp("127.0.0.1", crate::support::free_port()).unwrap(),
    );
    let peered = |peer: &Addr| HostConfig {
        peers: vec![peer.clone()],
        peer_token: Some("shared-by-peers".to_owned()),
        ..config()
    };
    let (host_a, _serving_a) =
        crate::support::serve_at(kind, a_addr.clone(), peered(&b_addr)).await;
    let (host_b, _serving_b) =
        crate::support::serve_at(kind, b_addr.clone(), peered(&a_addr)).await;
    spawn_sink(&host_b, "sink").await;
    let mut client = Client::connect(&host_a, "far").await;
    let payloads: Vec<Vec<u8>> = (0..4).map(|seed| pattern(1 << 20, seed)).collect();
    for (id, payload) in payloads.iter().enumerate() {
        client
            .send_to("sink", b_addr.as_str(), id as u64, payload)
            .await;
        expect_digest(&mut client, id as u64, payload).await;
    }
    let sink = proc_stats(&host_b, "sink").await;
    assert_eq!(sink.frames_in, 4, "{sink:?}");
    assert!(
        sink.zero_copy_frames >= 1 && sink.zero_copy_moved_back == 0,
        "{sink:?}"
    );
    let stats = host_a.stats().await.unwrap();
    let conn = stats.conn("far").unwrap();
    assert_conn_adds_up(conn);
    assert_eq!(
        (conn.delivered, conn.frames_out, conn.returned.total()),
        (4, 4, 0),
        "{conn:?}"
    );
}
every_frontend!(a_links_large_frames_go_straight_into_the_ring);
