//! Acknowledged links between hosts: every frame sent to another host gets
//! exactly one answer whatever happens to the link (a host that dies, a
//! peer that falls silent, a wrong peer token), acknowledgements and the
//! window bound what is in flight, heartbeats measure the round trip.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use hostmux_host::{FrontendKind, HostConfig, LinkStats, ServeHandle};
use hostmux_wire::{
    encode_hello_ack, is_link_status, link_status, rkyv::util::AlignedVec, Addr, FrameDecoder,
    FrameKind, Limits, UndeliverableReason,
};

use crate::support::{
    echo_proc, every_frontend, free_port, ring_proc, serve_at, Client, TestHost, WAIT,
};

/// Hosts that peer with `peers` (the default link timeout, 2 s: tests run
/// side by side on a loaded machine).
fn peers_config(peers: &[&str], peer_token: &str) -> HostConfig {
    HostConfig {
        peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
        peer_token: Some(peer_token.to_owned()),
        ..HostConfig::default()
    }
}

/// Two free loopback addresses, for hosts A and B (each must name the
/// other as a peer before either is bound).
fn loopback_pair() -> (Addr, Addr) {
    (
        Addr::tcp("127.0.0.1", free_port()).unwrap(),
        Addr::tcp("127.0.0.1", free_port()).unwrap(),
    )
}

/// The link stats host `host` keeps for `peer`.
async fn link_stats(host: &TestHost, peer: &str) -> LinkStats {
    let stats = host.stats().await.unwrap();
    stats
        .links
        .iter()
        .find(|l| l.peer == peer)
        .cloned()
        .unwrap_or_else(|| panic!("no link stats for {peer}: {:?}", stats.links))
}

