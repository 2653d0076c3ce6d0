//! Route lookup: hostmux's arc-swap table against the usual alternatives, in
//! one run, at 16, 1,000 and 100,000 routes, alone and beside a writer
//! thread that binds and unbinds a route: paced (about 10,000 updates per
//! second, already far above any spawn rate) and flat out (an update for
//! every few lookups, the worst case for read-copy-update).
//!
//! Every variant maps the same names to the same `Route` values with the same
//! seeded foldhash (except `arc-swap_reader_siphash`, which measures the
//! hasher choice), and copies the route out. Keys are present names drawn at
//! random ahead of time into a flat array read in order, so the loop measures
//! the lookup and not the key generation; at 100,000 routes the draws touch
//! most of the table, so cache misses are part of the figure, as they would be
//! on a host.
//!
//! Run: `cargo bench -p hostmux-router --bench lookup`
//! After the criterion output it prints a table of medians and ratios read
//! back from criterion's `estimates.json` files.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion};
use dashmap::DashMap;
use hostmux_router::{RouteHasher, RoutingTable};
use hostmux_wire::ProcName;
use parking_lot::RwLock;
use rand::{rngs::StdRng, Rng, SeedableRng};

const SIZES: [usize; 3] = [16, 1_000, 100_000];
/// Random draws per size; a power of two so the index wraps with a mask.
const KEYS: usize = 1 << 16;
const KEY_CAPACITY: usize = 31;

/// What a route costs to copy in the host: small, `Copy` here so that every
/// variant measures the table and not a refcount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route(u64);

/// A name stored inline, so reading the next key is a sequential, prefetched
/// load (a frame header's name is in cache when the host routes it).
#[derive(Clone, Copy)]
struct Key {
    len: u8,
    bytes: [u8; KEY_CAPACITY],
}

impl Key {
    fn new(name: &str) -> Self {
        let mut bytes = [0; KEY_CAPACITY];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Self {
            len: name.len() as u8,
            bytes,
        }
    }

    #[inline(always)]
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

fn route_name(i: usize) -> String {
    format!("worker-{i}.svc")
}

fn churn_name(i: u64) -> String {
    format!("churn-{}", i % 64)
}

/// Cycles through the precomputed keys.
struct Keys {
    keys: Vec<Key>,
    next: usize,
}

impl Keys {
    fn random(routes: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(0x5eed ^ routes as u64);
        let keys = (0..KEYS)
            .map(|_| Key::new(&route_name(rng.gen_range(0..routes))))
            .collect();
        Self { keys, next: 0 }
    }

    #[inline(always)]
    fn next(&mut self) -> &[u8] {
        let key = &self.keys[self.next & (KEYS - 1)];
        self.next = self.next.wrapping_add(1);
        key.as_bytes()
    }
}

/// One contender: how to build it, look up, and churn it from a writer.
trait Contender: Send + Sync + 'static {
    fn build(routes: usize) -> Self;
    fn insert(&self, name: &str, route: Route);
    fn remove(&self, name: &str);
}

impl<S> Contender for RoutingTable<Route, S>
where
    S: std::hash::BuildHasher + Clone + Default + Send + Sync + 'static,
{
    fn build(routes: usize) -> Self {
        let table = RoutingTable::with_hasher(S::default());
        table
            .insert_all((0..routes).map(|i| (proc_name(&route_name(i)), Route(i as u64))))
            .expect("distinct names");
        table
    }
    fn insert(&self, name: &str, route: Route) {
        RoutingTable::insert(self, proc_name(name), route).expect("churn name is free");
    }
    fn remove(&self, name: &str) {
        RoutingTable::remove(self, name.as_bytes()).expect("churn name is bound");
    }
}

type Locked = RwLock<HashMap<Box<[u8]>, Route, RouteHasher>>;

impl Contender for Locked {
    fn build(routes: usize) -> Self {
        let mut map = HashMap::with_capacity_and_hasher(routes, RouteHasher::default());
        map.extend((0..routes).map(|i| (boxed(&route_name(i)), Route(i as u64))));
        RwLock::new(map)
    }
    fn insert(&self, name: &str, route: Route) {
        self.write().insert(boxed(name), route);
    }
    fn remove(&self, name: &str) {
        self.write().remove(name.as_bytes());
    }
}

