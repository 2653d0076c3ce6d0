//! Baseline: iceoryx2 publish-subscribe (ipc service), zero-copy loan API,
//! no overflow (the publisher retries until delivered), subscribers busy-poll.

use std::time::{Duration, Instant};

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

use iceoryx2::port::update_connections::UpdateConnections;

use crate::common::{
    measure_rtt, message_seq, payload_source, time_up, Control, Counter, Latency, Peer, Throughput,
    SENTINEL,
};

const BUFFER: usize = 256;

type Pub = Publisher<ipc::Service, [u8], ()>;
type Sub = Subscriber<ipc::Service, [u8], ()>;

struct Ports {
    _node: Node<ipc::Service>,
    publisher: Option<Pub>,
    subscriber: Option<Sub>,
}

/// A fresh tag per measurement: services are never reused across runs.
fn unique_tag(what: &str, size: usize) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{what}-{size}-{n}", std::process::id())
}

fn service_name(tag: &str, kind: &str) -> ServiceName {
    format!("hostmux-ring-compare/{tag}/{kind}")
        .as_str()
        .try_into()
        .unwrap()
}

fn open(tag: &str, size: usize, publish_on: Option<&str>, subscribe_on: Option<&str>) -> Ports {
    let node = NodeBuilder::new().create::<ipc::Service>().unwrap();
    let service = |kind: &str| {
        node.service_builder(&service_name(tag, kind))
            .publish_subscribe::<[u8]>()
            .enable_safe_overflow(false)
            .subscriber_max_buffer_size(BUFFER)
            .history_size(0)
            .max_publishers(1)
            .max_subscribers(1)
            .open_or_create()
            .unwrap()
    };
    let publisher = publish_on.map(|kind| {
        service(kind)
            .publisher_builder()
            .initial_max_slice_len(size)
            .max_loaned_samples(2)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .unwrap()
    });
    let subscriber = subscribe_on.map(|kind| {
        service(kind)
            .subscriber_builder()
            .buffer_size(BUFFER)
            .create()
            .unwrap()
    });
    Ports {
        _node: node,
        publisher,
        subscriber,
    }
}

fn send(publisher: &Pub, size: usize, seq: u64, src: &[u8]) {
    let sample = publisher.loan_slice_uninit(size).unwrap();
    let mut sample = sample.write_from_slice(&src[..size]);
    sample.payload_mut()[..8].copy_from_slice(&seq.to_le_bytes());
    sample.send().unwrap();
}

pub fn throughput(size: usize, secs: f64) -> Throughput {
    let tag = unique_tag("tp", size);
    let ports = open(&tag, size, None, Some("data"));
    let subscriber = ports.subscriber.as_ref().unwrap();
    let mut peer = Peer::spawn(
        &[
            "iox".into(),
            "throughput".into(),
            size.to_string(),
            secs.to_string(),
            tag,
        ],
        &[],
    );
    peer.wait_ready();
    peer.go();
    let mut counter = Counter::tolerating_loss();
    loop {
        match subscriber.receive().unwrap() {
            Some(sample) => {
                if !counter.take(sample.payload()) {
                    break;
                }
            }
            None => std::hint::spin_loop(),
        }
    }
    let result = counter.result();
    if counter.lost > 0 {
        eprintln!(
            "note: iceoryx2 dropped {} of {} messages ({size} B) despite RetryUntilDelivered; throughput counts received ones",
            counter.lost,
            counter.lost + counter.received
        );
    }
    peer.go(); // the publisher may leave now
    peer.finish();
    result
}

pub fn rtt(size: usize, duration: Duration) -> Latency {
    let tag = unique_tag("rtt", size);
    let ports = open(&tag, size, Some("ping"), Some("pong"));
    let (publisher, subscriber) = (
        ports.publisher.as_ref().unwrap(),
        ports.subscriber.as_ref().unwrap(),
    );
    let mut peer = Peer::spawn(
        &[
            "iox".into(),
            "rtt".into(),
            size.to_string(),
            "0".into(),
            tag,
        ],
        &[],
    );
    peer.wait_ready();
    publisher.update_connections().unwrap();
    subscriber.update_connections().unwrap();
    let src = payload_source(size);
    let latency = measure_rtt(duration, |seq| {
        send(publisher, size, seq, &src);
        loop {
            if let Some(reply) = subscriber.receive().unwrap() {
                assert_eq!(message_seq(reply.payload()), seq);
                break;
            }
            std::hint::spin_loop();
        }
    });
    send(publisher, size, SENTINEL, &src);
    peer.finish();
    latency
}

pub fn peer(mode: &str, size: usize, secs: f64, tag: &str, mut control: Control) {
    let src = payload_source(size);
    match mode {
        "throughput" => {
            let ports = open(tag, size, Some("data"), None);
            let publisher = ports.publisher.as_ref().unwrap();
            control.ready();
            control.wait_go();
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut seq = 0u64;
            while !time_up(seq, end) {
                send(publisher, size, seq, &src);
                seq += 1;
            }
            send(publisher, size, SENTINEL, &src);
            // Stay until the subscriber has taken the last samples.
            control.wait_go();
        }
        "rtt" => {
            let ports = open(tag, size, Some("pong"), Some("ping"));
            let (publisher, subscriber) = (
                ports.publisher.as_ref().unwrap(),
                ports.subscriber.as_ref().unwrap(),
            );
            // Both services exist; the parent's ports connect on their next operation.
            control.ready();
            loop {
                let Some(message) = subscriber.receive().unwrap() else {
                    std::hint::spin_loop();
                    continue;
                };
                let seq = message_seq(message.payload());
                if seq == SENTINEL {
                    break;
                }
                send(publisher, size, seq, &src);
            }
        }
        other => panic!("unknown iox mode {other}"),
    }
}
