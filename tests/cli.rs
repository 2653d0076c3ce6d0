//! The `hostmux` binary: help, version, usage errors and exit codes.

use std::process::Command;

fn hostmux() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hostmux"))
}

#[test]
fn version_flag_prints_the_package_version() {
    let output = hostmux().arg("--version").output().expect("run hostmux");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(
        stdout.trim(),
        format!("hostmux {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_every_subcommand_and_the_exit_codes() {
    let output = hostmux().arg("--help").output().expect("run hostmux");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert!(stdout.contains("frontend address"), "help text: {stdout}");
    for command in [
        "serve", "spawn", "ps", "stop", "kill", "send", "stats", "demo",
    ] {
        assert!(
            stdout.contains(&format!("  {command} ")),
            "{command} missing from help: {stdout}"
        );
    }
    // The benchmark is its own binary: the help points there instead.
    assert!(!stdout.contains("  bench "), "help: {stdout}");
    assert!(stdout.contains("hostmux-bench"), "help: {stdout}");
    assert!(
        stdout.contains("3  host unreachable"),
        "exit codes: {stdout}"
    );
    assert!(!stdout.contains("__proc"), "hidden modes must stay hidden");
    assert!(!stdout.contains("__bench"), "{stdout}");
}

#[test]
fn unknown_flag_is_a_usage_error_with_exit_code_2() {
    let output = hostmux()
        .arg("--no-such-flag")
        .output()
        .expect("run hostmux");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(stderr.contains("Usage"), "stderr: {stderr}");
}

#[test]
fn ps_without_a_host_exits_3_and_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = hostmux()
        .arg("ps")
        .arg("--control-socket")
        .arg(dir.path().join("none.sock"))
        .output()
        .expect("run hostmux");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(stderr.contains("none.sock"), "stderr: {stderr}");
    assert!(stderr.contains("hostmux serve"), "stderr: {stderr}");
}

#[test]
fn send_without_a_frontend_exits_3() {
    // Port 1 on loopback: nothing listens there.
    let output = hostmux()
        .args(["send", "echo", "hi", "--frontend", "tcp:127.0.0.1:1"])
        .output()
        .expect("run hostmux");
    assert_eq!(output.status.code(), Some(3));
}

#[test]
fn serve_refuses_an_advertised_address_that_names_no_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in ["unix:/run/host.sock", "tcp:10.0.0.2:0"] {
        let output = hostmux()
            .args(["serve", "--advertise", bad, "--control-socket"])
            .arg(dir.path().join("c.sock"))
            .output()
            .expect("run hostmux");
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8(output.stderr).expect("utf-8");
        assert!(stderr.contains("--advertise"), "{bad}: {stderr}");
    }
    // An unspecified address is refused when the host starts (port 0 of
    // the frontend: the kernel picks one).
    let output = hostmux()
        .args(["serve", "--advertise", "tcp:0.0.0.0:7000", "--frontend"])
        .arg("tcp:127.0.0.1:0")
        .arg("--control-socket")
        .arg(dir.path().join("c.sock"))
        .output()
        .expect("run hostmux");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(
        stderr.contains("--advertise") && stderr.contains("unspecified"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_a_public_address_without_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = hostmux()
        .args(["serve", "--frontend", "tcp:0.0.0.0:0", "--control-socket"])
        .arg(dir.path().join("c.sock"))
        .output()
        .expect("run hostmux");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(stderr.contains("--token-file"), "stderr: {stderr}");
}