/// Polls `host`'s link stats for `peer` until `done` holds (bounded by
/// [`WAIT`]); returns the stats that satisfied it.
async fn wait_for_link(
    host: &TestHost,
    peer: &str,
    what: &str,
    done: impl Fn(&LinkStats) -> bool,
) -> LinkStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = link_stats(host, peer).await;
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{what}: still {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Receives answers until every id in `0..count` has one; panics on an id
/// answered twice. Returns the answers by kind (a reply, or a notice's
/// reason).
async fn collect_answers(client: &mut Client, count: u64) -> HashMap<String, u64> {
    let mut seen = vec![false; count as usize];
    let mut by_kind: HashMap<String, u64> = HashMap::new();
    let mut answered = 0;
    while answered < count {
        let frame = client.recv().await;
        let id = frame.message_id;
        assert!(id < count, "an answer for an id never sent: {frame:?}");
        assert!(!seen[id as usize], "id {id} answered twice: {frame:?}");
        seen[id as usize] = true;
        answered += 1;
        let kind = match frame.kind {
            FrameKind::Undeliverable => format!("{:?}", frame.undeliverable().reason),
            other => format!("{other:?}"),
        };
        *by_kind.entry(kind).or_default() += 1;
    }
    by_kind
}

/// Ends with a round trip to a proc on the client's own host: anything the
/// host had queued for the client before (a second answer to some id)
/// would arrive first.
async fn nothing_more_before_a_local_echo(client: &mut Client, sentinel: u64) {
    client.send("local-echo", sentinel, b"sentinel").await;
    let next = client.recv().await;
    assert_eq!(
        (next.kind, next.message_id),
        (FrameKind::Data, sentinel),
        "a frame arrived after every id had its answer: {next:?}"
    );
}

async fn a_host_that_dies_mid_stream_leaves_no_frame_unanswered(kind: FrontendKind) {
    let (a_addr, b_addr) = loopback_pair();
    let (host_a, _serving_a) =
        serve_at(kind, a_addr.clone(), peers_config(&[b_addr.as_str()], "pt")).await;
    let (host_b, serving_b) =
        serve_at(kind, b_addr.clone(), peers_config(&[a_addr.as_str()], "pt")).await;
    host_a
        .spawn("local-echo", echo_proc(usize::MAX))
        .await
        .unwrap();
    host_b.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let mut client = Client::connect(&host_a, "steady").await;
    const COUNT: u64 = 5_000;
    for id in 0..COUNT {
        client.send_to("echo", b_addr.as_str(), id, b"ping").await;
    }
    // Some replies come back; then host B dies at once (its I/O thread
    // stops, its sockets close, its procs' rings with it).
    let mut early = Vec::new();
    for _ in 0..COUNT / 10 {
        early.push(client.recv().await);
    }
    drop(serving_b);
    drop(host_b);
    let mut by_kind: HashMap<String, u64> = HashMap::new();
    let mut seen = vec![false; COUNT as usize];
    for frame in &early {
        assert_eq!(frame.kind, FrameKind::Data, "{frame:?}");
        seen[frame.message_id as usize] = true;
    }
    *by_kind.entry("Data".to_owned()).or_default() += early.len() as u64;
    let mut answered = early.len() as u64;
    while answered < COUNT {
        let frame = client.recv().await;
        let id = frame.message_id as usize;
        assert!(!seen[id], "id {id} answered twice: {frame:?}");
        seen[id] = true;
        answered += 1;
        let kind = match frame.kind {
            FrameKind::Undeliverable => format!("{:?}", frame.undeliverable().reason),
            other => format!("{other:?}"),
        };
        *by_kind.entry(kind).or_default() += 1;
    }
    nothing_more_before_a_local_echo(&mut client, COUNT).await;
    // Only replies, `LinkFailed` (frames the link had taken) and
    // `HostUnreachable` (frames host A read from the client after the
    // failure: its redial finds nobody).
    for (kind, count) in &by_kind {
        assert!(
            ["Data", "LinkFailed", "HostUnreachable"].contains(&kind.as_str()),
            "unexpected answers {kind}: {count} ({by_kind:?})"
        );
    }
    assert!(
        by_kind.get("LinkFailed").is_some_and(|&n| n > 0),
        "{by_kind:?}"
    );
    eprintln!("answers after the host died: {by_kind:?}");
    let stats = link_stats(&host_a, b_addr.as_str()).await;
    assert_eq!(stats.awaiting_answers, 0, "{stats:?}");
    assert!(stats.link_failures >= 1, "{stats:?}");
    // Every `LinkFailed` came from the ledger (as may some
    // `HostUnreachable`: frames queued on a redial that failed).
    let link_failed = by_kind.get("LinkFailed").copied().unwrap_or(0);
    let unreachable = by_kind.get("HostUnreachable").copied().unwrap_or(0);
    assert!(
        (link_failed..=link_failed + unreachable).contains(&stats.answered_here),
        "{stats:?} {by_kind:?}"
    );
}
every_frontend!(a_host_that_dies_mid_stream_leaves_no_frame_unanswered);

async fn a_wrong_peer_token_is_peer_refused_and_backs_off(kind: FrontendKind) {
    let (a_addr, b_addr) = loopback_pair();
    let (host_a, _serving_a) = serve_at(
        kind,
        a_addr.clone(),
        HostConfig {
            link_backoff_min: Duration::from_secs(30),
            ..peers_config(&[b_addr.as_str()], "ours")
        },
    )
    .await;
    let (host_b, _serving_b) = serve_at(
        kind,
        b_addr.clone(),
        peers_config(&[a_addr.as_str()], "theirs"),
    )
    .await;
    host_b.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let mut client = Client::connect(&host_a, "knocking").await;
    client
        .send_to("echo", b_addr.as_str(), 1, b"let me in")
        .await;
    let notice = client.recv().await;
    assert_eq!(
        (notice.message_id, notice.undeliverable().reason),
        (1, UndeliverableReason::PeerRefused)
    );
    // During the backoff, frames are answered at once, without a dial.
    for id in 2..12 {
        client.send_to("echo", b_addr.as_str(), id, b"again").await;
        let notice = client.recv().await;
        assert_eq!(
            (notice.message_id, notice.undeliverable().reason),
            (id, UndeliverableReason::PeerRefused)
        );
    }
    let stats = link_stats(&host_a, b_addr.as_str()).await;
    assert_eq!((stats.dials, stats.dial_failures), (1, 1), "{stats:?}");
    assert_eq!(
        (stats.state.as_str(), stats.reason),
        ("down", Some(UndeliverableReason::PeerRefused))
    );
    // A closed port is a different reason.
    let closed = Addr::tcp("127.0.0.1", free_port()).unwrap();
    let (host_c, _serving_c) = serve_at(
        kind,
        Addr::tcp("127.0.0.1", 0).unwrap(),
        peers_config(&[closed.as_str()], "ours"),
    )
    .await;
    let mut client = Client::connect(&host_c, "lonely").await;
    client.send_to("echo", closed.as_str(), 5, b"hello?").await;
    let notice = client.recv().await;
    assert_eq!(
        (notice.message_id, notice.undeliverable().reason),
        (5, UndeliverableReason::HostUnreachable)
    );
}
every_frontend!(a_wrong_peer_token_is_peer_refused_and_backs_off);

/// A peer that takes the link, acknowledges its hello and then says
/// nothing more (no acknowledgement, no heartbeat): a dead host behind a
/// live TCP connection, as a partition leaves it. It records whether the
/// dialler's heartbeats (statuses with a ping) arrived.
fn silent_peer() -> (Addr, std::thread::JoinHandle<(bool, usize)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Addr::tcp("127.0.0.1", listener.local_addr().unwrap().port()).unwrap();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let limits = Limits::default();
        let mut decoder = FrameDecoder::new(limits);
        let mut acked = false;
        let mut pinged = false;
        let mut frames = 0;
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            decoder.feed(&buf[..n]);
            while let Ok(Some(frame)) = decoder.next_frame() {
                if !acked {
                    // The hello: acknowledge it, as a host would.
                    let mut ack = AlignedVec::<16>::new();
                    ack.resize(256, 0);
                    let name = frame.sender().name().to_owned();
                    let len = encode_hello_ack(&mut ack, "service", &name, &limits).unwrap();
                    stream.write_all(&ack[..len]).unwrap();
                    acked = true;
                } else if is_link_status(&frame) {
                    pinged |= link_status(&frame).is_some_and(|s| s.ping != 0);
                } else {
                    frames += 1;
                }
            }
        }
        (pinged, frames)
    });
    (addr, handle)
}

