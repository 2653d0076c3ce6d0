//! Acknowledged links: the sequence numbers, acknowledgements, flow
//! control and liveness bookkeeping of every connection between two hosts
//! (sans-IO: the I/O shell sends heartbeats when [`Dataplane::link_heartbeat`]
//! says so and closes a link it reports silent).
//!
//! A link is one TCP connection: the host that dialled it sends frames,
//! the far host sends back link status frames (`hostmux_wire::LinkStatus`)
//! that acknowledge them. Frames are numbered implicitly: the n-th frame
//! the dialler queues on a connection is frame n; the far host counts the
//! frames it has disposed of (written into a ring or a queue, or answered
//! with a notice) and reports the count, so one number acknowledges every
//! frame up to it. The dialler keeps at most [`HostConfig::link_window_bytes`]
//! and [`HostConfig::link_window_frames`] unacknowledged: a full link holds
//! its sources back the way a full ring does.
//!
//! The far host holds an acknowledgement back for up to
//! [`HostConfig::link_ack_delay`] (200 ms), so that one status covers every
//! frame of that time: a status per frame woke the dialling host once per
//! request and reply, on a 2-core machine on the round trip's own CPU time
//! (docs/benchmarks.md, "Held-back acknowledgements"). It goes at once when
//! an eighth of the window is waiting for it, with anything else written
//! on the link, and when the dialler asks: a dialler whose window is full
//! sends a ping, and pings are echoed at once.
//!
//! Both ends send a status at least every quarter of
//! [`HostConfig::link_timeout`] (a heartbeat: the dialler's carries a
//! `ping` nonce that the far host echoes, which measures the round trip),
//! and each end takes a link on which nothing arrived for the timeout as
//! dead.
//!
//! [`HostConfig::link_window_bytes`]: crate::HostConfig::link_window_bytes
//! [`HostConfig::link_window_frames`]: crate::HostConfig::link_window_frames
//! [`HostConfig::link_timeout`]: crate::HostConfig::link_timeout
//! [`HostConfig::link_ack_delay`]: crate::HostConfig::link_ack_delay

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hostmux_wire::{encode_link_status, LinkStatus, UndeliverableReason};

use super::{ConnKey, ConnSlot, Dataplane, Event};
use crate::HostConfig;

/// A link connection's bookkeeping (boxed in its [`ConnSlot`]).
#[derive(Debug)]
pub(crate) struct LinkFlow {
    /// The configured peer (its index in `HostConfig::peers`) at the far
    /// end, once known.
    pub(super) peer: Option<usize>,
    /// This host dialled it: frames go out on it. Otherwise the far host
    /// dialled it and frames come in.
    pub(super) dialled: bool,
    /// Frames queued on it (the last sequence number used), and the far
    /// host's cumulative acknowledgement.
    pub(super) sent: u64,
    pub(super) acked: u64,
    /// Bytes queued on it, and bytes acknowledged.
    bytes_sent: u64,
    bytes_acked: u64,
    /// `bytes_sent` after each unacknowledged frame, oldest first.
    ends: VecDeque<u64>,
    /// The most frames ever in flight at once, and how often a frame met a
    /// full window.
    pub(super) in_flight_high_water: u64,
    pub(super) window_waits: u64,
    /// Client connections whose reader waits for room in the window.
    pub(super) reader_waiters: Vec<ConnKey>,
    /// Frames received on it and disposed of (the far side's sequence),
    /// and their bytes.
    pub(super) handled: u64,
    handled_bytes: u64,
    /// `handled` and `handled_bytes` in the last status written.
    reported: u64,
    reported_bytes: u64,
    /// When the status acknowledging frames handled since the last one is
    /// due (see [`HostConfig::link_ack_delay`]); `None`: none is waiting.
    ack_at: Option<Instant>,
    /// A status should go out with the next write (a ping, a pong, a
    /// heartbeat: not held back).
    pub(super) status_due: bool,
    /// The last ping nonce sent and when; the last ping received, to echo.
    ping_out: u64,
    ping_sent_at: Option<Instant>,
    ping_pending: bool,
    pong_due: u64,
    /// The last measured round trip.
    pub(super) rtt: Option<Duration>,
    /// Link status frames received on it.
    pub(super) statuses_received: u64,
    /// When anything last arrived on it.
    last_heard: Option<Instant>,
    /// Why it failed, when the I/O shell said so before removing it.
    pub(super) failure: Option<UndeliverableReason>,
    /// Its hello was acknowledged (a dialled link that never came up fails
    /// with its dial's reason, not `LinkFailed`).
    pub(super) up: bool,
}

