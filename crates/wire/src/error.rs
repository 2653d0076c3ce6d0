//! The wire crate's error type.

/// Everything that can be wrong with bytes, names or addresses handed to the
/// wire crate.
///
/// Decoding errors are final for a byte stream: once a [`FrameDecoder`]
/// returns one it is poisoned and returns the same error from then on, because
/// after a bad frame the position of the next frame boundary is unknown.
///
/// [`FrameDecoder`]: crate::FrameDecoder
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
    /// An address's text is not `tcp:HOST:PORT`, `unix:/path` or `unix:@name`.
    #[error("invalid address: {reason}")]
    InvalidAddr {
        /// What is wrong with the address.
        reason: &'static str,
    },
    /// A proc id's text is not `ADDR/NAME`.
    #[error("invalid proc id: {reason}")]
    InvalidProcId {
        /// What is wrong with the proc id.
        reason: &'static str,
    },
    /// The stream ended, or the slice ends, in the middle of a frame.
    #[error("frame truncated: {available} bytes available, {needed} needed")]
    Truncated {
        /// Bytes the frame (or its prefix) needs.
        needed: usize,
        /// Bytes that were available.
        available: usize,
    },
    /// A frame's total length is over the configured maximum.
    #[error("frame is {len} bytes, over the limit of {max}")]
    FrameTooLong {
        /// The frame's total length in bytes, prefix and padding included.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A frame's routing header is longer than the configured maximum.
    #[error("frame header is {len} bytes, over the limit of {max}")]
    HeaderTooLong {
        /// The header's length in bytes.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The 16-byte frame prefix is malformed: wrong magic or version, reserved
    /// bits set, or lengths that disagree with each other.
    #[error("malformed frame prefix: {reason}")]
    MalformedPrefix {
        /// What is wrong with the prefix.
        reason: &'static str,
    },
    /// A length or a buffer address breaks the 16-byte framing alignment.
    #[error("misaligned {what}: {value} is not a multiple of {align}")]
    Misaligned {
        /// What is misaligned (a length, an offset or a buffer address).
        what: &'static str,
        /// The offending value.
        value: usize,
        /// The required alignment.
        align: usize,
    },
    /// The archived routing header failed bytecheck validation or a semantic
    /// check (unknown flag bits, invalid names or addresses, non-zero padding).
    #[error("frame header failed validation: {reason}")]
    InvalidHeader {
        /// What failed.
        reason: String,
    },
    /// The header region holds bytes that the archived header does not use.
    #[error("frame header is {len} bytes but its contents need {expected}")]
    HeaderTrailingBytes {
        /// The header length announced in the prefix.
        len: usize,
        /// The length its contents need in canonical layout.
        expected: usize,
    },
    /// A slice passed to [`decode_frame`](crate::decode_frame) holds bytes
    /// after the frame.
    #[error("{len} bytes given but the frame is {frame_len} bytes")]
    TrailingBytes {
        /// Length of the slice.
        len: usize,
        /// The frame's total length.
        frame_len: usize,
    },
    /// An output buffer is too small for the frame being encoded.
    #[error("output buffer holds {available} bytes, the frame needs {needed}")]
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// A frame payload (undeliverable notice or control message) failed
    /// validation.
    #[error("invalid {what} payload: {reason}")]
    InvalidPayload {
        /// Which payload type.
        what: &'static str,
        /// What failed.
        reason: String,
    },
    /// A spawn's ready mode is not one of the modes
    /// ([`ReadyMode`](crate::ReadyMode)).
    #[error("invalid ready mode {text:?}: {reason}")]
    InvalidReadyMode {
        /// The mode as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}