async fn a_silent_peer_is_found_dead_within_the_link_timeout(kind: FrontendKind) {
    let (peer, peer_thread) = silent_peer();
    let (host, _serving) = serve_at(
        kind,
        Addr::tcp("127.0.0.1", 0).unwrap(),
        HostConfig {
            link_timeout: Duration::from_millis(400),
            ..peers_config(&[peer.as_str()], "pt")
        },
    )
    .await;
    host.spawn("local-echo", echo_proc(usize::MAX))
        .await
        .unwrap();
    let mut client = Client::connect(&host, "patient").await;
    let started = Instant::now();
    for id in 0..10 {
        client.send_to("echo", peer.as_str(), id, b"anyone?").await;
    }
    let by_kind = collect_answers(&mut client, 10).await;
    let waited = started.elapsed();
    assert_eq!(by_kind.get("LinkFailed"), Some(&10), "{by_kind:?}");
    // Found within a few heartbeats of the timeout (400 ms), not TCP's
    // retransmission timers.
    assert!(waited < Duration::from_secs(3), "took {waited:?}");
    nothing_more_before_a_local_echo(&mut client, 10).await;
    let (pinged, frames) = tokio::task::spawn_blocking(move || peer_thread.join().unwrap())
        .await
        .unwrap();
    assert!(pinged, "the dialler sent no heartbeat");
    assert_eq!(frames, 10, "the frames went out on the link");
}
every_frontend!(a_silent_peer_is_found_dead_within_the_link_timeout);

/// Host A, whose link to host B takes at most `window` frames, and host B
/// running a slow echo (200 µs a frame), so the window fills. Returns A,
/// B's address, and what keeps both serving.
async fn behind_a_small_window(kind: FrontendKind, window: u64) -> (TestHost, Addr, KeepServing) {
    let small = |config| HostConfig {
        link_window_frames: window,
        overload_wait: Duration::from_secs(30),
        ..config
    };
    let slow = ring_proc(|endpoint, frame| {
        std::thread::sleep(Duration::from_micros(200));
        crate::support::reply(endpoint, &frame, &frame.payload);
        true
    });
    proc_behind(kind, small, |config| config, slow).await
}

/// Keeps hosts serving while it lives (their handles, and host B).
struct KeepServing {
    _handles: Vec<ServeHandle>,
    _far_host: TestHost,
}

