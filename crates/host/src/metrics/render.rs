//! The snapshot as Prometheus series, through `prometheus-client`'s
//! text encoder: one [`Collector`] that writes every family from the
//! snapshot it owns.

use std::collections::HashSet;
use std::fmt;

use hostmux_wire::{ProcInfo, ProcState, UndeliverableReason};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::MetricsSnapshot;
use crate::stats::{ConnClass, HostStats, LATENCY_BOUNDS_US};

/// The snapshot in the Prometheus text format (every series is listed in
/// `docs/operations.md`, "Metrics").
pub fn render(snapshot: &MetricsSnapshot) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(snapshot.clone())));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// One scrape's snapshot, encoded when the registry is.
#[derive(Debug)]
struct Scrape(MetricsSnapshot);

type Labels = Vec<(&'static str, String)>;

/// A family of one sample per item: name, help, and how to read the value.
type Series<T> = (&'static str, &'static str, fn(&T) -> Value);

/// A sample: a counter, a whole-number gauge or a gauge in seconds.
#[derive(Debug, Clone, Copy)]
enum Value {
    Count(u64),
    Gauge(u64),
    Seconds(f64),
}

/// Writes one metric family: its descriptor, then one sample per label set.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, Value)>,
) -> fmt::Result {
    let mut samples = samples.into_iter().peekable();
    let kind = match samples.peek() {
        Some((_, Value::Count(_))) => MetricType::Counter,
        Some((_, Value::Gauge(_) | Value::Seconds(_))) => MetricType::Gauge,
        None => return Ok(()),
    };
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        // An empty label set prints no braces.
        let sample = metric.encode_family(&labels)?;
        match value {
            Value::Count(n) => ConstCounter::new(n).encode(sample)?,
            Value::Gauge(n) => {
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(sample)?
            }
            Value::Seconds(x) => ConstGauge::new(x).encode(sample)?,
        }
    }
    Ok(())
}

fn one(value: Value) -> std::iter::Once<(Labels, Value)> {
    std::iter::once((Vec::new(), value))
}

fn reason_label(reason: UndeliverableReason) -> String {
    format!("{reason:?}")
}

/// The name `ps` gives a proc state, without details.
fn state_name(state: &ProcState) -> &'static str {
    match state {
        ProcState::Starting => "starting",
        ProcState::Ready => "ready",
        ProcState::Terminating => "terminating",
        ProcState::BackingOff => "backing_off",
        ProcState::Exited { .. } => "exited",
        ProcState::Signaled { .. } => "signaled",
        ProcState::Failed { .. } => "failed",
    }
}

const PROC_STATES: [&str; 7] = [
    "starting",
    "ready",
    "terminating",
    "backing_off",
    "exited",
    "signaled",
    "failed",
];
const LINK_STATES: [&str; 4] = ["up", "connecting", "down", "idle"];

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let enc = &mut encoder;
        encode_host(enc, &self.0)?;
        encode_conns(enc, &self.0.stats)?;
        encode_procs(enc, &self.0.procs)?;
        encode_links(enc, &self.0.stats)
    }
}

