//! The `hostmux` binary answers `--help` and `--version`.

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
fn help_flag_explains_what_hostmux_is() {
    let output = hostmux().arg("--help").output().expect("run hostmux");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert!(stdout.contains("frontend address"), "help text: {stdout}");
}

#[test]
fn unknown_flag_is_an_error_with_usage() {
    let output = hostmux()
        .arg("--no-such-flag")
        .output()
        .expect("run hostmux");
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(stderr.contains("Usage"), "stderr: {stderr}");
}
