//! Nothing is lost, memory stays bounded, and one bad peer hurts nobody else.

use std::collections::HashSet;
use std::time::Duration;

use hostmux_host::{FrontendKind, HostConfig, HostError, LocalProc, ServeHandle};
use hostmux_wire::{FrameKind, UndeliverableReason};

use crate::support::{
    assert_conn_adds_up, echo_proc, every_frontend, next_frame, serve, Client, TestHost, WAIT,
};

/// A proc that attaches its rings, reports ready and never reads them.
fn stuck_proc() -> LocalProc {
    LocalProc::new(|mut cx, rings| async move {
        let _endpoint = rings.attach().map_err(|e| e.to_string())?;
        cx.report_ready();
        cx.stopped().await;
        Ok(())
    })
}

async fn proc_exit_mid_stream_returns_every_frame(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    const ANSWERED: usize = 10;
    const SENT: u64 = 300;
    host.spawn("quitter", echo_proc(ANSWERED)).await.unwrap();
    let mut client = Client::connect(&host, "stream").await;
    let mut out = Vec::new();
    for id in 0..SENT {
        client.encode("quitter", id, &id.to_le_bytes(), &mut out);
    }
    client.write_all(&out).await;
    // Every message comes back exactly once: an echo, or a notice.
    let mut seen = HashSet::new();
    let (mut echoes, mut exited, mut unknown) = (0, 0, 0);
    while seen.len() < SENT as usize {
        let frame = client.recv().await;
        assert!(
            seen.insert(frame.message_id),
            "message {} came back twice",
            frame.message_id
        );
        match frame.kind {
            FrameKind::Data => {
                assert_eq!(frame.payload, frame.message_id.to_le_bytes());
                echoes += 1;
            }
            FrameKind::Undeliverable => match frame.undeliverable().reason {
                UndeliverableReason::ProcExited => exited += 1,
                UndeliverableReason::NoSuchProc => unknown += 1,
                other => panic!("unexpected reason {other:?}"),
            },
            other => panic!("unexpected frame kind {other:?}"),
        }
    }
    assert_eq!(echoes, ANSWERED);
    assert_eq!(echoes + exited + unknown, SENT as usize);
    let stats = host.stats().await.unwrap();
    let conn = stats.conn("stream").unwrap();
    assert_conn_adds_up(conn);
    assert_eq!(conn.accepted, SENT);
    let quitter = stats.proc("quitter").unwrap();
    // What the host wrote into its ring was either read (and answered) or
    // returned from the ring after it exited.
    assert_eq!(quitter.frames_in, ANSWERED as u64 + quitter.left_in_ring);
    // The client's counters: every frame written into the ring counts as
    // delivered (its notice, if it was left there, is its answer, as a
    // reply would be); only frames refused at once count as returned.
    assert_eq!(conn.delivered, quitter.frames_in, "{conn:?}");
    assert_eq!(
        quitter.returned_for.get(UndeliverableReason::ProcExited),
        exited as u64
    );
    // Its frames come back while its watcher is still finishing: wait for
    // it to be gone (terminating a proc that already exited only waits).
    match host.terminate_proc("quitter", Duration::from_secs(1)).await {
        Ok(_) | Err(HostError::AlreadyEnded { .. }) => {}
        Err(e) => panic!("waiting for the quitter to be gone: {e}"),
    }
    assert!(host.procs().is_empty());
}
every_frontend!(proc_exit_mid_stream_returns_every_frame);

