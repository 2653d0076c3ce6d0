//! The names of every boot variable, defined once for both sides, and the
//! child's one read of them.
//!
//! A manager sets them when it spawns a proc; the child reads them once at
//! start-up through [`received`]. That first read takes every variable in
//! [`ALL`] out of the process: it keeps their values for later lookups,
//! removes them from the environment (so the proc's own children never see
//! a ready fd or a ring fd number that is not theirs and may since have been
//! reused) and overwrites their bytes in the environment block the kernel
//! shows as `/proc/<pid>/environ`.
//!
//! The manager side never calls [`received`]: it only uses the names.

use std::ffi::OsString;
use std::sync::OnceLock;

/// The decimal fd number of the inherited ready-pipe write end
/// (readiness protocol, set by `hostmux-lifecycle`).
pub const READY_FD_ENV: &str = "HOSTMUX_READY_FD";
/// The per-spawn nonce the ready record must echo: 32 lowercase hex digits.
pub const READY_NONCE_ENV: &str = "HOSTMUX_READY_NONCE";
/// The proc's name on its host (set for every proc a manager spawns).
pub const PROC_NAME_ENV: &str = "HOSTMUX_PROC_NAME";
/// The proc id, `ADDR/NAME` (ring protocol, set by the host).
pub const PROC_ID_ENV: &str = "HOSTMUX_PROC_ID";
/// The host's service proc name (agent requests are honoured only from it).
pub const SERVICE_NAME_ENV: &str = "HOSTMUX_SERVICE_NAME";
/// The inbound rings' memfd numbers, one per lane, comma-separated.
pub const INBOUND_FD_ENV: &str = "HOSTMUX_INBOUND_FD";
/// The outbound rings' memfd numbers, one per lane, comma-separated.
pub const OUTBOUND_FD_ENV: &str = "HOSTMUX_OUTBOUND_FD";
/// The host doorbells' eventfd numbers, one per lane, comma-separated.
pub const HOST_DOORBELL_FD_ENV: &str = "HOSTMUX_HOST_DOORBELL_FD";
/// The number of lanes (optional, default 1; set by the host when it is
/// more than one).
pub const LANES_ENV: &str = "HOSTMUX_LANES";
/// The proc doorbell's eventfd number (optional).
pub const PROC_DOORBELL_FD_ENV: &str = "HOSTMUX_PROC_DOORBELL_FD";
/// The frame limits, `max_frame_len,max_header_len,max_name_len` (optional).
pub const LIMITS_ENV: &str = "HOSTMUX_LIMITS";

/// Every boot variable, readiness and ring protocol alike.
pub const ALL: [&str; 11] = [
    READY_FD_ENV,
    READY_NONCE_ENV,
    PROC_NAME_ENV,
    PROC_ID_ENV,
    SERVICE_NAME_ENV,
    INBOUND_FD_ENV,
    OUTBOUND_FD_ENV,
    HOST_DOORBELL_FD_ENV,
    LANES_ENV,
    PROC_DOORBELL_FD_ENV,
    LIMITS_ENV,
];

/// The boot variables this process was started with, read once.
static RECEIVED: OnceLock<[Option<OsString>; ALL.len()]> = OnceLock::new();

/// The value boot variable `var` (one of [`ALL`]) had when this process
/// started; `None` if it was not set, or if `var` is not a boot variable.
///
/// The first call in a process reads every variable in [`ALL`], then
/// removes them all from the environment and wipes their bytes from the
/// initial environment block (see the module docs); later calls, from any
/// thread, answer from that one read. After it, `std::env::var` no longer
/// sees them, and neither does anything this process spawns.
///
/// Changing the environment is not safe while another thread reads it
/// through C's `getenv`: make the first call (`hostmux_proc::boot` does)
/// before starting threads that do.
pub fn received(var: &str) -> Option<OsString> {
    let index = ALL.iter().position(|name| *name == var)?;
    RECEIVED.get_or_init(take_all)[index].clone()
}

/// Reads every boot variable, then takes them out of the process.
fn take_all() -> [Option<OsString>; ALL.len()] {
    let values = ALL.map(std::env::var_os);
    for var in ALL {
        std::env::remove_var(var);
    }
    crate::sys::wipe_initial_environment(&ALL);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the copy of the test binary a test re-runs itself in.
    const ISOLATED: &str = "HOSTMUX_BOOT_TEST_ISOLATED";

    /// Whether an entry `NAME=...` for `name` is in this process's
    /// `/proc/self/environ`.
    fn in_proc_environ(name: &str) -> bool {
        let block = std::fs::read("/proc/self/environ").expect("read /proc/self/environ");
        let prefix = format!("{name}=");
        block
            .split(|&b| b == 0)
            .any(|entry| entry.starts_with(prefix.as_bytes()))
    }

    #[test]
    fn the_first_read_takes_every_boot_variable_out_of_the_process() {
        if std::env::var_os(ISOLATED).is_none() {
            // Changing the environment is process-wide: run the body alone
            // in a fresh copy of this test binary, started with boot
            // variables set.
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "env::tests::the_first_read_takes_every_boot_variable_out_of_the_process",
                    "--nocapture",
                ])
                .env(ISOLATED, "1")
                .env(PROC_ID_ENV, "tcp:127.0.0.1:7000/echo")
                .env(INBOUND_FD_ENV, "10")
                .env(READY_NONCE_ENV, "00112233445566778899aabbccddeeff")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.contains("1 passed"),
                "{}\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        assert!(in_proc_environ(PROC_ID_ENV), "the test set it");
        assert_eq!(
            received(PROC_ID_ENV),
            Some("tcp:127.0.0.1:7000/echo".into())
        );
        for var in ALL {
            assert_eq!(
                std::env::var_os(var),
                None,
                "{var} still in the environment"
            );
            assert!(!in_proc_environ(var), "{var} still in /proc/self/environ");
        }
        // Later reads answer from the first one.
        assert_eq!(received(INBOUND_FD_ENV), Some("10".into()));
        assert_eq!(received(PROC_DOORBELL_FD_ENV), None);
        // Not a boot variable: never read, never removed.
        assert_eq!(received(ISOLATED), None);
        assert!(std::env::var_os(ISOLATED).is_some());
        assert!(in_proc_environ(ISOLATED));
    }

    #[test]
    fn every_variable_is_listed_once_and_namespaced() {
        for (i, name) in ALL.iter().enumerate() {
            assert!(name.starts_with("HOSTMUX_"), "{name}");
            assert!(!ALL[..i].contains(name), "{name} listed twice");
        }
    }
}
