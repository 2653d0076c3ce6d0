//! What the random runs reached: a seed run that never fills a ring or
//! crashes a proc mid-reply proves little, so the seed test counts the
//! states it reached and requires each of them.

use std::fmt;

use hostmux_wire::UndeliverableReason;

use super::conns::SimConn;
use crate::stats::{HostStats, Returned};

/// Counts of interesting states, summed over runs.
#[derive(Debug, Default, Clone)]
pub(super) struct Coverage {
    /// Runs.
    pub(super) runs: u64,
    /// Client frames a full ring made the reader hold.
    pub(super) held: u64,
    /// Drains that ended blocked on a full ring or reply queue.
    pub(super) drains_blocked: u64,
    /// Procs that died, by crash point (idle, after read, mid-reply,
    /// after reply, after release).
    pub(super) crashes: [u64; 5],
    /// Procs that were stopped and exited.
    pub(super) exits: u64,
    /// Frames the other host received over the link.
    pub(super) forwarded: u64,
    /// Links that failed.
    pub(super) link_failures: u64,
    /// Frames answered by their own host (`LinkFailed` …) because the
    /// link they went over failed before their answer came.
    pub(super) answered_after_link_failure: u64,
    /// Links the data plane asked to dial (only ever to the peer).
    pub(super) dials: u64,
    /// Client connections half-closed.
    pub(super) half_closed: u64,
    /// Half-closed connections whose linger ran out.
    pub(super) lingers_expired: u64,
    /// Half-closed connections that were sent others' frames (requests,
    /// stray replies) and still got every answer of their own.
    pub(super) half_closes_with_others_frames: u64,
    /// Frames neither delivered nor returned (notices and responses that
    /// may not be answered, frames the service proc consumed).
    pub(super) dropped: u64,
    /// Frames returned, by reason (connections and procs).
    pub(super) returned: [u64; REASONS.len()],
    /// Records the drain's fast lane delivered (repeated headers).
    pub(super) drain_fast_lane: u64,
    /// The longest reply queue seen, in bytes.
    pub(super) outbox_high_water: u64,
    /// Frames the host wrote, and frames put in.
    pub(super) host_writes: u64,
    pub(super) put_in: u64,
}

const REASONS: [UndeliverableReason; UndeliverableReason::ALL.len()] = UndeliverableReason::ALL;

impl Coverage {
    /// Adds what a connection reached.
    pub(super) fn add_conn(&mut self, conn: &SimConn) {
        self.held += conn.holds;
        self.lingers_expired += conn.lingers_expired;
    }

    /// Adds the returned and dropped counters of every connection and proc
    /// in `stats`.
    pub(super) fn add_returned(&mut self, stats: &HostStats) {
        let conns = stats.conns.iter().chain(&stats.closed_conns);
        let procs = stats.procs.iter().chain(&stats.gone_procs);
        self.answered_after_link_failure +=
            stats.links.iter().map(|l| l.answered_here).sum::<u64>();
        self.dropped += conns.map(|c| c.dropped.total()).sum::<u64>()
            + procs.map(|p| p.outbound_dropped.total()).sum::<u64>();
        let mut add = |returned: &Returned| {
            for (i, reason) in REASONS.iter().enumerate() {
                self.returned[i] += returned.get(*reason);
            }
        };
        for conn in stats.conns.iter().chain(&stats.closed_conns) {
            add(&conn.returned);
        }
        let high = stats.conns.iter().chain(&stats.closed_conns);
        let high = high.map(|c| c.outbox_high_water).max().unwrap_or(0);
        self.outbox_high_water = self.outbox_high_water.max(high);
        for proc in stats.procs.iter().chain(&stats.gone_procs) {
            add(&proc.outbound_returned);
        }
    }

