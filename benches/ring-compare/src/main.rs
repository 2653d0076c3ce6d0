//! Cross-process comparison of the hostmux ring with iceoryx2 and a batched
//! Unix domain socket, for 64 B and 4 KiB messages, in one run.
//!
//! `cargo run --release -- [--runs 5] [--secs 2] [--rtt-secs 0.5]`
//! `cargo run --release -- policy [--runs 3] [--secs 1] [--rtt-secs 0.3] [--burn 1]`
//! (see `policy.rs`).
//!
//! The parent (consumer / measurer) is pinned to CPU 0, every peer (this
//! binary started again as `peer ...`) to CPU 1. Throughput: the peer sends
//! for `--secs`, the parent counts in-order messages from the first to the
//! sentinel, reading every payload byte once. Round trip: the parent sends one
//! message, the peer answers with a message of the same size, both busy-poll
//! (plus our ring with futex sleeps on both sides).

mod common;
mod iox;
mod policy;
mod ring;
mod uds;

use std::time::Duration;

use common::{pin_to, Control, Latency, Throughput};

const SIZES: [usize; 2] = [64, 4096];

fn arg(args: &[String], name: &str, default: f64) -> f64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().unwrap())
}

fn peer_main(args: &[String]) {
    // `RC_SAME_CPU=1` puts the peer on the parent's CPU (policy experiments).
    pin_to(if std::env::var_os("RC_SAME_CPU").is_some() {
        0
    } else {
        1
    });
    let name = &args[0];
    let (transport, mode, size, secs) = (
        &args[1],
        &args[2],
        args[3].parse().unwrap(),
        args[4].parse().unwrap(),
    );
    let control = Control::connect(name);
    match transport.as_str() {
        "ring" => ring::peer(mode, size, secs, args.get(5), control),
        "uds" => uds::peer(mode, size, secs, control),
        "iox" => iox::peer(mode, size, secs, &args[5], control),
        other => panic!("unknown transport {other}"),
    }
}

