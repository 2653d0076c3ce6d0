//! Configurable size limits, checked before anything is buffered or allocated.

use crate::name::DEFAULT_MAX_NAME_LEN;

/// Size limits a decoder or encoder enforces.
///
/// Every limit is checked against the lengths announced in a frame's 16-byte
/// prefix before the decoder buffers the rest of the frame, so a hostile peer
/// cannot make it allocate more than `max_frame_len` (plus one read chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest total frame length in bytes (prefix, header, payload and
    /// padding). Values above `u32::MAX` act as `u32::MAX`.
    pub max_frame_len: usize,
    /// Largest archived routing header in bytes.
    pub max_header_len: usize,
    /// Longest proc or client name in bytes.
    pub max_name_len: usize,
}

impl Limits {
    /// The defaults: 16 MiB frames, 512-byte headers, 64-byte names.
    pub const DEFAULT: Limits = Limits {
        max_frame_len: 16 << 20,
        max_header_len: 512,
        max_name_len: DEFAULT_MAX_NAME_LEN,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
