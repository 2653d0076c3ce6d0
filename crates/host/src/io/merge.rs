//! Host totals from every I/O thread's counters.
//!
//! Each thread counts what crossed its own lanes and connections; the
//! host's numbers are their sums. A proc has an entry on every thread (one
//! lane each): its entries are merged by name into one, counters and
//! gauges summed (its inbound capacity and occupancy are those of all its
//! lanes), ready only if every thread delivers to it. A connection lives
//! on one thread, so connections are listed side by side. Each thread has
//! its own link to a peer: a peer's entries are merged into one (counters
//! and gauges summed, the worst state shown: see [`merge_link`]). Since every
//! thread keeps `accepted = delivered + returned + dropped` for its own
//! counters, the sums keep it too.

use crate::stats::{HostStats, LinkStats, ProcStats};

/// Adds I/O thread `thread`'s counters to `total`.
pub(crate) fn merge_thread_stats(total: &mut HostStats, stats: HostStats, thread: usize) {
    if thread == 0 {
        *total = stats;
        return;
    }
    merge_procs(&mut total.procs, stats.procs);
    merge_procs(&mut total.gone_procs, stats.gone_procs);
    total.conns.extend(stats.conns);
    total.closed_conns.extend(stats.closed_conns);
    for link in stats.links {
        match total.links.iter_mut().find(|l| l.peer == link.peer) {
            Some(sum) => merge_link(sum, &link),
            None => total.links.push(link),
        }
    }
    for class in stats.conn_classes {
        match total
            .conn_classes
            .iter_mut()
            .find(|c| c.class == class.class)
        {
            Some(sum) => {
                sum.open += class.open;
                sum.closed += class.closed;
                sum.totals.add_all(&class.totals);
            }
            None => total.conn_classes.push(class),
        }
    }
    let (sum, add) = (&mut total.reply_memory, stats.reply_memory);
    sum.limit += add.limit;
    sum.used += add.used;
    sum.high_water += add.high_water;
    let (sum, add) = (&mut total.conn_limits, stats.conn_limits);
    sum.memory_limit += add.memory_limit;
    sum.memory_used += add.memory_used;
    sum.memory_high_water += add.memory_high_water;
    sum.connections += add.connections;
    sum.max_connections += add.max_connections;
    sum.refused_at_cap += add.refused_at_cap;
    sum.accepted += add.accepted;
    sum.hello_too_large += add.hello_too_large;
    sum.hello_timeouts += add.hello_timeouts;
    sum.frame_timeouts += add.frame_timeouts;
    sum.budget_waits += add.budget_waits;
    sum.closed_over_budget += add.closed_over_budget;
    sum.hellos_refused += add.hellos_refused;
    sum.names_taken += add.names_taken;
    sum.hellos_evicted += add.hellos_evicted;
}

/// Merges `more` into `procs` by name: the n-th entry of a name in `more`
/// goes with the n-th of that name in `procs` (gone procs keep a history
/// in which a name may recur); an entry with no partner is appended.
fn merge_procs(procs: &mut Vec<ProcStats>, more: Vec<ProcStats>) {
    let mut used = vec![false; procs.len()];
    for add in more {
        let partner = procs
            .iter()
            .enumerate()
            .position(|(i, p)| !used[i] && p.name == add.name);
        match partner {
            Some(i) => {
                used[i] = true;
                add_proc(&mut procs[i], &add);
            }
            None => procs.push(add),
        }
    }
}

/// One peer's links on two threads as one: counters and gauges summed
/// (the high water too: an upper bound), the slower last round trip, and
/// the worst state (`down`, then `connecting`, `up`, `idle`) with its
/// reason.
fn merge_link(sum: &mut LinkStats, add: &LinkStats) {
    const WORST_FIRST: [&str; 4] = ["down", "connecting", "up", "idle"];
    let rank = |state: &str| WORST_FIRST.iter().position(|s| *s == state);
    if rank(&add.state) < rank(&sum.state) || rank(&sum.state).is_none() {
        sum.state.clone_from(&add.state);
        sum.reason = add.reason;
    }
    sum.queued_bytes += add.queued_bytes;
    sum.in_flight_frames += add.in_flight_frames;
    sum.in_flight_bytes += add.in_flight_bytes;
    sum.in_flight_high_water += add.in_flight_high_water;
    sum.window_waits += add.window_waits;
    sum.sent += add.sent;
    sum.acked += add.acked;
    sum.awaiting_answers += add.awaiting_answers;
    sum.round_trip_us = sum.round_trip_us.max(add.round_trip_us);
    sum.round_trips.add_all(&add.round_trips);
    sum.statuses_received += add.statuses_received;
    sum.dials += add.dials;
    sum.dial_failures += add.dial_failures;
    sum.link_failures += add.link_failures;
    sum.answered_here += add.answered_here;
    sum.late_answers_dropped += add.late_answers_dropped;
    sum.received += add.received;
}

