//! `hostmux bench`, shortened: every system runs, the table has the five
//! rows and the target checks, and the JSON and SVG files are written.

use std::process::Command;

#[test]
fn bench_runs_every_system_and_writes_json_and_svg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_hostmux"))
        .args([
            "bench",
            "--duration",
            "100ms",
            "--rr-duration",
            "100ms",
            "--sizes",
            "64",
            "--repeat",
            "1",
            "--results",
        ])
        .arg(dir.path())
        .output()
        .expect("run the bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for row in [
        "(1) loopback TCP",
        "(2) hostmux io_uring",
        "(3) hostmux epoll",
        "(4) tokio + bincode + UDS",
        "(5) hostmux io_uring, TLS client",
        "(2)/(4) frames/s at 64 B",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in:\n{stdout}");
    }
    // TLS against plain: measured (a number, whatever it is in a debug build).
    let tls_line = stdout
        .lines()
        .find(|line| line.contains("(5)/(2) frames/s at 64 B:"))
        .unwrap_or_else(|| panic!("no TLS ratio in:\n{stdout}"));
    assert!(!tls_line.contains("not measured"), "{tls_line}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bench.json")).expect("json file"))
            .expect("valid json");
    let rows = json.as_array().expect("array");
    assert_eq!(rows.len(), 10, "5 systems x one-way and round trip");
    assert!(rows.iter().all(|r| r["frames"].as_u64().unwrap() > 0));
    let svg = std::fs::read_to_string(dir.path().join("bench.svg")).expect("svg file");
    assert!(svg.starts_with("<svg") && svg.contains("hostmux io_uring"));
}