impl LinkFlow {
    pub(super) fn new(dialled: bool, peer: Option<usize>) -> Box<Self> {
        Box::new(LinkFlow {
            peer,
            dialled,
            sent: 0,
            acked: 0,
            bytes_sent: 0,
            bytes_acked: 0,
            ends: VecDeque::with_capacity(1024),
            in_flight_high_water: 0,
            window_waits: 0,
            reader_waiters: Vec::new(),
            handled: 0,
            handled_bytes: 0,
            reported: 0,
            reported_bytes: 0,
            ack_at: None,
            status_due: false,
            ping_out: 0,
            ping_sent_at: None,
            ping_pending: false,
            pong_due: 0,
            rtt: None,
            statuses_received: 0,
            last_heard: None,
            failure: None,
            up: false,
        })
    }

    /// Frames and bytes sent and not yet acknowledged.
    pub(super) fn in_flight(&self) -> (u64, u64) {
        (self.sent - self.acked, self.bytes_sent - self.bytes_acked)
    }

    /// Whether a frame of `len` bytes fits in the window.
    pub(super) fn has_room(&self, len: usize, window_bytes: usize, window_frames: u64) -> bool {
        let (frames, bytes) = self.in_flight();
        // One frame always fits in an empty window, whatever its size.
        frames == 0 || (frames < window_frames && bytes as usize + len <= window_bytes)
    }

    /// Counts a frame of `len` bytes queued on this link; returns its
    /// sequence number.
    pub(super) fn count_sent(&mut self, len: usize) -> u64 {
        self.sent += 1;
        self.bytes_sent += len as u64;
        self.ends.push_back(self.bytes_sent);
        self.in_flight_high_water = self.in_flight_high_water.max(self.sent - self.acked);
        self.sent
    }

    /// Takes the far host's cumulative acknowledgement; whether it moved.
    fn acknowledge(&mut self, handled: u64) -> bool {
        if handled <= self.acked || handled > self.sent {
            return false;
        }
        while self.acked < handled {
            self.acked += 1;
            if let Some(end) = self.ends.pop_front() {
                self.bytes_acked = end;
            }
        }
        true
    }

    /// Counts one more frame (of `len` bytes) received on a link the far
    /// host dialled and disposed of at `now`; returns whether the writer
    /// must be woken (it writes the status that acknowledges it when due,
    /// see [`HostConfig::link_ack_delay`]): when a status falls due for
    /// the first time since the last, or falls due sooner (an eighth of
    /// the window is waiting for it). One wake per status, not per frame.
    #[inline]
    pub(super) fn count_handled(&mut self, len: usize, now: Instant, cfg: &HostConfig) -> bool {
        if self.dialled {
            return false;
        }
        self.handled += 1;
        self.handled_bytes += len as u64;
        let urgent = self.handled - self.reported >= (cfg.link_window_frames / 8).max(1)
            || self.handled_bytes - self.reported_bytes
                >= (cfg.link_window_bytes as u64 / 8).max(1);
        let due = if urgent {
            now
        } else {
            now + cfg.link_ack_delay
        };
        match self.ack_at {
            Some(at) if at <= due => false,
            _ => {
                self.ack_at = Some(due);
                true
            }
        }
    }

    /// The link's window is full: asks the far host for its status at once
    /// (a ping, which it echoes with its acknowledgement without holding
    /// it back); returns whether the writer must be woken to send it.
    pub(super) fn ask_for_status(&mut self, now: Instant) -> bool {
        if self.ping_pending {
            return false;
        }
        self.ping_out += 1;
        self.ping_sent_at = Some(now);
        self.ping_pending = true;
        !std::mem::replace(&mut self.status_due, true)
    }

    /// Whether sequence number `seq` was acknowledged.
    pub(super) fn is_acked(&self, seq: u64) -> bool {
        seq <= self.acked
    }
}

/// What [`Dataplane::link_heartbeat`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heartbeat {
    /// A status was queued; beat again after the interval.
    Sent,
    /// Nothing arrived within the link timeout: close the link.
    Silent(Duration),
    /// Not a link (any more).
    Gone,
}

