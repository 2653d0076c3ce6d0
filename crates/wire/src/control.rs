//! Control-plane payloads: requests to the host's service proc and its
//! responses.
//!
//! They travel as rkyv-archived payloads of `ControlRequest` and
//! `ControlResponse` frames. Only the service proc and control clients decode
//! them; the data path never looks inside. They are rare, so decoding them
//! deserialises into owned values (and allocates).

use rkyv::api::high::{HighDeserializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::frame::FRAME_ALIGN;
use crate::{validate_name, Limits, WireError};

/// One environment variable for a spawned proc.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// Variable name: non-empty, no `=` or NUL.
    pub key: String,
    /// Value: no NUL.
    pub value: String,
}

/// Everything needed to spawn a proc.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SpawnRequest {
    /// The proc's name; must be unique on the host.
    pub name: String,
    /// Program to execute (path or name looked up in `PATH`); no NUL.
    pub program: String,
    /// Arguments after the program name; no NUL.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<EnvVar>,
    /// Inbound ring size in bytes; 0 picks the host's default.
    pub inbound_ring_bytes: u32,
    /// Outbound ring size in bytes; 0 picks the host's default.
    pub outbound_ring_bytes: u32,
    /// How long the proc may take to report ready; 0 waits forever.
    pub ready_timeout_ms: u64,
    /// The user the proc runs as: a name or a decimal uid. `None`: the
    /// host's default (`serve --proc-user`), else the host's own user.
    pub user: Option<String>,
    /// The proc's group: a name or a decimal gid. `None`: the user's
    /// primary group. Supplementary groups are the user's (as `initgroups`).
    pub group: Option<String>,
    /// When and how the host restarts the proc after it ends (default:
    /// never).
    pub restart: RestartRequest,
    /// How the proc reports ready, as text (see [`ReadyMode`]): `boot`
    /// (also the empty string), `spawn`, `notify`, `tcp:PORT` or
    /// `tcp:HOST:PORT`. Only `boot` procs get rings.
    pub ready: String,
    /// The sd_notify watchdog interval in milliseconds; 0: none.
    pub watchdog_ms: u64,
}

/// Longest host name a `tcp:HOST:PORT` ready mode may name (DNS's limit).
pub const MAX_READY_HOST_LEN: usize = 253;

/// How a spawned proc tells the host it is ready ([`SpawnRequest::ready`]
/// parses into this; `hostmux spawn --ready` takes the same text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyMode {
    /// `boot`: the boot protocol of `hostmux-proc` (ready record, then an
    /// answered agent ping). The only mode whose procs get rings.
    Boot,
    /// `spawn`: ready once the program was exec'd.
    Spawn,
    /// `notify`: systemd's `sd_notify` protocol, ready at `READY=1`.
    Notify,
    /// `tcp:PORT` (on 127.0.0.1) or `tcp:HOST:PORT`: ready once a TCP
    /// connection to it succeeds.
    Tcp {
        /// The host name or IP address (IPv6 without brackets).
        host: String,
        /// The port, 1..=65535.
        port: u16,
    },
}

impl std::str::FromStr for ReadyMode {
    type Err = WireError;

    fn from_str(text: &str) -> Result<Self, WireError> {
        let invalid = |reason: String| WireError::InvalidReadyMode {
            text: text.to_owned(),
            reason,
        };
        let tcp = match text {
            "" | "boot" => return Ok(ReadyMode::Boot),
            "spawn" => return Ok(ReadyMode::Spawn),
            "notify" => return Ok(ReadyMode::Notify),
            _ => text.strip_prefix("tcp:").ok_or_else(|| {
                invalid("expected boot, spawn, notify, tcp:PORT or tcp:HOST:PORT".into())
            })?,
        };
        let (host, port) = match tcp.rsplit_once(':') {
            Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']'), port),
            None => ("127.0.0.1", tcp),
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid("the port must be 1..=65535".into()))?;
        if host.is_empty()
            || host.len() > MAX_READY_HOST_LEN
            || host.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(format!(
                "the host must be 1..={MAX_READY_HOST_LEN} bytes, without spaces"
            )));
        }
        Ok(ReadyMode::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for ReadyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadyMode::Boot => f.write_str("boot"),
            ReadyMode::Spawn => f.write_str("spawn"),
            ReadyMode::Notify => f.write_str("notify"),
            ReadyMode::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            ReadyMode::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

/// When a spawned proc is restarted (`spawn --restart`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartWhen {
    /// Never.
    #[default]
    No,
    /// After a non-zero exit, a death by signal the operator did not ask
    /// for, or a failed readiness after a restart.
    OnFailure,
    /// After any end the operator did not ask for.
    Always,
}

