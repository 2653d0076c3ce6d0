//! The connection hello: the first frame a client sends on a new
//! connection, and the host's acknowledgement.
//!
//! The hello is built on ordinary data frames, on the reserved port
//! [`HELLO_PORT`], so it needs no frame kind of its own:
//!
//! * Hello: a `Data` frame to the host's service proc on [`HELLO_PORT`],
//!   sender `Client { name }` (the name the client wants to be reachable
//!   under), payload = the host's token bytes (empty when the host has no
//!   token).
//! * Ack: a `Data` frame to the client's name on [`HELLO_PORT`] with
//!   [`Flags::TO_CLIENT`] (the name is a client's), sender the service proc
//!   (a proc of the host itself: empty address), empty payload. Hosts never
//!   route a `TO_CLIENT` frame on [`HELLO_PORT`] from anyone, so nothing
//!   but the host's own ack looks like one. A refused hello gets no ack: the
//!   host closes the connection and logs why (a control-socket peer of
//!   another uid is first told why, in a `ControlResponse` error on this
//!   port; see `docs/wire.md`).
//!
//! ```
//! use hostmux_wire::rkyv::util::AlignedVec;
//! use hostmux_wire::{check_hello, decode_frame, encode_hello, HelloRefusal, Limits};
//!
//! let limits = Limits::default();
//! let mut out = AlignedVec::<16>::new();
//! out.resize(256, 0);
//! let len = encode_hello(&mut out, "service", "cli", b"secret", &limits)?;
//! let hello = decode_frame(&out[..len], &limits)?;
//! assert_eq!(check_hello(&hello, "service", Some(b"secret")), Ok("cli"));
//! assert_eq!(check_hello(&hello, "service", Some(b"other!")), Err(HelloRefusal::BadToken));
//! # Ok::<(), hostmux_wire::WireError>(())
//! ```

use crate::{encode_frame, Flags, FrameHeader, FrameKind, FrameView, Limits, Sender, WireError};

/// The reserved port that marks hello and hello-ack frames.
pub const HELLO_PORT: u32 = u32::MAX;

/// The largest hello a host reads, in bytes: prefix, header, token and
/// padding. A host reads a new connection under [`hello_limits`], so a
/// prefix that announces more fails at once, before the host buffers
/// anything beyond its fixed-size hello buffer; [`encode_hello`] refuses
/// to build a larger one (a token of a little under 4 KiB fits with a
/// short name).
pub const MAX_HELLO_LEN: usize = 4096;

/// `limits` with the frame length capped at [`MAX_HELLO_LEN`]: what a
/// host decodes a connection's first frame under.
pub const fn hello_limits(limits: &Limits) -> Limits {
    let max_frame_len = if limits.max_frame_len < MAX_HELLO_LEN {
        limits.max_frame_len
    } else {
        MAX_HELLO_LEN
    };
    Limits {
        max_frame_len,
        ..*limits
    }
}

/// Why a hello was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HelloRefusal {
    /// Not a hello: another kind, port or destination, or not from a client.
    NotAHello,
    /// The token presented is not the host's (or one was presented to a
    /// host that has none).
    BadToken,
}

fn hello_header<'a>(dest_name: &'a str, sender: Sender<'a>) -> FrameHeader<'a> {
    FrameHeader {
        kind: FrameKind::Data,
        flags: Flags::NONE,
        message_id: 0,
        dest_name,
        dest_port: HELLO_PORT,
        dest_addr: "",
        sender,
    }
}

/// Encodes a client's hello into `out`; returns its length. Fails with
/// [`WireError::FrameTooLong`] if it would exceed [`MAX_HELLO_LEN`] (a
/// token too long for any host to read).
pub fn encode_hello(
    out: &mut [u8],
    service_name: &str,
    client_name: &str,
    token: &[u8],
    limits: &Limits,
) -> Result<usize, WireError> {
    let header = hello_header(service_name, Sender::Client { name: client_name });
    encode_frame(out, &header, token, &hello_limits(limits))
}

