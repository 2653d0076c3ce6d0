//! `hostmux serve` in a subprocess, driven by the other subcommands: spawn
//! an echo proc, list it, send to it, stop it, and shut the host down with
//! SIGTERM. Every wait is on a real event with a deadline.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

pub(crate) fn hostmux() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hostmux"))
}

/// A `hostmux serve` child; SIGKILLed if the test fails half-way.
pub(crate) struct Served {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
    pub(crate) frontend: String,
    /// The line `serve` printed once it was serving.
    pub(crate) serving_line: String,
    /// Where `serve` sends its sd_notify datagrams.
    notify: UnixDatagram,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    pub(crate) fn start(socket: &Path, token_file: &Path) -> Served {
        Self::start_with(socket, token_file, &[])
    }

    /// Starts `hostmux serve` with `extra` flags.
    pub(crate) fn start_with(socket: &Path, token_file: &Path, extra: &[&str]) -> Served {
        let notify_path = socket.with_file_name("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
        notify
            .set_read_timeout(Some(DEADLINE))
            .expect("notify timeout");
        // Let the kernel pick a free port: bind, read it, release it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let frontend = format!("tcp:127.0.0.1:{port}");
        let mut child = hostmux()
            .args(["serve", "--frontend", &frontend, "--shutdown-grace", "2s"])
            .args(extra)
            .arg("--control-socket")
            .arg(socket)
            .arg("--token-file")
            .arg(token_file)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("HOSTMUX_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hostmux serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut served = Served {
            child,
            lines,
            frontend,
            serving_line: String::new(),
            notify,
        };
        served.serving_line = served.wait_for_line("hostmux serving on");
        served
    }

    fn notified(&self) -> String {
        let mut buf = [0u8; 256];
        let n = self.notify.recv(&mut buf).expect("an sd_notify datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub(crate) fn wait_for_line(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|e| panic!("no line containing {needle:?} from serve: {e}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

pub(crate) fn run(socket: &Path, args: &[&str]) -> Output {
    hostmux()
        .args(args)
        .env("HOSTMUX_CONTROL_SOCKET", socket)
        .output()
        .expect("run hostmux")
}

pub(crate) fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

/// Echo's object in the JSON array `hostmux ARGS` prints (`stats --json`,
/// `stats echo --json`, `ps --json`).
pub(crate) fn echo_json(socket: &Path, args: &[&str]) -> serde_json::Value {
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&run(socket, args))).expect("the command prints JSON");
    listed
        .as_array()
        .expect("an array of procs")
        .iter()
        .find(|p| p["name"] == "echo")
        .unwrap_or_else(|| panic!("no echo in {listed}"))
        .clone()
}

#[test]
fn serve_spawn_ps_send_stop_and_sigterm_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("control.sock");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    let mut served = Served::start(&socket, &token_file);
    assert_eq!(served.notified(), "READY=1");
    let exe = env!("CARGO_BIN_EXE_hostmux");
    let token = token_file.to_str().unwrap();

    let spawned = stdout(&run(
        &socket,
        &["spawn", "echo", "--", exe, "__proc", "echo"],
    ));
    assert!(spawned.contains("spawned echo"), "{spawned}");

    // A duplicate name is refused with exit code 4.
    let duplicate = run(&socket, &["spawn", "echo", "--", exe, "__proc", "echo"]);
    assert_eq!(duplicate.status.code(), Some(4));

    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&run(&socket, &["ps", "--json"]))).expect("json");
    let procs = listed.as_array().expect("array");
    assert_eq!(procs.len(), 1, "{listed}");
    assert_eq!(procs[0]["name"], "echo");
    assert_eq!(procs[0]["state"], "ready");
    assert!(procs[0]["pid"].as_u64().unwrap() > 0);

    // The control plane over TCP with the token, instead of the socket.
    let over_tcp = stdout(&run(
        &socket,
        &[
            "ps",
            "--control-tcp",
            &served.frontend,
            "--control-token-file",
            token,
        ],
    ));
    assert!(over_tcp.contains("echo"), "{over_tcp}");
    let wrong_token = dir.path().join("wrong");
    std::fs::write(&wrong_token, "guess").expect("write a wrong token");
    let refused = run(
        &socket,
        &[
            "ps",
            "--control-tcp",
            &served.frontend,
            "--control-token-file",
            wrong_token.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(4), "a wrong token is refused");

    let frontend = served.frontend.clone();
    let send = |dest: &str, payload: &str| {
        run(
            &socket,
            &[
                "send",
                dest,
                payload,
                "--frontend",
                &frontend,
                "--token-file",
                token,
            ],
        )
    };
    let reply = stdout(&send("echo", "hello hostmux"));
    assert_eq!(reply.trim(), "hello hostmux");

    // Without the token the host refuses the hello: exit code 4.
    let no_token = run(&socket, &["send", "echo", "x", "--frontend", &frontend]);
    assert_eq!(no_token.status.code(), Some(4));

    let missing = send("nope", "x");
    assert_eq!(missing.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("(no such proc)"));

    let table = stdout(&run(&socket, &["stats", "echo"]));
    assert!(table.contains("echo"), "{table}");

    let stopped = stdout(&run(&socket, &["stop", "echo", "--timeout", "2s"]));
    assert_eq!(stopped.trim(), "echo: exited(0)");
    let again = run(&socket, &["stop", "echo"]);
    assert_eq!(again.status.code(), Some(4), "a gone proc is refused");

    // A stubborn proc is still there at shutdown: SIGTERM stops the host,
    // which terminates it (SIGKILL after the grace) and reports it.
    stdout(&run(
        &socket,
        &["spawn", "stubborn", "--", exe, "__proc", "ignore-term"],
    ));
    let pid = i32::try_from(served.child.id()).unwrap();
    assert_eq!(send_sigterm(pid), 0, "signal the host");
    assert_eq!(served.notified(), "STOPPING=1");
    served.wait_for_line("terminate summary: attempted=1 ok=1 failed=0");
    let status = served.child.wait().expect("wait for serve");
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "the control socket is removed at exit");
}

