//! Our ring: one ring per direction, memfds passed over the control socket.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hostmux_ring::{RingError, SharedRing, WaitOutcome};

use crate::common::{
    measure_rtt, message_seq, payload_source, time_up, write_message, Control, Counter, Latency,
    Peer, Throughput, SENTINEL,
};

/// Data capacity of each bench ring.
pub const CAPACITY: usize = 256 * 1024;
/// Commits per publish on the throughput path.
const PUBLISH_EVERY: u64 = 32;

/// Capacity for the throughput rings (`RC_CAPACITY` overrides, for experiments).
pub fn throughput_capacity() -> usize {
    std::env::var("RC_CAPACITY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CAPACITY)
}

pub fn throughput(size: usize, secs: f64) -> Throughput {
    let ring = SharedRing::create(throughput_capacity()).unwrap();
    let mut peer = Peer::spawn(
        &[
            "ring".into(),
            "throughput".into(),
            size.to_string(),
            secs.to_string(),
        ],
        &[ring.memfd()],
    );
    let mut consumer = ring.into_consumer().unwrap();
    peer.wait_ready();
    peer.go();
    let mut counter = Counter::new();
    'outer: loop {
        match consumer.peek().unwrap() {
            Some(message) => {
                if !counter.take(message) {
                    break 'outer;
                }
                consumer.release().unwrap();
            }
            // Spin (20 µs), then sleep on the futex: robust when the machine
            // is shared, and free while traffic flows (nobody sleeps).
            None => {
                let _ = consumer
                    .wait_readable(Some(Duration::from_secs(5)))
                    .unwrap();
            }
        }
    }
    let result = counter.result();
    peer.finish();
    result
}

/// Round trip; `futex` makes both sides sleep on the futex at once instead of polling.
pub fn rtt(size: usize, duration: Duration, futex: bool) -> Latency {
    let ping = SharedRing::create(CAPACITY).unwrap();
    let pong = SharedRing::create(CAPACITY).unwrap();
    let mode = if futex { "rtt-futex" } else { "rtt" };
    let mut peer = Peer::spawn(
        &["ring".into(), mode.into(), size.to_string(), "0".into()],
        &[ping.memfd().as_fd(), pong.memfd().as_fd()],
    );
    let mut producer = ping.into_producer().unwrap();
    let mut consumer = pong.into_consumer().unwrap();
    consumer.set_spin(Duration::ZERO);
    peer.wait_ready();
    let src = payload_source(size);
    let latency = measure_rtt(duration, |seq| {
        let mut slot = producer.try_reserve(size).unwrap();
        write_message(&mut slot, seq, &src);
        slot.commit();
        producer.publish().unwrap();
        loop {
            if let Some(reply) = consumer.peek().unwrap() {
                assert_eq!(message_seq(reply), seq);
                consumer.release().unwrap();
                break;
            }
            if futex {
                let _ = consumer
                    .wait_readable(Some(Duration::from_secs(5)))
                    .unwrap();
            } else {
                std::hint::spin_loop();
            }
        }
    });
    let mut slot = producer.try_reserve(size).unwrap();
    write_message(&mut slot, SENTINEL, &src);
    slot.commit();
    producer.publish().unwrap();
    peer.finish();
    latency
}

pub fn peer(mode: &str, size: usize, secs: f64, mut control: Control) {
    let src = payload_source(size);
    match mode {
        "throughput" => {
            let mut producer = SharedRing::attach(control.fds.remove(0))
                .unwrap()
                .into_producer()
                .unwrap();
            control.ready();
            control.wait_go();
            let publish_every: u64 = std::env::var("RC_PUBLISH_EVERY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(PUBLISH_EVERY);
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut seq = 0u64;
            while !time_up(seq, end) {
                match producer.try_reserve(size) {
                    Ok(mut slot) => {
                        write_message(&mut slot, seq, &src);
                        slot.commit();
                        seq += 1;
                        if seq.is_multiple_of(publish_every) {
                            producer.publish().unwrap();
                        }
                    }
                    Err(RingError::Full) => {
                        let _ = producer
                            .wait_writable(size, Some(Duration::from_secs(5)))
                            .unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            loop {
                match producer.try_reserve(size) {
                    Ok(mut slot) => {
                        write_message(&mut slot, SENTINEL, &src);
                        slot.commit();
                        break;
                    }
                    Err(RingError::Full) => std::hint::spin_loop(),
                    Err(e) => panic!("{e}"),
                }
            }
            producer.publish().unwrap();
        }
        "rtt" | "rtt-futex" => {
            let futex = mode == "rtt-futex";
            let mut consumer = SharedRing::attach(control.fds.remove(0))
                .unwrap()
                .into_consumer()
                .unwrap();
            let mut producer = SharedRing::attach(control.fds.remove(0))
                .unwrap()
                .into_producer()
                .unwrap();
            consumer.set_spin(Duration::ZERO);
            control.ready();
            loop {
                let Some(message) = consumer.peek().unwrap() else {
                    if futex {
                        match consumer
                            .wait_readable(Some(Duration::from_secs(10)))
                            .unwrap()
                        {
                            WaitOutcome::Ready => {}
                            other => panic!("ping wait: {other:?}"),
                        }
                    } else {
                        std::hint::spin_loop();
                    }
                    continue;
                };
                let seq = message_seq(message);
                if seq == SENTINEL {
                    break;
                }
                // Same work as the other transports' peers: read the sequence
                // number, answer with a fresh message of the same size.
                consumer.release().unwrap();
                let mut reply = producer.try_reserve(size).unwrap();
                write_message(&mut reply, seq, &src);
                reply.commit();
                producer.publish().unwrap();
            }
        }
        other => panic!("unknown ring mode {other}"),
    }
}
