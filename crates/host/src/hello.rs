//! The connection hello: the first frame a client sends, and the host's ack.
//!
//! hostmux-wire has no hello frame kind yet, so the hello is defined here on
//! top of ordinary frames; it should move to wire (as its own `FrameKind`)
//! when the wire format next changes.
//!
//! * Hello: a `Data` frame to the service proc's name on port
//!   [`HELLO_PORT`], sender `Client { name }`, payload = the host's token
//!   bytes (empty when the host has no token).
//! * Ack: a `Data` frame to the client's name on port [`HELLO_PORT`], sender
//!   the service proc, empty payload. A refused hello gets no ack: the host
//!   closes the connection (and logs why).

use hostmux_wire::{
    encode_frame, Flags, FrameHeader, FrameKind, FrameView, Limits, Sender, WireError,
};

/// The reserved port that marks hello and hello-ack frames.
pub const HELLO_PORT: u32 = u32::MAX;

/// Encodes a client's hello into `out`; returns its length.
pub fn encode_hello(
    out: &mut [u8],
    service_name: &str,
    client_name: &str,
    token: &[u8],
    limits: &Limits,
) -> Result<usize, WireError> {
    let header = FrameHeader {
        kind: FrameKind::Data,
        flags: Flags::NONE,
        message_id: 0,
        dest_name: service_name,
        dest_port: HELLO_PORT,
        dest_addr: "",
        sender: Sender::Client { name: client_name },
    };
    encode_frame(out, &header, token, limits)
}

/// Whether `frame` is the host's ack of a hello.
pub fn is_hello_ack(frame: &FrameView<'_>) -> bool {
    frame.kind() == FrameKind::Data && frame.dest_port() == HELLO_PORT
}

pub(crate) fn encode_ack(
    out: &mut [u8],
    service_name: &str,
    client_name: &str,
    limits: &Limits,
) -> Result<usize, WireError> {
    let header = FrameHeader {
        kind: FrameKind::Data,
        flags: Flags::NONE,
        message_id: 0,
        dest_name: client_name,
        dest_port: HELLO_PORT,
        dest_addr: "",
        sender: Sender::Proc {
            addr: "",
            name: service_name,
        },
    };
    encode_frame(out, &header, &[], limits)
}

/// Why a hello was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HelloRefusal {
    NotAHello,
    BadToken,
}

/// Checks a hello; returns the client's name.
pub(crate) fn check_hello<'a>(
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