#[test]
fn sigterm_prints_how_each_proc_ended_and_after_how_long() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("control.sock");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    let mut served = Served::start(&socket, &token_file);
    let exe = env!("CARGO_BIN_EXE_hostmux");
    for (name, mode) in [("polite", "echo"), ("stubborn", "ignore-term")] {
        stdout(&run(&socket, &["spawn", name, "--", exe, "__proc", mode]));
    }
    let pid = i32::try_from(served.child.id()).unwrap();
    assert_eq!(send_sigterm(pid), 0, "signal the host");
    served.wait_for_line("SIGTERM: terminating 2 procs (grace 2000 ms before SIGKILL)");
    let header = served.wait_for_line("PROC");
    assert!(
        header.split_whitespace().eq(["PROC", "ENDED", "AFTER"]),
        "{header}"
    );
    // First ended first: the polite proc exits at once, the stubborn one is
    // SIGKILLed once the 2 s grace is over.
    let row = |line: String| -> (String, String, u64) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [name, ended @ .., after, "ms"] = words.as_slice() else {
            panic!("not a table row: {line}");
        };
        (
            name.to_string(),
            ended.join(" "),
            after.parse().expect("ms"),
        )
    };
    let (name, ended, polite_after) = row(served.wait_for_line(" ms"));
    assert_eq!((name.as_str(), ended.as_str()), ("polite", "exited 0"));
    let (name, ended, stubborn_after) = row(served.wait_for_line(" ms"));
    assert_eq!(
        (name.as_str(), ended.as_str()),
        ("stubborn", "SIGKILLed after the grace")
    );
    assert!(polite_after < 2000, "{polite_after} ms");
    assert!(stubborn_after >= 2000, "{stubborn_after} ms");
    served.wait_for_line("terminate summary: attempted=2 ok=2 failed=0");
    assert!(served.child.wait().expect("wait for serve").success());
}

/// SIGTERM through the `kill` command (no unsafe `libc::kill` needed).
fn send_sigterm(pid: i32) -> i32 {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map(|s| s.code().unwrap_or(-1))
        .unwrap_or(-1)
}

#[test]
fn serve_says_which_addresses_it_advertises() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("control.sock");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    let served = Served::start_with(
        &socket,
        &token_file,
        &["--advertise", "tcp:node1.example:7000,tcp:10.0.0.2:7000"],
    );
    assert!(
        served
            .serving_line
            .contains("advertised as tcp:node1.example:7000, tcp:10.0.0.2:7000,"),
        "{}",
        served.serving_line
    );
    // Without --advertise, the frontend address is the one advertised.
    let other = tempfile::tempdir().expect("tempdir");
    let plain = Served::start(&other.path().join("control.sock"), &token_file);
    assert!(
        plain
            .serving_line
            .contains(&format!("advertised as {},", plain.frontend)),
        "{}",
        plain.serving_line
    );
}
