//! The host's service proc: the data-plane face of the control plane.
//!
//! It lives on the I/O thread and answers `ControlRequest` frames from
//! clients and procs synchronously. `Stats` and `List` are answered from the
//! data plane's counters. Spawn, terminate and kill need the proc manager and
//! the control plane's authentication (a Unix socket with peer credentials or
//! a token), so over the data plane they get a `ControlResponse::Error`
//! naming the right way in.

use hostmux_wire::{
    encode_frame_to_vec, ControlErrorKind, ControlRequest, ControlResponse, Flags, FrameHeader,
    FrameKind, FrameView, Limits, ProcCounters, ProcInfo, ProcName, ProcState, Sender,
};

use crate::stats::ProcStats;

/// The encoded response frame to `request` (control path: allocates).
pub(crate) fn respond<'a>(
    request: &FrameView<'_>,
    limits: &Limits,
    service_name: &ProcName,
    procs: impl Iterator<Item = &'a ProcStats>,
) -> Vec<u8> {
    let response = if request.kind() != FrameKind::ControlRequest {
        error(
            ControlErrorKind::InvalidRequest,
            "the service proc takes ControlRequest frames only".to_owned(),
        )
    } else {
        match ControlRequest::decode(request.payload(), limits) {
            Err(e) => error(ControlErrorKind::InvalidRequest, e.to_string()),
            Ok(ControlRequest::List) => ControlResponse::Procs(procs.map(info).collect()),
            Ok(ControlRequest::Stats { name }) => ControlResponse::Procs(
                procs
                    .filter(|p| name.as_deref().is_none_or(|n| n == p.name))
                    .map(info)
                    .collect(),
            ),
            Ok(_) => error(
                ControlErrorKind::Unauthorized,
                "spawn, terminate and kill go through the host's control socket, not the data plane"
                    .to_owned(),
            ),
        }
    };
    let (dest_name, dest_addr) = match request.sender() {
        Sender::Anonymous => ("", ""),
        Sender::Client { name } => (name, ""),
        Sender::Proc { addr, name } => (name, addr),
    };
    let header = FrameHeader {
        kind: FrameKind::ControlResponse,
        flags: Flags::NONE,
        message_id: request.message_id(),
        dest_name,
        dest_port: request.dest_port(),
        dest_addr,
        sender: Sender::Proc {
            addr: "",
            name: service_name.as_str(),
        },
    };
    let mut out = Vec::new();
    let payload = response.to_bytes().unwrap_or_default();
    if encode_frame_to_vec(&mut out, &header, &payload, limits).is_err() {
        out.clear();
    }
    out
}

fn error(kind: ControlErrorKind, message: String) -> ControlResponse {
    ControlResponse::Error { kind, message }
}

fn info(stats: &ProcStats) -> ProcInfo {
    ProcInfo {
        name: stats.name.clone(),
        pid: 0,
        state: if stats.ready {
            ProcState::Ready
        } else {
            ProcState::Starting
        },
        uptime_ms: 0,
        counters: ProcCounters {
            frames_in: stats.frames_in,
            frames_out: stats.frames_out,
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
            returned: stats.returned_for.total(),
            inbound_used: stats.inbound_used,
            inbound_capacity: stats.inbound_capacity,
        },
    }
}