impl Dataplane {
    /// Whether connection `key` is a link between hosts (either side).
    pub(crate) fn is_link(&self, key: ConnKey) -> bool {
        self.conns
            .get(key.index as usize)
            .and_then(Option::as_ref)
            .filter(|c| c.generation == key.generation)
            .is_some_and(|c| c.flow.is_some())
    }

    /// The link's heartbeat is due (the I/O shell calls this every quarter
    /// of the link timeout): queues a status with a fresh ping, or says the
    /// far host has been silent for longer than the timeout.
    pub(crate) fn link_heartbeat(&mut self, key: ConnKey, now: Instant) -> Heartbeat {
        let timeout = self.cfg.link_timeout;
        let Some(conn) = self.conn_mut(key) else {
            return Heartbeat::Gone;
        };
        let Some(flow) = conn.flow.as_mut() else {
            return Heartbeat::Gone;
        };
        let heard = *flow.last_heard.get_or_insert(now);
        let silent = now.saturating_duration_since(heard);
        if silent > timeout {
            return Heartbeat::Silent(silent);
        }
        if !conn.connecting {
            flow.ping_out += 1;
            flow.ping_sent_at = Some(now);
            flow.ping_pending = true;
            flow.status_due = true;
            self.events.push_back(Event::WakeWriter(key));
        }
        Heartbeat::Sent
    }

    /// A link status arrived on `key` at `now`: acknowledgements (on a link
    /// this host dialled), a ping to echo, a pong that measures the round
    /// trip.
    pub(super) fn receive_link_status(&mut self, key: ConnKey, status: LinkStatus, now: Instant) {
        let Dataplane {
            conns,
            events,
            conn_room,
            remotes,
            ..
        } = self;
        let Some(conn) = super::slot_of_conn(conns, key) else {
            return;
        };
        let Some(flow) = conn.flow.as_mut() else {
            return;
        };
        flow.last_heard = Some(now);
        flow.statuses_received += 1;
        if status.ping != 0 && status.ping != flow.pong_due {
            flow.pong_due = status.ping;
            if !flow.status_due {
                flow.status_due = true;
                events.push_back(Event::WakeWriter(key));
            }
        }
        if status.pong != 0 && status.pong == flow.ping_out {
            if let Some(sent) = flow.ping_sent_at.take() {
                let rtt = now.saturating_duration_since(sent);
                flow.rtt = Some(rtt);
                if let Some(peer) = flow.peer {
                    remotes.peer_mut(peer).round_trips.record(rtt);
                }
            }
        }
        if flow.dialled && flow.acknowledge(status.handled) {
            // Room in the window: the sources held back retry.
            events.extend(flow.reader_waiters.drain(..).map(Event::WakeReader));
            conn.full_since = None;
            if std::mem::take(&mut conn.drains_waiting) {
                *conn_room = true;
                events.push_back(Event::ReplyQueueRoom);
            }
        }
    }

    /// Something arrived on link `key` at `now` (it is alive).
    pub(super) fn heard_on_link(conn: &mut ConnSlot, now: Instant) {
        if let Some(flow) = conn.flow.as_mut() {
            flow.last_heard = Some(now);
        }
    }

    /// The I/O shell is about to remove link `key` because it failed for
    /// `reason` (`HostUnreachable` or `PeerRefused` for a dial that never
    /// came up, `LinkFailed` for a link that broke or fell silent).
    /// `detail` says why in words, for the log.
    pub(crate) fn link_failed(
        &mut self,
        key: ConnKey,
        reason: UndeliverableReason,
        detail: &str,
        now: Instant,
    ) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        let addr = conn.dialled.clone();
        let Some(flow) = conn.flow.as_mut() else {
            return;
        };
        // A link that was up fails as `LinkFailed`, whatever broke it.
        let reason = if flow.up {
            UndeliverableReason::LinkFailed
        } else {
            reason
        };
        flow.failure = Some(reason);
        let was_up = flow.up;
        if let Some(addr) = addr {
            self.remotes
                .dial_failed(&addr, reason, detail, was_up, now, &self.cfg);
        }
    }
}