async fn the_window_bounds_frames_in_flight_and_acknowledgements_free_it(kind: FrontendKind) {
    let window = 16;
    // A slow proc: the window fills, the client's frames wait (none is
    // refused), and every one is answered.
    let (host_a, b_addr, _hosts) = behind_a_small_window(kind, window).await;
    let mut client = Client::connect(&host_a, "eager").await;
    const COUNT: u64 = 2_000;
    for id in 0..COUNT {
        client.send_to("echo", b_addr.as_str(), id, b"x").await;
    }
    let by_kind = collect_answers(&mut client, COUNT).await;
    assert_eq!(by_kind.get("Data"), Some(&COUNT), "{by_kind:?}");
    let stats = wait_for_link(&host_a, b_addr.as_str(), "all acknowledged", |s| {
        s.acked == s.sent && s.round_trip_us.is_some()
    })
    .await;
    assert_eq!(stats.sent, COUNT, "{stats:?}");
    assert!(
        stats.in_flight_high_water <= window,
        "more than the window in flight: {stats:?}"
    );
    assert!(stats.window_waits > 0, "the window never filled: {stats:?}");
    assert_eq!(stats.awaiting_answers, 0, "{stats:?}");
    assert_eq!(stats.state, "up");
    // The measured round trip is in the histogram `serve --metrics` shows.
    let last = stats.round_trip_us.unwrap();
    assert!(stats.round_trips.count() >= 1, "{stats:?}");
    assert!(stats.round_trips.sum_us() >= last, "{stats:?}");
}
every_frontend!(the_window_bounds_frames_in_flight_and_acknowledgements_free_it);

/// A proc whose frames meet a full link window is held back like a proc
/// meeting a full ring (its outbound ring is not drained meanwhile), not
/// refused: every one of its frames reaches the far proc and is answered.
async fn a_full_link_holds_a_proc_back(kind: FrontendKind) {
    let window = 4;
    let (host_a, b_addr, _hosts) = behind_a_small_window(kind, window).await;
    const COUNT: u64 = 300;
    let far = b_addr.to_string();
    let caller = ring_proc(move |endpoint, poke| {
        let me = endpoint.name.clone();
        for id in 0..COUNT {
            let header = hostmux_wire::FrameHeader {
                dest_addr: &far,
                sender: hostmux_wire::Sender::Proc {
                    addr: "",
                    name: me.as_str(),
                },
                ..hostmux_wire::FrameHeader::data("echo", id)
            };
            endpoint.send(&header, b"held", WAIT).unwrap();
        }
        let (mut replies, mut notices) = (0u64, 0u64);
        while replies + notices < COUNT {
            match endpoint
                .recv(WAIT, crate::support::Frame::from_view)
                .unwrap()
            {
                hostmux_host::Received::Frame(frame) if frame.kind == FrameKind::Data => {
                    replies += 1
                }
                hostmux_host::Received::Frame(_) => notices += 1,
                other => panic!("caller: {other:?}"),
            }
        }
        crate::support::reply(endpoint, &poke, format!("{replies}/{notices}").as_bytes());
        true
    });
    host_a.spawn("caller", caller).await.unwrap();
    let mut client = Client::connect(&host_a, "starter").await;
    client.send("caller", 1, b"go").await;
    let done = client.recv().await;
    assert_eq!(
        String::from_utf8_lossy(&done.payload),
        format!("{COUNT}/0"),
        "replies/notices"
    );
    let stats = link_stats(&host_a, b_addr.as_str()).await;
    assert!(stats.window_waits > 0, "the window never filled: {stats:?}");
    assert!(stats.in_flight_high_water <= window, "{stats:?}");
}
every_frontend!(a_full_link_holds_a_proc_back);

