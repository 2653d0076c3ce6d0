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

    /// The counts indexed by `reason as usize` (the order of
    /// [`UndeliverableReason::ALL`]).
    pub fn by_reason(&self) -> [u64; REASONS] {
        self.counts
    }

    /// Adds `other`'s counts to these.
    pub(crate) fn add_all(&mut self, other: &Returned) {
        for (sum, count) in self.counts.iter_mut().zip(other.counts) {
            *sum += count;
        }
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
    /// Large frames whose reading straight into its ring began (see
    /// [`HostConfig::zero_copy_threshold`](crate::HostConfig::zero_copy_threshold)):
    /// each ends in `zero_copy_frames` or `zero_copy_moved_back`.
    pub zero_copy_holds: u64,
    /// Of `frames_in`, the frames read from a client's socket straight into
    /// the ring (no copy through the connection's buffer).
    pub zero_copy_frames: u64,
    /// Bytes of those frames.
    pub zero_copy_bytes: u64,
    /// Frames whose reading into the ring ended without them (the sender
    /// stalled past [`HostConfig::zero_copy_hold`](crate::HostConfig::zero_copy_hold),
    /// ended its stream or failed mid-payload, or the route changed): the
    /// part read was moved back to the connection's buffer, the ring's
    /// reservation abandoned unpublished, and the frame (if it completes)
    /// took the copied path. (A proc removed while its ring held a frame
    /// keeps its final counters from before the frame was moved back.)
    pub zero_copy_moved_back: u64,
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

/// What kind of connection a [`ConnStats`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ConnClass {
    /// A client that said hello on the frontend or the control socket.
    #[default]
    Client,
    /// Another host's link to this one (it presented the peer token).
    LinkAccepted,
    /// A link this host dialled to one of its peers.
    LinkDialled,
}

impl ConnClass {
    /// Every class, in the order of [`HostStats::conn_classes`].
    pub const ALL: [ConnClass; 3] = [
        ConnClass::Client,
        ConnClass::LinkAccepted,
        ConnClass::LinkDialled,
    ];

    /// The class's name in metrics and JSON: `client`, `link_accepted`,
    /// `link_dialled`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnClass::Client => "client",
            ConnClass::LinkAccepted => "link_accepted",
            ConnClass::LinkDialled => "link_dialled",
        }
    }
}

/// Counters of one client connection.
///
/// Invariant (checked by tests and the simulation): `accepted == delivered +
/// returned.total() + dropped.total()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// The client's name from its hello.
    pub name: String,
    /// A client, or a link between this host and another.
    pub class: ConnClass,
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
    /// The host I/O thread that serves the connection (0 with one).
    pub io_thread: u32,
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
    /// One entry per [`ConnClass`] (in the order of [`ConnClass::ALL`]):
    /// open and closed connections and their summed counters.
    pub conn_classes: Vec<ConnClassStats>,
    /// Spawns, exits and uptime.
    pub lifecycle: LifecycleStats,
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
    /// Every heartbeat round trip measured on links this host dialled to
    /// the peer, since the host started.
    pub round_trips: LatencyHistogram,
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

/// Upper bounds of the [`LatencyHistogram`] buckets, in microseconds
/// (a last bucket holds everything above).
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// Durations counted in fixed buckets: recording one is an add, no
/// allocation and no clock read of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative): `counts[i]` holds durations up to
    /// `LATENCY_BOUNDS_US[i]` and above the bound before; the last one
    /// those above every bound.
    counts: [u64; LATENCY_BOUNDS_US.len() + 1],
    /// The sum of every duration recorded, in microseconds.
    sum_us: u64,
}