/// The restart policy of a [`SpawnRequest`]: systemd's `Restart=`, with an
/// exponential wait between restarts and a start limit.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartRequest {
    /// When it is restarted; with [`RestartWhen::No`] the rest is ignored.
    pub when: RestartWhen,
    /// The wait before the first restart in a row, in milliseconds; it
    /// doubles with every restart in a row.
    pub delay_ms: u64,
    /// The longest wait, in milliseconds.
    pub delay_max_ms: u64,
    /// At most this many restarts within `limit_interval_ms`; 0: no limit.
    pub limit_burst: u32,
    /// The start limit's sliding window, in milliseconds.
    pub limit_interval_ms: u64,
}

impl Default for RestartRequest {
    /// No restarts; if `when` is changed: 100 ms doubling up to 30 s, at
    /// most 5 restarts in 60 s.
    fn default() -> Self {
        Self {
            when: RestartWhen::No,
            delay_ms: 100,
            delay_max_ms: 30_000,
            limit_burst: 5,
            limit_interval_ms: 60_000,
        }
    }
}

/// Longest user or group name a spawn request may carry (Linux's
/// `LOGIN_NAME_MAX`).
pub const MAX_ACCOUNT_NAME_LEN: usize = 256;

/// A request to the host's service proc.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ControlRequest {
    /// Spawn a proc.
    Spawn(SpawnRequest),
    /// Stop a proc politely, then SIGKILL it after `timeout_ms`.
    Terminate {
        /// The proc.
        name: String,
        /// Grace period before SIGKILL.
        timeout_ms: u64,
    },
    /// SIGKILL a proc's process group now.
    Kill {
        /// The proc.
        name: String,
    },
    /// List every proc.
    List,
    /// Counters of one proc, or of all procs when `name` is `None`.
    Stats {
        /// The proc, or all.
        name: Option<String>,
    },
    /// Terminate every proc, a bounded number at a time, each with its own
    /// grace (the host's `terminate_children`).
    TerminateAll {
        /// Each proc's grace period before SIGKILL.
        timeout_ms: u64,
    },
    /// The host's links to other hosts, one entry per configured peer it
    /// has exchanged frames with.
    Links,
}

/// The state of a host's links with one configured peer (answer to
/// [`ControlRequest::Links`]; the host's `LinkStats`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkInfo {
    /// The peer's address, as configured.
    pub peer: String,
    /// `up`, `connecting`, `down` (dials fail) or `idle` (no link open).
    pub state: String,
    /// While `down`: the reason frames for it are answered with.
    pub reason: String,
    /// Bytes queued on the link, not yet written.
    pub queued_bytes: u64,
    /// Frames sent and not yet acknowledged by the peer.
    pub in_flight_frames: u64,
    /// Bytes sent and not yet acknowledged.
    pub in_flight_bytes: u64,
    /// Frames sent on the current link, and acknowledged.
    pub sent: u64,
    /// Frames acknowledged on the current link.
    pub acked: u64,
    /// Frames sent to the peer still awaiting an answer.
    pub awaiting_answers: u64,
    /// The last heartbeat round trip in microseconds, at least 1 (0: none
    /// measured).
    pub round_trip_us: u64,
    /// Dials made.
    pub dials: u64,
    /// Dials that failed.
    pub dial_failures: u64,
    /// Links that failed after they were up.
    pub link_failures: u64,
    /// Frames the host answered itself because a link failed.
    pub answered_here: u64,
    /// Late answers dropped (their frame was already answered).
    pub late_answers_dropped: u64,
    /// Frames received from the peer.
    pub received: u64,
}

