//! The readiness protocol shared by the manager and the child.
//!
//! At spawn the manager creates a pipe, places its write end in the child at
//! the fd number in [`READY_FD_ENV`], and puts a fresh 128-bit nonce (32
//! lowercase hex digits) in [`READY_NONCE_ENV`] and the proc's name in
//! [`PROC_NAME_ENV`]. When ready, the child writes exactly one record:
//!
//! ```text
//! hostmux-ready <nonce>\n        (47 bytes, one write(2), < PIPE_BUF so atomic)
//! ```
//!
//! and closes the fd. The manager reads the pipe: the exact record → ready;
//! EOF before it → the proc died (or gave up its pipe) before ready, which
//! fails at once; anything else → protocol violation, the proc is killed.

use std::fmt::Write as _;

/// Env var: the decimal fd number of the inherited ready-pipe write end.
pub const READY_FD_ENV: &str = "HOSTMUX_READY_FD";
/// Env var: the per-spawn nonce the ready record must echo.
pub const READY_NONCE_ENV: &str = "HOSTMUX_READY_NONCE";
/// Env var: the proc's name on its host.
pub const PROC_NAME_ENV: &str = "HOSTMUX_PROC_NAME";
/// The record prefix, before the nonce.
pub const READY_RECORD_PREFIX: &[u8] = b"hostmux-ready ";
/// Length of the hex nonce.
pub const NONCE_HEX_LEN: usize = 32;
/// Total length of a ready record.
pub const READY_RECORD_LEN: usize = READY_RECORD_PREFIX.len() + NONCE_HEX_LEN + 1;

/// A fresh per-spawn nonce as 32 hex digits.
pub(crate) fn new_nonce() -> String {
    let mut bytes = [0u8; NONCE_HEX_LEN / 2];
    fill_random(&mut bytes);
    let mut hex = String::with_capacity(NONCE_HEX_LEN);
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => {
                // getrandom(2) cannot fail on Linux >= 3.17 after boot; if it
                // does, a time-derived nonce still tells spawns apart.
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = (t >> ((i % 16) * 8)) as u8;
                }
                return;
            }
        }
    }
}

/// The record a child with `nonce` writes.
pub(crate) fn ready_record(nonce: &str) -> Vec<u8> {
    let mut record = Vec::with_capacity(READY_RECORD_LEN);
    record.extend_from_slice(READY_RECORD_PREFIX);
    record.extend_from_slice(nonce.as_bytes());
    record.push(b'\n');
    record
}

/// What the bytes received so far say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecordCheck {
    /// A prefix of the expected record; keep reading.
    Partial,
    /// The whole record, matching.
    Complete,
    /// Bytes that can never become the expected record.
    Mismatch,
}

/// Checks `received` against the record expected for `nonce`.
pub(crate) fn check_record(received: &[u8], nonce: &str) -> RecordCheck {
    let expected = ready_record(nonce);
    if received.len() > expected.len() || !expected.starts_with(received) {
        RecordCheck::Mismatch
    } else if received.len() == expected.len() {
        RecordCheck::Complete
    } else {
        RecordCheck::Partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_hex_and_differ() {
        let a = new_nonce();
        let b = new_nonce();
        assert_eq!(a.len(), NONCE_HEX_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn record_check_accepts_only_the_exact_record() {
        let nonce = new_nonce();
        let record = ready_record(&nonce);
        assert_eq!(record.len(), READY_RECORD_LEN);
        assert_eq!(check_record(&record, &nonce), RecordCheck::Complete);
        assert_eq!(check_record(&record[..10], &nonce), RecordCheck::Partial);
        let other = ready_record(&new_nonce());
        assert_eq!(check_record(&other, &nonce), RecordCheck::Mismatch);
        let mut long = record.clone();
        long.push(b'x');
        assert_eq!(check_record(&long, &nonce), RecordCheck::Mismatch);
    }
}
