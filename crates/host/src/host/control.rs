//! The control plane's side of the host: privileged control requests (from
//! the control socket or a token-bearing connection, through the service
//! proc) carried out on the caller's runtime, and the proc list.

use std::time::Duration;

use hostmux_lifecycle::ProcHandle as _;
use hostmux_wire::{
    ControlErrorKind, ControlRequest, ControlResponse, ProcCounters, ProcInfo, ProcState,
    ReplyTarget, TerminateSummary,
};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{Phase, WeakHost};
use crate::control::{live_state, terminal_state};
use crate::dataplane::service::{self, ControlJob};
use crate::io::Command;
use crate::process::SpawnByRequest;
use crate::{Host, HostError};

/// Bulk terminate from the control plane has at most this many procs
/// terminating at once (hyperactor's meaning: each with its own grace).
const MAX_STOPS_IN_FLIGHT: usize = 32;

/// Answers privileged control requests, each in its own task (a spawn that
/// waits for readiness does not hold up a `List`).
pub(crate) async fn control_loop<M: SpawnByRequest>(
    host: WeakHost<M>,
    mut jobs: UnboundedReceiver<ControlJob>,
) {
    while let Some(job) = jobs.recv().await {
        let Some(host) = host.upgrade() else { return };
        tokio::spawn(async move {
            let limits = host.config().limits;
            let response = match ControlRequest::decode(&job.payload, &limits) {
                Ok(request) => {
                    // Env values and long argument lists stay out of the log.
                    let logged = crate::logged::LoggedRequest(&request);
                    tracing::info!(requester = %job.reply_to, request = %logged, "control request");
                    host.handle_control(request).await
                }
                Err(e) => service::error(ControlErrorKind::InvalidRequest, e.to_string()),
            };
            let target = ReplyTarget {
                name: &job.reply_to,
                addr: "",
                to_client: job.to_client,
            };
            let frame = service::response_frame(
                target,
                job.message_id,
                job.port,
                host.service_name(),
                &response,
                &limits,
            );
            // Answered on the thread that owns the connection.
            let _ = host.send_command(
                job.io_thread,
                Command::ControlReply {
                    conn: job.conn,
                    frame,
                },
            );
        });
    }
}

fn error_response(e: &HostError) -> ControlResponse {
    let kind = match e {
        HostError::ProcExists(_) => ControlErrorKind::DuplicateName,
        HostError::NoSuchProc(_) | HostError::AlreadyEnded { .. } => ControlErrorKind::NoSuchProc,
        HostError::Spawn { .. }
        | HostError::StoppedWhileStarting { .. }
        | HostError::NotReady { .. }
        | HostError::ReadyTimeout { .. }
        | HostError::AgentUnanswered { .. }
        | HostError::Ring { .. } => ControlErrorKind::SpawnFailed,
        HostError::CannotRestart { .. } => ControlErrorKind::InvalidRequest,
        HostError::Wire(_) | HostError::ReservedName(_) | HostError::ServiceProc(_) => {
            ControlErrorKind::InvalidRequest
        }
        _ => ControlErrorKind::Internal,
    };
    service::error(kind, e.to_string())
}

impl<M: SpawnByRequest> Host<M> {
    /// Carries out one control request (what the service proc does for a
    /// privileged connection) and returns its response.
    pub async fn handle_control(&self, request: ControlRequest) -> ControlResponse
    where
        M::Config: 'static,
    {
        match request {
            ControlRequest::Spawn(spawn) => {
                let spec = match M::spec_for(&spawn) {
                    Ok(spec) => spec,
                    Err(refused) => return service::error(refused.kind, refused.reason),
                };
                let timeout = Duration::from_millis(spawn.ready_timeout_ms);
                match self
                    .spawn_with_ready_timeout(&spawn.name, spec, timeout)
                    .await
                {
                    Ok(id) => ControlResponse::Spawned {
                        name: id.name().as_str().to_owned(),
                        pid: self.pid_of(id.name()).unwrap_or(0),
                    },
                    Err(e) => error_response(&e),
                }
            }
            ControlRequest::Terminate { name, timeout_ms } => {
                match self
                    .terminate_proc(&name, Duration::from_millis(timeout_ms))
                    .await
                {
                    Ok(status) => ControlResponse::Stopped {
                        name,
                        state: terminal_state(&status),
                    },
                    Err(e) => error_response(&e),
                }
            }
            ControlRequest::Kill { name } => match self.kill_proc(&name).await {
                Ok(status) => ControlResponse::Stopped {
                    name,
                    state: terminal_state(&status),
                },
                Err(e) => error_response(&e),
            },
            ControlRequest::List => match self.list().await {
                Ok(procs) => ControlResponse::Procs(procs),
                Err(e) => error_response(&e),
            },
            ControlRequest::Stats { name } => match self.list().await {
                Ok(mut procs) => match name {
                    None => ControlResponse::Procs(procs),
                    Some(name) => {
                        procs.retain(|p| p.name == name);
                        if procs.is_empty() {
                            service::error(
                                ControlErrorKind::NoSuchProc,
                                format!("no proc named '{name}', live or recently gone"),
                            )
                        } else {
                            ControlResponse::Procs(procs)
                        }
                    }
                },
                Err(e) => error_response(&e),
            },
            ControlRequest::Links => match self.stats().await {
                Ok(stats) => {
                    ControlResponse::Links(stats.links.into_iter().map(link_info).collect())
                }
                Err(e) => error_response(&e),
            },
            ControlRequest::TerminateAll { timeout_ms } => {
                let summary = self
                    .terminate_children(Duration::from_millis(timeout_ms), MAX_STOPS_IN_FLIGHT)
                    .await;
                ControlResponse::TerminatedAll(TerminateSummary {
                    attempted: summary.attempted as u32,
                    ok: summary.ok as u32,
                    failed: summary.failed as u32,
                })
            }
        }
    }
}

