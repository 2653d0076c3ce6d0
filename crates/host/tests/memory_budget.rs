//! Memory spent on connections is bounded before and after the hello: a
//! hello announcing more than 4 KiB closes at once, a frame's announced
//! length is never allocated before its bytes arrive, the read buffers of
//! all connections share one budget (a connection over it waits, unread),
//! a partial frame must complete within the frame timeout, and the
//! connection cap closes what is beyond it at accept, unless a connection
//! that has not said hello can give its place up. Real sockets, raw
//! bytes, counters from `HostStats::conn_limits`.

use std::time::Duration;

use hostmux_host::{ConnLimitStats, FrontendKind, HostConfig};
use hostmux_wire::{encode_hello, FrameDecoder, FramePrefix, Limits, MAX_HELLO_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{echo_proc, every_frontend, serve, Client, TestHost, WAIT};

const TOKEN: &str = "budget-secret";
/// The frame decoder's read chunk: what an idle connection holds.
const CHUNK: u64 = hostmux_wire::DEFAULT_READ_CHUNK as u64;

async fn raw(host: &TestHost) -> TcpStream {
    let addr = format!("127.0.0.1:{}", host.addr().port().unwrap());
    TcpStream::connect(addr).await.unwrap()
}

/// Says hello as `name` and waits for the host's ack.
async fn hello(stream: &mut TcpStream, host: &TestHost, name: &str, token: &str) {
    let mut out = vec![0; MAX_HELLO_LEN];
    let limits = Limits::default();
    let len = encode_hello(
        &mut out,
        host.service_name().as_str(),
        name,
        token.as_bytes(),
        &limits,
    )
    .unwrap();
    stream.write_all(&out[..len]).await.unwrap();
    let mut decoder = FrameDecoder::new(limits);
    let acked = tokio::time::timeout(WAIT, async {
        loop {
            let spare = decoder.spare_capacity_mut();
            let n = stream.read(spare).await.unwrap();
            assert_ne!(n, 0, "{name}: the host closed instead of acknowledging");
            decoder.commit(n);
            if let Some(frame) = decoder.next_frame().unwrap() {
                assert!(hostmux_wire::is_hello_ack(&frame));
                return;
            }
        }
    })
    .await;
    acked.expect("the hello is acknowledged within the wait");
}

/// 64 bytes: a valid prefix announcing a frame of `frame_len` bytes (a
/// 64-byte header and the rest payload), then 48 bytes of it.
fn hostile_prefix(frame_len: usize) -> Vec<u8> {
    let unlimited = Limits {
        max_frame_len: usize::MAX,
        ..Limits::default()
    };
    let prefix = FramePrefix::for_lengths(64, frame_len - 16 - 64, &unlimited).unwrap();
    assert_eq!(prefix.frame_len(), frame_len);
    let mut bytes = prefix.to_bytes().to_vec();
    bytes.resize(64, 0);
    bytes
}

/// Waits until the host closes `stream` (end of stream or reset), reading
/// and discarding whatever it sends first.
async fn closed_by_host(stream: &mut TcpStream, what: &str) {
    let closed = tokio::time::timeout(WAIT, async {
        let mut sink = [0u8; 4096];
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: the host did not close it in time");
}

async fn limits(host: &TestHost) -> ConnLimitStats {
    host.stats().await.unwrap().conn_limits
}

/// Waits (bounded) until the counters satisfy `done`.
async fn until(host: &TestHost, what: &str, done: impl Fn(&ConnLimitStats) -> bool) {
    let reached = tokio::time::timeout(WAIT, async {
        loop {
            if done(&limits(host).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{what}: not reached: {:?}",
        limits(host).await
    );
}

/// The numbers: 40 strangers announcing 16 MiB hellos and 40
/// authenticated clients announcing 16 MiB frames (64 bytes sent each).
async fn hostile_prefixes_stay_within_the_budget(kind: FrontendKind) {
    let config = HostConfig {
        token: Some(TOKEN.to_owned()),
        frame_timeout: Duration::from_secs(2),
        // Longer than the test waits: a stranger closed in time was closed
        // for its hello's size.
        hello_timeout: Duration::from_secs(60),
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    let mut strangers = Vec::new();
    for _ in 0..40 {
        let mut stream = raw(&host).await;
        stream.write_all(&hostile_prefix(16 << 20)).await.unwrap();
        strangers.push(stream);
    }
    let mut members = Vec::new();
    for i in 0..40 {
        let mut stream = raw(&host).await;
        hello(&mut stream, &host, &format!("member-{i}"), TOKEN).await;
        stream.write_all(&hostile_prefix(16 << 20)).await.unwrap();
        members.push(stream);
    }
    for stream in &mut strangers {
        closed_by_host(stream, "a 16 MiB hello").await;
    }
    assert_eq!(limits(&host).await.hello_too_large, 40);
    // The partial frames are closed by the frame timeout, which the host
    // can only have started by reading their prefixes.
    for stream in &mut members {
        closed_by_host(stream, "a 16 MiB partial frame").await;
    }
    let stats = limits(&host).await;
    assert_eq!(stats.frame_timeouts, 40, "{stats:?}");
    assert_eq!(stats.memory_limit, 256 << 20);
    // At most one read chunk per member and a hello buffer per stranger
    // ever held, against 40 x 16 MiB announced.
    assert!(
        stats.memory_high_water <= 40 * CHUNK + 40 * MAX_HELLO_LEN as u64,
        "{stats:?}"
    );
    assert_eq!(stats.memory_used, 0, "every buffer released: {stats:?}");
    assert_eq!(stats.closed_over_budget, 0);
}
every_frontend!(hostile_prefixes_stay_within_the_budget);

/// One byte every 100 ms of a 1 KiB frame: closed after the frame
/// timeout, while another client is served as usual.
async fn slow_loris_partial_frame_is_closed_after_the_frame_timeout(kind: FrontendKind) {
    let config = HostConfig {
        frame_timeout: Duration::from_millis(800),
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let mut loris = raw(&host).await;
    hello(&mut loris, &host, "loris", "").await;
    let mut frame = Vec::new();
    Client::connect(&host, "encoder")
        .await
        .encode("echo", 1, &[9; 1000], &mut frame);
    let (mut read_half, mut write_half) = loris.into_split();
    let trickle = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        for byte in frame {
            ticks.tick().await;
            if write_half.write_all(&[byte]).await.is_err() {
                return;
            }
        }
        panic!("the whole frame was trickled in without the host closing");
    });
    let closed = tokio::time::timeout(WAIT, async {
        let mut sink = [0u8; 256];
        while let Ok(n) = read_half.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow frame was not cut off in time");
    trickle.abort();
    assert_eq!(limits(&host).await.frame_timeouts, 1);
    let mut other = Client::connect(&host, "other").await;
    other.send("echo", 7, b"still here").await;
    assert_eq!(other.recv().await.payload, b"still here");
}
every_frontend!(slow_loris_partial_frame_is_closed_after_the_frame_timeout);

/// Two clients each send most of a 700 KiB frame into a 1 MiB budget: one
/// waits, unread, until the other's frame is done and its buffer shrinks;
/// both frames then arrive, and the budget held throughout.
async fn a_connection_over_the_budget_waits_then_proceeds(kind: FrontendKind) {
    const BUDGET: usize = 1 << 20;
    let config = HostConfig {
        conn_memory: BUDGET,
        inbound_ring_bytes: 4 << 20,
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let payload = vec![3u8; 700 << 10];
    let mut clients = Vec::new();
    let mut frames = Vec::new();
    for (i, name) in ["first", "second"].into_iter().enumerate() {
        let client = Client::connect(&host, name).await;
        let mut frame = Vec::new();
        client.encode("echo", i as u64, &payload, &mut frame);
        clients.push(client);
        frames.push(frame);
    }
    // Both send all but the last KiB (in tasks: the one that waits is not
    // read, so its writes block once the socket buffers fill).
    let mut senders = Vec::new();
    for (client, frame) in clients.into_iter().zip(&frames) {
        let (mut writer, reader) = client.into_split();
        let head = frame[..frame.len() - 1024].to_vec();
        senders.push(tokio::spawn(async move {
            writer.write_raw(&head).await.unwrap();
            (writer, reader)
        }));
    }
    until(&host, "a connection waits for budget", |s| {
        s.budget_waits >= 1
    })
    .await;
    let mut halves = Vec::new();
    for sender in senders {
        halves.push(sender.await.unwrap());
    }
    let stats = limits(&host).await;
    assert!(stats.memory_high_water <= BUDGET as u64, "{stats:?}");
    for ((writer, _), frame) in halves.iter_mut().zip(&frames) {
        writer
            .write_raw(&frame[frame.len() - 1024..])
            .await
            .unwrap();
    }
    for (i, (_, reader)) in halves.iter_mut().enumerate() {
        let echo = tokio::time::timeout(WAIT, crate::support::next_frame(reader))
            .await
            .expect("the echo arrives within the wait")
            .expect("an echo, not the end of the stream");
        assert_eq!((echo.message_id, echo.payload.len()), (i as u64, 700 << 10));
    }
    let stats = limits(&host).await;
    assert!(stats.memory_high_water <= BUDGET as u64, "{stats:?}");
    assert_eq!(stats.closed_over_budget, 0);
}
every_frontend!(a_connection_over_the_budget_waits_then_proceeds);

/// A frame larger than the whole budget can never be read: its
/// connection is closed with a reason, and the budget is left intact.
async fn a_frame_larger_than_the_whole_budget_closes_its_connection(kind: FrontendKind) {
    let config = HostConfig {
        conn_memory: 256 << 10,
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    let mut stream = raw(&host).await;
    hello(&mut stream, &host, "big", "").await;
    let mut frame = hostile_prefix(1 << 20);
    frame.resize(1 << 20, 0);
    let (mut read_half, mut write_half) = stream.into_split();
    // The host stops reading partway: the write may never finish.
    let writer = tokio::spawn(async move { write_half.write_all(&frame).await });
    let mut sink = [0u8; 256];
    let closed = tokio::time::timeout(WAIT, async {
        while let Ok(n) = read_half.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "not closed in time");
    writer.abort();
    let stats = limits(&host).await;
    assert_eq!(stats.closed_over_budget, 1, "{stats:?}");
    assert!(stats.memory_high_water <= 256 << 10, "{stats:?}");
}
every_frontend!(a_frame_larger_than_the_whole_budget_closes_its_connection);

/// Connections beyond `max_connections` are closed at accept and counted;
/// a place freed is usable again.
async fn connections_beyond_the_cap_are_closed_at_accept(kind: FrontendKind) {
    let config = HostConfig {
        max_connections: 3,
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(Client::connect(&host, &format!("held-{i}")).await);
    }
    for _ in 0..2 {
        let mut extra = raw(&host).await;
        closed_by_host(&mut extra, "a connection beyond the cap").await;
    }
    let stats = limits(&host).await;
    assert_eq!(
        (stats.refused_at_cap, stats.connections),
        (2, 3),
        "{stats:?}"
    );
    drop(held.pop());
    until(&host, "a place is freed", |s| s.connections == 2).await;
    let mut again = Client::connect(&host, "again").await;
    again.send("nobody", 1, b"?").await;
    assert_eq!(
        again.recv().await.undeliverable().reason,
        hostmux_wire::UndeliverableReason::NoSuchProc
    );
}
every_frontend!(connections_beyond_the_cap_are_closed_at_accept);

/// At the cap, a new connection takes the place of the oldest one that has
/// not said hello (after the eviction grace, zero here); connections past
/// their hello keep theirs, so once every place is past its hello the cap
/// refuses at accept again.
async fn a_connection_without_a_hello_gives_its_place_to_a_new_one(kind: FrontendKind) {
    let config = HostConfig {
        max_connections: 3,
        hello_eviction_grace: Duration::ZERO,
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    let mut held = Client::connect(&host, "held").await;
    let mut silent = [raw(&host).await, raw(&host).await];
    until(&host, "three places taken", |s| s.connections == 3).await;
    let mut newcomer = Client::connect(&host, "newcomer").await;
    closed_by_host(&mut silent[0], "the oldest connection without a hello").await;
    let mut later = Client::connect(&host, "later").await;
    closed_by_host(&mut silent[1], "the other connection without a hello").await;
    let mut extra = raw(&host).await;
    closed_by_host(
        &mut extra,
        "a connection beyond a cap of clients past their hello",
    )
    .await;
    let stats = limits(&host).await;
    assert_eq!(
        (
            stats.hellos_evicted,
            stats.refused_at_cap,
            stats.connections
        ),
        (2, 1, 3),
        "{stats:?}"
    );
    for client in [&mut held, &mut newcomer, &mut later] {
        client.send("nobody", 1, b"?").await;
        assert_eq!(
            client.recv().await.undeliverable().reason,
            hostmux_wire::UndeliverableReason::NoSuchProc
        );
    }
}
every_frontend!(a_connection_without_a_hello_gives_its_place_to_a_new_one);

/// A connection within the eviction grace (an hour here) keeps its place
/// though it has not said hello: at the cap, a newer one is refused
/// rather than evicting it, and the first can still say hello.
async fn a_connection_within_the_eviction_grace_keeps_its_place(kind: FrontendKind) {
    let config = HostConfig {
        max_connections: 1,
        hello_eviction_grace: Duration::from_secs(3600),
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    let mut silent = raw(&host).await;
    until(&host, "the place taken", |s| s.connections == 1).await;
    let mut extra = raw(&host).await;
    closed_by_host(&mut extra, "a connection beyond the cap").await;
    hello(&mut silent, &host, "slow", "").await;
    let stats = limits(&host).await;
    assert_eq!(
        (
            stats.hellos_evicted,
            stats.refused_at_cap,
            stats.connections
        ),
        (0, 1, 1),
        "{stats:?}"
    );
}
every_frontend!(a_connection_within_the_eviction_grace_keeps_its_place);
