//! The names of every boot variable, defined once for both sides.
//!
//! A manager sets them when it spawns a proc; the child reads them once at
//! start-up. [`ALL`] lists them, so a child that wants its boot variables out
//! of its environment after reading them (its own children must not see a
//! ready fd or a ring fd number that is not theirs) removes exactly these.

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
/// The inbound ring's memfd number.
pub const INBOUND_FD_ENV: &str = "HOSTMUX_INBOUND_FD";
/// The outbound ring's memfd number.
pub const OUTBOUND_FD_ENV: &str = "HOSTMUX_OUTBOUND_FD";
/// The host doorbell's eventfd number.
pub const HOST_DOORBELL_FD_ENV: &str = "HOSTMUX_HOST_DOORBELL_FD";
/// The proc doorbell's eventfd number (optional).
pub const PROC_DOORBELL_FD_ENV: &str = "HOSTMUX_PROC_DOORBELL_FD";
/// The frame limits, `max_frame_len,max_header_len,max_name_len` (optional).
pub const LIMITS_ENV: &str = "HOSTMUX_LIMITS";

/// Every boot variable, readiness and ring protocol alike.
pub const ALL: [&str; 10] = [
    READY_FD_ENV,
    READY_NONCE_ENV,
    PROC_NAME_ENV,
    PROC_ID_ENV,
    SERVICE_NAME_ENV,
    INBOUND_FD_ENV,
    OUTBOUND_FD_ENV,
    HOST_DOORBELL_FD_ENV,
    PROC_DOORBELL_FD_ENV,
    LIMITS_ENV,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_is_listed_once_and_namespaced() {
        for (i, name) in ALL.iter().enumerate() {
            assert!(name.starts_with("HOSTMUX_"), "{name}");
            assert!(!ALL[..i].contains(name), "{name} listed twice");
        }
    }
}
