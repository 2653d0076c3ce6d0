//! `hostmux-bench`, shortened: every system runs, the table has its rows
//! and the target checks, and the JSON and SVG files are written. The runs
//! are too short for their figures to mean anything: these tests check the
//! shape of the output, never the speed.
//!
//! The cross-host mode runs the `hostmux` binary beside `hostmux-bench`
//! (`cargo test --workspace` builds both; after `cargo test -p
//! hostmux-bench` alone, build it with `cargo build -p hostmux`).

use std::path::Path;
use std::process::Command;

/// Runs `hostmux-bench ARGS --repeat 1 --results DIR`; returns its stdout
/// and the parsed `DIR/bench.json`.
fn bench(args: &[&str], dir: &Path) -> (String, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_hostmux-bench"))
        .args(args)
        .args(["--repeat", "1", "--results"])
        .arg(dir)
        .output()
        .expect("run the bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = serde_json::from_slice(&std::fs::read(dir.join("bench.json")).expect("json file"))
        .expect("valid json");
    (stdout, json)
}

#[test]
fn bench_runs_every_system_and_writes_json_and_svg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stdout, json) = bench(
        &[
            "--duration",
            "100ms",
            "--rr-duration",
            "100ms",
            "--sizes",
            "64",
        ],
        dir.path(),
    );
    for row in [
        "(1) loopback TCP",
        "(2) hostmux io_uring",
        "(3) hostmux epoll",
        "(4) tokio + bincode + UDS",
        "(5) loopback TCP, busy-poll",
        "targets (issue 7)",
        "targets (issue 15)",
        "(2)/(1) frames/s at 64 B, target >= 0.70: ",
        "(2)/(5) p50 round trip at 64 B, target <= 1.5: ",
        "(8) hostmux io_uring, TLS client",
        "(2)/(4) frames/s at 64 B",
        "machine load at start: ",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("targets (issue 13)"), "{stdout}");
    // TLS against plain: measured (a number, whatever it is in a debug build).
    let tls_line = stdout
        .lines()
        .find(|line| line.contains("(8)/(2) frames/s at 64 B:"))
        .unwrap_or_else(|| panic!("no TLS ratio in:\n{stdout}"));
    assert!(!tls_line.contains("not measured"), "{tls_line}");
    let rows = json["measurements"].as_array().expect("array");
    assert_eq!(
        rows.len(),
        11,
        "5 systems x one-way and round trip, busy-poll TCP round trip"
    );
    assert!(rows.iter().all(|r| r["frames"].as_u64().unwrap() > 0));
    let targets = json["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 7, "{targets:?}");
    let of_issue = |issue: u64| targets.iter().filter(|t| t["issue"] == issue).count();
    assert_eq!((of_issue(7), of_issue(15)), (4, 3), "{targets:?}");
    // The 64 B ones have figures from this run (1 MiB was not run).
    for target in targets
        .iter()
        .filter(|t| t["what"].as_str().unwrap().contains("64 B"))
    {
        assert!(target["value"].as_f64().is_some(), "{target}");
    }
    let load = &json["run"]["load_at_start"];
    assert_eq!(load["loadavg"].as_array().map(Vec::len), Some(3), "{json}");
    assert!(load["cpus"].as_u64().unwrap() >= 1, "{json}");
    let svg = std::fs::read_to_string(dir.path().join("bench.svg")).expect("svg file");
    assert!(svg.starts_with("<svg") && svg.contains("hostmux io_uring"));
}

