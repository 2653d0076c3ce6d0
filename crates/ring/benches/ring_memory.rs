//! What on-demand ring memory costs on the hot path ([`RingMemory`]): one
//! pass of 64-byte records through a **fresh** 1 MiB ring (every page is
//! touched for the first time: a page fault in the producer's mapping and
//! one in the consumer's) against a populated ring, and the same pass
//! through a ring already written once (steady state, where both policies
//! should cost the same), side by side in one run.
//!
//! The consumer maps the ring separately (`SharedRing::attach` of a
//! duplicate memfd), as a proc does, so both mappings pay their faults.
//! Ring creation is outside the timed part.
//!
//! Run: `cargo bench -p hostmux-ring --bench ring_memory`
//! After criterion's output it prints mean ns per record (over every
//! criterion iteration, warm-up included), the on-demand/populated ratios,
//! and per-record p50/p99/max of first passes (timed one record at a time
//! over fresh rings, separately from criterion).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use hostmux_ring::{Consumer, Producer, RingMemory, SharedRing};

const CAPACITY: usize = 1 << 20;
const PAYLOAD: usize = 64;
/// A record takes its 16-byte header plus the payload.
const RECORDS_PER_PASS: usize = CAPACITY / (PAYLOAD + 16);
/// Records between two publications (the host publishes per batch).
const BATCH: usize = 16;
const POLICIES: [RingMemory; 2] = [RingMemory::Populated, RingMemory::OnDemand];

/// Total time and records per benchmark id, for the ratio table.
static TOTALS: Mutex<Option<HashMap<String, (Duration, u64)>>> = Mutex::new(None);

fn account(id: &str, took: Duration, records: u64) {
    let mut totals = TOTALS.lock().unwrap();
    let entry = totals
        .get_or_insert_with(HashMap::new)
        .entry(id.to_owned())
        .or_default();
    entry.0 += took;
    entry.1 += records;
}

/// A ring of `memory` with its producer here and its consumer on a mapping
/// of its own.
fn fresh(memory: RingMemory) -> (Producer, Consumer) {
    let ring = SharedRing::create_with(CAPACITY, memory).unwrap();
    let peer = SharedRing::attach(ring.inheritable_fd().unwrap()).unwrap();
    (ring.into_producer().unwrap(), peer.into_consumer().unwrap())
}

/// One pass of records: write a batch, publish, read the batch back.
/// `each` sees the time of every batch when given.
fn pass(
    producer: &mut Producer,
    consumer: &mut Consumer,
    mut each: Option<&mut Vec<Duration>>,
) -> u64 {
    let mut checksum = 0u64;
    for batch in 0..RECORDS_PER_PASS / BATCH {
        let start = each.as_ref().map(|_| Instant::now());
        for i in 0..BATCH {
            let mut slot = producer
                .try_reserve(PAYLOAD)
                .expect("the pass fits the ring");
            slot.fill((batch * BATCH + i) as u8);
            slot.commit();
        }
        producer.publish().unwrap();
        for _ in 0..BATCH {
            let record = consumer.peek().unwrap().expect("published");
            checksum = checksum.wrapping_add(record[PAYLOAD - 1] as u64);
            consumer.release().unwrap();
        }
        if let (Some(times), Some(start)) = (each.as_deref_mut(), start) {
            times.push(start.elapsed());
        }
    }
    consumer.publish_released().unwrap();
    checksum
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_memory");
    group.throughput(Throughput::Elements(RECORDS_PER_PASS as u64));
    for memory in POLICIES {
        let id = format!("first_pass/{memory}");
        group.bench_function(&id, |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let (mut producer, mut consumer) = fresh(memory);
                    let start = Instant::now();
                    std::hint::black_box(pass(&mut producer, &mut consumer, None));
                    took += start.elapsed();
                }
                account(&id, took, iters * RECORDS_PER_PASS as u64);
                took
            })
        });
        let id = format!("steady/{memory}");
        let (mut producer, mut consumer) = fresh(memory);
        // Touch every page once, and then some: the ring has wrapped.
        for _ in 0..2 {
            pass(&mut producer, &mut consumer, None);
        }
        group.bench_function(&id, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(pass(&mut producer, &mut consumer, None));
                }
                let took = start.elapsed();
                account(&id, took, iters * RECORDS_PER_PASS as u64);
                took
            })
        });
    }
    group.finish();
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn print_summary() {
    let totals = TOTALS.lock().unwrap().take().unwrap_or_default();
    let per_record = |id: &str| {
        totals
            .get(id)
            .map(|(took, records)| took.as_nanos() as f64 / (*records).max(1) as f64)
    };
    println!("\nmean ns per {PAYLOAD} B record (produce + consume), 1 MiB ring:");
    println!("| pass | populated | on-demand | on-demand / populated |");
    println!("|:---|---:|---:|---:|");
    for pass in ["first_pass", "steady"] {
        let populated = per_record(&format!("{pass}/populated"));
        let on_demand = per_record(&format!("{pass}/on-demand"));
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let ratio = populated
            .zip(on_demand)
            .map_or("-".to_owned(), |(p, o)| format!("{:.2}", o / p));
        println!(
            "| {pass} | {} | {} | {ratio} |",
            show(populated),
            show(on_demand)
        );
    }

    // Per-batch latency of first passes: a batch is BATCH records written,
    // published and read back; a fault lands in the batch that first
    // touches a page.
    const FRESH_RINGS: usize = 50;
    println!(
        "\nfirst pass through {FRESH_RINGS} fresh rings, per batch of {BATCH} records (one page = {} batches):",
        4096 / ((PAYLOAD + 16) * BATCH)
    );
    println!("| policy | p50 | p99 | max | whole pass |");
    println!("|:---|---:|---:|---:|---:|");
    for memory in POLICIES {
        let mut times = Vec::with_capacity(FRESH_RINGS * RECORDS_PER_PASS / BATCH);
        let mut passes = Vec::with_capacity(FRESH_RINGS);
        for _ in 0..FRESH_RINGS {
            let (mut producer, mut consumer) = fresh(memory);
            let start = Instant::now();
            std::hint::black_box(pass(&mut producer, &mut consumer, Some(&mut times)));
            passes.push(start.elapsed());
        }
        times.sort_unstable();
        passes.sort_unstable();
        println!(
            "| {memory} | {:?} | {:?} | {:?} | {:?} (median) |",
            quantile(&times, 0.5),
            quantile(&times, 0.99),
            times[times.len() - 1],
            quantile(&passes, 0.5),
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
    print_summary();
}
