//! The send path's header cache and batched publication: cached headers
//! give the encoder's exact bytes and the encoder's typed errors, and a
//! `SendBatch` publishes once.

use std::time::{Duration, Instant};

use hostmux_proc::{boot_from, Dest, ProcError, Recv};
use hostmux_wire::{
    encode_frame, encoded_len, Flags, FrameHeader, FrameKind, ProcId, Sender, WireError,
};

use crate::support::{TestHost, PATIENCE};

const RING: usize = 64 * 1024;

/// The bytes `hostmux_wire::encode_frame` produces for a data frame from
/// proc `from`.
fn encoded(dest: (&str, &str), port: u32, id: u64, from: &str, payload: &[u8]) -> Vec<u8> {
    encoded_with(Flags::NONE, dest, port, id, from, payload)
}

/// [`encoded`] with `flags` (`TO_CLIENT` for a frame to a client).
fn encoded_with(
    flags: Flags,
    dest: (&str, &str),
    port: u32,
    id: u64,
    from: &str,
    payload: &[u8],
) -> Vec<u8> {
    let header = FrameHeader {
        kind: FrameKind::Data,
        flags,
        message_id: id,
        dest_name: dest.0,
        dest_port: port,
        dest_addr: dest.1,
        sender: Sender::Proc {
            addr: "",
            name: from,
        },
    };
    #[repr(C, align(16))]
    struct Aligned([u8; 1024]);
    let mut buf = Aligned([0xee; 1024]);
    let len = encode_frame(&mut buf.0, &header, payload, &Default::default()).unwrap();
    assert_eq!(len, encoded_len(&header, payload.len()));
    buf.0[..len].to_vec()
}

/// The next record the proc published, raw.
fn next_record(host: &mut TestHost) -> Vec<u8> {
    let record = host
        .from_proc
        .peek()
        .unwrap()
        .expect("a published frame")
        .to_vec();
    host.from_proc.release().unwrap();
    record
}

#[test]
fn cached_headers_give_the_encoders_bytes_for_every_destination_port_and_length() {
    let (mut host, params) = TestHost::local("cacher", RING, false);
    let mut proc = boot_from(params).unwrap();
    let remote: ProcId = "tcp:10.0.0.7:7000/far".parse().unwrap();
    let payload: Vec<u8> = (0..100u8).collect();
    // Repeats (cache hits), port and destination changes (misses), a
    // destination on another host, every padding case of the payload.
    let plan: [((&str, &str), u32, usize); 10] = [
        (("counter", ""), 1, 64),
        (("counter", ""), 1, 0),
        (("counter", ""), 1, 17),
        (("counter", ""), 2, 16),
        (("count", ""), 2, 15),
        (("counter", ""), 2, 1),
        (("far", "tcp:10.0.0.7:7000"), 2, 100),
        (("far", ""), 2, 100),
        (("far", "tcp:10.0.0.7:7000"), 2, 33),
        (("counter", ""), 1, 64),
    ];
    for (i, &(dest, port, len)) in plan.iter().enumerate() {
        let body = &payload[..len];
        let id = if dest.1.is_empty() {
            proc.outbox().send(dest.0, port, body).unwrap()
        } else {
            assert_eq!(dest.0, remote.name().as_str());
            proc.outbox().send(&remote, port, body).unwrap()
        };
        assert_eq!(
            next_record(&mut host),
            encoded(dest, port, id, "cacher", body),
            "send {i}"
        );
    }
    // Reserve through the cache, committing fewer bytes than reserved.
    let mut slot = proc.outbox().reserve("counter", 1, 48).unwrap();
    slot[..20].copy_from_slice(&payload[..20]);
    slot.commit_len(20);
    proc.outbox().flush().unwrap();
    let id = plan.len() as u64 + 1;
    assert_eq!(
        next_record(&mut host),
        encoded(("counter", ""), 1, id, "cacher", &payload[..20])
    );
    // Replies take the cache too: to a client, then to a proc on another host.
    host.deliver_data(Sender::Client { name: "cli" }, 9, 77, b"hi");
    let Recv::Message(mut message) = proc.recv_timeout(PATIENCE).unwrap() else {
        panic!("expected a message");
    };
    message.reply(b"hello").unwrap();
    assert_eq!(
        next_record(&mut host),
        encoded_with(Flags::TO_CLIENT, ("cli", ""), 9, 77, "cacher", b"hello"),
        "a reply to a client is addressed in the client namespace"
    );
    // The proc `cli` is another destination than the client `cli`: the
    // cached client head is not reused for it, nor the other way round.
    let id = proc.outbox().send("cli", 9, b"hello").unwrap();
    assert_eq!(
        next_record(&mut host),
        encoded(("cli", ""), 9, id, "cacher", b"hello")
    );
    let id = proc
        .outbox()
        .send(Dest::client("cli"), 9, b"hello")
        .unwrap();
    assert_eq!(
        next_record(&mut host),
        encoded_with(Flags::TO_CLIENT, ("cli", ""), 9, id, "cacher", b"hello")
    );
    host.deliver_data(
        Sender::Proc {
            addr: "tcp:10.0.0.7:7000",
            name: "far",
        },
        2,
        78,
        b"hi",
    );
    let Recv::Message(mut message) = proc.recv_timeout(PATIENCE).unwrap() else {
        panic!("expected a message");
    };
    let mut slot = message.reply_slot(3).unwrap();
    slot.copy_from_slice(b"abc");
    slot.commit();
    let _ = proc.try_recv().unwrap();
    assert_eq!(
        next_record(&mut host),
        encoded(("far", "tcp:10.0.0.7:7000"), 2, 78, "cacher", b"abc")
    );
}

