//! The crate's one error type.

/// Everything that can go wrong with a ring.
///
/// `Full` and `TooLarge` are the two ways a reservation is refused: `Full` is
/// transient (wait for the consumer), `TooLarge` never succeeds on this ring.
/// `Corrupted` means the shared memory broke the protocol; the end that saw it
/// stays poisoned and keeps returning the same error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// No room for the record until the consumer releases space.
    #[error("ring is full: no room for the record until the consumer releases space")]
    Full,
    /// The record can never fit in this ring.
    #[error("record of {len} bytes exceeds the ring's largest record payload of {max} bytes (capacity {capacity} bytes)")]
    TooLarge {
        /// Requested payload length in bytes.
        len: usize,
        /// Largest payload this ring accepts (capacity minus the 16-byte record header).
        max: usize,
        /// The ring's data capacity in bytes.
        capacity: usize,
    },
    /// The shared memory violates the ring protocol (a hostile or buggy peer).
    #[error("ring memory corrupted: {what}")]
    Corrupted {
        /// Which value was out of range, e.g. "producer index behind the last one seen".
        what: &'static str,
    },
    /// The requested capacity is not a power of two inside the supported range.
    #[error("ring capacity {capacity} bytes is not a power of two between {min} and {max} bytes")]
    InvalidCapacity {
        /// The requested capacity.
        capacity: usize,
        /// Smallest supported capacity.
        min: usize,
        /// Largest supported capacity.
        max: usize,
    },
    /// Too many descriptors for one `send_fds` call.
    #[error("cannot pass {count} file descriptors in one message (limit {max})")]
    TooManyFds {
        /// Descriptors requested.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A ring memory policy name that is neither `populated` nor `on-demand`.
    #[error("unknown ring memory policy {name:?}: expected \"populated\" or \"on-demand\"")]
    UnknownRingMemory {
        /// The name given.
        name: String,
    },
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The operation, e.g. "memfd_create".
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl RingError {
    pub(crate) fn os(op: &'static str, errno: rustix::io::Errno) -> Self {
        RingError::Os {
            op,
            source: errno.into(),
        }
    }

    pub(crate) fn corrupted(what: &'static str) -> Self {
        RingError::Corrupted { what }
    }
}
