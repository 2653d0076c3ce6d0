//! The ready record: its format, the per-spawn nonce, and the manager's
//! check of the bytes it reads. Pure functions, except that
//! [`new_nonce`] asks the kernel for randomness.
//!
//! At spawn the manager creates a pipe, places its write end in the child at
//! the fd number in [`READY_FD_ENV`](crate::env::READY_FD_ENV), and puts a
//! fresh nonce in [`READY_NONCE_ENV`](crate::env::READY_NONCE_ENV). When
//! ready, the child writes exactly one record and closes the fd:
//!
//! ```text
//! hostmux-ready <nonce>\n        (47 bytes, one write(2), < PIPE_BUF so atomic)
//! ```
//!
//! The manager reads the pipe: the exact record means ready; EOF before it
//! means the proc died (or gave up its pipe) before ready; anything else is a
//! protocol violation ([`check_record`] tells the three apart as bytes
//! arrive).

use std::fmt::Write as _;

/// The record prefix, before the nonce.
pub const READY_RECORD_PREFIX: &[u8] = b"hostmux-ready ";
/// Length of the hex nonce.
pub const NONCE_HEX_LEN: usize = 32;
/// Total length of a ready record.
pub const READY_RECORD_LEN: usize = READY_RECORD_PREFIX.len() + NONCE_HEX_LEN + 1;

/// A fresh per-spawn nonce: 128 bits from `getrandom(2)` as 32 lowercase
/// hex digits.
pub fn new_nonce() -> String {
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

/// Whether `text` has the nonce's shape: [`NONCE_HEX_LEN`] hex digits.
pub fn is_nonce(text: &str) -> bool {
    text.len() == NONCE_HEX_LEN && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The record a child with `nonce` writes.
pub fn ready_record(nonce: &str) -> Vec<u8> {
    let mut record = Vec::with_capacity(READY_RECORD_PREFIX.len() + nonce.len() + 1);
    record.extend_from_slice(READY_RECORD_PREFIX);
    record.extend_from_slice(nonce.as_bytes());
    record.push(b'\n');
    record
}

/// What the bytes received so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordCheck {
    /// A prefix of the expected record; keep reading.
    Partial,
    /// The whole record, matching.
    Complete,
    /// Bytes that can never become the expected record.
    Mismatch,
}

/// Checks `received` (everything read from the pipe so far) against the
/// record expected for `nonce`. Allocates nothing.
pub fn check_record(received: &[u8], nonce: &str) -> RecordCheck {
    let expected_len = READY_RECORD_PREFIX.len() + nonce.len() + 1;
    let expected = READY_RECORD_PREFIX
        .iter()
        .chain(nonce.as_bytes())
        .chain(std::iter::once(&b'\n'));
    if received.len() > expected_len || !received.iter().zip(expected).all(|(a, b)| a == b) {
        RecordCheck::Mismatch
    } else if received.len() == expected_len {
        RecordCheck::Complete
    } else {
        RecordCheck::Partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_lowercase_hex_and_differ() {
        let a = new_nonce();
        let b = new_nonce();
        assert!(is_nonce(&a), "{a}");
        assert!(a.bytes().all(|c| !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn nonce_shape_is_checked() {
        assert!(is_nonce("0123456789abcdef0123456789abcdef"));
        assert!(!is_nonce("0123456789abcdef0123456789abcde"));
        assert!(!is_nonce("0123456789abcdef0123456789abcdef0"));
        assert!(!is_nonce("0123456789abcdef0123456789abcdeg"));
        assert!(!is_nonce(""));
    }

    #[test]
    fn the_record_is_prefix_nonce_newline() {
        let nonce = "00112233445566778899aabbccddeeff";
        let record = ready_record(nonce);
        assert_eq!(record.len(), READY_RECORD_LEN);
        assert_eq!(READY_RECORD_LEN, 47);
        assert_eq!(record, b"hostmux-ready 00112233445566778899aabbccddeeff\n");
    }

    #[test]
    fn record_check_accepts_only_the_exact_record() {
        let nonce = new_nonce();
        let record = ready_record(&nonce);
        assert_eq!(check_record(&record, &nonce), RecordCheck::Complete);
        assert_eq!(check_record(b"", &nonce), RecordCheck::Partial);
        for cut in 1..record.len() {
            assert_eq!(check_record(&record[..cut], &nonce), RecordCheck::Partial);
        }
        let other = ready_record(&new_nonce());
        assert_eq!(check_record(&other, &nonce), RecordCheck::Mismatch);
        assert_eq!(
            check_record(b"hostmux-READY", &nonce),
            RecordCheck::Mismatch
        );
        let mut long = record.clone();
        long.push(b'x');
        assert_eq!(check_record(&long, &nonce), RecordCheck::Mismatch);
        let mut no_newline = record.clone();
        *no_newline.last_mut().unwrap() = b' ';
        assert_eq!(check_record(&no_newline, &nonce), RecordCheck::Mismatch);
    }
}