impl Dataplane {
    /// One entry per configured peer with any history (for `HostStats`).
    pub(super) fn link_stats(&self) -> Vec<crate::stats::LinkStats> {
        let mut out = Vec::new();
        for (index, state) in self.remotes.peer_states().iter().enumerate() {
            let Some(addr) = self.cfg.peers.get(index) else {
                continue;
            };
            let mut stats = crate::stats::LinkStats {
                peer: addr.as_str().to_owned(),
                dials: state.dials,
                dial_failures: state.dial_failures,
                link_failures: state.link_failures,
                answered_here: state.answered_here,
                round_trips: state.round_trips.clone(),
                ..Default::default()
            };
            if let Some(ledger) = &state.ledger {
                stats.awaiting_answers = ledger.awaited() as u64;
                stats.late_answers_dropped = ledger.late_dropped;
            }
            for conn in self.conns.iter().flatten() {
                let Some(flow) = conn.flow.as_ref().filter(|f| f.peer == Some(index)) else {
                    continue;
                };
                if flow.dialled {
                    let (frames, bytes) = flow.in_flight();
                    stats.queued_bytes = conn.outbox.len() as u64;
                    stats.in_flight_frames = frames;
                    stats.in_flight_bytes = bytes;
                    stats.sent = flow.sent;
                    stats.acked = flow.acked;
                    stats.round_trip_us = flow.rtt.map(|d| d.as_micros() as u64);
                    stats.in_flight_high_water = flow.in_flight_high_water;
                    stats.statuses_received = flow.statuses_received;
                    stats.window_waits = flow.window_waits;
                    stats.state = if conn.connecting { "connecting" } else { "up" }.to_owned();
                } else {
                    stats.received += flow.handled;
                }
            }
            if stats.state.is_empty() {
                match state.down_reason() {
                    Some(reason) => {
                        stats.state = "down".to_owned();
                        stats.reason = Some(reason);
                    }
                    None => stats.state = "idle".to_owned(),
                }
            }
            out.push(stats);
        }
        out
    }
}