impl<M: hostmux_lifecycle::ProcManager + 'static> Host<M> {
    /// Every proc in the registry (starting ones included) and the most
    /// recent gone ones (up to 64), with pid, state, uptime and counters:
    /// what `ps` shows and the control plane's `List` answers. A proc that
    /// a failed or dropped spawn is still releasing shows as `Terminating`.
    pub async fn list(&self) -> Result<Vec<ProcInfo>, HostError> {
        let stats = self.stats().await?;
        Ok(self.list_with(&stats))
    }

    /// [`Host::list`] with the counters of `stats` (one snapshot for the
    /// list and whatever else reads `stats`).
    pub(crate) fn list_with(&self, stats: &crate::HostStats) -> Vec<ProcInfo> {
        let counters = |name: &str| {
            stats
                .proc(name)
                .map(|p| ProcCounters {
                    frames_in: p.frames_in,
                    frames_out: p.frames_out,
                    bytes_in: p.bytes_in,
                    bytes_out: p.bytes_out,
                    returned: p.returned_for.total(),
                    inbound_used: p.inbound_used,
                    inbound_capacity: p.inbound_capacity,
                    delivered: p.outbound_delivered,
                    returned_by_reason: p.returned_for.by_reason(),
                    sent_returned_by_reason: p.outbound_returned.by_reason(),
                    sent_dropped: p.outbound_dropped.total(),
                    inbound_high_water: p.inbound_high_water,
                    zero_copy_frames: p.zero_copy_frames,
                    zero_copy_bytes: p.zero_copy_bytes,
                    zero_copy_moved_back: p.zero_copy_moved_back,
                })
                .unwrap_or_default()
        };
        let mut list = Vec::new();
        let now = std::time::Instant::now();
        {
            let procs = self.inner.procs.lock().unwrap_or_else(|e| e.into_inner());
            for (name, entry) in procs.iter() {
                let pid = entry.handle.as_ref().and_then(|handle| handle.pid());
                let (record, next_restart) = entry
                    .supervision
                    .as_ref()
                    .map(|s| s.snapshot(now))
                    .unwrap_or_default();
                let state = match (entry.phase, &entry.handle) {
                    (Phase::Releasing, _) => ProcState::Terminating,
                    (Phase::BackingOff, _) => ProcState::BackingOff,
                    (Phase::Starting, None) => ProcState::Starting,
                    // The manager's ready report is not the host's: a start
                    // still waits for the agent's answer and for the I/O
                    // thread to deliver to the proc. Until the entry is
                    // `Ready`, frames to it come back `NotReady`, so `ps`
                    // must not say ready (its ends, e.g. a crash while it
                    // starts, still show).
                    (Phase::Starting, Some(handle)) => match live_state(&handle.status()) {
                        ProcState::Ready => ProcState::Starting,
                        state => state,
                    },
                    (Phase::Ready, Some(handle)) => live_state(&handle.status()),
                    (Phase::Ready, None) => ProcState::Ready,
                };
                list.push(ProcInfo {
                    name: name.as_str().to_owned(),
                    pid: pid.unwrap_or(0),
                    state,
                    uptime_ms: entry.started.map_or(0, |t| t.elapsed().as_millis() as u64),
                    counters: counters(name.as_str()),
                    restarts: record.restarts,
                    last_exit: record.last_exit.as_ref().map(terminal_state),
                    next_restart_ms: next_restart.map(|d| d.as_millis() as u64),
                    status: entry
                        .handle
                        .as_ref()
                        .and_then(|handle| handle.status_text())
                        .unwrap_or_default(),
                });
            }
        }
        list.sort_by(|a, b| a.name.cmp(&b.name));
        let gone = self.inner.gone.lock().unwrap_or_else(|e| e.into_inner());
        for proc in gone.iter().rev() {
            list.push(ProcInfo {
                name: proc.name.as_str().to_owned(),
                pid: proc.pid.unwrap_or(0),
                state: terminal_state(&proc.status),
                uptime_ms: proc.uptime.as_millis() as u64,
                counters: counters(proc.name.as_str()),
                restarts: proc.restart.as_ref().map_or(0, |r| r.restarts),
                last_exit: proc
                    .restart
                    .as_ref()
                    .and_then(|r| r.last_exit.as_ref())
                    .map(terminal_state),
                next_restart_ms: None,
                status: String::new(),
            });
        }
        list
    }
}

/// A link's stats as the control plane answers them.
fn link_info(link: crate::LinkStats) -> hostmux_wire::LinkInfo {
    hostmux_wire::LinkInfo {
        peer: link.peer,
        state: link.state,
        reason: link.reason.map(|r| format!("{r:?}")).unwrap_or_default(),
        queued_bytes: link.queued_bytes,
        in_flight_frames: link.in_flight_frames,
        in_flight_bytes: link.in_flight_bytes,
        sent: link.sent,
        acked: link.acked,
        awaiting_answers: link.awaiting_answers,
        // 0 means none measured on this wire: a round trip under 1 µs
        // (rounded down to 0) is sent as 1.
        round_trip_us: link.round_trip_us.map_or(0, |us| us.max(1)),
        dials: link.dials,
        dial_failures: link.dial_failures,
        link_failures: link.link_failures,
        answered_here: link.answered_here,
        late_answers_dropped: link.late_answers_dropped,
        received: link.received,
    }
}
