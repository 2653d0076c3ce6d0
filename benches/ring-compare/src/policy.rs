//! `policy`: the ring's polling policy before a sleep, side by side in one
//! run: spin then yield (the crate's default) vs a pure spin for the whole
//! `DEFAULT_SPIN`. Both ends wait through the ring (`wait_readable` /
//! `wait_writable`), 64 B messages. `--burn N` adds N CPU-burning processes
//! (unpinned) so there are more busy processes than cores; `RC_UNPINNED=1`
//! leaves the ring's ends unpinned too, `RC_SAME_CPU=1` pins both to CPU 0.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::{cross_core_probe_ns, pin_to, Latency, Throughput};
use crate::ring::{rtt_waiting, throughput_polling, Polling};

const SIZE: usize = 64;

/// Busy loop until the parent goes away (checked every few ms) or `secs` pass.
pub fn burn(secs: f64) {
    let parent = rustix::process::getppid();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut x = 0u64;
    while Instant::now() < end && rustix::process::getppid() == parent {
        for i in 0..100_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
}

/// Kills the burners when dropped (also on panic).
struct Burners(Vec<Child>);

impl Drop for Burners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(runs: usize, secs: f64, rtt: Duration, burn: usize) {
    pin_to(0);
    let budget = (runs as f64) * 2.0 * (secs + rtt.as_secs_f64() + 1.0) + 30.0;
    let _burners = Burners(
        (0..burn)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .args(["burn", &budget.to_string()])
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let pinned = std::env::var_os("RC_UNPINNED").is_none();
    let same_cpu = std::env::var_os("RC_SAME_CPU").is_some();
    println!(
        "ring polling policy, {SIZE} B, {runs} runs, {secs} s throughput, {rtt:?} round trips; \
         ends {}; {burn} CPU-burning process(es)",
        match (pinned, same_cpu) {
            (true, false) => "pinned to CPUs 0 and 1",
            (true, true) => "both pinned to CPU 0",
            (false, _) => "unpinned",
        }
    );
    let policies = [Polling::PureSpin, Polling::SpinThenYield];
    let mut results: Vec<Vec<(Throughput, Latency)>> = vec![Vec::new(); policies.len()];
    for run in 0..runs {
        for (k, &polling) in policies.iter().enumerate() {
            let probe = if pinned && !same_cpu {
                cross_core_probe_ns(Duration::from_millis(50))
            } else {
                0.0
            };
            let t = throughput_polling(SIZE, secs, polling);
            let l = rtt_waiting(SIZE, rtt, polling);
            println!(
                "run {run} {polling:?}: {:.2} M msg/s ({} long consumer waits, others {:.2} CPU) | waiting RTT p50 {:.0} ns p99 {:.0} ns | cross-core probe {probe:.0} ns",
                t.msgs_per_sec / 1e6,
                t.long_waits,
                t.others_cpu,
                l.p50_ns,
                l.p99_ns
            );
            results[k].push((t, l));
        }
    }
    println!();
    println!("| policy | msg/s (median) | waiting RTT p50 | waiting RTT p99 |");
    println!("|---|---|---|---|");
    let mut medians = Vec::new();
    for (k, polling) in policies.iter().enumerate() {
        let tp = median(results[k].iter().map(|r| r.0.msgs_per_sec).collect());
        let p50 = median(results[k].iter().map(|r| r.1.p50_ns).collect());
        let p99 = median(results[k].iter().map(|r| r.1.p99_ns).collect());
        println!(
            "| {polling:?} | {:.2} M | {:.0} ns | {:.0} ns |",
            tp / 1e6,
            p50,
            p99
        );
        medians.push((tp, p50, p99));
    }
    let (pure, yielding) = (medians[0], medians[1]);
    println!(
        "| yield / pure | {:.2}x | {:.2}x | {:.2}x |",
        yielding.0 / pure.0,
        yielding.1 / pure.1,
        yielding.2 / pure.2
    );
}