/// Encodes the host's ack of `client_name`'s hello into `out`; returns its
/// length.
pub fn encode_hello_ack(
    out: &mut [u8],
    service_name: &str,
    client_name: &str,
    limits: &Limits,
) -> Result<usize, WireError> {
    let sender = Sender::Proc {
        addr: "",
        name: service_name,
    };
    let header = FrameHeader {
        flags: Flags::TO_CLIENT,
        ..hello_header(client_name, sender)
    };
    encode_frame(out, &header, &[], limits)
}

/// Whether `frame` is the host's ack of a hello.
pub fn is_hello_ack(frame: &FrameView<'_>) -> bool {
    frame.kind() == FrameKind::Data
        && frame.dest_port() == HELLO_PORT
        && frame.flags().contains(Flags::TO_CLIENT)
        && matches!(frame.sender(), Sender::Proc { addr: "", .. })
}

/// Encodes the host's refusal of `client_name`'s hello into `out`; returns
/// its length: an `Undeliverable` frame on [`HELLO_PORT`] with
/// [`Flags::TO_CLIENT`], message id 0, from the service proc, whose payload
/// names `reason` (a host refusing another host's link sends
/// [`UndeliverableReason::PeerRefused`](crate::UndeliverableReason::PeerRefused)
/// and then closes).
pub fn encode_hello_refusal(
    out: &mut [u8],
    service_name: &str,
    client_name: &str,
    reason: crate::UndeliverableReason,
    limits: &Limits,
) -> Result<usize, WireError> {
    let sender = Sender::Proc {
        addr: "",
        name: service_name,
    };
    let header = FrameHeader {
        kind: FrameKind::Undeliverable,
        flags: Flags::TO_CLIENT,
        ..hello_header(client_name, sender)
    };
    let payload = crate::Undeliverable {
        original_message_id: 0,
        reason,
    }
    .to_bytes();
    encode_frame(out, &header, &payload, limits)
}

/// The reason a host's refusal of a hello gives (see
/// [`encode_hello_refusal`]); `None` if `frame` is not one.
pub fn hello_refusal(frame: &FrameView<'_>) -> Option<crate::UndeliverableReason> {
    if frame.kind() != FrameKind::Undeliverable
        || frame.dest_port() != HELLO_PORT
        || !frame.flags().contains(Flags::TO_CLIENT)
        || !matches!(frame.sender(), Sender::Proc { addr: "", .. })
    {
        return None;
    }
    crate::Undeliverable::decode(frame.payload())
        .ok()
        .map(|notice| notice.reason)
}

/// Checks a hello against the host's service name and token (`None`: the
/// host has none, and the hello must present none); returns the client's
/// name. The token is compared in constant time.
pub fn check_hello<'a>(
    frame: &FrameView<'a>,
    service_name: &str,
    token: Option<&[u8]>,
) -> Result<&'a str, HelloRefusal> {
    let Sender::Client { name } = frame.sender() else {
        return Err(HelloRefusal::NotAHello);
    };
    if frame.kind() != FrameKind::Data
        || frame.dest_port() != HELLO_PORT
        || frame.dest_name() != service_name
    {
        return Err(HelloRefusal::NotAHello);
    }
    let presented = frame.payload();
    match token {
        Some(token) if !constant_time_eq(token, presented) => Err(HelloRefusal::BadToken),
        None if !presented.is_empty() => Err(HelloRefusal::BadToken),
        _ => Ok(name),
    }
}