#[derive(Default, Clone)]
struct Run {
    throughput: Vec<[Throughput; 3]>, // per size: ring, iox, uds
    latency: Vec<[Latency; 4]>,       // per size: ring busy, iox, uds, ring futex
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("peer") {
        peer_main(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("burn") {
        policy::burn(args[1].parse().unwrap());
        return;
    }
    let runs = arg(&args, "--runs", 5.0) as usize;
    let secs = arg(&args, "--secs", 2.0);
    let rtt = Duration::from_secs_f64(arg(&args, "--rtt-secs", 0.5));
    if args.first().map(String::as_str) == Some("policy") {
        policy::run(runs, secs, rtt, arg(&args, "--burn", 0.0) as usize);
        return;
    }
    pin_to(0);
    println!("hostmux ring vs iceoryx2 vs Unix socket (64 KiB batches): {runs} runs, {secs} s throughput, {rtt:?} round trips; ring capacity {} KiB", ring::throughput_capacity() / 1024);

    let mut all = Vec::new();
    for run in 0..runs {
        let mut r = Run::default();
        for &size in &SIZES {
            // `--only NAME` (e.g. ring-tp, uds-rtt) runs one measurement, for profiling.
            let only = args
                .iter()
                .position(|a| a == "--only")
                .and_then(|i| args.get(i + 1));
            let on = |name: &str| only.is_none_or(|o| o == name);
            let probe = common::cross_core_probe_ns(Duration::from_millis(50));
            let t = [
                if on("ring-tp") {
                    ring::throughput(size, secs)
                } else {
                    Throughput::default()
                },
                if on("iox-tp") {
                    iox::throughput(size, secs)
                } else {
                    Throughput::default()
                },
                if on("uds-tp") {
                    uds::throughput(size, secs)
                } else {
                    Throughput::default()
                },
            ];
            let l = [
                if on("ring-rtt") {
                    ring::rtt(size, rtt, false)
                } else {
                    Latency::default()
                },
                if on("iox-rtt") {
                    iox::rtt(size, rtt)
                } else {
                    Latency::default()
                },
                if on("uds-rtt") {
                    uds::rtt(size, rtt)
                } else {
                    Latency::default()
                },
                if on("ring-futex-rtt") {
                    ring::rtt(size, rtt, true)
                } else {
                    Latency::default()
                },
            ];
            println!(
                "run {run} {size:>5} B: ring {:>7.2} M/s  iox {:>6.2} M/s  uds {:>6.2} M/s | rtt p50 ring {:>6.0} ns  iox {:>6.0} ns  uds {:>6.0} ns  ring-futex {:>6.0} ns | ring tp: cross-core probe {probe:.0} ns, {} long consumer waits, other processes {:.2} CPU",
                t[0].msgs_per_sec / 1e6, t[1].msgs_per_sec / 1e6, t[2].msgs_per_sec / 1e6,
                l[0].p50_ns, l[1].p50_ns, l[2].p50_ns, l[3].p50_ns,
                t[0].long_waits, t[0].others_cpu
            );
            r.throughput.push(t);
            r.latency.push(l);
        }
        all.push(r);
    }

    println!();
    println!("Medians over {runs} runs. Ring steadiness: throughput min/median, round trip median/max (target >= 0.7).");
    println!("| size | metric | hostmux ring | iceoryx2 | UDS batched | ring / iox | ring / UDS | ring steadiness |");
    println!("|---|---|---|---|---|---|---|---|");
    for (i, &size) in SIZES.iter().enumerate() {
        let tp = |k: usize| {
            all.iter()
                .map(|r| r.throughput[i][k].msgs_per_sec)
                .collect::<Vec<_>>()
        };
        let gb = |k: usize| {
            all.iter()
                .map(|r| r.throughput[i][k].bytes_per_sec)
                .collect::<Vec<_>>()
        };
        let (ring_tp, iox_tp, uds_tp) = (median(tp(0)), median(tp(1)), median(tp(2)));
        println!(
            "| {size} B | msg/s | {:.2} M | {:.2} M | {:.2} M | {:.1}x | {:.2}x | {:.2} |",
            ring_tp / 1e6,
            iox_tp / 1e6,
            uds_tp / 1e6,
            ring_tp / iox_tp,
            ring_tp / uds_tp,
            min(&tp(0)) / ring_tp
        );
        println!(
            "| {size} B | GB/s | {:.2} | {:.2} | {:.2} | | | |",
            median(gb(0)) / 1e9,
            median(gb(1)) / 1e9,
            median(gb(2)) / 1e9
        );
        let lat = |k: usize, p99: bool| {
            all.iter()
                .map(|r| {
                    if p99 {
                        r.latency[i][k].p99_ns
                    } else {
                        r.latency[i][k].p50_ns
                    }
                })
                .collect::<Vec<_>>()
        };
        for (label, p99) in [
            ("RTT p50 (busy poll)", false),
            ("RTT p99 (busy poll)", true),
        ] {
            let (ring_l, iox_l, uds_l) = (
                median(lat(0, p99)),
                median(lat(1, p99)),
                median(lat(2, p99)),
            );
            println!(
                "| {size} B | {label} | {ring_l:.0} ns | {iox_l:.0} ns | {uds_l:.0} ns | {:.2}x | {:.2}x | {:.2} |",
                ring_l / iox_l, ring_l / uds_l, median(lat(0, p99)) / max(&lat(0, p99))
            );
        }
        println!(
            "| {size} B | ring RTT with futex wake-ups p50 / p99 | {:.0} / {:.0} ns | | | | | |",
            median(lat(3, false)),
            median(lat(3, true))
        );
    }
    println!();
    println!("Throughput steadiness, all transports (min / median over runs):");
    for (i, &size) in SIZES.iter().enumerate() {
        for (k, name) in ["ring", "iceoryx2", "uds"].iter().enumerate() {
            let v: Vec<f64> = all
                .iter()
                .map(|r| r.throughput[i][k].msgs_per_sec)
                .collect();
            println!(
                "  {size:>5} B {name:<9} min {:.2} M/s median {:.2} M/s -> {:.2}",
                min(&v) / 1e6,
                median(v.clone()) / 1e6,
                min(&v) / median(v)
            );
        }
    }
}