/// `--cross-host`: two `hostmux serve` peers and the baselines; every row
/// and every issue 13 target has a figure, in the table and in the JSON.
#[test]
fn cross_host_mode_reports_its_rows_and_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stdout, json) = bench(
        &[
            "--cross-host",
            "--duration",
            "50ms",
            "--rr-duration",
            "50ms",
            "--sizes",
            "64,1048576",
        ],
        dir.path(),
    );
    for row in [
        "(1) loopback TCP, discard",
        "(5) loopback TCP, busy-poll",
        "(6) hostmux serve, same host",
        "(7) hostmux serve, cross-host",
        "targets (issue 13)",
        "(7)/(6) frames/s at 64 B, target >= 0.50: ",
        "(7)/(1) GB/s at 1 MiB, target >= 0.80: ",
        "(7) p50 round trip / ((6) + 2 x (1)) at 64 B, target <= 1: ",
        "(7) p99 round trip / ((6) + 2 x (1)) at 64 B, target <= 1: ",
        "(7) p50 round trip / ((6) + 2 x (5)) at 64 B, target <= 1: ",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("not measured"), "{stdout}");
    assert!(!stdout.contains("issue 7"), "{stdout}");

    let rows = json["measurements"].as_array().expect("measurements");
    let row = |system: &str, mode: &str, size: u64| {
        rows.iter()
            .find(|r| r["system"] == system && r["mode"] == mode && r["size"] == size)
            .unwrap_or_else(|| panic!("no {system} {mode} {size} B row in {rows:?}"))
    };
    for size in [64, 1 << 20] {
        for system in ["tcp", "same-host", "cross-host", "tcp-relay"] {
            for mode in ["oneway", "rr"] {
                assert!(row(system, mode, size)["frames"].as_u64().unwrap() > 0);
            }
        }
        assert!(row("tcp-busy-poll", "rr", size)["frames"].as_u64().unwrap() > 0);
    }
    assert_eq!(rows.len(), 18, "9 rows per size: {rows:?}");
    let targets = json["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 5, "{targets:?}");
    for target in targets {
        assert_eq!(target["issue"], 13, "{target}");
        assert!(target["value"].as_f64().is_some(), "{target}");
        assert!(target["met"].is_boolean(), "{target}");
    }
}

/// `tcp-spread` (10): one-way only, beside (1) and (2), and the 1 MiB bar
/// of issue 15 is also reported against it, with (10)/(1).
#[test]
fn tcp_spread_runs_one_way_and_reports_the_ring_shaped_comparison() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stdout, json) = short_bench(
        &["--systems", "tcp,tcp-spread,uring"],
        "1048576",
        dir.path(),
    );
    for row in [
        "(10) loopback TCP into a ring-sized buffer",
        "(2)/(10) GB/s at 1 MiB (the 1.00 bar against TCP into a ring-sized buffer): ",
        "(10)/(1): ",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in:\n{stdout}");
    }
    assert_one_measured_row(&json, "tcp-spread", "oneway");
}

/// `tcp-relay-busy-poll` (12): round trips only, through a spinning relay
/// to a spinning echo server, reported beside hostmux's round trip.
#[test]
fn the_three_party_tcp_round_trip_runs_beside_hostmux() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stdout, json) = short_bench(
        &[
            "--systems",
            "uring-direct,tcp-busy-poll,tcp-relay-busy-poll",
        ],
        "64",
        dir.path(),
    );
    for row in [
        "(12) loopback TCP via a busy-poll relay",
        "(12) the same three parties over TCP: ",
        "(11)/(12) ",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in:\n{stdout}");
    }
    assert_one_measured_row(&json, "tcp-relay-busy-poll", "rr");
}

/// `--busy-poll-client` spins the plain TCP systems' client too: a
/// one-way stream to (1) still ends with the reader's count.
#[test]
fn a_busy_polling_client_streams_one_way_to_plain_tcp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, json) = short_bench(
        &["--systems", "tcp", "--busy-poll-client"],
        "64",
        dir.path(),
    );
    let rows = json["measurements"].as_array().expect("measurements");
    let oneway = rows
        .iter()
        .find(|r| r["system"] == "tcp" && r["mode"] == "oneway")
        .unwrap_or_else(|| panic!("no one-way row: {rows:?}"));
    assert!(oneway["frames"].as_u64().unwrap() > 0, "{oneway}");
}

/// [`bench`] with `args`, at one payload `size`, measuring 100 ms one-way
/// and 50 ms of round trips.
fn short_bench(args: &[&str], size: &str, dir: &Path) -> (String, serde_json::Value) {
    let mut all = args.to_vec();
    all.extend([
        "--duration",
        "100ms",
        "--rr-duration",
        "50ms",
        "--sizes",
        size,
    ]);
    bench(&all, dir)
}