/// Compares the expected token with the presented bytes in time that
/// depends only on their lengths (`subtle`'s slice comparison; only the
/// token's length can leak, never which byte differs).
fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(expected.ct_eq(presented))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_frame;
    use rkyv::util::AlignedVec;

    fn frame(encode: impl FnOnce(&mut [u8]) -> Result<usize, WireError>) -> AlignedVec<16> {
        let mut out = AlignedVec::<16>::new();
        out.resize(512, 0);
        let len = encode(&mut out).unwrap();
        out.resize(len, 0);
        out
    }

    #[test]
    fn hellos_are_checked_for_shape_destination_and_token() {
        let limits = Limits::default();
        let with_token = frame(|out| encode_hello(out, "service", "cli", b"tok", &limits));
        let hello = decode_frame(&with_token, &limits).unwrap();
        assert_eq!(check_hello(&hello, "service", Some(b"tok")), Ok("cli"));
        assert_eq!(
            check_hello(&hello, "service", Some(b"toK")),
            Err(HelloRefusal::BadToken)
        );
        // A prefix or an extension of the token is not the token.
        for expected in [&b"to"[..], b"toke", b""] {
            assert_eq!(
                check_hello(&hello, "service", Some(expected)),
                Err(HelloRefusal::BadToken),
                "{expected:?}"
            );
        }
        assert_eq!(
            check_hello(&hello, "service", None),
            Err(HelloRefusal::BadToken)
        );
        assert_eq!(
            check_hello(&hello, "other", Some(b"tok")),
            Err(HelloRefusal::NotAHello)
        );
        let without = frame(|out| encode_hello(out, "service", "cli", b"", &limits));
        let hello = decode_frame(&without, &limits).unwrap();
        assert_eq!(check_hello(&hello, "service", None), Ok("cli"));
        let refusal = frame(|out| {
            encode_hello_refusal(
                out,
                "service",
                "cli",
                crate::UndeliverableReason::PeerRefused,
                &limits,
            )
        });
        let refusal = decode_frame(&refusal, &limits).unwrap();
        assert_eq!(
            hello_refusal(&refusal),
            Some(crate::UndeliverableReason::PeerRefused)
        );
        assert!(!is_hello_ack(&refusal));
        assert_eq!(hello_refusal(&hello), None);
        // An ack is not a hello (its sender is a proc), but is an ack.
        let ack = frame(|out| encode_hello_ack(out, "service", "cli", &limits));
        let ack = decode_frame(&ack, &limits).unwrap();
        assert!(is_hello_ack(&ack));
        assert_eq!(ack.dest_name(), "cli");
        assert!(ack.flags().contains(Flags::TO_CLIENT), "to a client's name");
        assert_eq!(
            check_hello(&ack, "service", None),
            Err(HelloRefusal::NotAHello)
        );
    }

    #[test]
    fn hellos_are_capped_at_max_hello_len() {
        let limits = Limits::default();
        assert_eq!(hello_limits(&limits).max_frame_len, MAX_HELLO_LEN);
        let small = Limits {
            max_frame_len: 1024,
            ..limits
        };
        assert_eq!(hello_limits(&small).max_frame_len, 1024);
        let mut out = vec![0u8; 2 * MAX_HELLO_LEN];
        // The largest token that fits, and one byte more.
        let fits = (0..MAX_HELLO_LEN)
            .rev()
            .find(|&n| encode_hello(&mut out, "service", "cli", &vec![7; n], &limits).is_ok())
            .unwrap();
        assert!(fits > 3 * 1024, "a {fits}-byte token is the most that fits");
        assert!(matches!(
            encode_hello(&mut out, "service", "cli", &vec![7; fits + 16], &limits),
            Err(WireError::FrameTooLong {
                max: MAX_HELLO_LEN,
                ..
            })
        ));
    }

    #[test]
    fn only_the_hosts_own_ack_is_an_ack() {
        let limits = Limits::default();
        let look_alike = |flags, sender| {
            frame(|out| {
                let header = FrameHeader {
                    flags,
                    sender,
                    ..hello_header("victim", Sender::Anonymous)
                };
                encode_frame(out, &header, &[], &limits)
            })
        };
        let service = Sender::Proc {
            addr: "",
            name: "service",
        };
        let genuine = look_alike(Flags::TO_CLIENT, service);
        assert!(is_hello_ack(&decode_frame(&genuine, &limits).unwrap()));
        for forged in [
            // From another client, or relayed from another host.
            look_alike(Flags::TO_CLIENT, Sender::Client { name: "mallory" }),
            look_alike(
                Flags::TO_CLIENT,
                Sender::Proc {
                    addr: "tcp:10.0.0.9:1",
                    name: "service",
                },
            ),
            // Not addressed to a client.
            look_alike(Flags::NONE, service),
        ] {
            assert!(!is_hello_ack(&decode_frame(&forged, &limits).unwrap()));
        }
    }
}
