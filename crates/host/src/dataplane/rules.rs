//! The delivery rules, written once.
//!
//! Every frame the host accepts, whatever its source (a client connection, a
//! link from another host, a proc's outbound ring, either fast lane), is
//! judged here before it is routed, and every frame that cannot be delivered
//! is disposed of here: answered with one notice, or dropped and counted when
//! its kind may not be answered. The table in `docs/architecture.md`
//! ("Delivery rules") is this module in prose; keep the two in step.
//!
//! The rules that make loops impossible by construction:
//!
//! * only the host originates `Undeliverable` and `ControlResponse` frames
//!   (a client or proc that sends one has it dropped and counted; links from
//!   other hosts may carry them, since those hosts originated them);
//! * only a host marks a frame `FROM_CLIENT` (when it forwards its client's
//!   frame over a link), and only the host's own hello ack is a `TO_CLIENT`
//!   frame on the hello port: a client or proc that sends either is
//!   refused `Malformed`, so nothing a client receives can pass for a
//!   notice, a response or an ack that the host did not write;
//! * a notice or a response is never answered, with a notice or anything
//!   else (as ICMP never reports an error about an error);
//! * every notice and response the host originates has the service proc as
//!   its sender, and the service proc answers nothing but `ControlRequest`s:
//!   whatever a buggy proc sends back to a notice's sender is consumed there;
//! * a frame that crossed `max_hops` links is dropped (and, if it was data,
//!   its sender told once), so no configuration of hosts can make a frame
//!   circulate.
//!
//! Nothing here touches a ring, a socket or a clock: the functions are pure,
//! and the data plane's executor (`Dataplane::deliver` in `write.rs`, for
//! frames from connections and procs alike) only carries out what they
//! decide.

use hostmux_wire::{FrameKind, Sender, UndeliverableReason, AGENT_PORT, HELLO_PORT};

/// Where a frame entered the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin<'a> {
    /// A client connection whose hello gave it `name`.
    Client {
        /// The name from its hello.
        name: &'a str,
    },
    /// A connection from (or to) another host: its frames relay that host's
    /// procs and that host's notices.
    Link,
    /// A local proc's outbound ring.
    Proc {
        /// The proc's name.
        name: &'a str,
    },
}

/// The kind of party a frame came from, without its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Party {
    /// A client connection.
    Client,
    /// A link from another host.
    Link,
    /// A local proc.
    Proc,
}

impl Origin<'_> {
    /// The kind of party, without its name.
    pub(crate) fn party(self) -> Party {
        match self {
            Origin::Client { .. } => Party::Client,
            Origin::Link => Party::Link,
            Origin::Proc { .. } => Party::Proc,
        }
    }
}

/// What the routing header of a frame says, as far as the rules care.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Envelope<'a> {
    pub(crate) kind: FrameKind,
    pub(crate) sender: Sender<'a>,
    pub(crate) dest_port: u32,
    pub(crate) hops: u8,
    /// `TO_CLIENT`: the destination is a client connection.
    pub(crate) to_client: bool,
    /// `FROM_CLIENT`: the sender is a client relayed by the host at its
    /// address.
    pub(crate) from_client: bool,
}

/// Whether a frame of `kind` may be answered (with a reply, a response or a
/// notice): the wire's rule, [`FrameKind::may_be_answered`].
pub(crate) fn may_be_answered(kind: FrameKind) -> bool {
    kind.may_be_answered()
}

/// Whether only a host may originate frames of `kind`
/// ([`FrameKind::host_only`]).
fn host_only(kind: FrameKind) -> bool {
    kind.host_only()
}

/// Whether a frame with this envelope may enter from `origin` at all.
/// `Err(reason)`: refuse it (see [`refusal`] for what that means for its
/// kind). `max_hops` is the hop limit.
pub(crate) fn admit(
    origin: Origin<'_>,
    frame: &Envelope<'_>,
    max_hops: u8,
) -> Result<(), UndeliverableReason> {
    // Only the host's hello ack is a `TO_CLIENT` frame on the hello port;
    // the host writes it straight to the connection, never through here.
    if frame.to_client && frame.dest_port == HELLO_PORT {
        return Err(UndeliverableReason::Malformed);
    }
    match origin {
        Origin::Client { name } => {
            let sender_ok = match frame.sender {
                Sender::Anonymous => true,
                Sender::Client { name: claimed } => claimed == name,
                Sender::Proc { .. } => false,
            };
            if !sender_ok || host_only(frame.kind) || frame.from_client {
                return Err(UndeliverableReason::Malformed);
            }
        }
        Origin::Link => {
            // A link relays other hosts' procs (and their service procs'
            // notices): the sender names a host. It may name this one: a
            // frame this host forwarded can come back (a host that does not
            // recognise an alias of its own address); the hop limit ends it.
            let sender_ok = matches!(frame.sender, Sender::Proc { addr, .. } if !addr.is_empty());
            if !sender_ok {
                return Err(UndeliverableReason::Malformed);
            }
            if frame.hops >= max_hops {
                return Err(UndeliverableReason::HopLimit);
            }
        }
        Origin::Proc { name } => {
            let sender_ok = match frame.sender {
                Sender::Anonymous => true,
                Sender::Proc {
                    name: claimed,
                    addr,
                } => claimed == name && addr.is_empty(),
                Sender::Client { .. } => false,
            };
            if !sender_ok || host_only(frame.kind) || frame.from_client {
                return Err(UndeliverableReason::Malformed);
            }
        }
    }
    Ok(())
}

