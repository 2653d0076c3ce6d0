//! `hostmux demo` end to end, with fewer frames: exits 0, shows every
//! section, escalates exactly the stubborn proc, and leaves no proc behind.

use std::process::Command;

#[test]
fn demo_runs_end_to_end_and_leaves_no_process_behind() {
    let output = Command::new(env!("CARGO_BIN_EXE_hostmux"))
        .args(["demo", "--frames", "20000", "--grace", "300ms"])
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for needle in [
        "spawned",
        "20000 frames of 100 B round-tripped",
        "echo-4",
        "p99.9",
        "ignored SIGTERM → SIGKILL after the grace",
        "terminate summary: attempted=5 ok=5 failed=0",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // Every proc pid the demo printed is gone (reaped, not a zombie).
    for line in stdout.lines().filter(|l| l.starts_with("spawned ")) {
        let pid = line
            .split("(pid ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .expect("pid in the spawned line");
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "proc pid {pid} still exists after the demo"
        );
    }
}
