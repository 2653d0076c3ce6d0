//! The shipped systemd unit (`deploy/hostmux.service`): systemd accepts it
//! without a warning, it keeps what the host needs, and
//! `systemd-analyze security --offline=true` rates its exposure 5.0 or
//! lower. Needs `systemd-analyze`; without it these tests fail unless
//! `HOSTMUX_TEST_SKIP` names `systemd`.

use std::path::{Path, PathBuf};
use std::process::Command;

use hostmux_testkit::facility::{missing, Facility};

/// The highest exposure `systemd-analyze security` may report (issue 12).
const MAX_EXPOSURE: f64 = 5.0;

/// The unit's `ExecStart` binary, replaced by this build's for the checks.
const INSTALLED_BINARY: &str = "ExecStart=/usr/local/bin/hostmux ";

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/hostmux.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `systemd-analyze` on `PATH`, or `None` after [`missing`] allowed it.
fn systemd_analyze() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("systemd-analyze"))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        missing(Facility::Systemd, "no systemd-analyze on PATH");
    }
    found
}

/// A copy of the unit in `dir` whose `ExecStart` runs this build's binary
/// (`verify` checks that the binary exists and is executable).
fn adjusted_copy(dir: &Path) -> PathBuf {
    let text = unit_text();
    assert_eq!(
        text.matches(INSTALLED_BINARY).count(),
        1,
        "the unit starts {INSTALLED_BINARY:?} exactly once"
    );
    let binary = env!("CARGO_BIN_EXE_hostmux");
    let adjusted = text.replace(INSTALLED_BINARY, &format!("ExecStart={binary} "));
    let path = dir.join("hostmux.service");
    std::fs::write(&path, adjusted).unwrap();
    path
}

fn run(analyze: &Path, args: &[&str], unit: &Path) -> (String, String) {
    let output = Command::new(analyze)
        .args(args)
        .arg(unit)
        .output()
        .expect("run systemd-analyze");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "systemd-analyze {args:?}: {}\n{stdout}\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

#[test]
fn systemd_unit_verifies_without_warnings() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = adjusted_copy(dir.path());
    // Unknown keys and bad values are warnings with exit status 0: every
    // line about the unit file counts.
    let (_, stderr) = run(&analyze, &["verify"], &unit);
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("hostmux.service"))
        .collect();
    assert!(about_unit.is_empty(), "{stderr}");
}

#[test]
fn systemd_unit_exposure_is_at_most_five() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = adjusted_copy(dir.path());
    let (stdout, _) = run(&analyze, &["security", "--offline=true"], &unit);
    let exposure: f64 = stdout
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for hostmux.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{stdout}"));
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} > {MAX_EXPOSURE}:\n{stdout}"
    );
}

/// The settings without which the sandboxed host cannot do its job: a
/// sandboxing change that drops one fails here, not in production.
#[test]
fn systemd_unit_keeps_what_the_host_needs() {
    let text = unit_text();
    let settings: Vec<(&str, &str)> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .collect();
    let value = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect()
    };
    // Proc cgroups under the host's own subtree.
    assert_eq!(value("Delegate"), ["yes"]);
    // ... which a read-only /sys/fs/cgroup would forbid.
    assert!(value("ProtectControlGroups").iter().all(|v| *v == "no"));
    // Procs as other users, and signals to them.
    let bounding = value("CapabilityBoundingSet").join(" ");
    for capability in ["CAP_SETUID", "CAP_SETGID", "CAP_KILL"] {
        assert!(
            bounding.split_whitespace().any(|c| c == capability),
            "{bounding}"
        );
    }
    // The control socket's directory stays writable under ProtectSystem.
    assert_eq!(value("RuntimeDirectory"), ["hostmux"]);
    assert_eq!(value("ProtectSystem"), ["strict"]);
    // io_uring is allowed by the system-call filter.
    let filter = value("SystemCallFilter").join(" ");
    assert!(filter.contains("@system-service"), "{filter}");
    for call in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(filter.split_whitespace().any(|c| c == call), "{filter}");
    }
    assert_eq!(value("Type"), ["notify"]);
}
