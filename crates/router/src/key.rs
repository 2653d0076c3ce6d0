//! How a proc name is stored as a key in a snapshot's hash map.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hostmux_wire::ProcName;

/// Names up to this many bytes are stored inside the map's bucket.
pub(crate) const INLINE_CAPACITY: usize = 30;

/// A validated proc name as a hash-map key. It hashes and compares as its
/// bytes, so a lookup can borrow `&[u8]` straight from a frame header (`str`
/// and `[u8]` hash differently, and `Borrow<[u8]>` requires the key to hash
/// like its borrowed form).
///
/// Short names (nearly all of them) live inline in the bucket: a lookup
/// compares them without another pointer hop, which is one cache miss fewer
/// on a large table, and copying the map on an update copies them without
/// allocating and without writing to memory that readers are reading. Longer
/// names are shared through an `Arc`, so an update bumps a counter instead of
/// copying the string.
#[derive(Clone)]
pub(crate) enum NameKey {
    Inline {
        len: u8,
        bytes: [u8; INLINE_CAPACITY],
    },
    Shared(Arc<str>),
}

impl NameKey {
    pub(crate) fn new(name: &ProcName) -> Self {
        let text = name.as_bytes();
        if text.len() <= INLINE_CAPACITY {
            let mut bytes = [0; INLINE_CAPACITY];
            bytes[..text.len()].copy_from_slice(text);
            Self::Inline {
                len: text.len() as u8,
                bytes,
            }
        } else {
            Self::Shared(Arc::from(name.as_str()))
        }
    }

    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Shared(text) => text.as_bytes(),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Inline { .. } => {
                std::str::from_utf8(self.as_bytes()).expect("a key holds a valid, ASCII proc name")
            }
            Self::Shared(text) => text,
        }
    }
}

impl Hash for NameKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for NameKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for NameKey {}

impl Borrow<[u8]> for NameKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_inline_and_long_names_shared_and_both_round_trip() {
        let short = ProcName::new(&"s".repeat(INLINE_CAPACITY)).unwrap();
        let long = ProcName::new(&"l".repeat(INLINE_CAPACITY + 1)).unwrap();
        let short_key = NameKey::new(&short);
        let long_key = NameKey::new(&long);
        assert!(matches!(short_key, NameKey::Inline { .. }));
        assert!(matches!(long_key, NameKey::Shared(_)));
        assert_eq!(short_key.as_str(), short.as_str());
        assert_eq!(long_key.as_str(), long.as_str());
        assert_eq!(
            <NameKey as Borrow<[u8]>>::borrow(&long_key),
            long.as_bytes()
        );
    }
}
