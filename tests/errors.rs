//! Every error path of the `hostmux` CLI, through the real binary: the one
//! line it prints (what happened, then what to do) and its exit code, as
//! `hostmux --help` and docs/operations.md document them (1 failure, 2
//! usage, 3 host unreachable, 4 refused).

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use hostmux_testkit::facility::require_root;

use crate::serve::{hostmux, run, stdout, Served, DEADLINE};

const FAILURE: i32 = 1;
const USAGE: i32 = 2;
const UNREACHABLE: i32 = 3;
const REFUSED: i32 = 4;

/// Asserts the exit code and returns the one error line (`hostmux: error:
/// …`), checking that it names no cause twice in a row (`X: X`).
fn error_line(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("hostmux: error: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    let line = lines[0].to_owned();
    let parts: Vec<&str> = line.split(": ").collect();
    assert!(
        parts.windows(2).all(|w| w[0] != w[1]),
        "a cause repeated: {line}"
    );
    line
}

/// `text` holds every one of `needles`.
#[track_caller]
fn says(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
}

/// A host with a token, in a temporary directory.
fn host(dir: &Path) -> Served {
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret\n").expect("write the token");
    Served::start(&dir.join("control.sock"), &token_file)
}

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_hostmux")
}

#[test]
fn a_caller_refused_by_uid_is_told_its_uid_and_how_to_get_in() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let served = host(dir.path());
    let socket = dir.path().join("control.sock");
    let as_nobody = || {
        hostmux()
            .args(["ps", "--control-socket"])
            .arg(&socket)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run hostmux as nobody")
    };
    // The socket as the host made it (0600): the kernel says no.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let denied = error_line(&as_nobody(), UNREACHABLE);
    says(
        &denied,
        &[
            "refused: uid 65534 cannot connect to the control socket",
            "Permission denied",
            "only for the host's user and root",
            "--control-tcp",
        ],
    );
    // Opened up by hand: the host checks the uid and says so before it
    // closes (not a reset, not "is it running?").
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused = error_line(&as_nobody(), REFUSED);
    says(
        &refused,
        &[
            "refused: uid 65534 may not use this host's control socket",
            "only its user (uid 0) and root may",
            "run the command as the host's user or root",
            "--control-tcp ADDR --control-token-file FILE",
        ],
    );
    assert!(!refused.contains("is `hostmux serve` running"), "{refused}");
    drop(served);
}

#[test]
fn a_busy_frontend_port_names_the_address_and_how_to_find_the_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().unwrap().port();
    let output = hostmux()
        .args(["serve", "--frontend", &format!("tcp:127.0.0.1:{port}")])
        .arg("--control-socket")
        .arg(dir.path().join("c.sock"))
        .output()
        .expect("run hostmux");
    let line = error_line(&output, USAGE);
    says(
        &line,
        &[
            &format!("frontend address tcp:127.0.0.1:{port} is in use"),
            "another process listens there",
            &format!("`ss -ltnp 'sport = :{port}'`"),
            "--frontend",
        ],
    );
    assert!(!line.contains("os error 98"), "{line}");
}

#[test]
fn a_regular_file_at_the_control_path_is_named_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("control.sock");
    std::fs::write(&path, "notes").unwrap();
    let output = hostmux()
        .args(["serve", "--frontend", "tcp:127.0.0.1:0", "--control-socket"])
        .arg(&path)
        .output()
        .expect("run hostmux");
    let line = error_line(&output, USAGE);
    says(
        &line,
        &[
            &format!("{} is a regular file, not a socket", path.display()),
            "remove it if nothing needs it",
            "--control-socket",
        ],
    );
    assert!(!line.contains("stop the other host"), "{line}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "notes");
}

#[test]
fn a_control_socket_in_a_directory_that_cannot_be_made_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let output = hostmux()
        .args(["serve", "--frontend", "tcp:127.0.0.1:0", "--control-socket"])
        .arg(file.join("sub/control.sock"))
        .output()
        .expect("run hostmux");
    let line = error_line(&output, USAGE);
    says(
        &line,
        &[
            &format!("cannot create {}", file.join("sub").display()),
            "--control-socket PATH in a writable directory",
        ],
    );
}

#[test]
fn a_control_socket_another_host_listens_on_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = host(dir.path());
    let socket = dir.path().join("control.sock");
    let output = hostmux()
        .args(["serve", "--frontend", "tcp:127.0.0.1:0", "--control-socket"])
        .arg(&socket)
        .output()
        .expect("run hostmux");
    let line = error_line(&output, USAGE);
    says(
        &line,
        &[
            "another process is listening on it",
            "ss -lxp",
            "--control-socket",
        ],
    );
    drop(served);
}

