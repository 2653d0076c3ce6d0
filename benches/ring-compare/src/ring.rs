//! Our ring: one ring per direction, memfds passed over the control socket.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hostmux_ring::{RingError, SharedRing, WaitOutcome, DEFAULT_SPIN, PURE_SPIN};

use crate::common::{
    measure_rtt, message_seq, payload_source, time_up, write_message, Control, Counter,
    CpuSnapshot, Latency, Peer, Throughput, SENTINEL,
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

/// How both ends of a measurement poll before they sleep: the crate's
/// default (pure spin for `PURE_SPIN`, then yields, for `DEFAULT_SPIN` in
/// all) or a pure spin for the whole `DEFAULT_SPIN` (the policy before the
/// yields were added; right only for ends that own their cores).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polling {
    SpinThenYield,
    PureSpin,
}

impl Polling {
    fn arg(self) -> String {
        match self {
            Polling::SpinThenYield => "yield".into(),
            Polling::PureSpin => "pure".into(),
        }
    }

    fn parse(arg: Option<&String>) -> Polling {
        match arg.map(String::as_str) {
            None | Some("yield") => Polling::SpinThenYield,
            Some("pure") => Polling::PureSpin,
            Some(other) => panic!("unknown polling {other}"),
        }
    }

    fn pure_spin(self) -> Duration {
        match self {
            Polling::SpinThenYield => PURE_SPIN,
            Polling::PureSpin => DEFAULT_SPIN,
        }
    }
}

pub fn throughput(size: usize, secs: f64) -> Throughput {
    throughput_polling(size, secs, Polling::SpinThenYield)
}

pub fn throughput_polling(size: usize, secs: f64, polling: Polling) -> Throughput {
    let cpu_before = CpuSnapshot::now();
    let ring = SharedRing::create(throughput_capacity()).unwrap();
    let mut peer = Peer::spawn(
        &[
            "ring".into(),
            "throughput".into(),
            size.to_string(),
            secs.to_string(),
            polling.arg(),
        ],
        &[ring.memfd()],
    );
    let mut consumer = ring.into_consumer().unwrap();
    consumer.set_pure_spin(polling.pure_spin());
    peer.wait_ready();
    peer.go();
    let mut counter = Counter::new();
    let mut long_waits = 0;
    'outer: loop {
        match consumer.peek().unwrap() {
            Some(message) => {
                if !counter.take(message) {
                    break 'outer;
                }
                consumer.release().unwrap();
            }
            // Poll (20 µs: spin, then yield), then sleep on the futex: robust
            // when the machine is shared, and free while traffic flows
            // (nobody sleeps). Waits longer than the spin (a sleep, or this
            // process descheduled) are counted: they should be rare.
            None => {
                let started = Instant::now();
                let _ = consumer
                    .wait_readable(Some(Duration::from_secs(5)))
                    .unwrap();
                if counter.started.is_some() && started.elapsed() > DEFAULT_SPIN {
                    long_waits += 1;
                }
            }
        }
    }
    let mut result = counter.result();
    result.long_waits = long_waits;
    peer.finish();
    result.others_cpu = CpuSnapshot::now().others_since(&cpu_before);
    result
}

/// Round trip where both ends wait through the ring (`wait_readable` with the
/// default spin, then the futex), as a host and a proc do.
pub fn rtt_waiting(size: usize, duration: Duration, polling: Polling) -> Latency {
    rtt_mode(size, duration, "rtt-wait", Some(polling))
}

/// Round trip; `futex` makes both sides sleep on the futex at once (spin 0)
/// instead of busy-polling.
pub fn rtt(size: usize, duration: Duration, futex: bool) -> Latency {
    let mode = if futex { "rtt-futex" } else { "rtt" };
    rtt_mode(size, duration, mode, None)
}

fn rtt_mode(size: usize, duration: Duration, mode: &str, polling: Option<Polling>) -> Latency {
    let ping = SharedRing::create(CAPACITY).unwrap();
    let pong = SharedRing::create(CAPACITY).unwrap();
    let mut args = vec!["ring".into(), mode.into(), size.to_string(), "0".into()];
    args.extend(polling.map(Polling::arg));
    let mut peer = Peer::spawn(&args, &[ping.memfd().as_fd(), pong.memfd().as_fd()]);
    let futex = mode != "rtt";
    let mut producer = ping.into_producer().unwrap();
    let mut consumer = pong.into_consumer().unwrap();
    match polling {
        Some(polling) => consumer.set_pure_spin(polling.pure_spin()),
        None => consumer.set_spin(Duration::ZERO),
    }
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

pub fn peer(mode: &str, size: usize, secs: f64, polling: Option<&String>, mut control: Control) {
    let src = payload_source(size);
    let polling = Polling::parse(polling);
    match mode {
        "throughput" => {
            let mut producer = SharedRing::attach(control.fds.remove(0))
                .unwrap()
                .into_producer()
                .unwrap();
            producer.set_pure_spin(polling.pure_spin());
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
        "rtt" | "rtt-futex" | "rtt-wait" => {
            let futex = mode != "rtt";
            let mut consumer = SharedRing::attach(control.fds.remove(0))
                .unwrap()
                .into_consumer()
                .unwrap();
            let mut producer = SharedRing::attach(control.fds.remove(0))
                .unwrap()
                .into_producer()
                .unwrap();
            if mode == "rtt-wait" {
                consumer.set_pure_spin(polling.pure_spin());
            } else {
                consumer.set_spin(Duration::ZERO);
            }
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
