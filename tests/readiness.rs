//! `hostmux spawn --ready MODE` from outside: any program can be a proc.
//! `spawn` is ready once exec'd, `notify` at sd_notify's `READY=1` (its
//! `STATUS=` shows in `ps`, its watchdog kills a proc that stops pinging),
//! `tcp:PORT` once the port accepts; a proc stuck starting can be stopped.
//! Notify datagrams are sent with python3 (`systemd-notify` may be missing).
//! Every wait is on a real event with a deadline.

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::serve::{hostmux, run, stdout, Served, DEADLINE};

/// Sends its arguments, joined by newlines, as one datagram to
/// `$NOTIFY_SOCKET`; a proc's shell runs it as `python3 -c "$NOTIFY_PY" ...`.
const NOTIFY_PY: &str = "import os, socket, sys; \
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); \
    s.sendto('\\n'.join(sys.argv[1:]).encode(), os.environ['NOTIFY_SOCKET'])";

/// A host serving in a fresh directory.
struct Fixture {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    served: Served,
}

impl Fixture {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("control.sock");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "s3cret\n").expect("write the token");
        let served = Served::start(&socket, &token_file);
        Self {
            _dir: dir,
            socket,
            served,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        run(&self.socket, args)
    }

    /// `hostmux spawn NAME FLAGS -- sh -c SCRIPT`, with `$NOTIFY_PY` set.
    fn spawn_shell(&self, name: &str, flags: &[&str], script: &str) -> Output {
        self.spawn_shell_child(name, flags, script)
            .wait_with_output()
            .expect("hostmux spawn ends")
    }

    fn spawn_shell_child(&self, name: &str, flags: &[&str], script: &str) -> Child {
        let notify_py = format!("NOTIFY_PY={NOTIFY_PY}");
        hostmux()
            .args(["spawn", name, "--env", &notify_py])
            .args(flags)
            .args(["--", "sh", "-c", script])
            .env("HOSTMUX_CONTROL_SOCKET", &self.socket)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run hostmux spawn")
    }

    /// `ps --json`'s entry for `name`, once `accept` holds for it (polled
    /// until the deadline).
    fn listed(&self, name: &str, accept: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let until = Instant::now() + DEADLINE;
        loop {
            let listed: serde_json::Value =
                serde_json::from_str(&stdout(&self.run(&["ps", "--json"]))).expect("json");
            if let Some(found) = listed
                .as_array()
                .expect("array")
                .iter()
                .find(|p| p["name"] == name && accept(p))
            {
                return found.clone();
            }
            assert!(
                Instant::now() < until,
                "{name} never listed as expected: {listed}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits (bounded) until `path` exists and returns its contents.
fn written(path: &Path) -> String {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(Instant::now() < until, "{} never written", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ready_spawn_runs_any_program_without_rings_or_the_hosts_notify_socket() {
    let host = Fixture::start();
    let report = host._dir.path().join("env");
    let script = format!(
        "echo \"notify=[$NOTIFY_SOCKET] rings=[$HOSTMUX_INBOUND_FD]\" > {}; exec sleep 1000",
        report.display()
    );
    // A ready timeout far beyond the test's patience: the spawn returns
    // because the program runs, not because anything timed out.
    let started = Instant::now();
    let spawned = host.spawn_shell(
        "plain",
        &["--ready", "spawn", "--ready-timeout", "0"],
        &script,
    );
    assert!(
        spawned.status.success(),
        "{}",
        String::from_utf8_lossy(&spawned.stderr)
    );
    assert!(started.elapsed() < DEADLINE);
    let listed = host.listed("plain", |p| p["state"] == "ready");
    assert!(listed["pid"].as_u64().unwrap() > 0);
    assert_eq!(listed["status"], "");
    // The host's own NOTIFY_SOCKET (serve runs under one) is not passed on,
    // and no ring fds are.
    assert_eq!(written(&report), "notify=[] rings=[]\n");

    // Frames to it come back undeliverable: it has no rings.
    let token_file = host._dir.path().join("token");
    let sent = host.run(&[
        "send",
        "plain",
        "hello",
        "--frontend",
        &host.served.frontend,
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&sent.stderr);
    assert_eq!(sent.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("proc not ready"), "{stderr}");
    assert!(stderr.contains("has no rings"), "{stderr}");

    let stopped = stdout(&host.run(&["stop", "plain", "--timeout", "2s"]));
    assert_eq!(stopped.trim(), "plain: signaled(SIGTERM)");
}

#[test]
fn ready_spawn_of_a_missing_program_is_a_spawn_failure() {
    let host = Fixture::start();
    let spawned = host.run(&[
        "spawn",
        "ghost",
        "--ready",
        "spawn",
        "--",
        "/nonexistent/hostmux-no-such-program",
    ]);
    let stderr = String::from_utf8_lossy(&spawned.stderr);
    assert_eq!(spawned.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");
}

#[test]
fn ready_notify_returns_only_after_ready_1_and_ps_shows_the_status() {
    let host = Fixture::start();
    let started = Instant::now();
    let spawned = host.spawn_shell(
        "notified",
        &["--ready", "notify"],
        "python3 -c \"$NOTIFY_PY\" 'STATUS=loading'; sleep 0.3; \
         python3 -c \"$NOTIFY_PY\" READY=1 'STATUS=serving 3 queues'; exec sleep 1000",
    );
    assert!(
        spawned.status.success(),
        "{}",
        String::from_utf8_lossy(&spawned.stderr)
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "returned after {took:?}"
    );
    let listed = host.listed("notified", |p| p["state"] == "ready");
    assert_eq!(listed["status"], "serving 3 queues");
    let table = stdout(&host.run(&["ps"]));
    let header = table.lines().next().unwrap();
    assert!(header.ends_with("STATUS"), "{table}");
    let row = table.lines().find(|l| l.starts_with("notified")).unwrap();
    assert!(row.ends_with("serving 3 queues"), "{table}");
}

#[test]
fn ready_notify_watchdog_kills_a_proc_that_stops_pinging() {
    let host = Fixture::start();
    let spawned = host.spawn_shell(
        "pinger",
        &["--ready", "notify", "--watchdog", "500ms"],
        "test \"$WATCHDOG_USEC\" = 500000 || exit 9; \
         test \"$WATCHDOG_PID\" = $$ || { echo \"WATCHDOG_PID=[$WATCHDOG_PID] pid=$$\" >&2; exit 8; }; \
         python3 -c \"$NOTIFY_PY\" READY=1 WATCHDOG=1; sleep 0.2; \
         python3 -c \"$NOTIFY_PY\" WATCHDOG=1; sleep 0.2; \
         python3 -c \"$NOTIFY_PY\" WATCHDOG=1 'STATUS=stuck now'; exec sleep 1000",
    );
    assert!(
        spawned.status.success(),
        "{}",
        String::from_utf8_lossy(&spawned.stderr)
    );
    let ended = host.listed("pinger", |p| {
        p["state"].as_str().is_some_and(|s| {
            s.starts_with("failed") || s.starts_with("exited") || s.starts_with("signaled")
        })
    });
    assert_eq!(
        ended["state"],
        "failed: watchdog timeout: no WATCHDOG=1 within 500ms"
    );
}

#[test]
fn ready_tcp_is_ready_once_the_port_accepts() {
    let host = Fixture::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ready = format!("tcp:{port}");
    let script = format!(
        "sleep 0.3; exec python3 -c 'import socket, time; \
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
         s.bind((\"127.0.0.1\", {port})); s.listen(); time.sleep(1000)'"
    );
    let started = Instant::now();
    let spawned = host.spawn_shell("web", &["--ready", &ready], &script);
    assert!(
        spawned.status.success(),
        "{}",
        String::from_utf8_lossy(&spawned.stderr)
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("it listens");
    host.listed("web", |p| p["state"] == "ready");
}

#[test]
fn a_notify_proc_that_never_reports_is_stopped_before_its_ready_timeout() {
    let host = Fixture::start();
    let spawning = host.spawn_shell_child(
        "mute",
        &["--ready", "notify", "--ready-timeout", "10m"],
        "exec sleep 1000",
    );
    host.listed("mute", |p| {
        p["state"] == "starting" && p["pid"].as_u64().unwrap_or(0) > 0
    });
    let stopped = stdout(&host.run(&["stop", "mute", "--timeout", "2s"]));
    assert_eq!(stopped.trim(), "mute: signaled(SIGTERM)");
    let spawned = spawning.wait_with_output().expect("hostmux spawn ends");
    let stderr = String::from_utf8_lossy(&spawned.stderr);
    assert_eq!(spawned.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("was stopped while starting"), "{stderr}");
    // Ended, still listed: stop says so instead of "no proc named".
    let again = host.run(&["stop", "mute"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("already ended"), "{stderr}");
}

#[test]
fn an_unknown_ready_mode_is_a_usage_error() {
    let spawned = hostmux()
        .args(["spawn", "x", "--ready", "sometimes", "--", "true"])
        .output()
        .expect("run hostmux");
    let stderr = String::from_utf8_lossy(&spawned.stderr);
    assert_eq!(spawned.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tcp:PORT"), "{stderr}");
}
