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
        "targets (issue 7)",
        "(8) hostmux io_uring, TLS client",
        "(2)/(4) frames/s at 64 B",
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
    assert_eq!(rows.len(), 10, "5 systems x one-way and round trip");
    assert!(rows.iter().all(|r| r["frames"].as_u64().unwrap() > 0));
    let targets = json["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 4, "{targets:?}");
    assert!(targets.iter().all(|t| t["issue"] == 7), "{targets:?}");
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
