//! Validated proc names.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use crate::WireError;

/// The longest proc name accepted by default, in bytes.
pub const DEFAULT_MAX_NAME_LEN: usize = 64;

/// The name of a proc on one host: the second half of a [`ProcId`](crate::ProcId).
///
/// A valid name is 1 to [`DEFAULT_MAX_NAME_LEN`] bytes (or a configured
/// maximum, see [`ProcName::with_max_len`]) of ASCII letters, digits and the
/// punctuation `-`, `_` and `.`; it does not start with `.`. The character set
/// keeps names safe to use as file, cgroup and socket path components and
/// unambiguous in the textual form of a [`ProcId`](crate::ProcId).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcName(Box<str>);

impl ProcName {
    /// Validates `name` against the default length limit.
    pub fn new(name: &str) -> Result<Self, WireError> {
        Self::with_max_len(name, DEFAULT_MAX_NAME_LEN)
    }

    /// Validates `name` against a configured length limit.
    pub fn with_max_len(name: &str, max_len: usize) -> Result<Self, WireError> {
        validate_name(name.as_bytes(), max_len)?;
        Ok(Self(name.into()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as bytes, as it appears in a frame header.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Which bytes may appear in a proc name: a table lookup per byte keeps
/// name validation cheap on the per-frame path.
const NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.';
        b += 1;
    }
    table
};

/// Checks that `bytes` form a valid proc name no longer than `max_len`,
/// without allocating. Used on names read straight from frame headers.
#[inline]
pub fn validate_name(bytes: &[u8], max_len: usize) -> Result<(), WireError> {
    if bytes.is_empty() {
        return Err(WireError::InvalidName {
            reason: "empty proc name",
        });
    }
    if bytes.len() > max_len {
        return Err(WireError::NameTooLong {
            len: bytes.len(),
            max: max_len,
        });
    }
    if bytes[0] == b'.' {
        return Err(WireError::InvalidName {
            reason: "proc name starts with '.'",
        });
    }
    if !bytes.iter().all(|&b| NAME_BYTES[usize::from(b)]) {
        return Err(WireError::InvalidName {
            reason: "proc name has a character outside [A-Za-z0-9._-]",
        });
    }
    Ok(())
}

impl fmt::Display for ProcName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProcName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl FromStr for ProcName {
    type Err = WireError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for ProcName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ProcName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_character_set() {
        for name in ["a", "echo-1", "sink_2", "svc.v2", "A9"] {
            assert_eq!(ProcName::new(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn rejects_empty_long_dotted_and_foreign_names() {
        assert!(matches!(
            ProcName::new(""),
            Err(WireError::InvalidName { .. })
        ));
        let long = "x".repeat(DEFAULT_MAX_NAME_LEN + 1);
        assert!(matches!(
            ProcName::new(&long),
            Err(WireError::NameTooLong { len, max }) if len == DEFAULT_MAX_NAME_LEN + 1 && max == DEFAULT_MAX_NAME_LEN
        ));
        assert!(ProcName::new(".hidden").is_err());
        for bad in ["a b", "a/b", "a:b", "é", "a\0"] {
            assert!(ProcName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn configured_limit_is_enforced() {
        assert!(ProcName::with_max_len("abcd", 4).is_ok());
        assert!(ProcName::with_max_len("abcde", 4).is_err());
    }
}