/// Where a proc is in its life.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ProcState {
    /// Spawned, not ready yet.
    Starting,
    /// Ready and receiving frames.
    Ready,
    /// Being stopped.
    Terminating,
    /// Exited with this code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// Killed by a signal.
    Signaled {
        /// The signal number.
        signal: i32,
        /// Whether it dumped core.
        core_dumped: bool,
    },
    /// Could not be started or supervised.
    Failed {
        /// Why.
        reason: String,
    },
    /// Ended, and waiting to be restarted by its restart policy (see
    /// [`ProcInfo::next_restart_ms`] and [`ProcInfo::last_exit`]).
    BackingOff,
}

/// Per-proc traffic counters.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcCounters {
    /// Frames written into the proc's inbound ring.
    pub frames_in: u64,
    /// Frames drained from its outbound ring.
    pub frames_out: u64,
    /// Bytes written into its inbound ring.
    pub bytes_in: u64,
    /// Bytes drained from its outbound ring.
    pub bytes_out: u64,
    /// Frames addressed to it that were returned as undeliverable.
    pub returned: u64,
    /// Bytes currently used in its inbound ring.
    pub inbound_used: u64,
    /// Size of its inbound ring in bytes.
    pub inbound_capacity: u64,
    /// Frames it sent (drained from its outbound ring) that the host
    /// delivered: into a ring, a client's queue or the service proc.
    pub delivered: u64,
    /// `returned` by reason, indexed by `reason as usize` (the order of
    /// [`UndeliverableReason::ALL`](crate::UndeliverableReason::ALL)).
    pub returned_by_reason: [u64; REASON_COUNT],
    /// Frames it sent that were returned to it, by reason (indexed like
    /// `returned_by_reason`). With `delivered` and `sent_dropped`:
    /// `frames_out = delivered + sum(sent_returned_by_reason) + sent_dropped`.
    pub sent_returned_by_reason: [u64; REASON_COUNT],
    /// Frames it sent that were neither delivered nor returned: notices and
    /// responses (never answered) that could not be delivered, and frames
    /// the service proc consumed without an answer.
    pub sent_dropped: u64,
    /// Highest inbound ring occupancy seen, in bytes.
    pub inbound_high_water: u64,
    /// Of `frames_in`, the large frames the host read from a client's
    /// socket straight into the proc's ring (zero-copy receive).
    pub zero_copy_frames: u64,
    /// Bytes of those frames.
    pub zero_copy_bytes: u64,
    /// Large frames whose zero-copy receive was abandoned (a stalled or
    /// closed sender, a route change): the part read went back to the
    /// connection's buffer and the frame took the copied path.
    pub zero_copy_moved_back: u64,
}

/// Number of [`UndeliverableReason`](crate::UndeliverableReason)s (the
/// length of the per-reason counters in [`ProcCounters`]).
pub const REASON_COUNT: usize = crate::UndeliverableReason::ALL.len();

/// One line of `hostmux ps`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// The proc's name.
    pub name: String,
    /// Its OS process id (0 if it has none yet).
    pub pid: u32,
    /// Its state.
    pub state: ProcState,
    /// Milliseconds since it was spawned.
    pub uptime_ms: u64,
    /// Its counters.
    pub counters: ProcCounters,
    /// How often its restart policy restarted it (0 without one).
    pub restarts: u32,
    /// How its previous instance ended, once its restart policy restarted
    /// it (or is about to); `None` otherwise.
    pub last_exit: Option<ProcState>,
    /// While [`ProcState::BackingOff`]: milliseconds until the restart.
    pub next_restart_ms: Option<u64>,
    /// The last status text it reported (sd_notify `STATUS=`); empty if
    /// none.
    pub status: String,
}

/// The outcome of a bulk terminate: `attempted = ok + failed`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TerminateSummary {
    /// Procs the host tried to stop.
    pub attempted: u32,
    /// Procs that reached a terminal status.
    pub ok: u32,
    /// Procs that could not be confirmed stopped.
    pub failed: u32,
}

