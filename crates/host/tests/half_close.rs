//! Half-close with others writing to the client (issue 11, case 2; the
//! simulation's seeds 1293 and 256): a client that sends requests and shuts
//! down its write side gets every reply of its own before the host closes,
//! even when other parties send it frames meanwhile. The host matches
//! answers by (message id, the party the request went to), so those frames
//! do not end its wait.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hostmux_host::HostConfig;
use hostmux_wire::{
    encode_frame_to_vec, encode_hello, is_hello_ack, FrameDecoder, FrameHeader, FrameKind, Limits,
    Sender,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::process::{client, fixture, run_os, serve_os};
use crate::support::WAIT;

const REQUESTS: u64 = 100;
const OTHERS: u64 = 50;

#[test]
fn others_frames_do_not_end_a_half_closed_clients_wait() {
    run_os(|| async {
        let config = HostConfig {
            // Long, so that closing at the last answer and closing at the
            // linger cannot be confused.
            half_close_linger: Duration::from_secs(60),
            ..HostConfig::default()
        };
        let (host, _serving) = serve_os(config).await;
        // Holds every request until it is sent `release`.
        host.spawn("gate", fixture(&["gate"])).await.unwrap();

        // The half-closing client, written from docs/wire.md.
        let limits = Limits::default();
        let addr = format!("127.0.0.1:{}", host.addr().port().unwrap());
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let token = host.config().token.clone().unwrap_or_default();
        let mut out = vec![0; 512];
        let len = encode_hello(&mut out, "service", "halfway", token.as_bytes(), &limits).unwrap();
        out.truncate(len);
        for id in 1..=REQUESTS {
            let header = FrameHeader {
                sender: Sender::Client { name: "halfway" },
                ..FrameHeader::data("gate", id)
            };
            encode_frame_to_vec(&mut out, &header, &id.to_le_bytes(), &limits).unwrap();
        }
        stream.write_all(&out).await.unwrap();
        stream.shutdown().await.unwrap();

        // Every request is in the gate's ring before anyone else writes.
        let deadline = Instant::now() + WAIT;
        loop {
            let stats = host.stats().await.unwrap();
            let delivered = stats
                .conns
                .iter()
                .find(|c| c.name == "halfway")
                .map_or(0, |c| c.delivered);
            if delivered == REQUESTS {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the host delivered {delivered} of {REQUESTS} requests within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Another client sends it frames of its own first, then opens the
        // gate for half the replies: the host queues those frames for the
        // half-closed client before any reply exists, and the replies come
        // in two batches (counting frames instead of matching them would
        // end the wait after the first batch and return the second).
        let (mut writer, _reader) = client(&host, "other").await.into_split();
        for n in 0..OTHERS {
            // To the client `halfway` (client names are their own
            // namespace: `TO_CLIENT`).
            writer
                .queue_to_client("halfway", 0, 10_000 + n, b"not an answer")
                .unwrap();
        }
        writer
            .queue("gate", 0, 1, format!("release:{}", REQUESTS / 2).as_bytes())
            .unwrap();
        writer.flush().await.unwrap();
        wait_for_replies(&host, REQUESTS / 2).await;
        writer.queue("gate", 0, 2, b"release").unwrap();
        writer.flush().await.unwrap();

        let started = Instant::now();
        let mut received = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut received))
            .await
            .expect("the host closes within the wait")
            .expect("read until the host closes");
        let mut decoder = FrameDecoder::new(limits);
        decoder.feed(&received);
        let mut replies: HashMap<u64, u32> = HashMap::new();
        let mut others = 0;
        while let Some(frame) = decoder.next_frame().expect("well-formed frames") {
            if is_hello_ack(&frame) {
                continue;
            }
            assert_eq!(
                frame.kind(),
                FrameKind::Data,
                "{frame:?}: no notice expected"
            );
            match frame.sender() {
                Sender::Client { name: "other" } => others += 1,
                Sender::Proc { name: "gate", .. } => {
                    let id = frame.message_id();
                    assert_eq!(frame.payload(), id.to_le_bytes());
                    *replies.entry(id).or_default() += 1;
                }
                sender => panic!("a frame from {sender:?}"),
            }
        }
        assert_eq!(others, OTHERS, "the other client's frames");
        assert!(
            (1..=REQUESTS).all(|id| replies.get(&id) == Some(&1)),
            "every request answered exactly once before the close: {} answered",
            replies.len()
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "closed at the last answer, not at the linger: {:?}",
            started.elapsed()
        );
        let stats = host.stats().await.unwrap();
        let gate = stats.proc("gate").unwrap();
        assert_eq!(gate.outbound_returned.total(), 0, "no reply went back");
    });
}

/// Waits until the gate's first `count` replies were delivered.
async fn wait_for_replies(host: &crate::process::OsHost, count: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = host.stats().await.unwrap();
        let delivered = stats.proc("gate").map_or(0, |p| p.outbound_delivered);
        if delivered >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gate's replies delivered: {delivered} of {count} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