impl LatencyHistogram {
    /// Counts one duration.
    pub(crate) fn record(&mut self, duration: std::time::Duration) {
        let us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        self.counts[bucket] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Per-bucket counts (not cumulative), the bucket of
    /// [`LATENCY_BOUNDS_US`]`[i]` at `i`, the overflow bucket last.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Adds `other`'s durations to these (several I/O threads' links).
    pub(crate) fn add_all(&mut self, other: &LatencyHistogram) {
        for (sum, count) in self.counts.iter_mut().zip(other.counts) {
            *sum += count;
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Their sum, in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }
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
    /// Frontend connections accepted under the cap (before their hello).
    pub accepted: u64,
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
    /// Connections closed because their hello was refused (wrong token or
    /// destination) or malformed.
    pub hellos_refused: u64,
    /// Connections closed because their hello named a client already
    /// connected.
    pub names_taken: u64,
    /// Connections closed before their hello because the cap was reached
    /// and a newer connection took their place
    /// ([`HostConfig::hello_eviction_grace`](crate::HostConfig::hello_eviction_grace)).
    pub hellos_evicted: u64,
}

impl ConnStats {
    /// Adds `other`'s counters to these (the outbox high water is the
    /// larger of the two).
    pub(crate) fn add_all(&mut self, other: &ConnStats) {
        self.accepted += other.accepted;
        self.bytes_in += other.bytes_in;
        self.delivered += other.delivered;
        self.returned.add_all(&other.returned);
        self.dropped.add_all(&other.dropped);
        self.frames_out += other.frames_out;
        self.bytes_out += other.bytes_out;
        self.outbox_high_water = self.outbox_high_water.max(other.outbox_high_water);
    }
}

/// The connections of one [`ConnClass`], open and closed, since the host
/// started: every counter only grows (unlike the sums over
/// [`HostStats::conns`] and [`HostStats::closed_conns`], whose history is
/// bounded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnClassStats {
    /// The class.
    pub class: ConnClass,
    /// Connections of the class open now.
    pub open: u64,
    /// Connections of the class closed so far.
    pub closed: u64,
    /// The sum of the counters of every connection of the class, open or
    /// closed (`name` is the class's name).
    pub totals: ConnStats,
}

/// Spawns and exits since the host started, and how long it has run
/// (kept by the control side, not the I/O thread).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleStats {
    /// Spawns that got as far as starting (the name was free).
    pub spawns_started: u64,
    /// Spawns that ended with a ready proc.
    pub spawns_ready: u64,
    /// Spawns that failed (exec error, exit or timeout before ready,
    /// stopped while starting).
    pub spawns_failed: u64,
    /// Procs that exited with a code of their own.
    pub exits_exited: u64,
    /// Procs ended by a signal.
    pub exits_signaled: u64,
    /// Procs that failed (never ready, broke the protocol).
    pub exits_failed: u64,
    /// Time since the host started serving.
    pub uptime: std::time::Duration,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_latency_lands_in_the_first_bucket_whose_bound_holds_it() {
        let mut histogram = LatencyHistogram::default();
        for us in [0, 50, 51, 1_000, 2_000_000] {
            histogram.record(Duration::from_micros(us));
        }
        let counts = histogram.counts();
        assert_eq!(counts[0], 2, "0 and 50 µs: up to 50");
        assert_eq!(counts[1], 1, "51 µs: up to 100");
        assert_eq!(counts[4], 1, "1 ms: up to 1,000");
        assert_eq!(counts[LATENCY_BOUNDS_US.len()], 1, "2 s: above every bound");
        assert_eq!(histogram.count(), 5);
        assert_eq!(histogram.sum_us(), 2_001_101);
    }

    #[test]
    fn class_totals_add_every_counter() {
        let mut one = ConnStats {
            accepted: 3,
            delivered: 2,
            outbox_high_water: 10,
            ..ConnStats::default()
        };
        one.returned.add(UndeliverableReason::NoSuchProc);
        let mut sum = ConnStats::default();
        sum.add_all(&one);
        sum.add_all(&ConnStats {
            outbox_high_water: 4,
            ..one.clone()
        });
        assert_eq!(sum.accepted, 6);
        assert_eq!(sum.delivered, 4);
        assert_eq!(sum.returned.get(UndeliverableReason::NoSuchProc), 2);
        assert_eq!(sum.outbox_high_water, 10);
    }
}
