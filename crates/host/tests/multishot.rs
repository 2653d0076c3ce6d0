//! Multishot receive (the io-uring-direct frontend's provided buffer
//! ring; the scenarios run on every frontend, and again on io-uring-direct
//! with the buffer ring off): a long pipelined stream arrives whole and in
//! order; a full destination ring stops the connection (its multishot is
//! cancelled) until the proc drains, and nothing is lost; a large frame in
//! the middle of a stream still goes straight into the ring.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hostmux_host::{FrontendKind, HostConfig, ProcStats};
use hostmux_wire::FrameKind;

use crate::support::{
    assert_conn_adds_up, every_frontend, ring_proc, serve, Client, TestHost, WAIT,
};

/// What the sink saw of each frame: its id, payload length and a hash.
type Seen = Arc<Mutex<Vec<(u64, usize, u64)>>>;

fn hash(payload: &[u8]) -> u64 {
    payload.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A gate the sink waits at before its first frame.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    fn wait(&self) {
        let (open, changed) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = changed.wait(open).unwrap();
        }
    }
}

struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Spawns a sink that records every data frame (after `gate` opens).
async fn spawn_sink(host: &TestHost, gate: Gate) -> Seen {
    let seen = Seen::default();
    let record = seen.clone();
    let sink = ring_proc(move |_endpoint, frame| {
        gate.wait();
        if frame.kind == FrameKind::Data {
            let entry = (frame.message_id, frame.payload.len(), hash(&frame.payload));
            record.lock().unwrap().push(entry);
        }
        true
    });
    host.spawn("sink", sink).await.unwrap();
    seen
}

async fn sink_stats(host: &TestHost) -> ProcStats {
    host.stats().await.unwrap().proc("sink").unwrap().clone()
}

/// Waits (bounded) until `done` holds for the sink's counters.
async fn until(host: &TestHost, what: &str, done: impl Fn(&ProcStats) -> bool) {
    let reached = tokio::time::timeout(WAIT, async {
        while !done(&sink_stats(host).await) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{what}: {:?}", sink_stats(host).await);
}

/// `count` frames from `client` to the sink with ids `first..`, payloads
/// of `len` bytes that differ per id.
fn stream(client: &Client, ids: std::ops::Range<u64>, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for id in ids {
        client.encode("sink", id, &payload(id, len), &mut out);
    }
    out
}

fn payload(id: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 ^ id).wrapping_mul(131) as u8)
        .collect()
}

fn config() -> HostConfig {
    HostConfig {
        inbound_ring_bytes: 4 << 20,
        // Opt-in (off by default): these tests are about it.
        uring_recv_buffers: Some(hostmux_host::RecvBuffers::DEFAULT),
        ..HostConfig::default()
    }
}

