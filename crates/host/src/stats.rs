//! Per-proc and per-connection counters.

use hostmux_wire::UndeliverableReason;

/// Number of [`UndeliverableReason`] variants (indexes [`Returned`]).
pub const REASONS: usize = UndeliverableReason::ALL.len();

/// Frames returned to their senders, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Returned {
    counts: [u64; REASONS],
}

impl Returned {
    /// Count one more frame returned for `reason`.
    pub(crate) fn add(&mut self, reason: UndeliverableReason) {
        self.counts[reason as usize] += 1;
    }

    /// Frames returned for `reason`.
    pub fn get(&self, reason: UndeliverableReason) -> u64 {
        self.counts[reason as usize]
    }

    /// Frames returned for any reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Counters of one proc as the host sees it.
///
/// Invariant (checked by tests and the simulation): `frames_out ==
/// outbound_delivered + outbound_returned.total() + outbound_dropped.total()`
/// for the frames the proc sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStats {
    /// The proc's name.
    pub name: String,
    /// Frames written into its inbound ring.
    pub frames_in: u64,
    /// Bytes written into its inbound ring.
    pub bytes_in: u64,
    /// Frames drained from its outbound ring (accepted from the proc).
    pub frames_out: u64,
    /// Bytes drained from its outbound ring.
    pub bytes_out: u64,
    /// Frames it sent that reached a ring, a client or the service proc.
    pub outbound_delivered: u64,
    /// Frames it sent that were returned to it, by reason.
    pub outbound_returned: Returned,
    /// Frames it sent that were neither delivered nor returned, by reason
    /// (see [`ConnStats::dropped`]).
    pub outbound_dropped: Returned,
    /// Frames addressed to it that were returned to their senders, by reason
    /// (including frames left in its inbound ring when it exited).
    pub returned_for: Returned,
    /// Frames left unread in its inbound ring when it exited (each returned
    /// as `ProcExited` where its sender could be found).
    pub left_in_ring: u64,
    /// Undeliverable notices that could not be written back to it (its own
    /// inbound ring was full or closed).
    pub notices_dropped: u64,
    /// Highest inbound ring occupancy seen, in bytes (sampled after each
    /// batch the host publishes into the ring and at each stats snapshot).
    pub inbound_high_water: u64,
    /// Inbound ring occupancy at the last sample, in bytes (records and
    /// padding). An upper bound: the proc publishes its releases in
    /// batches, so up to a quarter of the ring it already read may still
    /// count while it is busy.
    pub inbound_used: u64,
    /// Inbound ring capacity in bytes.
    pub inbound_capacity: u64,
    /// Whether the proc reported ready.
    pub ready: bool,
}

/// Counters of one client connection.
///
/// Invariant (checked by tests and the simulation): `accepted == delivered +
/// returned.total() + dropped.total()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// The client's name from its hello.
    pub name: String,
    /// Frames accepted from the client (after its hello).
    pub accepted: u64,
    /// Bytes accepted from the client.
    pub bytes_in: u64,
    /// Accepted frames written into a ring, another client's queue or the service proc.
    pub delivered: u64,
    /// Accepted frames returned to the client (one `Undeliverable` notice
    /// each), by reason.
    pub returned: Returned,
    /// Accepted frames neither delivered nor returned, by reason: notices
    /// and responses (which are never answered) that could not be
    /// delivered or were forged, and frames the service proc consumed
    /// (counted as `NoSuchProc`: anything but a control request).
    pub dropped: Returned,
    /// Frames queued towards the client (replies, notices, responses).
    pub frames_out: u64,
    /// Bytes queued towards the client.
    pub bytes_out: u64,
    /// Highest number of bytes queued towards the client.
    pub outbox_high_water: u64,
}

/// A snapshot of every counter of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Live procs.
    pub procs: Vec<ProcStats>,
    /// Open client connections.
    pub conns: Vec<ConnStats>,
    /// Connections closed so far, with their final counters.
    pub closed_conns: Vec<ConnStats>,
    /// Procs gone so far, with their final counters.
    pub gone_procs: Vec<ProcStats>,
    /// The connection memory budget and cap, and what they stopped.
    pub conn_limits: ConnLimitStats,
    /// Frames queued for clients, against the host-wide
    /// [`HostConfig::reply_memory`](crate::HostConfig::reply_memory).
    pub reply_memory: ReplyMemoryStats,
    /// One entry per configured peer this host has exchanged frames with.
    pub links: Vec<LinkStats>,
}

