//! Exactly once across a proc crash (issue 11): a proc that answered some
//! frames and then died with many more in flight. Every message id gets one
//! answer, the proc's reply or the host's notice, never both and never
//! none: the proc library publishes its inbound read position no later
//! than the replies that follow it, and the host returns only the frames
//! past that position.

use std::collections::HashSet;

use hostmux_host::{ClientReader, HostConfig, ReceivedFrame};
use hostmux_wire::FrameKind;

use crate::process::{client, fixture, run_os, serve_os};
use crate::support::WAIT;

const SENT: u64 = 3_000;
const ANSWERED: u64 = 100;

async fn next(reader: &mut ClientReader) -> ReceivedFrame {
    tokio::time::timeout(WAIT, reader.recv())
        .await
        .expect("an answer within the wait")
        .unwrap()
        .expect("connection open")
}

/// Runs the fixture in `mode` (it echoes `ANSWERED` frames, then aborts)
/// with `SENT` frames in flight; returns the ids it echoed.
fn every_id_answered_once(mode: &str) -> HashSet<u64> {
    let mut echoed = HashSet::new();
    run_os(|| async {
        let (host, _serving) = serve_os(HostConfig::default()).await;
        host.spawn("quitter", fixture(&[mode, &ANSWERED.to_string()]))
            .await
            .unwrap();
        let (mut writer, mut reader) = client(&host, "exact").await.into_split();
        for id in 0..SENT {
            writer.queue("quitter", 1, id, &id.to_le_bytes()).unwrap();
        }
        writer.flush().await.unwrap();
        let mut noticed = HashSet::new();
        while (echoed.len() + noticed.len()) < SENT as usize {
            let frame = next(&mut reader).await;
            let id = frame.message_id;
            assert!(id < SENT, "unexpected id {id}");
            match frame.kind {
                FrameKind::Data => {
                    assert_eq!(frame.payload, id.to_le_bytes());
                    assert!(!noticed.contains(&id), "{id} returned, then echoed");
                    assert!(echoed.insert(id), "{id} echoed twice");
                }
                FrameKind::Undeliverable => {
                    assert!(!echoed.contains(&id), "{id} echoed, then returned");
                    assert!(noticed.insert(id), "{id} returned twice");
                }
                other => panic!("unexpected {other:?} for {id}"),
            }
        }
        // Every id is answered. A probe to the dead proc is answered after
        // anything the host still had for this connection: nothing may
        // come before it.
        writer.queue("quitter", 1, SENT, b"probe").unwrap();
        writer.flush().await.unwrap();
        let probe = next(&mut reader).await;
        assert_eq!(
            (probe.kind, probe.message_id),
            (FrameKind::Undeliverable, SENT),
            "a second answer arrived after every id was answered"
        );
        let stats = host.stats().await.unwrap();
        let conn = stats.conn("exact").unwrap();
        assert_eq!(conn.accepted, SENT + 1);
        assert_eq!(conn.accepted, conn.delivered + conn.returned.total());
        // A frame the proc never read moves from delivered to returned:
        // delivered counts exactly the frames the proc answered.
        assert_eq!(conn.delivered, echoed.len() as u64, "{conn:?}");
        assert_eq!(conn.frames_out, SENT + 1, "one frame back per frame in");
    });
    echoed
}

#[test]
fn a_crashed_proc_never_has_an_answered_id_returned() {
    // Replies published one by one (`Proc::serve`): exactly the first
    // `ANSWERED` ids are echoed, every other id is returned.
    let echoed = every_id_answered_once("crash-after");
    assert_eq!(echoed, (0..ANSWERED).collect::<HashSet<_>>());
}

#[test]
fn a_crashed_batching_proc_never_has_an_answered_id_returned() {
    // Replies published once per receive batch; it aborts after the batch
    // of its `ANSWERED`-th echo, so at least that many are echoed, in order.
    let echoed = every_id_answered_once("crash-after-batches");
    assert!(echoed.len() as u64 >= ANSWERED, "{}", echoed.len());
    assert_eq!(echoed, (0..echoed.len() as u64).collect::<HashSet<_>>());
}