fn encode_host(enc: &mut DescriptorEncoder<'_>, snapshot: &MetricsSnapshot) -> fmt::Result {
    let life = &snapshot.stats.lifecycle;
    family(
        enc,
        "hostmux_uptime_seconds",
        "Seconds since the host started serving.",
        one(Value::Seconds(life.uptime.as_secs_f64())),
    )?;
    family(
        enc,
        "hostmux_spawns_started",
        "Spawns that got as far as starting a proc (its name was free).",
        one(Value::Count(life.spawns_started)),
    )?;
    family(
        enc,
        "hostmux_spawns",
        "Spawns that ended, by result: ready, or failed (exec error, exit or timeout before ready, stopped while starting).",
        [
            (vec![("result", "ready".to_owned())], Value::Count(life.spawns_ready)),
            (vec![("result", "failed".to_owned())], Value::Count(life.spawns_failed)),
        ],
    )?;
    family(
        enc,
        "hostmux_proc_exits",
        "Procs that ended, by how: exited (a code of their own), signaled, failed (never ready, broke the protocol).",
        [
            (vec![("how", "exited".to_owned())], Value::Count(life.exits_exited)),
            (vec![("how", "signaled".to_owned())], Value::Count(life.exits_signaled)),
            (vec![("how", "failed".to_owned())], Value::Count(life.exits_failed)),
        ],
    )?;
    let mut by_state = [0u64; PROC_STATES.len()];
    for proc in unique_procs(&snapshot.procs) {
        let state = state_name(&proc.state);
        if let Some(at) = PROC_STATES.iter().position(|s| *s == state) {
            by_state[at] += 1;
        }
    }
    family(
        enc,
        "hostmux_procs",
        "Procs `ps` lists (live and recently gone), by state.",
        PROC_STATES
            .iter()
            .zip(by_state)
            .map(|(state, n)| (vec![("state", (*state).to_owned())], Value::Gauge(n))),
    )?;
    let limits = &snapshot.stats.conn_limits;
    let reply = &snapshot.stats.reply_memory;
    let gauges: [(&str, &str, u64); 6] = [
        (
            "hostmux_conn_memory_used_bytes",
            "Bytes of connection read buffers held now.",
            limits.memory_used,
        ),
        (
            "hostmux_conn_memory_limit_bytes",
            "The budget for connection read buffers (serve --conn-memory).",
            limits.memory_limit,
        ),
        (
            "hostmux_reply_memory_used_bytes",
            "Bytes queued for clients and not yet taken by their writers.",
            reply.used,
        ),
        (
            "hostmux_reply_memory_limit_bytes",
            "The budget for frames queued for clients (serve --reply-memory).",
            reply.limit,
        ),
        (
            "hostmux_frontend_connections",
            "Frontend connections open now, before or after their hello (the cap counts these).",
            limits.connections,
        ),
        (
            "hostmux_frontend_connections_max",
            "The cap on frontend connections (serve --max-connections).",
            limits.max_connections,
        ),
    ];
    for (name, help, value) in gauges {
        family(enc, name, help, one(Value::Gauge(value)))?;
    }
    family(
        enc,
        "hostmux_frontend_connections_accepted",
        "Frontend connections accepted under the cap (before their hello).",
        one(Value::Count(limits.accepted)),
    )?;
    family(
        enc,
        "hostmux_connections_refused",
        "Connections closed before they were served, by reason: cap (at accept, serve --max-connections reached), hello (refused: wrong token or destination, or malformed), name_taken (a client of that name is connected).",
        [
            ("cap", limits.refused_at_cap),
            ("hello", limits.hellos_refused),
            ("name_taken", limits.names_taken),
        ]
        .map(|(reason, n)| (vec![("reason", reason.to_owned())], Value::Count(n))),
    )?;
    family(
        enc,
        "hostmux_connections_closed_by_limit",
        "Connections the host closed for a limit: hello_too_large, hello_timeout, hello_evicted (its place taken at the cap before its hello), frame_timeout, over_budget.",
        [
            ("hello_too_large", limits.hello_too_large),
            ("hello_timeout", limits.hello_timeouts),
            ("hello_evicted", limits.hellos_evicted),
            ("frame_timeout", limits.frame_timeouts),
            ("over_budget", limits.closed_over_budget),
        ]
        .map(|(limit, n)| (vec![("limit", limit.to_owned())], Value::Count(n))),
    )?;
    family(
        enc,
        "hostmux_conn_budget_waits",
        "Times a connection stopped being read to wait for read-buffer budget.",
        one(Value::Count(limits.budget_waits)),
    )
}

fn encode_conns(enc: &mut DescriptorEncoder<'_>, stats: &HostStats) -> fmt::Result {
    let classes = &stats.conn_classes;
    let class = |c: ConnClass| vec![("class", c.as_str().to_owned())];
    let per_class = |pick: fn(&crate::ConnClassStats) -> Value| {
        classes
            .iter()
            .map(move |c| (class(c.class), pick(c)))
            .collect::<Vec<_>>()
    };
    family(
        enc,
        "hostmux_connections_open",
        "Connections open now after their hello, by class (client, link_accepted, link_dialled).",
        per_class(|c| Value::Gauge(c.open)),
    )?;
    family(
        enc,
        "hostmux_connections_opened",
        "Connections that completed their hello (or links this host dialled), by class.",
        per_class(|c| Value::Count(c.open + c.closed)),
    )?;
    family(
        enc,
        "hostmux_connections_closed",
        "Connections closed, by class.",
        per_class(|c| Value::Count(c.closed)),
    )?;
    let counters: [Series<crate::ConnClassStats>; 5] = [
        ("hostmux_conn_accepted_frames", "Frames accepted from connections (after the hello), by class.", |c| Value::Count(c.totals.accepted)),
        ("hostmux_conn_accepted_bytes", "Bytes of the frames accepted from connections, by class.", |c| Value::Count(c.totals.bytes_in)),
        ("hostmux_conn_delivered_frames", "Accepted frames written into a ring, a client's queue, a link or the service proc, by class.", |c| Value::Count(c.totals.delivered)),
        ("hostmux_conn_sent_frames", "Frames queued towards connections (replies, notices, responses, forwards), by class.", |c| Value::Count(c.totals.frames_out)),
        ("hostmux_conn_sent_bytes", "Bytes queued towards connections, by class.", |c| Value::Count(c.totals.bytes_out)),
    ];
    for (name, help, pick) in counters {
        family(enc, name, help, per_class(pick))?;
    }
    family(
        enc,
        "hostmux_conn_returned_frames",
        "Accepted frames returned to their connection with an Undeliverable notice, by class and reason.",
        classes.iter().flat_map(|c| {
            by_reason(c.totals.returned.by_reason())
                .map(move |(reason, n)| (with(class(c.class), "reason", reason), Value::Count(n)))
        }),
    )?;
    family(
        enc,
        "hostmux_conn_dropped_frames",
        "Accepted frames neither delivered nor returned (undeliverable notices and responses, which are never answered; service-proc frames it consumed), by class and reason.",
        classes.iter().flat_map(|c| {
            by_reason(c.totals.dropped.by_reason())
                .map(move |(reason, n)| (with(class(c.class), "reason", reason), Value::Count(n)))
        }),
    )
}