/// A link that carried a burst and then idles stays up: heartbeats keep
/// coming both ways for many link timeouts (a status frame once took the
/// connection fast lane's route into a proc's ring, so the far side heard
/// nothing and closed the link after one timeout).
async fn an_idle_link_stays_up_on_heartbeats(kind: FrontendKind) {
    let (a_addr, b_addr) = loopback_pair();
    let timeout = Duration::from_millis(300);
    let config = |peer: &str| HostConfig {
        link_timeout: timeout,
        ..peers_config(&[peer], "pt")
    };
    let (host_a, _serving_a) = serve_at(kind, a_addr.clone(), config(b_addr.as_str())).await;
    let (host_b, _serving_b) = serve_at(kind, b_addr.clone(), config(a_addr.as_str())).await;
    host_b.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let mut client = Client::connect(&host_a, "bursty").await;
    for id in 0..500 {
        client.send_to("echo", b_addr.as_str(), id, b"burst").await;
    }
    let by_kind = collect_answers(&mut client, 500).await;
    assert_eq!(by_kind.get("Data"), Some(&500), "{by_kind:?}");
    let after_burst = link_stats(&host_a, b_addr.as_str()).await.statuses_received;
    // Twelve more statuses: about three link timeouts of idling.
    let stats = wait_for_link(&host_a, b_addr.as_str(), "heartbeats while idle", |s| {
        s.statuses_received >= after_burst + 12
    })
    .await;
    assert_eq!(
        (stats.state.as_str(), stats.link_failures),
        ("up", 0),
        "{stats:?}"
    );
    let far = link_stats(&host_b, a_addr.as_str()).await;
    assert_eq!(far.link_failures, 0, "{far:?}");
    // And it still carries frames.
    client.send_to("echo", b_addr.as_str(), 500, b"again").await;
    assert_eq!(client.recv().await.message_id, 500);
}
every_frontend!(an_idle_link_stays_up_on_heartbeats);

