//! `hostmux spawn --restart`: a real host, procs that crash on their own
//! (`hostmux __proc crash` exits 3 after booting), `ps` polled until a
//! condition holds under a deadline.

use std::path::Path;
use std::time::Instant;

use crate::serve::{hostmux, run, stdout, Served, DEADLINE};

/// The `ps --json` entry of `name` (the first: the live one, or its latest
/// end) once `ready` holds for it.
fn until(
    socket: &Path,
    name: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + DEADLINE;
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        let listed: serde_json::Value =
            serde_json::from_str(&stdout(&run(socket, &["ps", "--json"]))).expect("json");
        if let Some(entry) = listed
            .as_array()
            .and_then(|procs| procs.iter().find(|p| p["name"] == name))
        {
            if ready(entry) {
                return entry.clone();
            }
            last = entry.clone();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{name} never got there; last seen: {last}");
}

/// Whether process `pid` is gone (no /proc entry, or a zombie).
fn is_dead(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

fn start(dir: &Path) -> (Served, std::path::PathBuf) {
    let socket = dir.join("control.sock");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    (Served::start(&socket, &token_file), socket)
}

#[test]
fn spawn_restart_on_failure_brings_a_crashing_proc_back_and_stop_ends_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_served, socket) = start(dir.path());
    let exe = env!("CARGO_BIN_EXE_hostmux");
    let spawned = stdout(&run(
        &socket,
        &[
            "spawn",
            "flaky",
            "--restart",
            "on-failure",
            "--restart-delay",
            "50ms",
            "--restart-limit",
            "none",
            "--",
            exe,
            "__proc",
            "crash",
        ],
    ));
    assert!(spawned.contains("spawned flaky"), "{spawned}");
    let entry = until(&socket, "flaky", |p| p["restarts"].as_u64() >= Some(2));
    assert_eq!(entry["last_exit"], "exit 3", "{entry}");
    let table = stdout(&run(&socket, &["ps"]));
    assert!(
        table.contains("RESTARTS") && table.contains("LAST EXIT"),
        "{table}"
    );
    assert!(table.contains("exit 3"), "{table}");

    // A stop ends it for good, whatever phase it is in.
    stdout(&run(&socket, &["stop", "flaky", "--timeout", "2s"]));
    let entry = until(&socket, "flaky", |_| true);
    let state = entry["state"].as_str().unwrap_or_default();
    assert!(
        state.starts_with("exited") || state.starts_with("signaled"),
        "{entry}"
    );
    let restarts = entry["restarts"].as_u64();
    // Its name is free: the same spawn works again (and a proc ended
    // cleanly by a stop would not have been restarted anyway).
    let listed = stdout(&run(&socket, &["ps", "--json"]));
    let procs: serde_json::Value = serde_json::from_str(&listed).expect("json");
    let live = procs
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "flaky")
        .filter(|p| {
            matches!(
                p["state"].as_str(),
                Some("ready" | "starting" | "backing-off")
            )
        })
        .count();
    assert_eq!(live, 0, "{listed}");
    assert!(restarts >= Some(2));
}

#[test]
fn ps_says_when_the_restart_limit_stopped_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_served, socket) = start(dir.path());
    let exe = env!("CARGO_BIN_EXE_hostmux");
    stdout(&run(
        &socket,
        &[
            "spawn",
            "limited",
            "--restart",
            "always",
            "--restart-delay",
            "10ms",
            "--restart-limit",
            "2/60s",
            "--",
            exe,
            "__proc",
            "crash",
        ],
    ));
    let entry = until(&socket, "limited", |p| {
        p["state"].as_str().is_some_and(|s| s.starts_with("failed"))
    });
    assert_eq!(
        entry["state"], "failed: restart limit reached: 2 restarts in 60s",
        "{entry}"
    );
    assert_eq!(entry["restarts"], 2);
    assert_eq!(entry["last_exit"], "exit 3");
    let table = stdout(&run(&socket, &["ps"]));
    assert!(table.contains("restart limit reached"), "{table}");
}

#[test]
fn sigterm_to_the_host_with_a_crash_looping_proc_leaves_no_process_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut served, socket) = start(dir.path());
    let exe = env!("CARGO_BIN_EXE_hostmux");
    let pids = dir.path().join("pids");
    let env = format!("CRASH_PID_FILE={}", pids.display());
    stdout(&run(
        &socket,
        &[
            "spawn",
            "looping",
            "--env",
            &env,
            "--restart",
            "always",
            "--restart-delay",
            "10ms",
            "--restart-delay-max",
            "10ms",
            "--restart-limit",
            "none",
            "--",
            exe,
            "__proc",
            "crash",
        ],
    ));
    until(&socket, "looping", |p| p["restarts"].as_u64() >= Some(2));
    let host_pid = served.child.id().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &host_pid])
        .status()
        .expect("run kill");
    assert!(signalled.success());
    let status = served.child.wait().expect("wait for serve");
    assert!(status.success(), "{status:?}");
    // Every instance wrote its pid when it crashed; the last one may have
    // been stopped before. Either way none is alive, and the one `ps` saw
    // last is among them or was stopped at shutdown.
    let text = std::fs::read_to_string(&pids).expect("pids written");
    let written: Vec<u64> = text.lines().map(|l| l.parse().expect("a pid")).collect();
    assert!(written.len() >= 2, "{written:?}");
    for pid in &written {
        assert!(is_dead(*pid), "pid {pid} outlived the host");
    }
    // Nothing with this host's command line is left either (a restarted
    // instance the shutdown missed would be).
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let pid: u64 = entry.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let marker = env.as_bytes();
            (environ.windows(marker.len()).any(|w| w == marker) && !is_dead(pid))
                .then(|| pid.to_string())
        })
        .collect();
    assert!(survivors.is_empty(), "still running: {survivors:?}");
}

#[test]
fn spawn_help_documents_the_restart_flags() {
    let help = hostmux()
        .args(["spawn", "--help"])
        .output()
        .expect("run hostmux");
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--restart <RESTART>",
        "on-failure",
        "always",
        "--restart-delay",
        "--restart-delay-max",
        "--restart-limit <N/INTERVAL>",
        "[default: 5/60s]",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}