#[test]
fn the_service_name_is_reserved_not_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _served = host(dir.path());
    let socket = dir.path().join("control.sock");
    let output = run(&socket, &["spawn", "service", "--", "/bin/true"]);
    let line = error_line(&output, REFUSED);
    says(
        &line,
        &[
            "proc name 'service' is reserved for the host's service proc",
            "pick another name",
        ],
    );
    assert!(!line.contains("already exists"), "{line}");
}

#[test]
fn spawn_refusals_say_what_to_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _served = host(dir.path());
    let socket = dir.path().join("control.sock");
    stdout(&run(
        &socket,
        &["spawn", "echo", "--", exe(), "__proc", "echo"],
    ));
    let taken = error_line(
        &run(&socket, &["spawn", "echo", "--", exe(), "__proc", "echo"]),
        REFUSED,
    );
    says(
        &taken,
        &[
            "proc 'echo' already exists",
            "pick another name",
            "hostmux stop",
        ],
    );
    let missing = error_line(&run(&socket, &["spawn", "m", "--", "/no/such"]), REFUSED);
    says(&missing, &["'/no/such'", "check the program path"]);
    assert_eq!(missing.matches("proc 'm'").count(), 1, "{missing}");
    let relative = error_line(&run(&socket, &["spawn", "r", "--", "./no/such"]), USAGE);
    says(
        &relative,
        &["program \"./no/such\" not found", "absolute path"],
    );
    let slow = error_line(
        &run(
            &socket,
            &[
                "spawn",
                "slow",
                "--ready-timeout",
                "300ms",
                "--",
                "sleep",
                "100",
            ],
        ),
        REFUSED,
    );
    says(&slow, &["not ready within", "killed", "--ready-timeout"]);
    let env = error_line(
        &run(
            &socket,
            &["spawn", "x", "--env", "NOEQUALS", "--", "/bin/true"],
        ),
        USAGE,
    );
    says(
        &env,
        &["--env \"NOEQUALS\" is not KEY=VALUE", "--env RUST_LOG=info"],
    );
}

#[test]
fn stop_and_kill_say_whether_the_proc_is_unknown_or_already_ended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _served = host(dir.path());
    let socket = dir.path().join("control.sock");
    let unknown = error_line(&run(&socket, &["stop", "nope"]), REFUSED);
    says(
        &unknown,
        &["no proc named 'nope'", "`hostmux ps` lists the procs"],
    );
    stdout(&run(
        &socket,
        &["spawn", "echo", "--", exe(), "__proc", "echo"],
    ));
    assert_eq!(
        stdout(&run(&socket, &["stop", "echo"])).trim(),
        "echo: exited(0)"
    );
    for verb in ["stop", "kill"] {
        let service = error_line(&run(&socket, &[verb, "service"]), REFUSED);
        says(
            &service,
            &[
                "'service' is the host's service proc",
                "stop `hostmux serve` instead",
            ],
        );
        let ended = error_line(&run(&socket, &[verb, "echo"]), REFUSED);
        says(
            &ended,
            &[
                "proc 'echo' already ended (exited with code 0)",
                "nothing to stop",
                "`hostmux ps` shows how it ended",
            ],
        );
    }
}

#[test]
fn a_request_the_host_drops_unanswered_exits_3_saying_so_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut served = host(dir.path());
    let socket = dir.path().join("control.sock");
    // A spawn that waits without limit for a proc that never reports ready.
    let spawning = hostmux()
        .args([
            "spawn",
            "waits",
            "--ready-timeout",
            "0",
            "--",
            "sleep",
            "1000",
        ])
        .env("HOSTMUX_CONTROL_SOCKET", &socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the spawn");
    let deadline = Instant::now() + DEADLINE;
    while !stdout(&run(&socket, &["ps"])).contains("starting") {
        assert!(
            Instant::now() < deadline,
            "the spawn never reached the host"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    served.child.kill().expect("SIGKILL the host");
    served.child.wait().expect("reap the host");
    let output = spawning.wait_with_output().expect("the spawn ends");
    let line = error_line(&output, UNREACHABLE);
    says(
        &line,
        &[
            "spawning proc \"waits\"",
            "closed the connection before answering",
            "`hostmux ps` shows whether the request took effect",
        ],
    );
    assert_eq!(line.matches("closed the connection").count(), 1, "{line}");
}

#[test]
fn control_socket_paths_without_a_host_exit_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let absent = error_line(&run(&dir.path().join("none.sock"), &["ps"]), UNREACHABLE);
    says(
        &absent,
        &[
            "no control socket at",
            "none.sock",
            "hostmux serve",
            "--control-socket",
        ],
    );
    // A socket file nobody listens on (a host that stopped left it).
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let refused = error_line(&run(&stale, &["ps"]), UNREACHABLE);
    says(
        &refused,
        &["nothing listens on the control socket", "stale.sock"],
    );
}

#[test]
fn control_over_tcp_names_its_own_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = host(dir.path());
    let socket = dir.path().join("control.sock");
    let token = dir.path().join("token");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "guess").unwrap();
    let tcp = |addr: &str, token: &Path| {
        run(
            &socket,
            &[
                "ps",
                "--control-tcp",
                addr,
                "--control-token-file",
                token.to_str().unwrap(),
            ],
        )
    };
    let unreachable = error_line(&tcp("tcp:127.0.0.1:1", &token), UNREACHABLE);
    says(&unreachable, &["tcp:127.0.0.1:1", "--control-tcp"]);
    assert!(!unreachable.contains("--control-socket"), "{unreachable}");
    let refused = error_line(&tcp(&served.frontend, &wrong), REFUSED);
    says(
        &refused,
        &[
            "refused: the host at",
            "did not accept the token in",
            "serve --token-file",
        ],
    );
    let not_tcp = error_line(&tcp("unix:/run/x.sock", &token), USAGE);
    says(
        &not_tcp,
        &["is not a TCP address", "tcp:HOST:PORT", "--control-socket"],
    );
    let unreadable = error_line(&tcp(&served.frontend, &dir.path().join("absent")), USAGE);
    says(&unreadable, &["cannot read the token file", "absent"]);
}

