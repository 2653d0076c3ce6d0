//! Link status: the frame two hosts exchange on a link besides forwarded
//! frames, for acknowledgements, flow control and liveness.
//!
//! A link is a connection one host dialled to another (its peer). Frames
//! flow from the dialler to the far host; on the same connection the far
//! host sends back **link status** frames, and the dialler sends them too
//! (as heartbeats). A link status frame is a `ControlResponse` (a kind only
//! hosts send, so no client or proc can forge one: hosts drop host-only
//! kinds from clients) on the reserved port [`LINK_PORT`], message id 0,
//! addressed to the receiving host's service proc, with a
//! [`LINK_STATUS_LEN`]-byte payload, an archived [`LinkStatus`]:
//!
//! * `handled`: how many frames the sender of the status has *received on
//!   this connection* and disposed of: written into a ring, queued for a
//!   client or another link, or answered with a notice. Sequence numbers
//!   are implicit: the n-th frame the dialler writes on a connection is
//!   frame n (TCP keeps the order), so a cumulative count acknowledges
//!   every frame up to it. A connection starts at 0 (a new connection
//!   starts a new sequence).
//! * `ping`: a nonce the receiver echoes in its next status's `pong`
//!   (round-trip measurement; 0 = none).
//! * `pong`: the last `ping` received (0 = none).
//!
//! ```
//! use hostmux_wire::rkyv::util::AlignedVec;
//! use hostmux_wire::{decode_frame, encode_link_status, link_status, LinkStatus, Limits};
//!
//! let limits = Limits::default();
//! let mut out = AlignedVec::<16>::new();
//! out.resize(256, 0);
//! let status = LinkStatus { handled: 7, ping: 3, pong: 0 };
//! let len = encode_link_status(&mut out, "service", &status, &limits)?;
//! let frame = decode_frame(&out[..len], &limits)?;
//! assert_eq!(link_status(&frame), Some(status));
//! # Ok::<(), hostmux_wire::WireError>(())
//! ```

use rkyv::rancor::Failure;
use rkyv::ser::allocator::SubAllocator;
use rkyv::ser::writer::Buffer;
use rkyv::{Archive, Deserialize, Serialize};

use crate::{encode_frame, Flags, FrameHeader, FrameKind, FrameView, Limits, Sender, WireError};

/// The reserved port that marks link status frames.
pub const LINK_PORT: u32 = 0xFFFF_FFFD;

/// Length of an archived [`LinkStatus`] payload.
pub const LINK_STATUS_LEN: usize = 24;

/// The payload of a link status frame (see the module docs).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct LinkStatus {
    /// Frames received on this connection and disposed of, cumulatively.
    pub handled: u64,
    /// A nonce to echo (0: none).
    pub ping: u64,
    /// The last nonce received (0: none).
    pub pong: u64,
}

impl LinkStatus {
    /// The archived payload bytes. Allocates nothing.
    pub fn to_bytes(&self) -> [u8; LINK_STATUS_LEN] {
        let mut out = [0; LINK_STATUS_LEN];
        let mut no_scratch: [std::mem::MaybeUninit<u8>; 0] = [];
        let written = rkyv::api::low::to_bytes_in_with_alloc::<_, _, Failure>(
            self,
            Buffer::from(&mut out),
            SubAllocator::new(&mut no_scratch),
        )
        .map(|buffer| buffer.len());
        debug_assert_eq!(written.ok(), Some(LINK_STATUS_LEN));
        out
    }

    /// Validates and reads a link status payload (8-byte aligned, as
    /// [`FrameView::payload`] returns it).
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        if payload.len() != LINK_STATUS_LEN {
            return Err(WireError::InvalidPayload {
                what: "link status",
                reason: format!("{} bytes, expected {LINK_STATUS_LEN}", payload.len()),
            });
        }
        let archived = rkyv::api::low::access::<ArchivedLinkStatus, rkyv::rancor::Error>(payload)
            .map_err(|e| WireError::InvalidPayload {
            what: "link status",
            reason: e.to_string(),
        })?;
        Ok(LinkStatus {
            handled: archived.handled.to_native(),
            ping: archived.ping.to_native(),
            pong: archived.pong.to_native(),
        })
    }
}

/// Encodes a link status frame for the host whose service proc is
/// `service_name` into `out`; returns its length. Allocates nothing.
pub fn encode_link_status(
    out: &mut [u8],
    service_name: &str,
    status: &LinkStatus,
    limits: &Limits,
) -> Result<usize, WireError> {
    let header = FrameHeader {
        kind: FrameKind::ControlResponse,
        flags: Flags::NONE,
        message_id: 0,
        dest_name: service_name,
        dest_port: LINK_PORT,
        dest_addr: "",
        sender: Sender::Anonymous,
    };
    encode_frame(out, &header, &status.to_bytes(), limits)
}

/// Whether `frame` is shaped as a link status (kind, port): the caller
/// then reads it with [`link_status`] and never routes it.
pub fn is_link_status(frame: &FrameView<'_>) -> bool {
    frame.kind() == FrameKind::ControlResponse && frame.dest_port() == LINK_PORT
}

/// The status a link status frame carries; `None` if `frame` is not one or
/// its payload is malformed.
pub fn link_status(frame: &FrameView<'_>) -> Option<LinkStatus> {
    if !is_link_status(frame) {
        return None;
    }
    LinkStatus::decode(frame.payload()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_frame;
    use rkyv::util::AlignedVec;

    #[test]
    fn a_status_round_trips_and_other_frames_are_not_statuses() {
        let limits = Limits::default();
        let mut out = AlignedVec::<16>::new();
        out.resize(256, 0);
        for status in [
            LinkStatus::default(),
            LinkStatus {
                handled: u64::MAX,
                ping: 1,
                pong: 2,
            },
        ] {
            let len = encode_link_status(&mut out, "service", &status, &limits).unwrap();
            let frame = decode_frame(&out[..len], &limits).unwrap();
            assert!(is_link_status(&frame));
            assert_eq!(link_status(&frame), Some(status));
        }
        let len = crate::encode_hello(&mut out, "service", "cli", b"", &limits).unwrap();
        let hello = decode_frame(&out[..len], &limits).unwrap();
        assert!(!is_link_status(&hello));
        assert_eq!(link_status(&hello), None);
        assert!(LinkStatus::decode(&[0; 16]).is_err());
    }
}
