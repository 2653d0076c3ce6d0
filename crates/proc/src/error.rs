//! The crate's one error type.

use std::time::Duration;

use hostmux_boot::BootError;
use hostmux_ring::RingError;
use hostmux_wire::{FrameKind, WireError};

/// Everything that can go wrong in a proc's boot, receive or send path.
///
/// Boot errors name the environment variable (the boot parameter) at fault,
/// so a misconfigured spawn says exactly what the host got wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcError {
    /// A required boot parameter is not set.
    #[error("boot parameter {name} is not set")]
    MissingParameter {
        /// The environment variable.
        name: &'static str,
    },
    /// A boot parameter is set but unusable.
    #[error("boot parameter {name} is invalid: {reason}")]
    InvalidParameter {
        /// The environment variable.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A proc has no lanes or more than it accepts.
    #[error("{name}: {count} lanes, a proc takes 1 to {max}")]
    LaneCount {
        /// Where the count came from: the environment variable
        /// (`HOSTMUX_LANES`) or `"lanes"` for boot parameters given directly.
        name: &'static str,
        /// The lane count given.
        count: usize,
        /// The most lanes a proc accepts (`protocol::MAX_LANES`).
        max: usize,
    },
    /// `boot` was called twice in one process (the inherited fds can be
    /// adopted only once).
    #[error("this process already booted its proc (the inherited fds are adopted once)")]
    AlreadyBooted,
    /// A ring operation failed (for the host's side of a ring, `Corrupted`
    /// means the peer broke the protocol).
    #[error("{ring} ring: {source}")]
    Ring {
        /// Which ring or doorbell: "inbound", "outbound", "proc doorbell", ...
        ring: &'static str,
        /// The ring error.
        #[source]
        source: RingError,
    },
    /// A frame could not be encoded, or the host wrote one that does not decode.
    #[error("frame: {0}")]
    Wire(#[from] WireError),
    /// Reporting readiness to the manager failed.
    #[error("reporting ready: {0}")]
    Ready(#[source] BootError),
    /// The outbound ring stayed full for the whole send timeout; the frame
    /// was not sent (nothing is dropped silently: the caller decides).
    #[error(
        "outbound ring had no room for a {len}-byte frame within the send timeout of {timeout:?}"
    )]
    Backpressure {
        /// The encoded frame length.
        len: usize,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The host closed the outbound ring: nothing sent now would be read.
    #[error("the host closed the outbound ring")]
    HostClosed,
    /// The message's sender is anonymous, so there is no one to reply to.
    #[error("cannot reply to message {message_id}: its sender is anonymous")]
    NoReplyAddress {
        /// The message id of the message replied to.
        message_id: u64,
    },
    /// Only a data message can be answered. A notice (`Undeliverable`) or a
    /// control response is never answered, so no two parties can bounce
    /// frames at each other forever.
    #[error("cannot reply to message {message_id}: its kind is {kind:?}, and only Data frames are answered")]
    NotAnswerable {
        /// The kind of the message replied to.
        kind: FrameKind,
        /// The message id of the message replied to.
        message_id: u64,
    },
    /// An async wait needs the proc doorbell, which the host did not pass.
    #[error("async waits need the proc doorbell (boot parameter HOSTMUX_PROC_DOORBELL_FD), which was not given")]
    NoProcDoorbell,
    /// A system call the library makes itself failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ProcError {
    pub(crate) fn ring(ring: &'static str) -> impl FnOnce(RingError) -> ProcError {
        move |source| ProcError::Ring { ring, source }
    }

    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> ProcError {
        ProcError::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }
}