/// Categories of control errors.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlErrorKind {
    /// No proc of that name.
    NoSuchProc,
    /// A proc of that name already exists.
    DuplicateName,
    /// The request failed validation.
    InvalidRequest,
    /// Spawning failed (exec error, exited before ready, ready timeout).
    SpawnFailed,
    /// The caller may not use the control plane.
    Unauthorized,
    /// Anything else.
    Internal,
}

/// The service proc's answer to a [`ControlRequest`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ControlResponse {
    /// The proc was spawned and is ready.
    Spawned {
        /// The proc.
        name: String,
        /// Its OS process id.
        pid: u32,
    },
    /// The proc stopped (answer to `Terminate` and `Kill`).
    Stopped {
        /// The proc.
        name: String,
        /// Its terminal state.
        state: ProcState,
    },
    /// Answer to `List` and `Stats`.
    Procs(Vec<ProcInfo>),
    /// Answer to `TerminateAll`.
    TerminatedAll(TerminateSummary),
    /// Answer to `Links`.
    Links(Vec<LinkInfo>),
    /// The request failed.
    Error {
        /// The category.
        kind: ControlErrorKind,
        /// A human-readable explanation.
        message: String,
    },
}

fn invalid(what: &'static str, reason: impl Into<String>) -> WireError {
    WireError::InvalidPayload {
        what,
        reason: reason.into(),
    }
}

fn to_bytes<T>(value: &T, what: &'static str) -> Result<AlignedVec<FRAME_ALIGN>, WireError>
where
    T: for<'a> Serialize<
        rkyv::api::high::HighSerializer<
            AlignedVec<FRAME_ALIGN>,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rancor::Error,
        >,
    >,
{
    rkyv::api::high::to_bytes_in(value, AlignedVec::<FRAME_ALIGN>::new())
        .map_err(|e| invalid(what, e.to_string()))
}

/// Validates (bytecheck) and deserialises an archived payload. Copies it to
/// an aligned buffer first if `payload` is not 16-byte aligned.
fn from_bytes<T>(payload: &[u8], what: &'static str) -> Result<T, WireError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    let decode = |bytes: &[u8]| {
        rkyv::from_bytes::<T, rancor::Error>(bytes).map_err(|e| invalid(what, e.to_string()))
    };
    if payload.as_ptr() as usize % FRAME_ALIGN == 0 {
        decode(payload)
    } else {
        let mut aligned = AlignedVec::<FRAME_ALIGN>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        decode(&aligned)
    }
}

fn check_name(what: &'static str, name: &str, limits: &Limits) -> Result<(), WireError> {
    validate_name(name.as_bytes(), limits.max_name_len).map_err(|e| invalid(what, e.to_string()))
}

fn check_no_nul(what: &'static str, field: &str, text: &str) -> Result<(), WireError> {
    if text.contains('\0') {
        return Err(invalid(what, format!("{field} contains a NUL byte")));
    }
    Ok(())
}

/// A user or group: non-empty, at most [`MAX_ACCOUNT_NAME_LEN`] bytes, no
/// NUL, no `:` (the `USER:GROUP` separator) and no whitespace.
fn check_account(what: &'static str, field: &str, account: &str) -> Result<(), WireError> {
    if account.is_empty() || account.len() > MAX_ACCOUNT_NAME_LEN {
        return Err(invalid(
            what,
            format!("{field} must be 1..={MAX_ACCOUNT_NAME_LEN} bytes long"),
        ));
    }
    if account
        .chars()
        .any(|c| c == '\0' || c == ':' || c.is_whitespace())
    {
        return Err(invalid(
            what,
            format!("{field} {account:?} contains a NUL, ':' or whitespace"),
        ));
    }
    Ok(())
}

impl ControlRequest {
    /// The archived payload bytes.
    pub fn to_bytes(&self) -> Result<AlignedVec<FRAME_ALIGN>, WireError> {
        to_bytes(self, "control request")
    }