type Sharded = DashMap<Box<[u8]>, Route, RouteHasher>;

impl Contender for Sharded {
    fn build(routes: usize) -> Self {
        let map = DashMap::with_capacity_and_hasher(routes, RouteHasher::default());
        for i in 0..routes {
            map.insert(boxed(&route_name(i)), Route(i as u64));
        }
        map
    }
    fn insert(&self, name: &str, route: Route) {
        DashMap::insert(self, boxed(name), route);
    }
    fn remove(&self, name: &str) {
        DashMap::remove(self, name.as_bytes());
    }
}

type LockFree = papaya::HashMap<Box<[u8]>, Route, RouteHasher>;

impl Contender for LockFree {
    fn build(routes: usize) -> Self {
        let map = papaya::HashMap::builder()
            .capacity(routes)
            .hasher(RouteHasher::default())
            .build();
        {
            let pinned = map.pin();
            for i in 0..routes {
                pinned.insert(boxed(&route_name(i)), Route(i as u64));
            }
        }
        map
    }
    fn insert(&self, name: &str, route: Route) {
        self.pin().insert(boxed(name), route);
    }
    fn remove(&self, name: &str) {
        self.pin().remove(name.as_bytes());
    }
}

fn proc_name(name: &str) -> ProcName {
    ProcName::new(name).expect("bench names are valid")
}

fn boxed(name: &str) -> Box<[u8]> {
    name.as_bytes().into()
}

/// Whether and how fast a writer thread churns routes during the lookups.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    None,
    /// Sleeps 50 µs after each update.
    Paced,
    FlatOut,
}

impl Writer {
    const ALL: [Writer; 3] = [Writer::None, Writer::Paced, Writer::FlatOut];

    fn label(self) -> &'static str {
        match self {
            Writer::None => "alone",
            Writer::Paced => "paced-writer",
            Writer::FlatOut => "flat-out-writer",
        }
    }
}

/// A thread that binds and unbinds `churn-*` routes until dropped, then
/// reports its update rate.
struct Churn {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<u64>>,
    started: Instant,
    label: String,
}

impl Churn {
    fn start<C: Contender>(contender: Arc<C>, writer: Writer, label: String) -> Option<Self> {
        let pause = match writer {
            Writer::None => return None,
            Writer::Paced => Some(Duration::from_micros(50)),
            Writer::FlatOut => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut updates = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let name = churn_name(updates);
                    contender.insert(&name, Route(u64::MAX));
                    if let Some(pause) = pause {
                        thread::sleep(pause);
                    }
                    contender.remove(&name);
                    if let Some(pause) = pause {
                        thread::sleep(pause);
                    }
                    updates += 2;
                }
                updates
            }
        });
        Some(Self {
            stop,
            thread: Some(thread),
            started: Instant::now(),
            label,
        })
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let updates = thread.join().expect("churn thread panicked");
            let rate = updates as f64 / self.started.elapsed().as_secs_f64();
            println!("writer rate during {}: {rate:.0} updates/s", self.label);
        }
    }
}

/// Runs `lookup` over the random keys, with a churning writer if asked.
fn bench_variant<C: Contender>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    routes: usize,
    writer: Writer,
    mut lookup: impl FnMut(&C, &[u8]) -> Option<Route>,
    contender: Arc<C>,
) {
    let mut keys = Keys::random(routes);
    // Every key is a bound name: a variant that found nothing would be
    // measuring a miss.
    for key in &keys.keys[..64] {
        assert!(
            lookup(&contender, key.as_bytes()).is_some(),
            "{id}: key not found"
        );
    }
    let label = format!("{}/{id}", group_name(routes, writer));
    let _churn = Churn::start(Arc::clone(&contender), writer, label);
    group.bench_function(id, |b| {
        b.iter(|| {
            let key = keys.next();
            black_box(lookup(&contender, black_box(key)))
        })
    });
}

fn group_name(routes: usize, writer: Writer) -> String {
    format!("lookup_{routes}_{}", writer.label())
}

