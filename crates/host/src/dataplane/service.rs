//! The host's service proc: the data-plane face of the control plane.
//!
//! It lives on the I/O thread. A `ControlRequest` frame from a privileged
//! connection (one accepted on the control socket after its peer
//! credentials were checked, or one whose hello presented the host's token)
//! is handed, as a [`ControlJob`], to the control side on the caller's
//! runtime, which owns the proc manager; its answer comes back as a
//! finished frame for the connection's queue. Everyone else (clients
//! without privilege, procs) gets a `ControlResponse::Error` with kind
//! `Unauthorized` and a log line; nothing changes.

use hostmux_wire::{
    encode_frame_to_vec, ControlErrorKind, ControlResponse, FrameHeader, FrameKind, FrameView,
    Limits, ProcName, ReplyTarget, Sender,
};

use super::ConnKey;

/// A privileged control request on its way to the control side.
#[derive(Debug)]
pub(crate) struct ControlJob {
    /// The connection to answer.
    pub(crate) conn: ConnKey,
    /// The I/O thread that owns it (set by that thread's shell).
    pub(crate) io_thread: usize,
    /// The request's message id (echoed in the response).
    pub(crate) message_id: u64,
    /// The port the request was sent to (echoed).
    pub(crate) port: u32,
    /// The requester's name ("" for anonymous).
    pub(crate) reply_to: String,
    /// The requester is a client (the response carries `TO_CLIENT`).
    pub(crate) to_client: bool,
    /// The request payload (a `ControlRequest` archive).
    pub(crate) payload: Vec<u8>,
}

impl ControlJob {
    pub(crate) fn new(conn: ConnKey, request: &FrameView<'_>) -> Self {
        let target = request.fields().reply_target();
        Self {
            conn,
            io_thread: 0,
            message_id: request.message_id(),
            port: request.dest_port(),
            reply_to: target.name.to_owned(),
            to_client: target.to_client,
            payload: request.payload().to_vec(),
        }
    }
}

/// The response frame to an unprivileged or invalid request (control path:
/// allocates).
pub(crate) fn refuse(
    request: &FrameView<'_>,
    limits: &Limits,
    service_name: &ProcName,
    privileged: bool,
) -> Vec<u8> {
    let response = if request.kind() != FrameKind::ControlRequest {
        error(
            ControlErrorKind::InvalidRequest,
            "the service proc takes ControlRequest frames only".to_owned(),
        )
    } else if privileged {
        error(
            ControlErrorKind::Internal,
            "the host's control plane is not running".to_owned(),
        )
    } else {
        let requester = match request.sender() {
            Sender::Anonymous => "(anonymous)",
            Sender::Client { name } | Sender::Proc { name, .. } => name,
        };
        tracing::warn!(
            requester,
            "refused a control request: not from the control socket and no token presented"
        );
        error(
            ControlErrorKind::Unauthorized,
            "control requests need the host's control socket (same uid or root) or a connection that presented the host's token"
                .to_owned(),
        )
    };
    let target = request.fields().reply_target();
    response_frame(
        target,
        request.message_id(),
        request.dest_port(),
        service_name,
        &response,
        limits,
    )
}

/// Encodes `response` as a frame from the service proc to `target` (the
/// requester: [`FrameHeader::reply_target`] of its request).
pub(crate) fn response_frame(
    target: ReplyTarget<'_>,
    message_id: u64,
    port: u32,
    service_name: &ProcName,
    response: &ControlResponse,
    limits: &Limits,
) -> Vec<u8> {
    let header = FrameHeader {
        kind: FrameKind::ControlResponse,
        flags: target.flags(),
        message_id,
        dest_name: target.name,
        dest_port: port,
        dest_addr: target.addr,
        sender: Sender::Proc {
            addr: "",
            name: service_name.as_str(),
        },
    };
    let mut out = Vec::new();
    let payload = response.to_bytes().unwrap_or_default();
    if encode_frame_to_vec(&mut out, &header, &payload, limits).is_err() {
        out.clear();
        // Too large for the limits (a huge list): say so instead.
        let fallback = error(
            ControlErrorKind::Internal,
            "the response exceeds the host's frame limits".to_owned(),
        );
        let payload = fallback.to_bytes().unwrap_or_default();
        let _ = encode_frame_to_vec(&mut out, &header, &payload, limits);
    }
    out
}

pub(crate) fn error(kind: ControlErrorKind, message: String) -> ControlResponse {
    ControlResponse::Error { kind, message }
}