/// Each reason with its count.
fn by_reason(counts: [u64; crate::REASONS]) -> impl Iterator<Item = (String, u64)> {
    UndeliverableReason::ALL
        .into_iter()
        .zip(counts)
        .map(|(reason, n)| (reason_label(reason), n))
}

fn with(mut labels: Labels, key: &'static str, value: String) -> Labels {
    labels.push((key, value));
    labels
}

/// The procs `ps` lists, each name once (the live one, else the most
/// recent gone one): a name must not make two series.
fn unique_procs(procs: &[ProcInfo]) -> impl Iterator<Item = &ProcInfo> {
    let mut seen = HashSet::new();
    procs.iter().filter(move |p| seen.insert(p.name.as_str()))
}

fn encode_procs(enc: &mut DescriptorEncoder<'_>, procs: &[ProcInfo]) -> fmt::Result {
    let procs: Vec<&ProcInfo> = unique_procs(procs).collect();
    let label = |p: &ProcInfo| vec![("proc", p.name.clone())];
    let each = |pick: fn(&ProcInfo) -> Value| {
        procs
            .iter()
            .map(move |p| (label(p), pick(p)))
            .collect::<Vec<_>>()
    };
    family(
        enc,
        "hostmux_proc_state",
        "1 for the proc's state (starting, ready, terminating, backing_off, exited, signaled, failed), 0 for the others.",
        procs.iter().flat_map(|p| {
            let now = state_name(&p.state);
            PROC_STATES.iter().map(move |state| {
                (
                    with(label(p), "state", (*state).to_owned()),
                    Value::Gauge(u64::from(*state == now)),
                )
            })
        }),
    )?;
    let series: [Series<ProcInfo>; 14] = [
        ("hostmux_proc_uptime_seconds", "Seconds since the proc was spawned (for a gone proc: how long it ran).", |p| Value::Seconds(p.uptime_ms as f64 / 1000.0)),
        ("hostmux_proc_restarts", "Times the proc's restart policy restarted it (spawn --restart).", |p| Value::Count(u64::from(p.restarts))),
        ("hostmux_proc_accepted_frames", "Frames the host accepted for the proc and wrote into its inbound ring.", |p| Value::Count(p.counters.frames_in)),
        ("hostmux_proc_accepted_bytes", "Bytes of the frames written into its inbound ring.", |p| Value::Count(p.counters.bytes_in)),
        ("hostmux_proc_sent_frames", "Frames drained from the proc's outbound ring (what it sent).", |p| Value::Count(p.counters.frames_out)),
        ("hostmux_proc_sent_bytes", "Bytes of the frames drained from its outbound ring.", |p| Value::Count(p.counters.bytes_out)),
        ("hostmux_proc_delivered_frames", "Frames the proc sent that the host delivered: into a ring, a client's queue, a link or the service proc.", |p| Value::Count(p.counters.delivered)),
        ("hostmux_proc_sent_dropped_frames", "Frames the proc sent that were neither delivered nor returned (notices and responses, never answered).", |p| Value::Count(p.counters.sent_dropped)),
        ("hostmux_proc_inbound_ring_used_bytes", "Inbound ring occupancy at the snapshot, in bytes (an upper bound: the proc publishes its reads in batches).", |p| Value::Gauge(p.counters.inbound_used)),
        ("hostmux_proc_inbound_ring_high_water_bytes", "Highest inbound ring occupancy seen, in bytes.", |p| Value::Gauge(p.counters.inbound_high_water)),
        ("hostmux_proc_inbound_ring_capacity_bytes", "Inbound ring capacity, in bytes.", |p| Value::Gauge(p.counters.inbound_capacity)),
        ("hostmux_proc_zero_copy_frames", "Of the accepted frames, the large ones read from a client's socket straight into the proc's ring (serve --zero-copy-threshold).", |p| Value::Count(p.counters.zero_copy_frames)),
        ("hostmux_proc_zero_copy_bytes", "Bytes of the frames read straight into the proc's ring.", |p| Value::Count(p.counters.zero_copy_bytes)),
        ("hostmux_proc_zero_copy_moved_back_frames", "Large frames whose straight-into-the-ring read was abandoned (sender stalled or closed, route changed) and that took the copied path.", |p| Value::Count(p.counters.zero_copy_moved_back)),
    ];
    for (name, help, pick) in series {
        family(enc, name, help, each(pick))?;
    }
    family(
        enc,
        "hostmux_proc_returned_frames",
        "Frames addressed to the proc that were returned to their senders (Undeliverable), by reason; includes frames left in its ring when it exited.",
        procs.iter().flat_map(|p| {
            by_reason(p.counters.returned_by_reason)
                .map(move |(reason, n)| (with(label(p), "reason", reason), Value::Count(n)))
        }),
    )?;
    family(
        enc,
        "hostmux_proc_sent_returned_frames",
        "Frames the proc sent that were returned to it (Undeliverable), by reason.",
        procs.iter().flat_map(|p| {
            by_reason(p.counters.sent_returned_by_reason)
                .map(move |(reason, n)| (with(label(p), "reason", reason), Value::Count(n)))
        }),
    )
}