    /// Validates and decodes a request payload: bytecheck, then names against
    /// `limits`, and no NUL bytes in program, arguments or environment.
    pub fn decode(payload: &[u8], limits: &Limits) -> Result<Self, WireError> {
        const WHAT: &str = "control request";
        let request: ControlRequest = from_bytes(payload, WHAT)?;
        match &request {
            ControlRequest::Spawn(spawn) => {
                check_name(WHAT, &spawn.name, limits)?;
                if spawn.program.is_empty() {
                    return Err(invalid(WHAT, "spawn program is empty"));
                }
                check_no_nul(WHAT, "program", &spawn.program)?;
                for arg in &spawn.args {
                    check_no_nul(WHAT, "argument", arg)?;
                }
                for var in &spawn.env {
                    if var.key.is_empty() || var.key.contains('=') {
                        return Err(invalid(WHAT, "environment key is empty or contains '='"));
                    }
                    check_no_nul(WHAT, "environment key", &var.key)?;
                    check_no_nul(WHAT, "environment value", &var.value)?;
                }
                for (field, account) in [("user", &spawn.user), ("group", &spawn.group)] {
                    if let Some(account) = account {
                        check_account(WHAT, field, account)?;
                    }
                }
                spawn
                    .ready
                    .parse::<ReadyMode>()
                    .map_err(|e| invalid(WHAT, e.to_string()))?;
            }
            ControlRequest::Terminate { name, .. } | ControlRequest::Kill { name } => {
                check_name(WHAT, name, limits)?;
            }
            ControlRequest::Stats { name: Some(name) } => check_name(WHAT, name, limits)?,
            ControlRequest::List
            | ControlRequest::Stats { name: None }
            | ControlRequest::TerminateAll { .. }
            | ControlRequest::Links => {}
        }
        Ok(request)
    }
}

impl ControlResponse {
    /// The archived payload bytes.
    pub fn to_bytes(&self) -> Result<AlignedVec<FRAME_ALIGN>, WireError> {
        to_bytes(self, "control response")
    }

