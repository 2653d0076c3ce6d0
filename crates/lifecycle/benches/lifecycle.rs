//! Lifecycle benchmarks, ours and the baseline side by side in one run.
//!
//! 1. Spawn-to-ready latency of the fixture's `bench` mode: through
//!    `ProcessProcManager` (readiness protocol, pidfd, supervisor, with and
//!    without a cgroup per proc) against bare `std::process::Command` spawn
//!    of the same binary writing one byte to a pipe. One at a time (median
//!    latency) and 100 concurrent (median wall time per batch).
//! 2. Bulk terminate of 200 procs, 20 of which ignore SIGTERM, grace 500 ms,
//!    in both modes: one overall deadline, and per-proc grace with 16 in
//!    flight.
//!
//! The three spawn variants alternate, each round in the next of the six
//! orders: what ran just before a spawn changes its latency (on the 2-core
//! test machine a bare spawn right after a bare spawn's reap took ~20%
//! longer than one after a manager spawn, whose `wait()` returns later), so
//! a fixed order, or a rotation of one, hands one variant the slow
//! predecessor more often. Over six rounds every variant runs in every
//! position twice and follows each of the others two or three times.
//!
//! Run: `cargo bench -p hostmux-lifecycle --bench lifecycle`.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hostmux_lifecycle::{
    BulkTerminate, BulkTerminateMode, CgroupMode, ProcHandle, ProcManager, ProcName, ProcessConfig,
    ProcessHandle, ProcessProcManager,
};

const SEQUENTIAL_ROUNDS: usize = 240;
const BATCH: usize = 100;
const BATCH_ROUNDS: usize = 24;

/// The six orders of (bare, cgroup, no cgroup), one per round in turn.
const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hostmux-lifecycle-fixture"))
}