/// A heartbeat's round trip runs from the ping to the pong's arrival: an
/// idle link's reader waits for its next bytes from before the ping, and
/// the pong must not be dated from when that wait began (it was, with
/// multishot receive: the round trip came out as 0 µs, which `hostmux
/// links` shows as none at all). A real round trip between two hosts
/// takes at least a send, a wake-up and a receive: never under 1 µs.
async fn heartbeat_round_trips_are_dated_from_the_pongs_arrival(kind: FrontendKind) {
    let (a_addr, b_addr) = loopback_pair();
    let config = |peer: &str| HostConfig {
        // A heartbeat every 75 ms.
        link_timeout: Duration::from_millis(300),
        // Multishot receive on (where the frontend has it), whatever the
        // default.
        uring_recv_buffers: Some(hostmux_host::RecvBuffers::DEFAULT),
        ..peers_config(&[peer], "pt")
    };
    let (host_a, _serving_a) = serve_at(kind, a_addr.clone(), config(b_addr.as_str())).await;
    let (host_b, _serving_b) = serve_at(kind, b_addr.clone(), config(a_addr.as_str())).await;
    host_b.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let mut client = Client::connect(&host_a, "pinger").await;
    client.send_to("echo", b_addr.as_str(), 1, b"link up").await;
    assert_eq!(client.recv().await.message_id, 1);
    // Every round trip the link reports while it idles, sampled after
    // each new one, for twelve heartbeats.
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    let mut last_count = 0;
    while seen.len() < 12 {
        let stats = link_stats(&host_a, b_addr.as_str()).await;
        let count = stats.round_trips.count();
        if count != last_count {
            last_count = count;
            seen.push(stats.round_trip_us);
        }
        assert!(
            Instant::now() < deadline,
            "fewer than 12 round trips measured: {seen:?} {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        seen.iter().all(|rtt| matches!(rtt, Some(us) if *us >= 1)),
        "round trips of 0 µs (a pong dated before its ping): {seen:?}"
    );
}
every_frontend!(heartbeat_round_trips_are_dated_from_the_pongs_arrival);

/// Two hosts peering with each other; host A's config is `a`, host B's
/// `b` (each on top of [`peers_config`]); `echo` runs on B as "echo".
async fn proc_behind(
    kind: FrontendKind,
    a: impl FnOnce(HostConfig) -> HostConfig,
    b: impl FnOnce(HostConfig) -> HostConfig,
    echo: hostmux_host::LocalProc,
) -> (TestHost, Addr, KeepServing) {
    let (a_addr, b_addr) = loopback_pair();
    let (host_a, serving_a) = serve_at(
        kind,
        a_addr.clone(),
        a(peers_config(&[b_addr.as_str()], "pt")),
    )
    .await;
    let (host_b, serving_b) = serve_at(
        kind,
        b_addr.clone(),
        b(peers_config(&[a_addr.as_str()], "pt")),
    )
    .await;
    host_b.spawn("echo", echo).await.unwrap();
    (
        host_a,
        b_addr,
        KeepServing {
            _handles: vec![serving_a, serving_b],
            _far_host: host_b,
        },
    )
}

/// No heartbeat within a test (a quarter of a minute), and the far host
/// holds acknowledgements back for a minute: only an eighth of the window
/// waiting, anything else written on the link, or a ping sends one.
fn slow_acks(config: HostConfig) -> HostConfig {
    HostConfig {
        link_timeout: Duration::from_secs(60),
        link_ack_delay: Duration::from_secs(60),
        ..config
    }
}

/// Requests and replies one at a time: the far host acknowledges none of
/// them on its own (no status per frame, which would wake the sending
/// host once per round trip), and every reply still comes.
async fn an_acknowledgement_is_held_back_while_the_window_has_room(kind: FrontendKind) {
    let (host_a, b_addr, _hosts) =
        proc_behind(kind, slow_acks, slow_acks, echo_proc(usize::MAX)).await;
    let mut client = Client::connect(&host_a, "patient").await;
    for id in 0..20 {
        client.send_to("echo", b_addr.as_str(), id, b"ping").await;
        let reply = client.recv().await;
        assert_eq!((reply.kind, reply.message_id), (FrameKind::Data, id));
    }
    let stats = link_stats(&host_a, b_addr.as_str()).await;
    assert_eq!((stats.sent, stats.acked), (20, 0), "{stats:?}");
    assert_eq!(stats.statuses_received, 0, "{stats:?}");
}
every_frontend!(an_acknowledgement_is_held_back_while_the_window_has_room);

/// An eighth of the receiving host's window waiting is acknowledged at
/// once, delay or not.
async fn an_eighth_of_the_window_is_acknowledged_at_once(kind: FrontendKind) {
    let window = |config| HostConfig {
        link_window_frames: 64,
        ..slow_acks(config)
    };
    let (host_a, b_addr, _hosts) = proc_behind(kind, window, window, echo_proc(usize::MAX)).await;
    let mut client = Client::connect(&host_a, "steady").await;
    for id in 0..40 {
        client.send_to("echo", b_addr.as_str(), id, b"x").await;
    }
    let by_kind = collect_answers(&mut client, 40).await;
    assert_eq!(by_kind.get("Data"), Some(&40), "{by_kind:?}");
    // 8 frames make an eighth: acknowledged in steps of 8, up to 40; or,
    // if host A's first heartbeat (a ping, echoed at once with what was
    // handled so far) lands after k < 8 frames, at k + 8, k + 16, ...: so
    // more than 32 either way, where the 60 s delay alone would allow none.
    wait_for_link(&host_a, b_addr.as_str(), "acknowledged in eighths", |s| {
        s.acked > 32
    })
    .await;
}
every_frontend!(an_eighth_of_the_window_is_acknowledged_at_once);

/// A sender whose window is full asks for the far host's status (a ping),
/// and the far host answers at once even though it would hold its
/// acknowledgement back: host A's window of 4 frames is smaller than an
/// eighth of host B's (128 of 1,024), yet 200 pipelined frames all get
/// their replies well within the wait (without the ping, each window
/// would wait for the minute's delay).
async fn a_full_window_asks_the_far_host_for_its_acknowledgement(kind: FrontendKind) {
    let small = |config| HostConfig {
        link_window_frames: 4,
        overload_wait: Duration::from_secs(60),
        ..slow_acks(config)
    };
    let large = |config| HostConfig {
        link_window_frames: 1_024,
        ..slow_acks(config)
    };
    let (host_a, b_addr, _hosts) = proc_behind(kind, small, large, echo_proc(usize::MAX)).await;
    let mut client = Client::connect(&host_a, "eager").await;
    const COUNT: u64 = 200;
    for id in 0..COUNT {
        client.send_to("echo", b_addr.as_str(), id, b"x").await;
    }
    let by_kind = collect_answers(&mut client, COUNT).await;
    assert_eq!(by_kind.get("Data"), Some(&COUNT), "{by_kind:?}");
    let stats = link_stats(&host_a, b_addr.as_str()).await;
    assert!(stats.in_flight_high_water <= 4, "{stats:?}");
    assert!(stats.window_waits > 0, "{stats:?}");
}
every_frontend!(a_full_window_asks_the_far_host_for_its_acknowledgement);
