//! Issue 11, case 4, from outside: a proc that never becomes ready is
//! listed as `starting` by `ps`, `hostmux stop` reaches it and kills it, and
//! the `hostmux spawn` waiting for it exits 4 saying it was stopped while
//! starting. Every wait is on a real event with a deadline.

use std::process::Stdio;
use std::time::Instant;

use crate::serve::{hostmux, run, stdout, Served, DEADLINE};

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

/// `ps --json`'s entry for `name`, once it is listed in `state` with a pid
/// (polled until the deadline).
fn listed_as(socket: &std::path::Path, name: &str, state: &str) -> serde_json::Value {
    let until = Instant::now() + DEADLINE;
    loop {
        let listed: serde_json::Value =
            serde_json::from_str(&stdout(&run(socket, &["ps", "--json"]))).expect("json");
        let found = listed.as_array().expect("array").iter().find(|p| {
            p["name"] == name && p["state"] == state && p["pid"].as_u64().unwrap_or(0) > 0
        });
        if let Some(found) = found {
            return found.clone();
        }
        assert!(
            Instant::now() < until,
            "{name} never listed as {state}: {listed}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn stop_reaches_a_starting_proc_and_its_spawn_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("control.sock");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    let _served = Served::start(&socket, &token_file);

    // `sleep` never reports ready; with no ready timeout it stays starting.
    let spawning = hostmux()
        .args(["spawn", "x", "--ready-timeout", "0", "--", "sleep", "1000"])
        .env("HOSTMUX_CONTROL_SOCKET", &socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hostmux spawn");
    let starting = listed_as(&socket, "x", "starting");
    let pid = starting["pid"].as_u64().unwrap();
    assert!(!is_dead(pid));

    let stopped = stdout(&run(&socket, &["stop", "x", "--timeout", "2s"]));
    assert_eq!(stopped.trim(), "x: signaled(SIGTERM)");
    assert!(is_dead(pid), "sleep (pid {pid}) still runs");

    // The waiting spawn exits with "refused by the host" and says why.
    let spawned = spawning.wait_with_output().expect("hostmux spawn ends");
    let stderr = String::from_utf8_lossy(&spawned.stderr);
    assert_eq!(spawned.status.code(), Some(4), "stderr: {stderr}");
    assert!(stderr.contains("was stopped while starting"), "{stderr}");
    assert!(
        !stderr.contains("boot protocol"),
        "no misleading hint: {stderr}"
    );

    // `ps` lists how it ended; stop and kill say so instead of "no proc".
    listed_as(&socket, "x", "signaled(SIGTERM)");
    for command in [&["stop", "x"][..], &["kill", "x"][..]] {
        let again = run(&socket, command);
        let stderr = String::from_utf8_lossy(&again.stderr);
        assert_eq!(again.status.code(), Some(4), "{command:?}: {stderr}");
        assert!(stderr.contains("already ended"), "{command:?}: {stderr}");
        assert!(!stderr.contains("no proc named"), "{command:?}: {stderr}");
    }
}

#[test]
fn kill_reaches_a_starting_proc_and_its_spawn_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("control.sock");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    let _served = Served::start(&socket, &token_file);

    let spawning = hostmux()
        .args(["spawn", "x", "--ready-timeout", "0", "--", "sleep", "1000"])
        .env("HOSTMUX_CONTROL_SOCKET", &socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hostmux spawn");
    let pid = listed_as(&socket, "x", "starting")["pid"].as_u64().unwrap();
    let killed = stdout(&run(&socket, &["kill", "x"]));
    assert_eq!(killed.trim(), "x: signaled(SIGKILL)");
    assert!(is_dead(pid), "sleep (pid {pid}) still runs");
    let spawned = spawning.wait_with_output().expect("hostmux spawn ends");
    let stderr = String::from_utf8_lossy(&spawned.stderr);
    assert_eq!(spawned.status.code(), Some(4), "stderr: {stderr}");
    assert!(stderr.contains("was killed while starting"), "{stderr}");
}
