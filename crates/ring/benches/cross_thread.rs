//! Cross-thread costs per frame, for the scaling model in
//! `docs/benchmarks.md` (issue 15), side by side in one run:
//!
//! * `handoff_64B`: 64-byte records through a 1 MiB ring (producer publishes
//!   every 16 records, both ends wait as the host and a proc do) with the
//!   producer and the consumer pinned to the **same** core against
//!   **different** cores; ns per record;
//! * `counter`: two threads incrementing **one** atomic (one contended cache
//!   line) against each its **own** (two lines 128 bytes apart); ns per
//!   increment of each thread (they run in parallel);
//! * `wake`: a ping-pong between two threads, woken through an **eventfd**
//!   (write, the other thread's blocking read returns) against a
//!   **spinning** handoff (one atomic store, the other thread polling); ns
//!   per round trip (the summary halves it: one-way).
//!
//! Threads are pinned with `sched_setaffinity` (CPU 0 and CPU 1 of the
//! process's allowed set). If pinning fails or fewer than two CPUs are
//! allowed, the summary says so and the figures are unpinned.
//!
//! Run: `cargo bench -p hostmux-ring --bench cross_thread`
//! After criterion's output it prints mean ns per operation (over every
//! criterion iteration, warm-up included) and the ratios.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use hostmux_ring::{SharedRing, WaitOutcome};
use rustix::event::{eventfd, EventfdFlags};
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

const PAYLOAD: usize = 64;
const BATCH: u64 = 16;

/// Total time and operations per benchmark id, for the ratio table.
static TOTALS: Mutex<Option<HashMap<String, (Duration, u64)>>> = Mutex::new(None);
/// Set when a `sched_setaffinity` call failed.
static PIN_FAILED: AtomicBool = AtomicBool::new(false);

fn account(id: &str, took: Duration, ops: u64) {
    let mut totals = TOTALS.lock().unwrap();
    let entry = totals
        .get_or_insert_with(HashMap::new)
        .entry(id.to_owned())
        .or_default();
    entry.0 += took;
    entry.1 += ops;
}

/// The first two CPUs this process may run on (the second is the first
/// again when only one is allowed).
fn two_cpus() -> (usize, usize) {
    let allowed: Vec<usize> = match sched_getaffinity(None) {
        Ok(set) => (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect(),
        Err(_) => Vec::new(),
    };
    match allowed.as_slice() {
        [] => (0, 0),
        [only] => (*only, *only),
        [a, b, ..] => (*a, *b),
    }
}

/// Pin the calling thread to `cpu`; remembers a failure for the summary.
fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu);
    if sched_setaffinity(None, &set).is_err() {
        PIN_FAILED.store(true, Ordering::Relaxed);
    }
}

/// Runs `a` pinned to `cpu_a` and `b` pinned to `cpu_b` on two new threads,
/// timing from when both are pinned and ready until both are done.
fn timed_pair(
    (cpu_a, cpu_b): (usize, usize),
    a: impl FnOnce() + Send + 'static,
    b: impl FnOnce() + Send + 'static,
) -> Duration {
    let ready = Arc::new(Barrier::new(3));
    let spawn = |cpu: usize, body: Box<dyn FnOnce() + Send>| {
        let ready = ready.clone();
        thread::spawn(move || {
            pin(cpu);
            ready.wait();
            body();
        })
    };
    let a = spawn(cpu_a, Box::new(a));
    let b = spawn(cpu_b, Box::new(b));
    ready.wait();
    let start = Instant::now();
    a.join().unwrap();
    b.join().unwrap();
    start.elapsed()
}

/// `records` 64-byte records from a producer thread to a consumer thread.
fn handoff(cpus: (usize, usize), records: u64) -> Duration {
    let ring = SharedRing::create(1 << 20).unwrap();
    let (mut producer, mut consumer) = ring.split().unwrap();
    timed_pair(
        cpus,
        move || {
            for i in 0..records {
                let mut slot = loop {
                    match producer.try_reserve(PAYLOAD) {
                        Ok(slot) => break slot,
                        Err(hostmux_ring::RingError::Full) => {
                            let outcome = producer.wait_writable(PAYLOAD, None).unwrap();
                            assert_eq!(outcome, WaitOutcome::Ready);
                        }
                        Err(e) => panic!("{e}"),
                    }
                };
                slot[0] = i as u8;
                slot.commit();
                if i % BATCH == BATCH - 1 {
                    producer.publish().unwrap();
                }
            }
            producer.publish().unwrap();
        },
        move || {
            let mut seen = 0;
            while seen < records {
                match consumer.peek().unwrap() {
                    Some(record) => {
                        assert_eq!(record[0], seen as u8);
                        consumer.release().unwrap();
                        seen += 1;
                    }
                    None => {
                        let outcome = consumer.wait_readable(None).unwrap();
                        assert_eq!(outcome, WaitOutcome::Ready);
                    }
                }
            }
        },
    )
}

/// Two counters 128 bytes apart (separate cache lines, also for the
/// adjacent-line prefetcher).
#[repr(C, align(128))]
struct Padded(AtomicU64);

