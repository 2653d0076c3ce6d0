//! Host totals from every I/O thread's counters.
//!
//! Each thread counts what crossed its own lanes and connections; the
//! host's numbers are their sums. A proc has an entry on every thread (one
//! lane each): its entries are merged by name into one, counters and
//! gauges summed (its inbound capacity and occupancy are those of all its
//! lanes), ready only if every thread delivers to it. A connection lives
//! on one thread, so connections are listed side by side. Since every
//! thread keeps `accepted = delivered + returned + dropped` for its own
//! counters, the sums keep it too.

use crate::stats::{HostStats, ProcStats};

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
    total.links.extend(stats.links);
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

fn add_proc(sum: &mut ProcStats, add: &ProcStats) {
    sum.frames_in += add.frames_in;
    sum.bytes_in += add.bytes_in;
    sum.frames_out += add.frames_out;
    sum.bytes_out += add.bytes_out;
    sum.outbound_delivered += add.outbound_delivered;
    sum.outbound_returned.add_all(&add.outbound_returned);
    sum.outbound_dropped.add_all(&add.outbound_dropped);
    sum.returned_for.add_all(&add.returned_for);
    sum.left_in_ring += add.left_in_ring;
    sum.notices_dropped += add.notices_dropped;
    sum.inbound_high_water += add.inbound_high_water;
    sum.inbound_used += add.inbound_used;
    sum.inbound_capacity += add.inbound_capacity;
    sum.ready &= add.ready;
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
}