/// The state of this host's links with one configured peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// The peer's address, as configured.
    pub peer: String,
    /// `up` (a link this host dialled is connected), `connecting`,
    /// `down` (dials fail; frames answered at once with `reason` until the
    /// next dial), or `idle` (no link open; the next frame dials).
    pub state: String,
    /// Why dials fail, while `down`.
    pub reason: Option<UndeliverableReason>,
    /// Bytes queued on the dialled link and not yet written.
    pub queued_bytes: u64,
    /// Frames and bytes sent on it and not yet acknowledged by the peer.
    pub in_flight_frames: u64,
    /// Bytes sent and not yet acknowledged.
    pub in_flight_bytes: u64,
    /// The most frames in flight at once on it (at most
    /// `HostConfig::link_window_frames`).
    pub in_flight_high_water: u64,
    /// Frames that met a full window and waited (or were refused
    /// `Overloaded` after the overload wait).
    pub window_waits: u64,
    /// Frames sent on it since it connected.
    pub sent: u64,
    /// Frames the peer acknowledged on it.
    pub acked: u64,
    /// Frames this host's senders sent to the peer still awaiting an
    /// answer (see `docs/wire.md`, "Links").
    pub awaiting_answers: u64,
    /// The last heartbeat round trip, in microseconds.
    pub round_trip_us: Option<u64>,
    /// Link status frames (acknowledgements, heartbeats) received on the
    /// link this host dialled.
    pub statuses_received: u64,
    /// Dials made, dials failed, links that failed once up.
    pub dials: u64,
    /// Dials that failed.
    pub dial_failures: u64,
    /// Links that failed after they were up.
    pub link_failures: u64,
    /// Frames answered by this host (`LinkFailed`, `HostUnreachable`,
    /// `PeerRefused`) because a link failed before their answer came.
    pub answered_here: u64,
    /// Answers that arrived after this host had answered their frame,
    /// dropped.
    pub late_answers_dropped: u64,
    /// Frames received from the peer on links it dialled.
    pub received: u64,
}

/// Frames queued for clients against the host-wide
/// [`HostConfig::reply_memory`](crate::HostConfig::reply_memory).
///
/// Invariant: `used <= limit` and `high_water <= limit` (a frame that
/// would pass the limit is not queued).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyMemoryStats {
    /// The budget, in bytes.
    pub limit: u64,
    /// Bytes queued for clients now (not yet taken by their writers).
    pub used: u64,
    /// The most bytes ever queued at once.
    pub high_water: u64,
}

/// The host-wide limits on connections ([`HostConfig::conn_memory`],
/// [`HostConfig::max_connections`], [`HostConfig::frame_timeout`]) and
/// how often each was hit.
///
/// Invariant (checked by tests and the client-stream fuzz target):
/// `memory_used <= memory_limit` and `memory_high_water <= memory_limit`.
///
/// [`HostConfig::conn_memory`]: crate::HostConfig::conn_memory
/// [`HostConfig::max_connections`]: crate::HostConfig::max_connections
/// [`HostConfig::frame_timeout`]: crate::HostConfig::frame_timeout
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnLimitStats {
    /// The budget for connection read buffers, in bytes.
    pub memory_limit: u64,
    /// Bytes of read buffers held by connections now.
    pub memory_used: u64,
    /// The most bytes of read buffers ever held at once.
    pub memory_high_water: u64,
    /// Frontend connections open now (the cap counts these).
    pub connections: u64,
    /// The cap on frontend connections.
    pub max_connections: u64,
    /// Connections closed at accept because the cap was reached.
    pub refused_at_cap: u64,
    /// Connections closed because their hello announced more than
    /// [`MAX_HELLO_LEN`](hostmux_wire::MAX_HELLO_LEN).
    pub hello_too_large: u64,
    /// Connections closed for sending no hello in time.
    pub hello_timeouts: u64,
    /// Connections closed because a partial frame did not complete within
    /// the frame timeout.
    pub frame_timeouts: u64,
    /// Times a connection stopped being read to wait for budget.
    pub budget_waits: u64,
    /// Connections closed because their buffer could never fit the budget
    /// or they waited for it longer than the frame timeout.
    pub closed_over_budget: u64,
}

impl HostStats {
    /// The live or gone proc called `name` (live first).
    pub fn proc(&self, name: &str) -> Option<&ProcStats> {
        self.procs
            .iter()
            .chain(self.gone_procs.iter().rev())
            .find(|p| p.name == name)
    }

    /// The open or closed connection of client `name` (open first).
    pub fn conn(&self, name: &str) -> Option<&ConnStats> {
        self.conns
            .iter()
            .chain(self.closed_conns.iter().rev())
            .find(|c| c.name == name)
    }
}
