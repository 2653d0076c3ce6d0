//! The payload of `Undeliverable` frames.

use rkyv::rancor::Failure;
use rkyv::ser::allocator::SubAllocator;
use rkyv::ser::writer::Buffer;
use rkyv::{Archive, Deserialize, Serialize};

use crate::{encode_frame, FrameHeader, FrameKind, Limits, Sender, WireError};

/// Length of an archived [`Undeliverable`] payload.
pub const UNDELIVERABLE_LEN: usize = 16;

/// Why the host could not deliver a frame.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
#[repr(u8)]
pub enum UndeliverableReason {
    /// No proc of that name on the destination host.
    NoSuchProc = 0,
    /// The proc exists but has not reported ready yet.
    NotReady = 1,
    /// The proc exited before the frame could be written to its ring.
    ProcExited = 2,
    /// The proc's inbound ring stayed full for longer than the host waits.
    Overloaded = 3,
    /// The frame is larger than the destination ring accepts.
    Oversized = 4,
    /// The frame's header failed validation.
    Malformed = 5,
    /// The frame arrived over a link from another host with its hop count
    /// ([`Flags::hops`](crate::Flags::hops)) at the receiving host's maximum (by default
    /// [`DEFAULT_MAX_HOPS`](crate::DEFAULT_MAX_HOPS)): hosts have forwarded
    /// it too often, probably in a loop, and the host dropped it.
    HopLimit = 6,
    /// The frame names another host that is not one of this host's
    /// configured peers: the host dials only its peers, so it opened no
    /// connection and answered at once.
    NotAPeer = 7,
    /// The destination host is a configured peer but could not be reached:
    /// no connection or no hello acknowledgement within the dial timeout
    /// (connection refused, no route, DNS failure). Nothing was sent.
    HostUnreachable = 8,
    /// The link to the destination host failed (closed, reset, or silent
    /// past the heartbeat timeout) before the frame was answered. The frame
    /// may or may not have reached the proc; no answer will come for it
    /// any more (a late reply is dropped by this host).
    LinkFailed = 9,
    /// The destination host refused this host's link: wrong peer token,
    /// this host is not one of its peers, or (with TLS) a certificate it
    /// does not accept. Nothing was delivered.
    PeerRefused = 10,
}

impl UndeliverableReason {
    /// Every reason, in code order (`reason as usize` indexes it), for
    /// per-reason counters.
    pub const ALL: [UndeliverableReason; 11] = [
        UndeliverableReason::NoSuchProc,
        UndeliverableReason::NotReady,
        UndeliverableReason::ProcExited,
        UndeliverableReason::Overloaded,
        UndeliverableReason::Oversized,
        UndeliverableReason::Malformed,
        UndeliverableReason::HopLimit,
        UndeliverableReason::NotAPeer,
        UndeliverableReason::HostUnreachable,
        UndeliverableReason::LinkFailed,
        UndeliverableReason::PeerRefused,
    ];

    /// What the reason means, in a few lowercase words (the `Display` text).
    pub fn description(self) -> &'static str {
        match self {
            UndeliverableReason::NoSuchProc => "no such proc",
            UndeliverableReason::NotReady => "proc not ready",
            UndeliverableReason::ProcExited => "proc exited",
            UndeliverableReason::Overloaded => "overloaded",
            UndeliverableReason::Oversized => "oversized",
            UndeliverableReason::Malformed => "malformed",
            UndeliverableReason::HopLimit => "hop limit reached",
            UndeliverableReason::NotAPeer => "not a peer of the host",
            UndeliverableReason::HostUnreachable => "host unreachable",
            UndeliverableReason::LinkFailed => "link to the host failed",
            UndeliverableReason::PeerRefused => "refused by the peer host",
        }
    }
}

impl std::fmt::Display for UndeliverableReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.description())
    }
}

/// The payload of an [`FrameKind::Undeliverable`] frame: which message came
/// back and why. Archived it is 16 bytes: `original_message_id: u64` at 0,
/// `reason: u8` at 8, then 7 zero bytes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
pub struct Undeliverable {
    /// The `message_id` of the frame that was not delivered.
    pub original_message_id: u64,
    /// Why it was not delivered.
    pub reason: UndeliverableReason,
}

impl Undeliverable {
    /// The archived payload bytes. Allocates nothing.
    pub fn to_bytes(&self) -> [u8; UNDELIVERABLE_LEN] {
        let mut out = [0; UNDELIVERABLE_LEN];
        let mut no_scratch: [std::mem::MaybeUninit<u8>; 0] = [];
        let written = rkyv::api::low::to_bytes_in_with_alloc::<_, _, Failure>(
            self,
            Buffer::from(&mut out),
            SubAllocator::new(&mut no_scratch),
        )
        .map(|buffer| buffer.len());
        debug_assert_eq!(written.ok(), Some(UNDELIVERABLE_LEN));
        out
    }

