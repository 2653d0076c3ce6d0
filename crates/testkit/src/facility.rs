//! No silent skips: what a test does when the machine lacks a facility it
//! needs (io_uring, a delegated cgroup v2 subtree, root, `systemd-analyze`,
//! network namespaces).
//!
//! A suite that passes by skipping tests nothing. So a test that finds its
//! facility missing **fails**, naming the facility, unless the environment
//! variable [`SKIP_ENV`] (comma-separated, e.g.
//! `HOSTMUX_TEST_SKIP=io_uring,cgroup`) names it; then the test returns
//! early and writes a `SKIPPED` line straight to the process's stderr (past
//! libtest's output capture, so it shows in a normal `cargo test` run).
//!
//! ```
//! use hostmux_testkit::facility::{skip_allowed, Facility};
//!
//! assert!(skip_allowed(Facility::Cgroup, "io_uring, cgroup"));
//! assert!(!skip_allowed(Facility::IoUring, "cgroup"));
//! ```

use std::io::Write as _;

/// The environment variable that lets tests skip for missing facilities.
pub const SKIP_ENV: &str = "HOSTMUX_TEST_SKIP";

/// A facility some test suites need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Facility {
    /// io_uring (`io_uring_setup` permitted by the kernel and seccomp).
    IoUring,
    /// A writable cgroup v2 subtree with `cgroup.kill` (and `/bin/sh` for
    /// the lifecycle guardian).
    Cgroup,
    /// Running as root (or with the capabilities a test needs).
    Root,
    /// `systemd-analyze` on `PATH`.
    Systemd,
    /// Network namespaces made with `ip netns` (iproute2 on `PATH`, a
    /// kernel with network namespaces, veth and bridge devices; root).
    Netns,
}

impl Facility {
    /// The facility's name in [`SKIP_ENV`].
    pub fn name(self) -> &'static str {
        match self {
            Facility::IoUring => "io_uring",
            Facility::Cgroup => "cgroup",
            Facility::Root => "root",
            Facility::Systemd => "systemd",
            Facility::Netns => "netns",
        }
    }
}

/// Whether `list` (the value of [`SKIP_ENV`]: names separated by commas,
/// spaces around them ignored) names `facility`.
pub fn skip_allowed(facility: Facility, list: &str) -> bool {
    list.split(',').any(|name| name.trim() == facility.name())
}

/// Call when `facility` is missing (`why` says how it was found missing):
/// returns (the caller then returns early) if [`SKIP_ENV`] names it, with a
/// `SKIPPED` line on stderr naming the test; otherwise panics with a
/// message that names the facility and how to skip it deliberately.
#[track_caller]
pub fn missing(facility: Facility, why: &str) {
    let list = std::env::var(SKIP_ENV).unwrap_or_default();
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    let name = facility.name();
    if skip_allowed(facility, &list) {
        // Straight to fd 2: libtest captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: no {name} here ({why}); {SKIP_ENV}={list} allows it"
        );
        return;
    }
    panic!(
        "{test} needs {name}, which this machine lacks ({why}); \
         set {SKIP_ENV}={name} to skip such tests deliberately"
    );
}

/// Whether this process runs as root (real, effective, saved and
/// filesystem uid 0, from `/proc/self/status`). If not, calls [`missing`]
/// for [`Facility::Root`]: panics unless [`SKIP_ENV`] names `root`, and
/// returns `false` (the caller returns early) if it does.
#[track_caller]
pub fn require_root() -> bool {
    if proc_status_field("self", "Uid") == "0 0 0 0" {
        return true;
    }
    missing(Facility::Root, "not running as root");
    false
}

/// Whether this process may build network namespaces: root (see
/// [`require_root`]) and `ip netns list` runs (iproute2 on `PATH`, a kernel
/// with network namespaces). If not, calls [`missing`]: panics unless
/// [`SKIP_ENV`] names the missing facility (`root` or `netns`), and returns
/// `false` (the caller returns early) if it does.
#[track_caller]
pub fn require_netns() -> bool {
    if !require_root() {
        return false;
    }
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match listed {
        Ok(status) if status.success() => true,
        Ok(status) => {
            missing(
                Facility::Netns,
                &format!("`ip netns list` failed: {status}"),
            );
            false
        }
        Err(e) => {
            missing(
                Facility::Netns,
                &format!("cannot run `ip` (iproute2) from PATH: {e}"),
            );
            false
        }
    }
}

/// The values of `key` in `/proc/<pid>/status` (`pid` may be `self`),
/// whitespace-normalised: `Uid` gives `"65534 65534 65534 65534"`.
/// Panics if the file or the key is missing.
pub fn proc_status_field(pid: impl std::fmt::Display, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_facilities_exactly() {
        for list in ["cgroup", "io_uring,cgroup", " root , cgroup ", "cgroup,"] {
            assert!(skip_allowed(Facility::Cgroup, list), "{list:?}");
        }
        for list in ["", "cgroups", "io_uring", "cgroupv2,root", "CGROUP"] {
            assert!(!skip_allowed(Facility::Cgroup, list), "{list:?}");
        }
        assert!(skip_allowed(Facility::IoUring, "io_uring"));
        assert!(skip_allowed(Facility::Root, "systemd,root"));
        assert!(skip_allowed(Facility::Systemd, "systemd"));
        assert!(skip_allowed(Facility::Netns, "root,netns"));
        assert!(!skip_allowed(Facility::Netns, "root"));
    }

    #[test]
    fn a_missing_facility_fails_unless_the_list_names_it() {
        // The process environment is shared by parallel tests, so this test
        // only reads it: it names no facility in this crate's test runs
        // unless someone set it, and then the check is the other way round.
        let list = std::env::var(SKIP_ENV).unwrap_or_default();
        let outcome = std::panic::catch_unwind(|| missing(Facility::Systemd, "test"));
        assert_eq!(outcome.is_ok(), skip_allowed(Facility::Systemd, &list));
        if let Err(panic) = outcome {
            let message = panic.downcast_ref::<String>().unwrap();
            assert!(message.contains("needs systemd"), "{message}");
            assert!(message.contains("HOSTMUX_TEST_SKIP=systemd"), "{message}");
        }
    }
}