    /// Validates (bytecheck) and decodes a response payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        from_bytes(payload, "control response")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn() -> ControlRequest {
        ControlRequest::Spawn(SpawnRequest {
            name: "echo".into(),
            program: "/bin/echo".into(),
            args: vec!["hi".into(), "there".into()],
            env: vec![EnvVar {
                key: "RUST_LOG".into(),
                value: "debug".into(),
            }],
            inbound_ring_bytes: 1 << 20,
            outbound_ring_bytes: 0,
            ready_timeout_ms: 5000,
            user: Some("nobody".into()),
            group: Some("65534".into()),
            restart: RestartRequest {
                when: RestartWhen::OnFailure,
                ..RestartRequest::default()
            },
            ready: "tcp:8080".into(),
            watchdog_ms: 2000,
        })
    }

    #[test]
    fn every_request_round_trips() {
        let limits = Limits::default();
        for request in [
            spawn(),
            ControlRequest::Terminate {
                name: "a".into(),
                timeout_ms: 10,
            },
            ControlRequest::Kill { name: "b".into() },
            ControlRequest::List,
            ControlRequest::Stats { name: None },
            ControlRequest::Stats {
                name: Some("c".into()),
            },
            ControlRequest::TerminateAll { timeout_ms: 1 },
        ] {
            let bytes = request.to_bytes().unwrap();
            assert_eq!(ControlRequest::decode(&bytes, &limits).unwrap(), request);
        }
    }

    #[test]
    fn every_response_round_trips() {
        let info = ProcInfo {
            name: "echo".into(),
            pid: 42,
            state: ProcState::Signaled {
                signal: 9,
                core_dumped: false,
            },
            uptime_ms: 1234,
            counters: ProcCounters {
                frames_in: 1,
                returned: 2,
                ..Default::default()
            },
            restarts: 3,
            last_exit: Some(ProcState::Exited { code: 1 }),
            next_restart_ms: Some(400),
            status: "serving".into(),
        };
        for response in [
            ControlResponse::Spawned {
                name: "a".into(),
                pid: 7,
            },
            ControlResponse::Stopped {
                name: "a".into(),
                state: ProcState::Exited { code: 3 },
            },
            ControlResponse::Procs(vec![info.clone(), info]),
            ControlResponse::TerminatedAll(TerminateSummary {
                attempted: 3,
                ok: 2,
                failed: 1,
            }),
            ControlResponse::Error {
                kind: ControlErrorKind::DuplicateName,
                message: "proc echo exists".into(),
            },
        ] {
            let bytes = response.to_bytes().unwrap();
            assert_eq!(ControlResponse::decode(&bytes).unwrap(), response);
        }
    }

    #[test]
    fn rejects_bad_names_nuls_and_garbage() {
        let limits = Limits::default();
        let bad = ControlRequest::Kill {
            name: "no/slash".into(),
        };
        let err = ControlRequest::decode(&bad.to_bytes().unwrap(), &limits).unwrap_err();
        assert!(matches!(err, WireError::InvalidPayload { .. }), "{err}");
        let ControlRequest::Spawn(mut request) = spawn() else {
            unreachable!()
        };
        request.args.push("a\0b".into());
        let bytes = ControlRequest::Spawn(request).to_bytes().unwrap();
        assert!(ControlRequest::decode(&bytes, &limits).is_err());
        for (user, group) in [
            (Some(""), None),
            (Some("a:b"), None),
            (None, Some("wheel\0")),
            (None, Some("two words")),
        ] {
            let ControlRequest::Spawn(mut request) = spawn() else {
                unreachable!()
            };
            request.user = user.map(str::to_owned);
            request.group = group.map(str::to_owned);
            let bytes = ControlRequest::Spawn(request).to_bytes().unwrap();
            let err = ControlRequest::decode(&bytes, &limits).unwrap_err();
            assert!(err.to_string().contains("user") || err.to_string().contains("group"));
        }
        let ControlRequest::Spawn(mut request) = spawn() else {
            unreachable!()
        };
        request.user = Some("u".repeat(MAX_ACCOUNT_NAME_LEN + 1));
        let bytes = ControlRequest::Spawn(request).to_bytes().unwrap();
        assert!(ControlRequest::decode(&bytes, &limits).is_err());
        assert!(ControlRequest::decode(&[0xff; 24], &limits).is_err());
        assert!(ControlResponse::decode(&[0xff; 3]).is_err());
    }

    #[test]
    fn ready_modes_parse_print_and_refuse_nonsense() {
        let tcp = |host: &str, port| ReadyMode::Tcp {
            host: host.into(),
            port,
        };
        for (text, mode, printed) in [
            ("", ReadyMode::Boot, "boot"),
            ("boot", ReadyMode::Boot, "boot"),
            ("spawn", ReadyMode::Spawn, "spawn"),
            ("notify", ReadyMode::Notify, "notify"),
            ("tcp:8080", tcp("127.0.0.1", 8080), "tcp:127.0.0.1:8080"),
            (
                "tcp:db.local:5432",
                tcp("db.local", 5432),
                "tcp:db.local:5432",
            ),
            ("tcp:[::1]:9", tcp("::1", 9), "tcp:[::1]:9"),
        ] {
            assert_eq!(text.parse::<ReadyMode>().unwrap(), mode, "{text}");
            assert_eq!(mode.to_string(), printed);
            assert_eq!(printed.parse::<ReadyMode>().unwrap(), mode);
        }
        for bad in [
            "Boot",
            "tcp:",
            "tcp:0",
            "tcp:70000",
            "tcp::80",
            "tcp:a b:1",
            "udp:1",
        ] {
            let err = bad.parse::<ReadyMode>().unwrap_err();
            assert!(err.to_string().contains("ready mode"), "{bad}: {err}");
        }
        let ControlRequest::Spawn(mut request) = spawn() else {
            unreachable!()
        };
        request.ready = "sometimes".into();
        let bytes = ControlRequest::Spawn(request).to_bytes().unwrap();
        let err = ControlRequest::decode(&bytes, &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
    }

    #[test]
    fn decodes_from_an_unaligned_slice() {
        let bytes = spawn().to_bytes().unwrap();
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        let decoded = ControlRequest::decode(&shifted[1..], &Limits::default()).unwrap();
        assert_eq!(decoded, spawn());
    }
}