/// What the encoder says about a data frame to `dest`.
fn encoder_error(dest: &str) -> String {
    let header = FrameHeader {
        dest_port: 1,
        sender: Sender::Proc {
            addr: "",
            name: "cacher",
        },
        ..FrameHeader::data(dest, 1)
    };
    header
        .validate(&Default::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_destinations_get_the_encoders_typed_error_whatever_is_cached() {
    let (mut host, params) = TestHost::local("cacher", RING, false);
    let mut proc = boot_from(params).unwrap();
    let too_long = "n".repeat(65);
    for bad in ["bad name", ".hidden", "", too_long.as_str()] {
        match proc.outbox().send(bad, 1, b"x") {
            Err(ProcError::Wire(e @ WireError::InvalidHeader { .. })) => {
                assert_eq!(e.to_string(), encoder_error(bad), "dest {bad:?}");
            }
            other => panic!("dest {bad:?}: {other:?}"),
        }
        // A good destination fills the cache; the same bad one still fails,
        // and so does one of the cached name's length.
        proc.outbox().send("counter", 1, b"ok").unwrap();
        assert!(matches!(
            proc.outbox().send(bad, 1, b"x"),
            Err(ProcError::Wire(WireError::InvalidHeader { .. }))
        ));
        assert!(matches!(
            proc.outbox().send("counte!", 1, b"x"),
            Err(ProcError::Wire(WireError::InvalidHeader { .. }))
        ));
        assert!(matches!(
            proc.outbox().reserve("counte!", 1, 4),
            Err(ProcError::Wire(WireError::InvalidHeader { .. }))
        ));
        proc.outbox().send("counter", 1, b"ok").unwrap();
    }
    // Only the good frames reached the ring.
    let mut good = 0;
    while let Some(record) = host.from_proc.peek().unwrap() {
        assert!(record.windows(7).any(|w| w == b"counter"));
        host.from_proc.release().unwrap();
        good += 1;
    }
    assert_eq!(good, 8);
}

#[test]
fn a_send_batch_publishes_once_when_it_ends() {
    let (mut host, params) = TestHost::local("batcher", RING, false);
    let mut proc = boot_from(params).unwrap();
    let mut batch = proc.outbox().batch();
    for i in 0..10u64 {
        batch.send("counter", 1, &i.to_le_bytes()).unwrap();
    }
    let mut slot = batch.reserve("counter", 1, 8).unwrap();
    slot.copy_from_slice(&10u64.to_le_bytes());
    slot.commit();
    assert!(
        host.from_proc.peek().unwrap().is_none(),
        "nothing is visible before the batch is published"
    );
    batch.publish().unwrap();
    for i in 0..11u64 {
        let record = next_record(&mut host);
        assert_eq!(
            record,
            encoded(("counter", ""), 1, i + 1, "batcher", &i.to_le_bytes())
        );
    }
    // After the batch, sends publish one by one again.
    proc.outbox().send("counter", 1, b"single").unwrap();
    assert!(host.from_proc.peek().unwrap().is_some());
    host.from_proc.release().unwrap();
    // Dropping a batch publishes too.
    {
        let mut batch = proc.outbox().batch();
        batch.send("counter", 1, b"dropped").unwrap();
    }
    assert!(host.from_proc.peek().unwrap().is_some());
}

#[test]
fn a_send_batch_larger_than_the_ring_flows_while_the_host_drains() {
    let (mut host, params) = TestHost::local("batcher", RING, false);
    let mut proc = boot_from(params).unwrap();
    // 2,000 frames of 128 bytes: four times the ring.
    const FRAMES: u64 = 2_000;
    let drainer = std::thread::spawn(move || {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = 0u64;
        while seen < FRAMES {
            assert!(Instant::now() < deadline, "the batch stalled at {seen}");
            if let Some(record) = host.from_proc.peek().unwrap() {
                let id = u64::from_le_bytes(record[record.len() - 64..][..8].try_into().unwrap());
                assert_eq!(id, seen, "frames arrive in order");
                host.from_proc.release().unwrap();
                seen += 1;
            } else {
                let _ = host
                    .from_proc
                    .wait_readable(Some(Duration::from_millis(50)))
                    .unwrap();
            }
        }
        seen
    });
    let mut payload = [0u8; 64];
    let mut batch = proc.outbox().batch();
    for i in 0..FRAMES {
        payload[..8].copy_from_slice(&i.to_le_bytes());
        batch.send("counter", 1, &payload).unwrap();
    }
    batch.publish().unwrap();
    assert_eq!(drainer.join().unwrap(), FRAMES);
}

#[test]
fn a_frame_larger_than_the_ring_is_refused_the_same_way_cached_or_not() {
    let (mut host, params) = TestHost::local("cacher", RING, false);
    let mut proc = boot_from(params).unwrap();
    let huge = vec![7u8; RING * 2];
    let too_large = |result: Result<(), ProcError>| match result {
        Err(ProcError::Ring {
            ring: "outbound",
            source: hostmux_ring::RingError::TooLarge { len, .. },
        }) => len,
        other => panic!("expected TooLarge, got {other:?}"),
    };
    // Nothing cached yet, then with the destination cached.
    let first = too_large(proc.outbox().send("counter", 1, &huge).map(drop));
    proc.outbox().send("counter", 1, b"small").unwrap();
    let second = too_large(proc.outbox().send("counter", 1, &huge).map(drop));
    let third = too_large(proc.outbox().reserve("counter", 1, huge.len()).map(drop));
    assert_eq!([second, third], [first, first]);
    assert!(first > RING);
    // The small frame went out; the refused ones left no trace.
    assert!(next_record(&mut host).ends_with(b"small\0\0\0\0\0\0\0\0\0\0\0"));
    assert!(host.from_proc.peek().unwrap().is_none());
}

#[test]
fn a_send_batch_inside_a_receive_batch_publishes_with_the_receive_batch() {
    let (mut host, params) = TestHost::local("batcher", RING, false);
    let mut proc = boot_from(params).unwrap();
    host.deliver_data(Sender::Client { name: "cli" }, 1, 5, b"go");
    let mut seen_inside = None;
    let got = proc
        .recv_batch(8, PATIENCE, |mut message| {
            let mut batch = message.outbox().batch();
            batch.send("counter", 1, b"one").unwrap();
            batch.send("counter", 1, b"two").unwrap();
            batch.publish().unwrap();
            seen_inside = Some(host.from_proc.peek().unwrap().is_some());
        })
        .unwrap();
    assert_eq!(got, hostmux_proc::BatchRecv::Delivered(1));
    assert_eq!(
        seen_inside,
        Some(false),
        "published only after the receive batch"
    );
    assert!(next_record(&mut host).ends_with(b"one\0\0\0\0\0\0\0\0\0\0\0\0\0"));
    assert!(next_record(&mut host).ends_with(b"two\0\0\0\0\0\0\0\0\0\0\0\0\0"));
    // Outside any batch, a send publishes at once again.
    proc.outbox().send("counter", 1, b"three").unwrap();
    assert!(host.from_proc.peek().unwrap().is_some());
}