/// `/proc/loadavg`'s three averages, for the record of a shared machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The baseline: the fixture in `bench` mode as a plain `Command` child.
fn bare_spawn() -> Child {
    Command::new(fixture())
        .arg("bench")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Waits for the one byte a `bench` fixture writes once it runs.
fn bare_ready(child: &mut Child) {
    let mut byte = [0u8; 1];
    child
        .stdout
        .take()
        .unwrap()
        .read_exact(&mut byte)
        .expect("byte");
}

fn bare_one() -> Duration {
    let started = Instant::now();
    let mut child = bare_spawn();
    bare_ready(&mut child);
    let took = started.elapsed();
    child.wait().expect("reap");
    took
}

fn bare_batch() -> Duration {
    let started = Instant::now();
    let mut children: Vec<_> = (0..BATCH).map(|_| bare_spawn()).collect();
    for child in &mut children {
        bare_ready(child);
    }
    let took = started.elapsed();
    for mut child in children {
        child.wait().expect("reap");
    }
    took
}

/// Ours: the same fixture spawned by `manager`, once it reported ready.
async fn ours_spawn_ready(manager: &ProcessProcManager, name: &str) -> ProcessHandle {
    let proc = manager
        .spawn(
            ProcName::new(name).unwrap(),
            ProcessConfig::new(fixture()).arg("bench"),
        )
        .await
        .expect("spawn");
    proc.ready().await.expect("ready");
    proc
}

async fn ours_one(manager: &ProcessProcManager, i: usize) -> Duration {
    let started = Instant::now();
    let proc = ours_spawn_ready(manager, &format!("b{i}")).await;
    let took = started.elapsed();
    proc.wait().await.expect("wait");
    took
}

async fn ours_batch(manager: &ProcessProcManager, round: usize) -> Duration {
    let started = Instant::now();
    let mut ready = tokio::task::JoinSet::new();
    for i in 0..BATCH {
        let manager = manager.clone();
        ready.spawn(async move { ours_spawn_ready(&manager, &format!("c{round}-{i}")).await });
    }
    let mut procs = Vec::with_capacity(BATCH);
    while let Some(p) = ready.join_next().await {
        procs.push(p.expect("join"));
    }
    let took = started.elapsed();
    for p in procs {
        p.wait().await.expect("wait");
    }
    took
}

/// Runs bare `Command` and our two managers (cgroup, none) `rounds` times,
/// interleaved in balanced orders so that drift on a shared machine hits
/// all three, and prints the medians with the rate ratios ours/bare.
fn compare(
    title: &str,
    rounds: usize,
    mut bare_run: impl FnMut() -> Duration,
    mut ours_run: impl FnMut(&ProcessProcManager, usize) -> Duration,
    [with_cgroup, without_cgroup]: [&ProcessProcManager; 2],
) {
    let (mut bare, mut cg, mut nocg) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for variant in ORDERS[round % ORDERS.len()] {
            match variant {
                0 => bare.push(bare_run()),
                1 => cg.push(ours_run(with_cgroup, round)),
                _ => nocg.push(ours_run(without_cgroup, round)),
            }
        }
    }
    let (bare, cg, nocg) = (median(bare), median(cg), median(nocg));
    println!("{title}");
    println!("  bare Command + 1-byte pipe : {bare:>10.2?}");
    println!(
        "  ProcessProcManager (cgroup): {cg:>10.2?}  rate ratio ours/bare = {:.2}",
        bare.as_secs_f64() / cg.as_secs_f64()
    );
    println!(
        "  ProcessProcManager (no cg) : {nocg:>10.2?}  rate ratio ours/bare = {:.2}",
        bare.as_secs_f64() / nocg.as_secs_f64()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let with_cgroup = ProcessProcManager::builder().max_starting(128).build();
    let without_cgroup = ProcessProcManager::builder()
        .max_starting(128)
        .cgroups(CgroupMode::Disabled)
        .build();
    println!(
        "cgroups: {}",
        with_cgroup
            .cgroup_dir()
            .map_or("unavailable".into(), |d| d.display().to_string())
    );

    // Warm up caches and the spawner thread.
    for i in 0..20 {
        bare_one();
        rt.block_on(ours_one(&with_cgroup, 100_000 + i));
    }

    println!("load average at start: {}", load_average());
    compare(
        &format!("spawn-to-ready, 1 at a time ({SEQUENTIAL_ROUNDS} rounds, median):"),
        SEQUENTIAL_ROUNDS,
        bare_one,
        |manager, round| rt.block_on(ours_one(manager, round)),
        [&with_cgroup, &without_cgroup],
    );
    compare(
        &format!(
            "spawn-to-ready, {BATCH} concurrent ({BATCH_ROUNDS} rounds, median batch wall time):"
        ),
        BATCH_ROUNDS,
        bare_batch,
        |manager, round| rt.block_on(ours_batch(manager, round)),
        [&with_cgroup, &without_cgroup],
    );

    // Bulk terminate of 200 procs, 20 ignore SIGTERM, grace 500 ms, in both
    // modes. Overall deadline: floor = grace. Per-proc grace with 16 in
    // flight: the 20 deaf procs cannot all hold a slot at once, so floor =
    // 2 × grace.
    let grace = Duration::from_millis(500);
    for (mode, floor, bound) in [
        (
            BulkTerminateMode::OverallDeadline,
            grace,
            Duration::from_millis(700),
        ),
        (
            BulkTerminateMode::PerProcGrace { max_in_flight: 16 },
            grace * 2,
            Duration::from_millis(1400),
        ),
    ] {
        let elapsed = rt.block_on(bulk_terminate_200(&with_cgroup, grace, mode));
        println!(
            "terminate_all_with({mode:?}) of 200 (20 ignore SIGTERM), grace {grace:?}: \
             wall {elapsed:.2?} (floor {floor:?}; overhead {:.2?}; bound {bound:?}: {})",
            elapsed.saturating_sub(floor),
            if elapsed <= bound { "met" } else { "MISSED" }
        );
    }
    println!("load average at end: {}", load_average());
}

/// Spawns 200 ready procs (every tenth ignores SIGTERM), then times one
/// bulk terminate of them in `mode`.
async fn bulk_terminate_200(
    manager: &ProcessProcManager,
    grace: Duration,
    mode: BulkTerminateMode,
) -> Duration {
    let mut spawned = tokio::task::JoinSet::new();
    for i in 0..200 {
        let manager = manager.clone();
        spawned.spawn(async move {
            let fixture_mode = if i % 10 == 0 { "ignore-term" } else { "ready" };
            let proc = manager
                .spawn(
                    ProcName::new(&format!("t{i}")).unwrap(),
                    ProcessConfig::new(fixture()).arg(fixture_mode),
                )
                .await
                .expect("spawn");
            proc.ready().await.expect("ready");
        });
    }
    while let Some(r) = spawned.join_next().await {
        r.expect("join");
    }
    let started = Instant::now();
    let summary = manager.terminate_all_with(grace, mode).await;
    let took = started.elapsed();
    assert_eq!(summary.attempted, 200);
    assert_eq!(summary.ok, 200, "{summary}");
    println!("terminate_all_with({mode:?}): {summary}");
    took
}