/// What becomes of a frame that was refused or could not be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Answer its sender with one `Undeliverable` notice.
    Notice(UndeliverableReason),
    /// Drop it and count it: its kind may not be answered.
    Drop(UndeliverableReason),
}

/// How a frame of `kind` refused for `reason` is disposed of.
pub(crate) fn refusal(kind: FrameKind, reason: UndeliverableReason) -> Refusal {
    if may_be_answered(kind) {
        Refusal::Notice(reason)
    } else {
        Refusal::Drop(reason)
    }
}

/// What the service proc does with a frame addressed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServiceUse {
    /// A control request from a privileged connection: to the control plane.
    ControlPlane,
    /// A control request without privilege: answered `Unauthorized`.
    Unauthorized,
    /// A proc agent's answer to the host's request.
    AgentAnswer,
    /// Anything else: consumed and counted, never answered. Replies to the
    /// host's own notices and responses end here.
    Consume,
}

/// The service proc's verdict on a frame to it from `party`. `privileged`:
/// the source connection may use the control plane (procs never may).
pub(crate) fn service_use(party: Party, frame: &Envelope<'_>, privileged: bool) -> ServiceUse {
    match (frame.kind, party) {
        (FrameKind::ControlRequest, Party::Client) if privileged => ServiceUse::ControlPlane,
        (FrameKind::ControlRequest, _) => ServiceUse::Unauthorized,
        (FrameKind::Data, Party::Proc) if frame.dest_port == AGENT_PORT => ServiceUse::AgentAnswer,
        // A second hello on an established connection, a reply to a notice,
        // a stray frame: nobody waits for an answer.
        (FrameKind::Data, _) if frame.dest_port == HELLO_PORT => ServiceUse::Consume,
        _ => ServiceUse::Consume,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: FrameKind, sender: Sender<'static>) -> Envelope<'static> {
        Envelope {
            kind,
            sender,
            dest_port: 0,
            hops: 0,
            to_client: false,
            from_client: false,
        }
    }

    #[test]
    fn notices_and_responses_are_never_answered() {
        for kind in FrameKind::ALL {
            for reason in [
                UndeliverableReason::NoSuchProc,
                UndeliverableReason::Malformed,
                UndeliverableReason::ProcExited,
            ] {
                let expected = if kind == FrameKind::Data || kind == FrameKind::ControlRequest {
                    Refusal::Notice(reason)
                } else {
                    Refusal::Drop(reason)
                };
                assert_eq!(refusal(kind, reason), expected, "{kind:?}");
            }
        }
    }

    #[test]
    fn only_links_may_carry_host_only_kinds() {
        let client = Origin::Client { name: "c" };
        let proc = Origin::Proc { name: "p" };
        for kind in [FrameKind::Undeliverable, FrameKind::ControlResponse] {
            assert_eq!(
                admit(client, &envelope(kind, Sender::Anonymous), 8),
                Err(UndeliverableReason::Malformed)
            );
            assert_eq!(
                admit(proc, &envelope(kind, Sender::Anonymous), 8),
                Err(UndeliverableReason::Malformed)
            );
            let relayed = Sender::Proc {
                addr: "tcp:other:1",
                name: "service",
            };
            assert_eq!(admit(Origin::Link, &envelope(kind, relayed), 8), Ok(()));
        }
        for kind in [FrameKind::Data, FrameKind::ControlRequest] {
            assert_eq!(admit(client, &envelope(kind, Sender::Anonymous), 8), Ok(()));
        }
    }

    #[test]
    fn senders_must_be_who_they_are() {
        let client = Origin::Client { name: "c" };
        let data = |sender| envelope(FrameKind::Data, sender);
        assert!(admit(client, &data(Sender::Client { name: "c" }), 8).is_ok());
        assert!(admit(client, &data(Sender::Client { name: "d" }), 8).is_err());
        assert!(admit(
            client,
            &data(Sender::Proc {
                addr: "",
                name: "c"
            }),
            8
        )
        .is_err());
        let proc = Origin::Proc { name: "p" };
        assert!(admit(
            proc,
            &data(Sender::Proc {
                addr: "",
                name: "p"
            }),
            8
        )
        .is_ok());
        assert!(admit(
            proc,
            &data(Sender::Proc {
                addr: "",
                name: "q"
            }),
            8
        )
        .is_err());
        assert!(admit(
            proc,
            &data(Sender::Proc {
                addr: "tcp:x:1",
                name: "p"
            }),
            8
        )
        .is_err());
        assert!(admit(proc, &data(Sender::Client { name: "p" }), 8).is_err());
        // A link never speaks anonymously or for a local party; it may name
        // this host (a forwarded frame that came back).
        let link = |sender| admit(Origin::Link, &data(sender), 8);
        assert!(link(Sender::Proc {
            addr: "",
            name: "p"
        })
        .is_err());
        assert!(link(Sender::Anonymous).is_err());
        assert!(link(Sender::Client { name: "c" }).is_err());
        assert!(link(Sender::Proc {
            addr: "tcp:h:1",
            name: "p"
        })
        .is_ok());
    }

    #[test]
    fn the_hop_limit_ends_circulating_frames() {
        let relayed = |hops| Envelope {
            hops,
            ..envelope(
                FrameKind::Data,
                Sender::Proc {
                    addr: "tcp:other:1",
                    name: "p",
                },
            )
        };
        assert_eq!(admit(Origin::Link, &relayed(7), 8), Ok(()));
        assert_eq!(
            admit(Origin::Link, &relayed(8), 8),
            Err(UndeliverableReason::HopLimit)
        );
    }

    #[test]
    fn the_service_proc_answers_only_control_requests() {
        let client = Party::Client;
        let proc = Party::Proc;
        let request = envelope(FrameKind::ControlRequest, Sender::Anonymous);
        assert_eq!(
            service_use(client, &request, true),
            ServiceUse::ControlPlane
        );
        assert_eq!(
            service_use(client, &request, false),
            ServiceUse::Unauthorized
        );
        assert_eq!(service_use(proc, &request, true), ServiceUse::Unauthorized);
        let agent = Envelope {
            dest_port: AGENT_PORT,
            ..envelope(FrameKind::Data, Sender::Anonymous)
        };
        assert_eq!(service_use(proc, &agent, false), ServiceUse::AgentAnswer);
        assert_eq!(service_use(client, &agent, true), ServiceUse::Consume);
        // A buggy proc answering a notice (whose sender is the service
        // proc) reaches the service proc and goes no further.
        let reply = envelope(FrameKind::Data, Sender::Anonymous);
        assert_eq!(service_use(proc, &reply, false), ServiceUse::Consume);
        assert_eq!(service_use(client, &reply, true), ServiceUse::Consume);
    }

    #[test]
    fn only_links_carry_from_client_and_nobody_forges_a_hello_ack() {
        let relayed_client = Sender::Proc {
            addr: "tcp:other:1",
            name: "cli",
        };
        let marked = |sender| Envelope {
            from_client: true,
            ..envelope(FrameKind::Data, sender)
        };
        assert_eq!(admit(Origin::Link, &marked(relayed_client), 8), Ok(()));
        assert_eq!(
            admit(
                Origin::Client { name: "c" },
                &marked(Sender::Client { name: "c" }),
                8
            ),
            Err(UndeliverableReason::Malformed)
        );
        assert_eq!(
            admit(
                Origin::Proc { name: "p" },
                &marked(Sender::Proc {
                    addr: "",
                    name: "p"
                }),
                8
            ),
            Err(UndeliverableReason::Malformed)
        );
        // A client may address another client, on any port but the hello's.
        let to_client = |dest_port| Envelope {
            to_client: true,
            dest_port,
            ..envelope(FrameKind::Data, Sender::Client { name: "c" })
        };
        let client = Origin::Client { name: "c" };
        assert_eq!(admit(client, &to_client(7), 8), Ok(()));
        for origin in [client, Origin::Proc { name: "c" }, Origin::Link] {
            assert_eq!(
                admit(origin, &to_client(HELLO_PORT), 8),
                Err(UndeliverableReason::Malformed),
                "{origin:?}"
            );
        }
    }
}