/// Waits (bounded) until the sink has seen `count` frames.
async fn until_seen(seen: &Seen, count: usize) {
    let reached = tokio::time::timeout(WAIT, async {
        while seen.lock().unwrap().len() < count {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "the sink saw {} of {count}",
        seen.lock().unwrap().len()
    );
}

/// The ids the sink saw, checked against their payloads.
fn seen_ids(seen: &Seen, len_of: impl Fn(u64) -> usize) -> Vec<u64> {
    let seen = seen.lock().unwrap();
    for &(id, len, digest) in seen.iter() {
        assert_eq!(
            (len, digest),
            (len_of(id), hash(&payload(id, len_of(id)))),
            "frame {id}"
        );
    }
    seen.iter().map(|&(id, ..)| id).collect()
}

async fn a_long_pipelined_stream_arrives_in_order(kind: FrontendKind) {
    pipelined_stream(kind, config()).await;
}
every_frontend!(a_long_pipelined_stream_arrives_in_order);

async fn pipelined_stream(kind: FrontendKind, config: HostConfig) {
    const FRAMES: u64 = 20_000;
    let (host, _serving) = serve(kind, config).await;
    let gate = Gate::default();
    gate.open();
    let seen = spawn_sink(&host, gate).await;
    let before = hostmux_host::uring_receive_counts();
    let mut client = Client::connect(&host, "flood").await;
    client.write_all(&stream(&client, 0..FRAMES, 64)).await;
    until(&host, "every frame in", |s| s.frames_in == FRAMES).await;
    until_seen(&seen, FRAMES as usize).await;
    assert_eq!(seen_ids(&seen, |_| 64), (0..FRAMES).collect::<Vec<_>>());
    let stats = host.stats().await.unwrap();
    let conn = stats.conn("flood").unwrap();
    assert_conn_adds_up(conn);
    assert_eq!((conn.accepted, conn.delivered), (FRAMES, FRAMES));
    if kind == FrontendKind::IoUringDirect && host.config().uring_recv_buffers.is_some() {
        let after = hostmux_host::uring_receive_counts();
        assert!(after.chunks > before.chunks, "{after:?}");
    }
}

/// The sink does not drain its small ring until a gate opens: the
/// connection feeding it stops being read (on io-uring-direct its
/// multishot is cancelled: the kernel stops filling the thread's buffers
/// for it), the client's writes back up; once the sink drains, every frame
/// arrives, in order, and none is returned.
async fn a_full_ring_stops_the_connection_until_the_proc_drains(kind: FrontendKind) {
    // A buffer ring of 256 KiB: what the kernel delivered before the
    // cancellation (held, consumed first) is bounded by it, so the
    // client's writes back up within the stream's 5 MB.
    let small = hostmux_host::RecvBuffers {
        count: 16,
        len: 16 << 10,
        held_per_conn: 4,
    };
    let config = HostConfig {
        uring_recv_buffers: Some(small),
        ..HostConfig::default()
    };
    full_ring(kind, config).await;
}
every_frontend!(a_full_ring_stops_the_connection_until_the_proc_drains);

async fn full_ring(kind: FrontendKind, config: HostConfig) {
    const FRAMES: u64 = 20_000;
    let config = HostConfig {
        inbound_ring_bytes: 64 << 10,
        // Nothing comes back `Overloaded` while the sink is held.
        overload_wait: Duration::from_secs(50),
        ..config
    };
    let (host, _serving) = serve(kind, config).await;
    let gate = Gate::default();
    // Opened however the test ends: a sink held at it would keep the
    // runtime from shutting down.
    let _opened = OpenOnDrop(gate.clone());
    let seen = spawn_sink(&host, gate.clone()).await;
    let before = hostmux_host::uring_receive_counts();
    let client = Client::connect(&host, "flood").await;
    let bytes = stream(&client, 0..FRAMES, 200);
    let (mut writer, _reader) = client.into_split();
    let writing = tokio::spawn(async move { writer.write_raw(&bytes).await.unwrap() });
    // The ring fills; the host stops reading the connection.
    until(&host, "the ring is full", |s| {
        s.inbound_used * 4 >= s.inbound_capacity * 3
    })
    .await;
    if kind == FrontendKind::IoUringDirect && host.config().uring_recv_buffers.is_some() {
        let paused = tokio::time::timeout(WAIT, async {
            while hostmux_host::uring_receive_counts().paused == before.paused {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        assert!(paused.is_ok(), "the multishot was cancelled");
    }
    let held = host.stats().await.unwrap();
    let accepted = held.conn("flood").unwrap().accepted;
    assert!(accepted < FRAMES, "the host stopped reading: {accepted}");
    assert!(!writing.is_finished(), "the client's writes back up");
    gate.open();
    writing.await.unwrap();
    until(&host, "every frame in", |s| s.frames_in == FRAMES).await;
    until_seen(&seen, FRAMES as usize).await;
    assert_eq!(seen_ids(&seen, |_| 200), (0..FRAMES).collect::<Vec<_>>());
    let stats = host.stats().await.unwrap();
    let conn = stats.conn("flood").unwrap();
    assert_conn_adds_up(conn);
    assert_eq!(
        (conn.delivered, conn.returned.total()),
        (FRAMES, 0),
        "{conn:?}"
    );
}

/// Small frames, one 1 MiB frame, small frames, written at once: the
/// large one is read straight into the ring (on io-uring-direct: the
/// multishot is cancelled, what it delivered is read first, then the
/// socket), and every frame arrives in order.
async fn a_large_frame_mid_stream_goes_straight_into_the_ring(kind: FrontendKind) {
    large_mid_stream(kind, config()).await;
}
every_frontend!(a_large_frame_mid_stream_goes_straight_into_the_ring);

async fn large_mid_stream(kind: FrontendKind, config: HostConfig) {
    const BIG: u64 = 1_000;
    let (host, _serving) = serve(kind, config).await;
    let gate = Gate::default();
    gate.open();
    let seen = spawn_sink(&host, gate).await;
    let mut client = Client::connect(&host, "mixed").await;
    let len_of = |id: u64| if id == BIG { 1 << 20 } else { 100 };
    let mut bytes = stream(&client, 0..BIG, 100);
    bytes.extend(stream(&client, BIG..BIG + 1, 1 << 20));
    bytes.extend(stream(&client, BIG + 1..2 * BIG, 100));
    client.write_all(&bytes).await;
    until(&host, "every frame in", |s| s.frames_in == 2 * BIG).await;
    until_seen(&seen, 2 * BIG as usize).await;
    assert_eq!(seen_ids(&seen, len_of), (0..2 * BIG).collect::<Vec<_>>());
    let sink = sink_stats(&host).await;
    assert_eq!(
        (sink.zero_copy_frames, sink.zero_copy_moved_back),
        (1, 0),
        "{sink:?}"
    );
    let stats = host.stats().await.unwrap();
    assert_conn_adds_up(stats.conn("mixed").unwrap());
}

/// The io-uring-direct frontend with its buffer ring off (what a kernel
/// without buffer rings gets): single receives, the same outcomes.
fn single_reads() -> HostConfig {
    HostConfig {
        uring_recv_buffers: None,
        ..config()
    }
}

#[test]
fn without_a_buffer_ring_a_pipelined_stream_arrives_in_order() {
    crate::support::run(FrontendKind::IoUringDirect, |kind| {
        pipelined_stream(kind, single_reads())
    });
}

#[test]
fn without_a_buffer_ring_a_full_ring_stops_the_connection() {
    crate::support::run(FrontendKind::IoUringDirect, |kind| {
        full_ring(kind, single_reads())
    });
}

#[test]
fn without_a_buffer_ring_a_large_frame_goes_straight_into_the_ring() {
    crate::support::run(FrontendKind::IoUringDirect, |kind| {
        large_mid_stream(kind, single_reads())
    });
}