#[test]
fn send_says_why_a_frame_got_no_reply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = host(dir.path());
    let socket = dir.path().join("control.sock");
    let token = dir.path().join("token");
    let token = token.to_str().unwrap();
    let frontend = served.frontend.clone();
    let send = |extra: &[&str]| {
        let mut args = vec!["send", "--frontend", &frontend, "--token-file", token];
        args.extend_from_slice(extra);
        run(&socket, &args)
    };
    let missing = error_line(&send(&["nope", "x"]), REFUSED);
    says(
        &missing,
        &[
            "not delivered to proc \"nope\" (no such proc)",
            "`hostmux ps` lists the procs",
        ],
    );
    assert!(!missing.contains("NoSuchProc"), "debug output: {missing}");
    // A proc that never answers: no reply within --timeout, exit 1.
    stdout(&run(
        &socket,
        &["spawn", "sink", "--", exe(), "__proc", "sink"],
    ));
    let silent = error_line(&send(&["sink", "x", "--timeout", "300ms"]), FAILURE);
    says(
        &silent,
        &["no reply from proc \"sink\" within 300ms", "--timeout 0"],
    );
    // Without the token the hello is refused.
    let tokenless = error_line(
        &run(&socket, &["send", "sink", "x", "--frontend", &frontend]),
        REFUSED,
    );
    says(&tokenless, &["refused:", "--token-file", "--client-name"]);
    let nowhere = error_line(
        &run(
            &socket,
            &["send", "sink", "x", "--frontend", "tcp:127.0.0.1:1"],
        ),
        UNREACHABLE,
    );
    says(
        &nowhere,
        &["tcp:127.0.0.1:1", "hostmux serve", "--frontend"],
    );
    let bad = error_line(
        &run(&socket, &["send", "sink", "x", "--frontend", "127.0.0.1:1"]),
        USAGE,
    );
    says(&bad, &["\"127.0.0.1:1\" is not valid", "tcp:HOST:PORT"]);
}

#[test]
fn bad_values_are_usage_errors_that_show_the_right_form() {
    for (args, says_what) in [
        (&["stop", "x", "--timeout", "5h"][..], "use ms, s or m"),
        (
            &["stop", "x", "--timeout", "soon"][..],
            "write e.g. 500ms, 5s or 2m",
        ),
        (
            &["serve", "--conn-memory", "lots"][..],
            "write e.g. 268435456, 256M or 1G",
        ),
        (
            &["serve", "--inbound-ring-bytes", "1000"][..],
            "must be a power of two from 64K to 256M",
        ),
        (&["ps", "--no-such-flag"][..], "unexpected argument"),
    ] {
        let output = hostmux()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run hostmux");
        assert_eq!(output.status.code(), Some(USAGE), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        says(&stderr, &[says_what]);
    }
}

/// Every exit code `--help` promises is described in docs/operations.md's
/// table, and the other way round.
#[test]
fn help_and_the_operations_guide_document_the_same_exit_codes() {
    let help = Command::new(exe()).arg("--help").output().expect("help");
    let help = String::from_utf8(help.stdout).expect("utf-8");
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .expect("docs/operations.md");
    for (code, help_says, guide_says) in [
        (0, "success", "success"),
        (1, "runtime failure", "runtime failure"),
        (2, "usage error", "usage error"),
        (3, "host unreachable", "host unreachable"),
        (4, "refused by the host", "refused by the host"),
    ] {
        says(&help, &[&format!("  {code}  {help_says}")]);
        says(&guide, &[&format!("| {code} | {guide_says}")]);
    }
}