async fn stuck_proc_overloads_without_stalling_others(kind: FrontendKind) {
    let config = HostConfig {
        inbound_ring_bytes: 64 * 1024,
        overload_wait: Duration::from_millis(100),
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    host.spawn("stuck", stuck_proc()).await.unwrap();
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let mut flooder = Client::connect(&host, "flooder").await;
    let mut other = Client::connect(&host, "other").await;
    // 200 KiB at a 64 KiB ring that nobody reads.
    const SENT: u64 = 200;
    let body = vec![7u8; 1000];
    let mut out = Vec::new();
    for id in 0..SENT {
        flooder.encode("stuck", id, &body, &mut out);
    }
    flooder.write_all(&out).await;
    // Meanwhile another client talks to another proc, unaffected.
    for id in 0..50 {
        other.send("echo", id, b"ping").await;
        let echo = other.recv().await;
        assert_eq!((echo.kind, echo.message_id), (FrameKind::Data, id));
    }
    // Whatever did not fit comes back Overloaded once the wait is over.
    let mut overloaded = 0;
    let stats = loop {
        let stats = host.stats().await.unwrap();
        let conn = stats.conn("flooder").unwrap().clone();
        if conn.accepted == SENT && conn.delivered + conn.returned.total() == SENT {
            break conn;
        }
        let frame = flooder.recv().await;
        assert_eq!(
            frame.undeliverable().reason,
            UndeliverableReason::Overloaded
        );
        overloaded += 1;
    };
    assert_conn_adds_up(&stats);
    assert!(stats.delivered > 0 && stats.delivered < SENT, "{stats:?}");
    assert_eq!(
        stats.returned.get(UndeliverableReason::Overloaded),
        SENT - stats.delivered
    );
    while overloaded < SENT - stats.delivered {
        assert_eq!(
            flooder.recv().await.undeliverable().reason,
            UndeliverableReason::Overloaded
        );
        overloaded += 1;
    }
}
every_frontend!(stuck_proc_overloads_without_stalling_others);

/// The reply queue bound of the deaf-client tests.
const DEAF_OUTBOX: usize = 64 * 1024;

/// A host with a [`DEAF_OUTBOX`] reply queue per client and an echo proc,
/// and 256 requests of 4000 bytes from the client "deaf" (about 1 MiB),
/// ids 0 to 255, to write as often as a test likes.
async fn deaf_setup(kind: FrontendKind) -> (TestHost, ServeHandle, Vec<u8>) {
    let config = HostConfig {
        client_outbox_bytes: DEAF_OUTBOX,
        ..HostConfig::default()
    };
    let (host, serving) = serve(kind, config).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let body = vec![1u8; 4000];
    let mut chunk = Vec::new();
    for id in 0..256 {
        deaf_encode(&mut chunk, id, &body);
    }
    (host, serving, chunk)
}

async fn client_that_stops_reading_is_bounded(kind: FrontendKind) {
    let (host, _serving, chunk) = deaf_setup(kind).await;
    let deaf = Client::connect(&host, "deaf").await;
    let mut other = Client::connect(&host, "other").await;
    // The deaf client sends ~32 MiB of requests and never reads a reply.
    let (mut write_half, _read_half) = deaf.into_split();
    let flood = tokio::spawn(async move {
        for _ in 0..32 {
            if let Err(e) = write_half.write_raw(&chunk).await {
                panic!("flood write failed: {e}");
            }
        }
        write_half
    });
    // Others are served while it floods.
    for id in 0..50 {
        other.send("echo", id, b"ping").await;
        assert_eq!(other.recv().await.message_id, id);
    }
    // Let the flood finish or stall; either way the host's memory for this
    // client is bounded: replies beyond its queue bound wait in the proc's
    // ring for the overload wait, then go back to the proc as Overloaded;
    // reading pauses while the queue is over half full. (The notices for
    // the client's own frames that one read brought in may go past the
    // bound; they are bounded by the read size.)
    let flood_outcome = tokio::time::timeout(Duration::from_secs(2), flood).await;
    let stats = host.stats().await.unwrap();
    let deaf_stats = stats.conn("deaf").unwrap();
    assert!(
        deaf_stats.outbox_high_water <= (DEAF_OUTBOX + 16 * 1024) as u64,
        "{deaf_stats:?}"
    );
    assert_conn_adds_up(deaf_stats);
    let echo = stats.proc("echo").unwrap();
    assert_eq!(
        echo.frames_out,
        echo.outbound_delivered + echo.outbound_returned.total(),
        "{echo:?}"
    );
    if flood_outcome.is_ok() {
        // Everything was read: the replies that did not fit were returned.
        assert!(
            echo.outbound_returned.get(UndeliverableReason::Overloaded) > 0,
            "{echo:?}"
        );
    }
    // Others are still served.
    other.send("echo", 99, b"still there?").await;
    assert_eq!(other.recv().await.message_id, 99);
}
every_frontend!(client_that_stops_reading_is_bounded);

/// A client that floods requests, never reads a reply, and then dies
/// (its socket closed with replies unread, so the host's next send fails)
/// is forgotten: its name is free again and its queue released. (Its
/// reader waited, paused, for its full reply queue to drain, and only the
/// writer saw the socket fail: the connection, its name and its memory
/// were held until the host stopped.)
async fn a_deaf_client_that_dies_is_forgotten(kind: FrontendKind) {
    let (host, _serving, chunk) = deaf_setup(kind).await;
    let (mut write_half, read_half) = Client::connect(&host, "deaf").await.into_split();
    let flood = tokio::spawn(async move {
        // About 8 MiB: the host stops reading it long before the end.
        for _ in 0..8 {
            if write_half.write_raw(&chunk).await.is_err() {
                break;
            }
        }
        write_half
    });
    // Its reply queue fills (the host then stops reading it).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = host.stats().await.unwrap();
        if stats
            .conn("deaf")
            .is_some_and(|c| c.outbox_high_water >= DEAF_OUTBOX as u64 / 2)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deaf client's queue never filled: {:?}",
            stats.conn("deaf")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // It dies: the flood is dropped mid-write, both halves closed.
    flood.abort();
    let _ = flood.await;
    drop(read_half);
    // Its name is free again within the wait.
    let token = host.config().token.clone().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut again = loop {
        if let Some(client) = Client::connect_with_token(&host, "deaf", token.as_bytes()).await {
            break client;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead client's name is still bound after {WAIT:?}: {:?}",
            host.stats().await.unwrap().conn("deaf")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Served under it. Replies to the dead connection's requests that the
    // proc sends after this hello go to whoever holds the name now, which
    // is why docs/wire.md asks for a name unique to the connection: they
    // are skipped here.
    again.send("echo", 1_000, b"back").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, again.recv())
            .await
            .expect("the reply to the new connection's request within the wait");
        if frame.message_id == 1_000 {
            assert_eq!(frame.payload, b"back");
            break;
        }
        assert!(
            frame.message_id < 256,
            "only the dead connection's ids: {frame:?}"
        );
    }
}
every_frontend!(a_deaf_client_that_dies_is_forgotten);

/// Several clients that never read: together they cannot make the host
/// queue more than `reply_memory` for clients (each alone would stay
/// within its own queue bound, which here is larger than the whole
/// budget), and a client that reads is still served.
async fn deaf_clients_together_stay_within_the_reply_budget(kind: FrontendKind) {
    const BUDGET: usize = 256 * 1024;
    let config = HostConfig {
        client_outbox_bytes: 1 << 20,
        reply_memory: BUDGET,
        overload_wait: Duration::from_millis(100),
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let mut floods = Vec::new();
    for n in 0..4 {
        let name = format!("deaf-{n}");
        let (mut write_half, read_half) = Client::connect(&host, &name).await.into_split();
        let mut chunk = Vec::new();
        for id in 0..64 {
            let header = hostmux_wire::FrameHeader {
                sender: hostmux_wire::Sender::Client { name: &name },
                ..hostmux_wire::FrameHeader::data("echo", id)
            };
            hostmux_wire::encode_frame_to_vec(
                &mut chunk,
                &header,
                &[1u8; 4000],
                &Default::default(),
            )
            .unwrap();
        }
        floods.push(tokio::spawn(async move {
            // About 1 MiB each, never reading a reply.
            for _ in 0..4 {
                if write_half.write_raw(&chunk).await.is_err() {
                    break;
                }
            }
            (write_half, read_half)
        }));
    }
    let mut other = Client::connect(&host, "other").await;
    for id in 0..20 {
        other.send("echo", id, b"ping").await;
        assert_eq!(other.recv().await.message_id, id);
    }
    // Every request is read and every reply disposed of (delivered, or
    // after waiting for the budget, returned `Overloaded`): wait for that
    // real event (bounded), then check what was held at once.
    let deadline = tokio::time::Instant::now() + WAIT;
    let stats = loop {
        let stats = host.stats().await.unwrap();
        let echo = stats.proc("echo").unwrap();
        let requests = 4 * 4 * 64 + 20;
        if echo.frames_out >= requests
            && echo.frames_out == echo.outbound_delivered + echo.outbound_returned.total()
        {
            break stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "echo not done within {WAIT:?}: {echo:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stats.reply_memory.limit, BUDGET as u64);
    // The budget bound what was queued at once (4 MiB of replies went
    // through), and it was what bound it.
    assert!(
        stats.reply_memory.high_water <= BUDGET as u64
            && stats.reply_memory.high_water > BUDGET as u64 / 2,
        "{:?}",
        stats.reply_memory
    );
    let queued: u64 = stats
        .conns
        .iter()
        .filter(|c| c.name.starts_with("deaf-"))
        .map(|c| c.outbox_high_water)
        .max()
        .unwrap();
    assert!(queued <= (BUDGET + 64 * 1024) as u64, "{queued}");
    other.send("echo", 99, b"still there?").await;
    assert_eq!(other.recv().await.message_id, 99);
    drop(floods);
}
every_frontend!(deaf_clients_together_stay_within_the_reply_budget);

fn deaf_encode(out: &mut Vec<u8>, id: u64, body: &[u8]) {
    let header = hostmux_wire::FrameHeader {
        sender: hostmux_wire::Sender::Client { name: "deaf" },
        ..hostmux_wire::FrameHeader::data("echo", id)
    };
    hostmux_wire::encode_frame_to_vec(out, &header, body, &Default::default()).unwrap();
}

async fn malformed_frames_close_only_their_connection(kind: FrontendKind) {
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let bad = Client::connect(&host, "bad").await;
    let mut good = Client::connect(&host, "good").await;
    // 10,000 frames whose headers fail validation.
    let mut one = Vec::new();
    bad.encode("echo", 1, b"payload", &mut one);
    for byte in &mut one[16..48] {
        *byte = 0xff;
    }
    let flood: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * 10_000)
        .collect();
    let (mut write_half, mut read_half) = bad.into_split();
    let writer = tokio::spawn(async move {
        let _ = write_half.write_raw(&flood).await;
        write_half
    });
    // The bad client gets one Malformed notice, then end of stream.
    let mut notices = Vec::new();
    while let Some(frame) = next_frame(&mut read_half).await {
        notices.push(frame);
    }
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(
        notices[0].undeliverable().reason,
        UndeliverableReason::Malformed
    );
    drop(writer.await);
    // The good client is unaffected.
    for id in 0..20 {
        good.send("echo", id, b"fine").await;
        assert_eq!(good.recv().await.message_id, id);
    }
    let stats = host.stats().await.unwrap();
    assert!(stats.conn("good").is_some());
    assert!(
        stats.conns.iter().all(|c| c.name != "bad"),
        "bad connection closed"
    );
}
every_frontend!(malformed_frames_close_only_their_connection);

async fn proc_flooding_a_stuck_proc_gets_overloaded(kind: FrontendKind) {
    let config = HostConfig {
        inbound_ring_bytes: 64 * 1024,
        overload_wait: Duration::from_millis(100),
        ..HostConfig::default()
    };
    let (host, _serving) = serve(kind, config).await;
    host.spawn("stuck", stuck_proc()).await.unwrap();
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    // "flooder" sends 200 × 1 KiB to the stuck proc when poked, then counts
    // the notices that come back and reports delivered/overloaded counts.
    let flooder = crate::support::ring_proc(|endpoint, poke| {
        let me = endpoint.name.clone();
        const SENT: u64 = 200;
        for id in 0..SENT {
            let header = hostmux_wire::FrameHeader {
                sender: hostmux_wire::Sender::Proc {
                    addr: "",
                    name: me.as_str(),
                },
                ..hostmux_wire::FrameHeader::data("stuck", id)
            };
            endpoint
                .send(&header, &[3u8; 1000], crate::support::WAIT)
                .unwrap();
        }
        let mut overloaded = 0u64;
        // Every frame that did not fit comes back; the rest sit in the ring.
        loop {
            let got = endpoint
                .recv(Duration::from_secs(1), |view| {
                    hostmux_wire::Undeliverable::decode(view.payload()).map(|u| u.reason)
                })
                .unwrap();
            match got {
                hostmux_host::Received::Frame(Ok(UndeliverableReason::Overloaded)) => {
                    overloaded += 1
                }
                hostmux_host::Received::Frame(other) => panic!("unexpected {other:?}"),
                _ => break,
            }
        }
        crate::support::reply(endpoint, &poke, &overloaded.to_le_bytes());
        true
    });
    host.spawn("flooder", flooder).await.unwrap();
    let mut client = Client::connect(&host, "poker").await;
    client.send("flooder", 1, b"go").await;
    // Meanwhile the echo proc serves others.
    let mut other = Client::connect(&host, "other").await;
    for id in 0..20 {
        other.send("echo", id, b"ping").await;
        assert_eq!(other.recv().await.message_id, id);
    }
    let report = tokio::time::timeout(Duration::from_secs(20), client.recv())
        .await
        .unwrap();
    let overloaded = u64::from_le_bytes(report.payload.try_into().unwrap());
    let stats = host.stats().await.unwrap();
    let flooder = stats.proc("flooder").unwrap();
    let stuck = stats.proc("stuck").unwrap();
    assert_eq!(flooder.frames_out, 201, "{flooder:?}");
    assert_eq!(
        flooder.frames_out,
        flooder.outbound_delivered + flooder.outbound_returned.total()
    );
    assert_eq!(
        flooder
            .outbound_returned
            .get(UndeliverableReason::Overloaded),
        overloaded
    );
    assert_eq!(stuck.frames_in + overloaded, 200, "{stuck:?}");
    assert!(overloaded > 0 && stuck.frames_in > 0);
}
every_frontend!(proc_flooding_a_stuck_proc_gets_overloaded);

/// A proc that corrupts its outbound ring: it commits a record, then
/// overwrites the record's header in shared memory with reserved bits
/// before publishing it.
fn corrupting_proc() -> LocalProc {
    LocalProc::new(|mut cx, rings| async move {
        use std::os::unix::fs::FileExt;
        let memfd = std::fs::File::from(
            rings.lanes[0]
                .outbound
                .try_clone()
                .map_err(|e| e.to_string())?,
        );
        let mut endpoint = rings.attach().map_err(|e| e.to_string())?;
        cx.report_ready();
        tokio::task::spawn_blocking(move || {
            // Wait for the go-ahead, then misbehave.
            let _ = endpoint.recv(crate::support::WAIT, |_| ());
            let mut slot = endpoint.outbound.try_reserve(64).unwrap();
            slot.fill(0);
            slot.commit();
            // The first record's header sits at the start of the data
            // region, after the ring's 512-byte header.
            memfd
                .write_at(&(1u64 << 40 | 64).to_le_bytes(), 512)
                .unwrap();
            endpoint.outbound.publish().unwrap();
            // Keep running: the host must kill it.
            let _ = endpoint.recv(Duration::from_secs(30), |_| ());
        })
        .await
        .map_err(|e| e.to_string())
    })
}

async fn corrupted_ring_fails_only_that_proc(kind: FrontendKind) {
    use hostmux_lifecycle::{ProcHandle, ProcManager};
    let (host, _serving) = serve(kind, HostConfig::default()).await;
    host.spawn("vandal", corrupting_proc()).await.unwrap();
    host.spawn("echo", echo_proc(usize::MAX)).await.unwrap();
    let vandal = host
        .manager()
        .get(&hostmux_wire::ProcName::new("vandal").unwrap())
        .unwrap();
    let mut client = Client::connect(&host, "witness").await;
    client.send("vandal", 1, b"go").await;
    // The host unbinds and kills the vandal (its inbound ring is closed
    // too, so it may also see end of stream and exit first); the host
    // itself carries on.
    tokio::time::timeout(crate::support::WAIT, vandal.wait())
        .await
        .unwrap()
        .unwrap();
    // The vandal may die before it publishes the release of "go": the host
    // then still finds that frame in the inbound ring and returns it as
    // ProcExited, at some point around the replies below. Nothing else may
    // come back for it.
    let mut go_returned = 0;
    let mut recv_skipping_go = async |client: &mut Client| loop {
        let frame = client.recv().await;
        if frame.message_id != 1 {
            return frame;
        }
        assert_eq!(
            frame.undeliverable().reason,
            UndeliverableReason::ProcExited
        );
        go_returned += 1;
    };
    client.send("vandal", 2, b"still there?").await;
    let frame = recv_skipping_go(&mut client).await;
    assert_eq!(frame.message_id, 2);
    assert_eq!(
        frame.undeliverable().reason,
        UndeliverableReason::NoSuchProc
    );
    client.send("echo", 3, b"ping").await;
    assert_eq!(recv_skipping_go(&mut client).await.message_id, 3);
    assert!(go_returned <= 1, "\"go\" returned {go_returned} times");
}
every_frontend!(corrupted_ring_fails_only_that_proc);