const VARIANTS_ALONE: [&str; 6] = [
    "arc-swap_table",
    "arc-swap_reader",
    "arc-swap_reader_siphash",
    "papaya",
    "rwlock_hashmap",
    "dashmap",
];

fn run(c: &mut Criterion) {
    for routes in SIZES {
        for writer in Writer::ALL {
            let mut group = c.benchmark_group(group_name(routes, writer));
            group.sample_size(30);
            group.warm_up_time(Duration::from_millis(400));
            group.measurement_time(Duration::from_millis(1000));

            let table = Arc::new(<RoutingTable<Route>>::build(routes));
            bench_variant(
                &mut group,
                "arc-swap_table",
                routes,
                writer,
                |t: &RoutingTable<Route>, k| t.lookup(k),
                Arc::clone(&table),
            );
            let mut reader = table.reader();
            bench_variant(
                &mut group,
                "arc-swap_reader",
                routes,
                writer,
                move |_: &RoutingTable<Route>, k| reader.lookup(k).copied(),
                table,
            );
            if writer == Writer::None {
                let sip = Arc::new(
                    <RoutingTable<Route, std::hash::RandomState> as Contender>::build(routes),
                );
                let mut reader = sip.reader();
                bench_variant(
                    &mut group,
                    "arc-swap_reader_siphash",
                    routes,
                    writer,
                    move |_: &RoutingTable<Route, std::hash::RandomState>, k| {
                        reader.lookup(k).copied()
                    },
                    sip,
                );
            }
            bench_variant(
                &mut group,
                "papaya",
                routes,
                writer,
                |m: &LockFree, k| m.pin().get(k).copied(),
                Arc::new(LockFree::build(routes)),
            );
            bench_variant(
                &mut group,
                "rwlock_hashmap",
                routes,
                writer,
                |m: &Locked, k| m.read().get(k).copied(),
                Arc::new(Locked::build(routes)),
            );
            bench_variant(
                &mut group,
                "dashmap",
                routes,
                writer,
                |m: &Sharded, k| m.get(k).map(|r| *r),
                Arc::new(Sharded::build(routes)),
            );
            group.finish();
        }
    }
}

/// Where criterion wrote its results, following its own rules.
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    std::env::var_os("CARGO_TARGET_DIR").map(|dir| PathBuf::from(dir).join("criterion"))
}

/// The median (ns) criterion estimated for one benchmark.
fn median_ns(dir: &std::path::Path, group: &str, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(group).join(id).join("new/estimates.json")).ok()?;
    let median = &text[text.find("\"median\"")?..];
    let value = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = value.find([',', '}'])?;
    value[..end].trim().parse().ok()
}

fn print_summary() {
    let Some(dir) = criterion_dir() else {
        println!("set CARGO_TARGET_DIR or CRITERION_HOME to print the ratio table");
        return;
    };
    println!();
    println!("| routes | writer | variant | median ns | vs rwlock | vs dashmap | vs papaya |");
    println!("|---:|:---|:---|---:|---:|---:|---:|");
    for routes in SIZES {
        for writer in Writer::ALL {
            let group = group_name(routes, writer);
            let median = |id: &str| median_ns(&dir, &group, id);
            let (rwlock, dashmap, papaya) = (
                median("rwlock_hashmap"),
                median("dashmap"),
                median("papaya"),
            );
            for id in VARIANTS_ALONE {
                let Some(ns) = median(id) else { continue };

                let ratio =
                    |base: Option<f64>| base.map_or("-".into(), |b| format!("{:.2}x", ns / b));
                println!(
                    "| {routes} | {} | {id} | {ns:.1} | {} | {} | {} |",
                    writer.label(),
                    ratio(rwlock),
                    ratio(dashmap),
                    ratio(papaya),
                );
            }
        }
    }
    let flat = |id: &str| {
        let at = |routes| median_ns(&dir, &group_name(routes, Writer::None), id);
        match (at(16), at(100_000)) {
            (Some(small), Some(large)) => format!("{:.2}x", large / small),
            _ => "-".into(),
        }
    };
    println!();
    println!("flatness (100,000 / 16 routes, no writer):");
    for id in VARIANTS_ALONE {
        println!("  {id}: {}", flat(id));
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    run(&mut criterion);
    criterion.final_summary();
    print_summary();
}