    pub(super) fn merge(&mut self, other: &Coverage) {
        self.runs += other.runs;
        self.held += other.held;
        self.drains_blocked += other.drains_blocked;
        for (a, b) in self.crashes.iter_mut().zip(other.crashes) {
            *a += b;
        }
        self.exits += other.exits;
        self.forwarded += other.forwarded;
        self.link_failures += other.link_failures;
        self.answered_after_link_failure += other.answered_after_link_failure;
        self.dials += other.dials;
        self.half_closed += other.half_closed;
        self.lingers_expired += other.lingers_expired;
        self.half_closes_with_others_frames += other.half_closes_with_others_frames;
        self.dropped += other.dropped;
        for (a, b) in self.returned.iter_mut().zip(other.returned) {
            *a += b;
        }
        self.outbox_high_water = self.outbox_high_water.max(other.outbox_high_water);
        self.drain_fast_lane += other.drain_fast_lane;
        self.host_writes += other.host_writes;
        self.put_in += other.put_in;
    }

    /// The states a few hundred seeds must reach, by name, that were not.
    pub(super) fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        let mut need = |reached: bool, what: &'static str| {
            if !reached {
                missing.push(what);
            }
        };
        need(self.held > 0, "a client frame held on a full ring");
        need(
            self.drains_blocked > 0,
            "a drain blocked on a full ring or queue",
        );
        need(
            self.crashes.iter().all(|&n| n > 0),
            "a crash at every point",
        );
        need(self.exits > 0, "a stopped proc exiting");
        need(self.forwarded > 0, "a frame forwarded over the link");
        need(self.link_failures > 0, "a link failure");
        need(
            self.answered_after_link_failure > 0,
            "a frame answered by its host after its link failed",
        );
        need(self.half_closed > 0, "a half-close");
        need(
            self.half_closes_with_others_frames > 0,
            "a half-closed client sent others' frames",
        );
        need(
            self.drain_fast_lane > 0,
            "a record through the drain's fast lane",
        );
        need(
            self.dropped > 0,
            "a frame dropped (a notice or response not delivered)",
        );
        // Oversized needs a frame larger than a ring, and a hop limit a
        // chain of hosts: neither is generated.
        for (i, reason) in REASONS.iter().enumerate() {
            let generated = !matches!(
                reason,
                UndeliverableReason::Oversized
                    | UndeliverableReason::HopLimit
                    | UndeliverableReason::HostUnreachable
                    | UndeliverableReason::LinkFailed
                    | UndeliverableReason::PeerRefused
            );
            if generated && self.returned[i] == 0 {
                missing.push(match reason {
                    UndeliverableReason::NoSuchProc => "a frame returned NoSuchProc",
                    UndeliverableReason::NotReady => "a frame returned NotReady",
                    UndeliverableReason::ProcExited => "a frame returned ProcExited",
                    UndeliverableReason::Overloaded => "a frame returned Overloaded",
                    UndeliverableReason::Malformed => "a frame returned Malformed",
                    UndeliverableReason::NotAPeer => "a frame returned NotAPeer",
                    UndeliverableReason::Oversized
                    | UndeliverableReason::HopLimit
                    | UndeliverableReason::HostUnreachable
                    | UndeliverableReason::LinkFailed
                    | UndeliverableReason::PeerRefused => unreachable!("not generated"),
                });
            }
        }
        missing
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} runs: {} frames put in, {} written by the host; {} held, {} drains blocked, \
             crashes (idle/read/mid-reply/reply/release) {:?}, {} exits, {} forwarded, \
             {} link failures ({} frames answered by their host after one), {} dials, {} half-closes ({} lingers ran out, {} sent others' frames), {} dropped, {} records through the drain's fast lane, \
             longest reply queue {} bytes; returned (no such proc/not ready/exited/\
             overloaded/oversized/malformed/hop limit/not a peer/host unreachable/link failed/\
             peer refused) {:?}",
            self.runs,
            self.put_in,
            self.host_writes,
            self.held,
            self.drains_blocked,
            self.crashes,
            self.exits,
            self.forwarded,
            self.link_failures,
            self.answered_after_link_failure,
            self.dials,
            self.half_closed,
            self.lingers_expired,
            self.half_closes_with_others_frames,
            self.dropped,
            self.drain_fast_lane,
            self.outbox_high_water,
            self.returned
        )
    }
}