/// Two threads each adding 1 `increments` times, to one shared counter or
/// to their own.
fn counters(cpus: (usize, usize), increments: u64, shared: bool) -> Duration {
    let lines = Arc::new([Padded(AtomicU64::new(0)), Padded(AtomicU64::new(0))]);
    let (first, second) = (lines.clone(), lines.clone());
    let other = usize::from(!shared);
    let took = timed_pair(
        cpus,
        move || {
            for _ in 0..increments {
                first[0].0.fetch_add(1, Ordering::Relaxed);
            }
        },
        move || {
            for _ in 0..increments {
                second[other].0.fetch_add(1, Ordering::Relaxed);
            }
        },
    );
    let total = lines[0].0.load(Ordering::Relaxed) + lines[1].0.load(Ordering::Relaxed);
    assert_eq!(total, 2 * increments);
    took
}

fn write_eventfd(fd: &OwnedFd) {
    rustix::io::write(fd, &1u64.to_ne_bytes()).unwrap();
}

fn read_eventfd(fd: &OwnedFd) {
    let mut buf = [0u8; 8];
    rustix::io::read(fd, &mut buf).unwrap();
}

/// `round_trips` ping-pongs woken through two blocking eventfds.
fn eventfd_ping_pong(cpus: (usize, usize), round_trips: u64) -> Duration {
    let ping = Arc::new(eventfd(0, EventfdFlags::CLOEXEC).unwrap());
    let pong = Arc::new(eventfd(0, EventfdFlags::CLOEXEC).unwrap());
    let (ping2, pong2) = (ping.clone(), pong.clone());
    timed_pair(
        cpus,
        move || {
            for _ in 0..round_trips {
                write_eventfd(&ping);
                read_eventfd(&pong);
            }
        },
        move || {
            for _ in 0..round_trips {
                read_eventfd(&ping2);
                write_eventfd(&pong2);
            }
        },
    )
}

/// `round_trips` ping-pongs through two atomics the other thread polls.
fn spin_ping_pong(cpus: (usize, usize), round_trips: u64) -> Duration {
    let lines = Arc::new([Padded(AtomicU64::new(0)), Padded(AtomicU64::new(0))]);
    let other = lines.clone();
    timed_pair(
        cpus,
        move || {
            for i in 1..=round_trips {
                lines[0].0.store(i, Ordering::Release);
                while lines[1].0.load(Ordering::Acquire) != i {
                    std::hint::spin_loop();
                }
            }
        },
        move || {
            for i in 1..=round_trips {
                while other[0].0.load(Ordering::Acquire) != i {
                    std::hint::spin_loop();
                }
                other[1].0.store(i, Ordering::Release);
            }
        },
    )
}

/// One measurement: `iters` operations on two threads pinned to two CPUs.
type Run = fn((usize, usize), u64) -> Duration;
/// A benchmark's name, the CPUs it pins to, and what it runs.
type Variant = (&'static str, (usize, usize), Run);

fn benches(c: &mut Criterion) {
    let (cpu_a, cpu_b) = two_cpus();
    let same = (cpu_a, cpu_a);
    let cross = (cpu_a, cpu_b);
    let groups: [(&str, [Variant; 2]); 3] = [
        (
            "handoff_64B",
            [
                ("same_core", same, handoff as Run),
                ("cross_core", cross, handoff),
            ],
        ),
        (
            "counter",
            [
                ("one_line", cross, |cpus, n| counters(cpus, n, true)),
                ("two_lines", cross, |cpus, n| counters(cpus, n, false)),
            ],
        ),
        (
            "wake",
            [
                ("eventfd_cross_core", cross, eventfd_ping_pong as Run),
                ("spin_cross_core", cross, spin_ping_pong),
            ],
        ),
    ];
    for (group_name, variants) in groups {
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(1));
        for (variant, cpus, run) in variants {
            let id = format!("{group_name}/{variant}");
            group.bench_function(variant, |b| {
                b.iter_custom(|iters| {
                    let took = run(cpus, iters);
                    account(&id, took, iters);
                    took
                })
            });
        }
        group.finish();
    }
}

fn print_summary() {
    let totals = TOTALS.lock().unwrap().take().unwrap_or_default();
    let ns = |id: &str| {
        totals
            .get(id)
            .map(|(took, ops)| took.as_nanos() as f64 / (*ops).max(1) as f64)
    };
    let (cpu_a, cpu_b) = two_cpus();
    println!();
    if cpu_a == cpu_b {
        println!("only one CPU allowed: 'cross_core' ran on the same core");
    }
    if PIN_FAILED.load(Ordering::Relaxed) {
        println!("sched_setaffinity failed: threads were NOT pinned");
    } else {
        println!("threads pinned to CPU {cpu_a} and CPU {cpu_b}");
    }
    println!("| cost | a | ns | b | ns | b / a |");
    println!("|:---|:---|---:|:---|---:|---:|");
    for (what, a, b, halve) in [
        (
            "64 B record through a ring",
            "handoff_64B/same_core",
            "handoff_64B/cross_core",
            false,
        ),
        (
            "atomic increment per thread",
            "counter/two_lines",
            "counter/one_line",
            false,
        ),
        (
            "one-way wake-up (round trip / 2)",
            "wake/spin_cross_core",
            "wake/eventfd_cross_core",
            true,
        ),
    ] {
        let scale = if halve { 0.5 } else { 1.0 };
        let (va, vb) = (ns(a).map(|v| v * scale), ns(b).map(|v| v * scale));
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let ratio = va
            .zip(vb)
            .map_or("-".to_owned(), |(a, b)| format!("{:.1}", b / a));
        println!(
            "| {what} | {a} | {} | {b} | {} | {ratio} |",
            show(va),
            show(vb)
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
    print_summary();
}