/// Adds one thread's entry for a proc (its lane) to the host's. Every field
/// is named, so a counter added to `ProcStats` cannot be left out of the
/// sum without a compile error.
fn add_proc(sum: &mut ProcStats, add: &ProcStats) {
    let ProcStats {
        name: _,
        frames_in,
        bytes_in,
        zero_copy_holds,
        zero_copy_frames,
        zero_copy_bytes,
        zero_copy_moved_back,
        frames_out,
        bytes_out,
        outbound_delivered,
        outbound_returned,
        outbound_dropped,
        returned_for,
        left_in_ring,
        notices_dropped,
        inbound_high_water,
        inbound_used,
        inbound_capacity,
        ready,
    } = add;
    sum.frames_in += frames_in;
    sum.bytes_in += bytes_in;
    sum.zero_copy_holds += zero_copy_holds;
    sum.zero_copy_frames += zero_copy_frames;
    sum.zero_copy_bytes += zero_copy_bytes;
    sum.zero_copy_moved_back += zero_copy_moved_back;
    sum.frames_out += frames_out;
    sum.bytes_out += bytes_out;
    sum.outbound_delivered += outbound_delivered;
    sum.outbound_returned.add_all(outbound_returned);
    sum.outbound_dropped.add_all(outbound_dropped);
    sum.returned_for.add_all(returned_for);
    sum.left_in_ring += left_in_ring;
    sum.notices_dropped += notices_dropped;
    sum.inbound_high_water += inbound_high_water;
    sum.inbound_used += inbound_used;
    sum.inbound_capacity += inbound_capacity;
    sum.ready &= ready;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ConnStats;

    fn proc(name: &str, frames_in: u64, ready: bool) -> ProcStats {
        ProcStats {
            name: name.to_owned(),
            frames_in,
            inbound_capacity: 100,
            ready,
            ..ProcStats::default()
        }
    }

    #[test]
    fn a_procs_lanes_add_up_and_connections_are_listed_side_by_side() {
        let mut total = HostStats::default();
        let zero = HostStats {
            procs: vec![proc("a", 3, true), proc("b", 1, true)],
            conns: vec![ConnStats {
                name: "c0".to_owned(),
                accepted: 3,
                ..ConnStats::default()
            }],
            gone_procs: vec![proc("x", 1, true), proc("x", 2, true)],
            ..HostStats::default()
        };
        let one = HostStats {
            procs: vec![proc("b", 5, false), proc("a", 4, true)],
            conns: vec![ConnStats {
                name: "c1".to_owned(),
                accepted: 4,
                io_thread: 1,
                ..ConnStats::default()
            }],
            gone_procs: vec![proc("x", 10, true), proc("x", 20, true)],
            ..HostStats::default()
        };
        merge_thread_stats(&mut total, zero, 0);
        merge_thread_stats(&mut total, one, 1);
        let a = total.procs.iter().find(|p| p.name == "a").unwrap();
        assert_eq!((a.frames_in, a.inbound_capacity, a.ready), (7, 200, true));
        let b = total.procs.iter().find(|p| p.name == "b").unwrap();
        assert_eq!((b.frames_in, b.ready), (6, false));
        assert_eq!(total.procs.len(), 2);
        let gone: Vec<u64> = total.gone_procs.iter().map(|p| p.frames_in).collect();
        assert_eq!(gone, [11, 22], "the n-th of a name with the n-th");
        let threads: Vec<u32> = total.conns.iter().map(|c| c.io_thread).collect();
        assert_eq!(threads, [0, 1]);
    }

    #[test]
    fn a_peers_links_on_two_threads_are_one_entry_in_the_worst_state() {
        let link = |state: &str, sent: u64| LinkStats {
            peer: "tcp:10.0.0.2:7000".to_owned(),
            state: state.to_owned(),
            sent,
            round_trip_us: Some(sent),
            ..LinkStats::default()
        };
        let mut total = HostStats::default();
        let zero = HostStats {
            links: vec![link("up", 5)],
            ..HostStats::default()
        };
        let one = HostStats {
            links: vec![link("connecting", 7)],
            ..HostStats::default()
        };
        merge_thread_stats(&mut total, zero, 0);
        merge_thread_stats(&mut total, one, 1);
        assert_eq!(total.links.len(), 1);
        let merged = &total.links[0];
        assert_eq!(
            (merged.state.as_str(), merged.sent, merged.round_trip_us),
            ("connecting", 12, Some(7))
        );
    }
}
