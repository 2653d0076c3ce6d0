//! The wire crate's error type.

/// Everything that can be wrong with bytes or names handed to the wire crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A proc name is empty, has a forbidden character, or starts with `.`.
    #[error("invalid proc name: {reason}")]
    InvalidName {
        /// What is wrong with the name.
        reason: &'static str,
    },
    /// A proc name is longer than the configured maximum.
    #[error("proc name is {len} bytes, over the limit of {max}")]
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
        /// The configured limit.
        max: usize,
    },
}