    /// Validates and reads an undeliverable payload (16 bytes, 8-byte aligned,
    /// as [`FrameView::payload`](crate::FrameView::payload) returns it).
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let invalid = |reason: String| WireError::InvalidPayload {
            what: "undeliverable",
            reason,
        };
        if payload.len() != UNDELIVERABLE_LEN {
            return Err(invalid(format!(
                "{} bytes, expected {UNDELIVERABLE_LEN}",
                payload.len()
            )));
        }
        let archived =
            rkyv::api::low::access::<ArchivedUndeliverable, rkyv::rancor::Error>(payload)
                .map_err(|e| invalid(e.to_string()))?;
        if payload[9..].iter().any(|&b| b != 0) {
            return Err(invalid("padding is not zero".to_owned()));
        }
        Ok(Undeliverable {
            original_message_id: archived.original_message_id.to_native(),
            reason: match archived.reason {
                ArchivedUndeliverableReason::NoSuchProc => UndeliverableReason::NoSuchProc,
                ArchivedUndeliverableReason::NotReady => UndeliverableReason::NotReady,
                ArchivedUndeliverableReason::ProcExited => UndeliverableReason::ProcExited,
                ArchivedUndeliverableReason::Overloaded => UndeliverableReason::Overloaded,
                ArchivedUndeliverableReason::Oversized => UndeliverableReason::Oversized,
                ArchivedUndeliverableReason::Malformed => UndeliverableReason::Malformed,
                ArchivedUndeliverableReason::HopLimit => UndeliverableReason::HopLimit,
                ArchivedUndeliverableReason::NotAPeer => UndeliverableReason::NotAPeer,
                ArchivedUndeliverableReason::HostUnreachable => {
                    UndeliverableReason::HostUnreachable
                }
                ArchivedUndeliverableReason::LinkFailed => UndeliverableReason::LinkFailed,
                ArchivedUndeliverableReason::PeerRefused => UndeliverableReason::PeerRefused,
            },
        })
    }

    /// The header of the notice that returns `original` to its sender: kind
    /// `Undeliverable`, addressed to the original sender's name (empty for an
    /// anonymous sender, whose connection gets it) with
    /// [`Flags::TO_CLIENT`](crate::Flags::TO_CLIENT) if that sender is a client (see
    /// [`FrameHeader::reply_target`]), same message id, sent by `from`
    /// (usually the host's service proc), hop count 0.
    ///
    /// Only a frame whose kind [may be answered](FrameKind::may_be_answered)
    /// gets a notice; the caller checks that (a notice about a notice is how
    /// two parties loop).
    pub fn reply_header<'a>(original: &FrameHeader<'a>, from: Sender<'a>) -> FrameHeader<'a> {
        let target = original.reply_target();
        FrameHeader {
            kind: FrameKind::Undeliverable,
            flags: target.flags(),
            message_id: original.message_id,
            dest_name: target.name,
            dest_port: 0,
            dest_addr: target.addr,
            sender: from,
        }
    }

    /// Encodes the whole notice frame returning `original` with `reason` into
    /// `out`; returns its length. Allocates nothing.
    pub fn encode_reply(
        out: &mut [u8],
        original: &FrameHeader<'_>,
        reason: UndeliverableReason,
        from: Sender<'_>,
        limits: &Limits,
    ) -> Result<usize, WireError> {
        let payload = Undeliverable {
            original_message_id: original.message_id,
            reason,
        }
        .to_bytes();
        encode_frame(out, &Self::reply_header(original, from), &payload, limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Flags;

    #[test]
    fn notices_to_clients_carry_to_client_and_notices_to_procs_do_not() {
        let service = Sender::Proc {
            addr: "",
            name: "service",
        };
        let sent_by = |sender, flags| FrameHeader {
            sender,
            flags,
            ..FrameHeader::data("echo", 9)
        };
        let cases = [
            (
                sent_by(Sender::Client { name: "cli" }, Flags::NONE),
                "cli",
                "",
                true,
            ),
            (
                sent_by(
                    Sender::Proc {
                        addr: "tcp:h:1",
                        name: "cli",
                    },
                    Flags::FROM_CLIENT.with_hops(1),
                ),
                "cli",
                "tcp:h:1",
                true,
            ),
            (
                sent_by(
                    Sender::Proc {
                        addr: "",
                        name: "worker",
                    },
                    Flags::RETURN_UNDELIVERABLE,
                ),
                "worker",
                "",
                false,
            ),
            (sent_by(Sender::Anonymous, Flags::NONE), "", "", false),
        ];
        for (original, name, addr, to_client) in cases {
            let notice = Undeliverable::reply_header(&original, service);
            assert_eq!(notice.kind, FrameKind::Undeliverable);
            assert_eq!((notice.dest_name, notice.dest_addr), (name, addr));
            assert_eq!(notice.to_client(), to_client, "{original:?}");
            assert_eq!(notice.flags.hops(), 0);
            assert!(!notice.flags.contains(Flags::FROM_CLIENT));
        }
    }
}