/// `system` has exactly one measurement in `json`, in `mode` (the one
/// mode it runs), and it counted frames.
fn assert_one_measured_row(json: &serde_json::Value, system: &str, mode: &str) {
    let rows = json["measurements"].as_array().expect("measurements");
    let of_system: Vec<_> = rows.iter().filter(|r| r["system"] == system).collect();
    assert_eq!(of_system.len(), 1, "{system}: {mode} only: {of_system:?}");
    assert_eq!(of_system[0]["mode"], mode, "{of_system:?}");
    assert!(
        of_system[0]["frames"].as_u64().unwrap() > 0,
        "{of_system:?}"
    );
}

/// A same-host or cross-host run without a `hostmux` binary fails at once,
/// saying where it looked and what to do, before any measurement.
#[test]
fn cross_host_without_a_hostmux_binary_names_the_missing_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-hostmux");
    let output = Command::new(env!("CARGO_BIN_EXE_hostmux-bench"))
        .args(["--cross-host", "--hostmux"])
        .arg(&missing)
        .arg("--results")
        .arg(dir.path())
        .output()
        .expect("run the bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("no hostmux binary at {}", missing.display()))
            && stderr.contains("--hostmux PATH"),
        "{stderr}"
    );
    assert!(!dir.path().join("bench.json").exists());
}

/// A payload size out of range is a usage error (exit 2), before any run.
#[test]
fn an_out_of_range_payload_size_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_hostmux-bench"))
        .args(["--sizes", "64,0"])
        .output()
        .expect("run the bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"0\" is not a payload size"), "{stderr}");
}

/// `--idle-procs 0,3`: the hostmux system runs again beside three idle
/// procs, the baseline once, and the table shows both counts side by side.
#[test]
fn idle_procs_run_the_hostmux_systems_once_per_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (stdout, json) = bench(
        &[
            "--systems",
            "tcp,uring",
            "--idle-procs",
            "0,3",
            "--duration",
            "100ms",
            "--rr-duration",
            "50ms",
            "--sizes",
            "64",
        ],
        dir.path(),
    );
    assert!(
        stdout.contains("one-way frames/s beside idle procs") && stdout.contains("3 idle"),
        "{stdout}"
    );
    let rows = json["measurements"].as_array().expect("measurements");
    let count = |system: &str, idle: u64| {
        rows.iter()
            .filter(|r| r["system"] == system && r["idle_procs"] == idle)
            .count()
    };
    assert_eq!((count("tcp", 0), count("tcp", 3)), (2, 0), "{rows:?}");
    assert_eq!((count("uring", 0), count("uring", 3)), (2, 2), "{rows:?}");
    assert!(rows.iter().all(|r| r["frames"].as_u64().unwrap() > 0));
}

/// `--proc-cost 0,3`: per policy, the ring memfds of three idle procs hold
/// their whole rings when populated and about a page each on demand.
#[test]
fn proc_cost_counts_ring_memory_by_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_hostmux-bench"))
        .args(["--proc-cost", "0,3", "--results"])
        .arg(dir.path())
        .output()
        .expect("run the bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("on-demand") && stdout.contains("populated"),
        "{stdout}"
    );
    let steps: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("proc-cost.json")).expect("json"))
            .expect("valid json");
    let memfds = |policy: &str, procs: u64| {
        steps
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["ring_memory"] == policy && s["procs"] == procs)
            .unwrap_or_else(|| panic!("no {policy} {procs} step in {steps}"))["ring_memfd_bytes"]
            .as_u64()
            .unwrap()
    };
    let ring = (1u64 << 20) + 4096;
    let populated = memfds("populated", 3) - memfds("populated", 0);
    let on_demand = memfds("on-demand", 3) - memfds("on-demand", 0);
    assert!(populated >= 3 * 2 * ring, "{populated} bytes: {steps}");
    assert!(on_demand <= 3 * 2 * 2 * 4096, "{on_demand} bytes: {steps}");
}