/// Appends the link's status to `conn`'s queue if one is due at `now`
/// (called by the writer's `take_outbox`). An acknowledgement held back
/// (see [`HostConfig::link_ack_delay`]) goes now if anything else is
/// written on the link anyway; otherwise returns when it is due.
pub(super) fn queue_status(
    conn: &mut ConnSlot,
    service_name: &str,
    now: Instant,
) -> Option<Instant> {
    let flow = conn.flow.as_mut()?;
    if conn.connecting {
        return None;
    }
    let ack_due = flow
        .ack_at
        .is_some_and(|at| at <= now || !conn.outbox.is_empty());
    if !flow.status_due && !ack_due {
        return flow.ack_at;
    }
    flow.status_due = false;
    flow.ack_at = None;
    flow.reported = flow.handled;
    flow.reported_bytes = flow.handled_bytes;
    let status = LinkStatus {
        handled: flow.handled,
        ping: if std::mem::take(&mut flow.ping_pending) {
            flow.ping_out
        } else {
            0
        },
        pong: flow.pong_due,
    };
    // Encoded on the stack (16-aligned, as the encoder wants), then copied
    // into the byte queue: a status is a few dozen bytes, no allocation.
    #[repr(align(16))]
    struct StatusBuf([u8; 128]);
    let mut buf = StatusBuf([0; 128]);
    if let Ok(len) = encode_link_status(&mut buf.0, service_name, &status, &Default::default()) {
        conn.outbox.extend_from_slice(&buf.0[..len]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_counts_unacknowledged_frames_and_bytes() {
        let mut flow = LinkFlow::new(true, Some(0));
        assert!(
            flow.has_room(10_000, 100, 2),
            "an empty window takes any frame"
        );
        assert_eq!(flow.count_sent(60), 1);
        assert!(flow.has_room(40, 100, 2));
        assert!(!flow.has_room(41, 100, 2));
        assert_eq!(flow.count_sent(40), 2);
        assert!(!flow.has_room(1, 1000, 2), "frame bound");
        assert!(!flow.acknowledge(3), "more than was sent is ignored");
        assert!(flow.acknowledge(1));
        assert_eq!(flow.in_flight(), (1, 40));
        assert!(
            !flow.acknowledge(1),
            "an old acknowledgement changes nothing"
        );
        assert!(flow.is_acked(1) && !flow.is_acked(2));
        assert!(flow.acknowledge(2));
        assert_eq!(flow.in_flight(), (0, 0));
    }

    fn receiving_link() -> ConnSlot {
        let mut conn = ConnSlot::new(
            1,
            hostmux_wire::ProcName::new("peer").unwrap(),
            "peer".to_owned(),
            None,
        );
        conn.flow = Some(LinkFlow::new(false, Some(0)));
        conn
    }

    fn flow(conn: &mut ConnSlot) -> &mut LinkFlow {
        conn.flow.as_mut().unwrap()
    }

    /// The status that acknowledges handled frames waits for the delay
    /// (one wake of the writer per status, not per frame), goes at once
    /// with anything else written, when an eighth of the window waits,
    /// and when a ping asks.
    #[test]
    fn an_acknowledgement_waits_for_the_delay_an_eighth_of_the_window_or_a_ping() {
        let cfg = HostConfig {
            link_window_frames: 80,
            link_window_bytes: 8_000,
            link_ack_delay: Duration::from_millis(5),
            ..HostConfig::default()
        };
        let t0 = Instant::now();
        let mut conn = receiving_link();
        assert!(
            flow(&mut conn).count_handled(10, t0, &cfg),
            "wakes the writer"
        );
        assert!(!flow(&mut conn).count_handled(10, t0, &cfg), "once");
        let due = t0 + cfg.link_ack_delay;
        assert_eq!(queue_status(&mut conn, "svc", t0), Some(due));
        assert!(conn.outbox.is_empty(), "held back");
        assert_eq!(queue_status(&mut conn, "svc", due), None);
        let status = link_status_in(&conn.outbox);
        assert_eq!(status.handled, 2);
        conn.outbox.clear();

        // Ten frames (an eighth of 80) are due at once: a second wake.
        let t1 = t0 + Duration::from_millis(1);
        assert!(flow(&mut conn).count_handled(10, t1, &cfg));
        for _ in 0..8 {
            assert!(!flow(&mut conn).count_handled(10, t1, &cfg));
        }
        assert!(flow(&mut conn).count_handled(10, t1, &cfg), "due sooner");
        assert_eq!(queue_status(&mut conn, "svc", t1), None);
        assert_eq!(link_status_in(&conn.outbox).handled, 12);
        conn.outbox.clear();

        // So are 1,000 bytes (an eighth of 8,000) in one frame.
        assert!(flow(&mut conn).count_handled(1_000, t1, &cfg));
        assert_eq!(queue_status(&mut conn, "svc", t1), None);
        assert_eq!(link_status_in(&conn.outbox).handled, 13);
        conn.outbox.clear();

        // Held back, until something else is written: it goes along.
        assert!(flow(&mut conn).count_handled(10, t1, &cfg));
        conn.outbox.extend_from_slice(b"a frame");
        assert_eq!(queue_status(&mut conn, "svc", t1), None);
        assert_eq!(link_status_in(&conn.outbox[7..]).handled, 14);
        conn.outbox.clear();

        // Held back, until a ping asks: the pong carries it at once.
        assert!(flow(&mut conn).count_handled(10, t1, &cfg));
        flow(&mut conn).pong_due = 7;
        flow(&mut conn).status_due = true;
        assert_eq!(queue_status(&mut conn, "svc", t1), None);
        let status = link_status_in(&conn.outbox);
        assert_eq!((status.handled, status.pong), (15, 7));
        conn.outbox.clear();
        assert_eq!(
            queue_status(&mut conn, "svc", t1 + cfg.link_ack_delay),
            None
        );
        assert!(conn.outbox.is_empty(), "nothing left to acknowledge");
    }

    /// A full window asks for the far host's status once until it comes.
    #[test]
    fn a_full_window_pings_once() {
        let mut flow = LinkFlow::new(true, Some(0));
        let now = Instant::now();
        assert!(flow.ask_for_status(now), "wakes the writer");
        assert!(!flow.ask_for_status(now), "one ping in flight");
        assert!(flow.ping_pending && flow.status_due);
    }

    fn link_status_in(bytes: &[u8]) -> LinkStatus {
        let mut decoder = hostmux_wire::FrameDecoder::new(Default::default());
        decoder.feed(bytes);
        let frame = decoder.next_frame().unwrap().expect("a whole status frame");
        hostmux_wire::link_status(&frame).expect("a link status")
    }
}