fn encode_links(enc: &mut DescriptorEncoder<'_>, stats: &HostStats) -> fmt::Result {
    let links = &stats.links;
    let label = |peer: &str| vec![("peer", peer.to_owned())];
    family(
        enc,
        "hostmux_link_state",
        "1 for the link's state (up, connecting, down, idle), 0 for the others.",
        links.iter().flat_map(|l| {
            LINK_STATES.iter().map(move |state| {
                (
                    with(label(&l.peer), "state", (*state).to_owned()),
                    Value::Gauge(u64::from(*state == l.state)),
                )
            })
        }),
    )?;
    let series: [Series<crate::LinkStats>; 14] = [
        ("hostmux_link_queued_bytes", "Bytes queued on the dialled link and not yet written.", |l| Value::Gauge(l.queued_bytes)),
        ("hostmux_link_in_flight_frames", "Frames sent on the dialled link and not yet acknowledged.", |l| Value::Gauge(l.in_flight_frames)),
        ("hostmux_link_in_flight_bytes", "Bytes sent on the dialled link and not yet acknowledged.", |l| Value::Gauge(l.in_flight_bytes)),
        ("hostmux_link_awaiting_answers", "Frames this host's senders sent to the peer that still await an answer.", |l| Value::Gauge(l.awaiting_answers)),
        ("hostmux_link_last_round_trip_seconds", "The last heartbeat round trip on the dialled link (absent until one is measured).", |l| Value::Seconds(l.round_trip_us.map_or(f64::NAN, |us| us as f64 / 1e6))),
        ("hostmux_link_sent_frames", "Frames sent on the current dialled link (restarts at 0 with each link).", |l| Value::Gauge(l.sent)),
        ("hostmux_link_acked_frames", "Frames the peer acknowledged on the current dialled link (restarts at 0 with each link).", |l| Value::Gauge(l.acked)),
        ("hostmux_link_received_frames", "Frames received from the peer on the links it dialled that are open now.", |l| Value::Gauge(l.received)),
        ("hostmux_link_window_waits", "Frames that met a full link window and waited (or were returned Overloaded).", |l| Value::Count(l.window_waits)),
        ("hostmux_link_dials", "Dials made to the peer.", |l| Value::Count(l.dials)),
        ("hostmux_link_dial_failures", "Dials to the peer that failed.", |l| Value::Count(l.dial_failures)),
        ("hostmux_link_failures", "Links to the peer that failed after they were up.", |l| Value::Count(l.link_failures)),
        ("hostmux_link_answered_here", "Frames this host answered itself (LinkFailed, HostUnreachable, PeerRefused) because a link failed before their answer came.", |l| Value::Count(l.answered_here)),
        ("hostmux_link_late_answers_dropped", "Answers that arrived after this host had answered their frame, dropped.", |l| Value::Count(l.late_answers_dropped)),
    ];
    for (name, help, pick) in series {
        let samples: Vec<(Labels, Value)> = links
            .iter()
            .map(|l| (label(&l.peer), pick(l)))
            // A gauge with nothing measured yet is left out, not shown as NaN.
            .filter(|(_, v)| !matches!(v, Value::Seconds(x) if x.is_nan()))
            .collect();
        family(enc, name, help, samples)?;
    }
    if links.is_empty() {
        return Ok(());
    }
    let mut metric = enc.encode_descriptor(
        "hostmux_link_round_trip_seconds",
        "Heartbeat round trips measured on the links this host dialled to the peer.",
        None,
        MetricType::Histogram,
    )?;
    for link in links {
        let histogram = &link.round_trips;
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_US
            .iter()
            .map(|us| *us as f64 / 1e6)
            .chain([f64::INFINITY])
            .zip(histogram.counts().iter().copied())
            .collect();
        let labels = label(&link.peer);
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                histogram.sum_us() as f64 / 1e6,
                histogram.count(),
                &buckets,
                None,
            )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostmux_wire::ProcCounters;

    #[test]
    fn series_carry_proc_labels_reasons_and_one_sample_per_name() {
        let mut counters = ProcCounters {
            frames_in: 7,
            delivered: 6,
            ..ProcCounters::default()
        };
        counters.returned_by_reason[UndeliverableReason::Oversized as usize] = 2;
        let proc = |state| ProcInfo {
            name: "echo".into(),
            pid: 1,
            state,
            uptime_ms: 1500,
            counters,
            restarts: 2,
            last_exit: None,
            next_restart_ms: None,
            status: String::new(),
        };
        let snapshot = MetricsSnapshot {
            // The live echo and a gone one of the same name: one series.
            procs: vec![proc(ProcState::Ready), proc(ProcState::Exited { code: 0 })],
            stats: HostStats {
                conn_classes: ConnClass::ALL
                    .map(|class| crate::ConnClassStats {
                        class,
                        ..Default::default()
                    })
                    .to_vec(),
                ..HostStats::default()
            },
        };
        let text = render(&snapshot).unwrap();
        assert!(
            text.contains("# TYPE hostmux_proc_accepted_frames_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("hostmux_proc_accepted_frames_total{proc=\"echo\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("hostmux_proc_delivered_frames_total{proc=\"echo\"} 6\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "hostmux_proc_returned_frames_total{proc=\"echo\",reason=\"Oversized\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("hostmux_proc_state{proc=\"echo\",state=\"ready\"} 1\n"),
            "{text}"
        );
        assert_eq!(
            text.matches("hostmux_proc_uptime_seconds{").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("hostmux_procs{state=\"ready\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hostmux_connections_open{class=\"link_dialled\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn every_series_is_listed_in_the_operations_guide() {
        let snapshot = MetricsSnapshot {
            procs: vec![ProcInfo {
                name: "echo".into(),
                pid: 1,
                state: ProcState::Ready,
                uptime_ms: 1,
                counters: ProcCounters::default(),
                restarts: 0,
                last_exit: None,
                next_restart_ms: None,
                status: String::new(),
            }],
            stats: HostStats {
                conn_classes: vec![crate::ConnClassStats::default()],
                links: vec![crate::LinkStats {
                    peer: "tcp:10.0.0.2:7000".into(),
                    state: "up".into(),
                    round_trip_us: Some(120),
                    ..Default::default()
                }],
                ..HostStats::default()
            },
        };
        let text = render(&snapshot).unwrap();
        let guide = include_str!("../../../../docs/operations.md");
        let mut families = 0;
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            families += 1;
            assert!(
                guide.contains(&format!("| `{name}` |")),
                "{name} is not in docs/operations.md's Metrics tables"
            );
        }
        // And the other way: every series the guide lists is one this
        // renders.
        let listed: Vec<&str> = guide
            .lines()
            .filter_map(|l| l.strip_prefix("| `hostmux_"))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        for name in &listed {
            assert!(
                text.contains(&format!("# TYPE hostmux_{name} ")),
                "docs/operations.md lists hostmux_{name}, which is not rendered"
            );
        }
        assert_eq!(listed.len(), families, "{text}");
    }
}
