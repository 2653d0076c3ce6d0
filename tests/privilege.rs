//! Procs as another user, from outside: `serve --proc-user` and
//! `spawn --user` run procs as that user (with `no_new_privs`), their rings
//! still work, and such a proc cannot use the control socket: with the
//! socket's own mode `connect` is denied, and with the socket opened up by
//! hand the host's peer check answers "uid 65534 may not use this host's
//! control socket".
//!
//! Switching users needs root: without it this test fails, unless
//! `HOSTMUX_TEST_SKIP` names `root` (then it says loudly that it did not
//! run).

use hostmux_testkit::facility::{proc_status_field, require_root};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::serve::{run, stdout, Served, DEADLINE};

const NOBODY: &str = "65534";

fn pid_of(socket: &Path, name: &str) -> u64 {
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&run(socket, &["ps", "--json"]))).expect("json");
    listed
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["pid"].as_u64())
        .unwrap_or_else(|| panic!("{name} not listed: {listed}"))
}

/// Waits (bounded) until `path` holds a line starting with `exit `, and
/// returns the whole file.
fn wait_for_report(path: &Path) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l.starts_with("exit ")) {
            return text;
        }
        assert!(Instant::now() < deadline, "no report in {}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn proc_run_as_nobody_cannot_use_the_control_socket() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("control.sock");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    // Where the probes (running as nobody) write what they saw.
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    std::fs::set_permissions(&reports, std::fs::Permissions::from_mode(0o777)).unwrap();
    let served = Served::start_with(&socket, &token_file, &["--proc-user", "nobody"]);
    let exe = env!("CARGO_BIN_EXE_hostmux");
    let socket_arg = socket.to_str().unwrap();

    // A probe proc: tries `hostmux ps` against the control socket, writes
    // its output and exit code, then becomes an echo proc (so the spawn
    // sees it ready through its rings).
    let probe = |name: &str| {
        let report = reports.join(name);
        let script = "\"$0\" ps --control-socket \"$1\" >\"$2\" 2>&1; echo \"exit $?\" >>\"$2\"; \
                      exec \"$0\" __proc echo";
        let spawned = run(
            &socket,
            &[
                "spawn",
                name,
                "--",
                "sh",
                "-c",
                script,
                exe,
                socket_arg,
                report.to_str().unwrap(),
            ],
        );
        let spawned = stdout(&spawned);
        assert!(spawned.contains(&format!("spawned {name}")), "{spawned}");
        let pid = pid_of(&socket, name);
        // Runs as nobody (the host's --proc-user), cannot gain privileges.
        assert_eq!(proc_status_field(pid, "Uid"), [NOBODY; 4].join(" "));
        assert_eq!(proc_status_field(pid, "NoNewPrivs"), "1");
        wait_for_report(&report)
    };

    // The socket as the host made it (0600, in a 0700 directory): the
    // kernel refuses the connection; the CLI says why, exit code 3.
    let denied = probe("probe-denied");
    assert!(denied.contains("exit 3"), "{denied}");
    assert!(denied.contains("Permission denied"), "{denied}");
    assert!(
        denied.contains("only for the host's user and root"),
        "{denied}"
    );

    // Opened up by hand: the host's peer-credential check refuses, and
    // tells the client why (not a reset), exit code 4.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused = probe("probe-refused");
    assert!(refused.contains("exit 4"), "{refused}");
    assert!(
        refused.contains("refused: uid 65534 may not use this host's control socket"),
        "{refused}"
    );

    // Its rings work as nobody: a frame through the frontend comes back.
    let reply = stdout(&run(
        &socket,
        &[
            "send",
            "probe-refused",
            "hello nobody",
            "--frontend",
            &served.frontend,
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    ));
    assert_eq!(reply.trim(), "hello nobody");

    // `--user` overrides the host's default; the host's own user is fine.
    stdout(&run(
        &socket,
        &[
            "spawn", "as-root", "--user", "root", "--", exe, "__proc", "echo",
        ],
    ));
    assert_eq!(
        proc_status_field(pid_of(&socket, "as-root"), "Uid"),
        "0 0 0 0"
    );
    // An unknown user is named in the refusal, exit code 4.
    let unknown = run(
        &socket,
        &[
            "spawn",
            "ghost",
            "--user",
            "no-such-user-hm",
            "--",
            exe,
            "__proc",
            "echo",
        ],
    );
    assert_eq!(unknown.status.code(), Some(4));
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("unknown user 'no-such-user-hm'"), "{said}");
}

#[test]
fn non_root_host_refuses_proc_user_and_says_it_needs_root() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path().join("control.sock");
    // The host as nobody (util-linux's setpriv drops to it).
    let output = std::process::Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_hostmux"))
        .args([
            "serve",
            "--frontend",
            "tcp:127.0.0.1:0",
            "--proc-user",
            "root",
        ])
        .arg("--control-socket")
        .arg(&socket)
        .output()
        .expect("run setpriv (util-linux) to start a host as nobody");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("--proc-user root")
            && said.contains("needs root (CAP_SETUID and CAP_SETGID)")
            && said.contains("this host runs as uid 65534"),
        "{said}"
    );
    assert!(!socket.exists(), "it refused before serving");
}
