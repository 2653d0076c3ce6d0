//! The ledger's tests: examples, and a model under random traffic.

use super::*;

fn link(index: u32) -> ConnKey {
    ConnKey {
        index,
        generation: index + 1,
    }
}

fn entry(id: u64, sender: &str, on: ConnKey, seq: u64) -> Awaited {
    Awaited {
        message_id: id,
        sender_name: Peer::client(sender.as_bytes()),
        sender: LocalSender::Client(link(99)),
        went_to: Peer::remote(b"tcp:10.0.0.3:7000"),
        link: on,
        seq,
    }
}

#[test]
fn answers_clear_entries_and_a_failure_answers_the_rest_once() {
    let mut ledger = PeerLedger::default();
    for id in 1..=5 {
        ledger.record(entry(id, "a", link(1), id), |_, _| false);
    }
    let a = Peer::client(b"a");
    assert_eq!(ledger.arrive(2, a), Arrival::Answer);
    assert_eq!(ledger.arrive(2, a), Arrival::Other, "answered once");
    assert_eq!(ledger.arrive(3, Peer::client(b"b")), Arrival::Other);
    assert_eq!(ledger.awaited(), 4);
    let mut failed = Vec::new();
    ledger.fail(link(1), false, |e| failed.push(e.message_id));
    assert_eq!(failed, [1, 3, 4, 5]);
    assert_eq!(ledger.awaited(), 0);
    // Late answers are dropped, once each key; others pass.
    assert_eq!(ledger.arrive(3, a), Arrival::Late);
    assert_eq!(ledger.arrive(2, a), Arrival::Other);
    let mut again = Vec::new();
    ledger.fail(link(1), true, |e| again.push(e.message_id));
    assert!(again.is_empty(), "a failure answers each entry once");
}

#[test]
fn a_failure_of_one_link_leaves_entries_on_another() {
    let mut ledger = PeerLedger::default();
    ledger.record(entry(1, "a", link(1), 1), |_, _| false);
    ledger.record(entry(2, "a", link(2), 1), |_, _| false);
    let mut failed = Vec::new();
    ledger.fail(link(1), false, |e| failed.push(e.message_id));
    assert_eq!(failed, [1]);
    assert_eq!(ledger.awaited(), 1);
    ledger.fail(link(3), true, |e| failed.push(e.message_id));
    assert_eq!(failed, [1, 2]);
}

#[test]
fn the_oldest_acknowledged_entries_make_room_and_unacknowledged_ones_stay() {
    let mut ledger = PeerLedger::default();
    let total = MAX_AWAITED as u64 + 10;
    for id in 0..total {
        // The first 5 are acknowledged; the rest are not.
        ledger.record(entry(id, "a", link(1), id), |_, seq| seq < 5);
    }
    assert_eq!(ledger.evicted, 5);
    assert_eq!(ledger.awaited(), total as usize - 5);
    let mut failed = 0;
    ledger.fail(link(1), false, |_| failed += 1);
    assert_eq!(failed, total - 5);
}

#[test]
fn a_slot_is_24_bytes() {
    assert_eq!(std::mem::size_of::<Slot>(), 24);
}

#[test]
fn a_one_way_stream_is_evicted_without_being_indexed() {
    let mut ledger = PeerLedger::default();
    let total = MAX_AWAITED as u64 + 1000;
    for id in 0..total {
        ledger.record(entry(id, "a", link(1), id), |_, _| true);
    }
    // Runs of the oldest went, never more than a run below the bound.
    let evicted = ledger.evicted;
    assert!(
        (1000..1000 + EVICT_RUN as u64).contains(&evicted),
        "{evicted}"
    );
    assert_eq!(ledger.awaited() as u64, total - evicted);
    assert!(ledger.counts.is_empty(), "no entry was hashed");
    // The oldest kept entry is still answered, then found by the index.
    let a = Peer::client(b"a");
    assert_eq!(ledger.arrive(evicted, a), Arrival::Answer);
    assert_eq!(ledger.arrive(total - 1, a), Arrival::Answer);
    assert_eq!(ledger.arrive(evicted - 1, a), Arrival::Other, "evicted");
    assert_eq!(ledger.awaited() as u64, total - evicted - 2);
}

#[test]
fn answers_in_order_are_taken_without_the_index_and_leave_nothing() {
    let mut ledger = PeerLedger::default();
    let a = Peer::client(b"a");
    // A pipeline of 8 ahead, answered in order.
    for id in 0..1000u64 {
        ledger.record(entry(id, "a", link(1), id), |_, _| false);
        if id >= 8 {
            assert_eq!(ledger.arrive(id - 8, a), Arrival::Answer);
        }
    }
    for id in 992..1000 {
        assert_eq!(ledger.arrive(id, a), Arrival::Answer);
    }
    assert!(ledger.counts.is_empty());
    assert_eq!(ledger.awaited(), 0);
    assert!(ledger.order.is_empty(), "answered entries were dropped");
}

#[test]
fn an_answer_past_the_front_indexes_the_rest_and_a_failure_answers_them() {
    let mut ledger = PeerLedger::default();
    let a = Peer::client(b"a");
    for id in 0..10 {
        ledger.record(entry(id, "a", link(1), id), |_, _| false);
    }
    assert_eq!(ledger.arrive(0, a), Arrival::Answer, "the front");
    assert_eq!(ledger.arrive(9, a), Arrival::Answer, "past the front");
    assert_eq!(ledger.counts.len(), 8, "the rest was indexed");
    ledger.record(entry(10, "a", link(1), 10), |_, _| false);
    assert_eq!(ledger.arrive(5, a), Arrival::Answer);
    let mut failed = Vec::new();
    ledger.fail(link(1), false, |e| failed.push(e.message_id));
    assert_eq!(failed, [1, 2, 3, 4, 6, 7, 8, 10]);
    assert_eq!(ledger.awaited(), 0);
    assert_eq!(ledger.arrive(10, a), Arrival::Late);
}

/// Random records, answers (in order, out of order, unknown, late)
/// and link failures against a plain model: every arrival is classed
/// as the model says, and a failure answers exactly the model's live
/// entries on that link. Seeds replay exactly.
#[test]
fn the_ledger_agrees_with_a_model_under_random_traffic() {
    for seed in 1..=20u64 {
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |bound: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % bound
        };
        let mut ledger = PeerLedger::default();
        // The model: live entries in order, and the buried keys.
        let mut live: Vec<(u64, &str, u32)> = Vec::new();
        let mut buried: HashSet<(u64, &str)> = HashSet::default();
        let senders = ["a", "b", "c"];
        let mut next_id = 0u64;
        // The last record (id, sender, link), and the sequence number
        // of the next: half the records continue the last one's run.
        let mut last: Option<(u64, &str, u32)> = None;
        let mut seq = 0u64;
        for step in 0..5000 {
            match next(10) {
                0..=3 => {
                    let (id, sender, on) = match last {
                        Some((id, sender, on)) if id == next_id && next(2) == 0 => {
                            next_id += 1;
                            (next_id, sender, on)
                        }
                        _ => {
                            let sender = senders[next(3) as usize];
                            // Now and then a key answered by a failure
                            // comes back.
                            let id = match buried.iter().find(|k| k.1 == sender) {
                                Some(&(id, _)) if next(4) == 0 => id,
                                _ => {
                                    next_id += 1;
                                    next_id
                                }
                            };
                            (id, sender, 1 + next(2) as u32)
                        }
                    };
                    buried.remove(&(id, sender));
                    ledger.record(entry(id, sender, link(on), seq), |_, _| false);
                    seq += 1;
                    last = Some((id, sender, on));
                    live.push((id, sender, on));
                }
                4..=7 => {
                    // Mostly the oldest live of a sender; else anything.
                    let (id, sender) = match next(4) {
                        0 if !live.is_empty() => {
                            let (id, sender, _) = live[next(live.len() as u64) as usize];
                            (id, sender)
                        }
                        1 => (next(next_id + 2), senders[next(3) as usize]),
                        _ => {
                            let sender = senders[next(3) as usize];
                            match live.iter().find(|e| e.1 == sender) {
                                Some(&(id, sender, _)) => (id, sender),
                                None => (next_id + 1, sender),
                            }
                        }
                    };
                    let expected =
                        if let Some(at) = live.iter().position(|e| (e.0, e.1) == (id, sender)) {
                            live.remove(at);
                            Arrival::Answer
                        } else if buried.contains(&(id, sender)) {
                            Arrival::Late
                        } else {
                            Arrival::Other
                        };
                    let got = ledger.arrive(id, Peer::client(sender.as_bytes()));
                    assert_eq!(got, expected, "seed {seed} step {step}: id {id} {sender}");
                }
                _ => {
                    let on = 1 + next(2) as u32;
                    let all = next(4) == 0;
                    let mut failed = Vec::new();
                    ledger.fail(link(on), all, |e| failed.push(e.message_id));
                    let mut expected = Vec::new();
                    live.retain(|&(id, sender, link_of)| {
                        if all || link_of == on {
                            expected.push(id);
                            buried.insert((id, sender));
                            false
                        } else {
                            true
                        }
                    });
                    assert_eq!(failed, expected, "seed {seed} step {step}");
                }
            }
            assert_eq!(ledger.awaited(), live.len(), "seed {seed} step {step}");
        }
        assert!(ledger.order.len() < 5000, "seed {seed}: runs were formed");
        // Every slot gone, every route is released.
        ledger.fail(link(1), true, |_| {});
        assert!(ledger.order.is_empty());
        assert_eq!(ledger.held, 0);
        assert!(ledger.routes.index.is_empty(), "seed {seed}");
        assert!(ledger.routes.list.iter().all(|(_, uses)| *uses == 0));
    }
}

#[test]
fn a_numbered_stream_is_one_run_and_answers_inside_it_go_through_the_index() {
    let mut ledger = PeerLedger::default();
    let a = Peer::client(b"a");
    for id in 100..200 {
        ledger.record(entry(id, "a", link(1), id), |_, _| false);
    }
    assert_eq!((ledger.order.len(), ledger.held), (1, 100), "one run");
    // The front, then one inside the run (indexed), then the front again.
    assert_eq!(ledger.arrive(100, a), Arrival::Answer);
    assert!(ledger.counts.is_empty());
    assert_eq!(ledger.arrive(150, a), Arrival::Answer);
    assert_eq!(ledger.counts.len(), 98);
    assert_eq!(ledger.arrive(101, a), Arrival::Answer);
    assert_eq!(ledger.arrive(150, a), Arrival::Other, "answered once");
    // A gap in the ids or the sequence numbers starts a new run.
    ledger.record(entry(300, "a", link(1), 200), |_, _| false);
    ledger.record(entry(301, "a", link(1), 202), |_, _| false);
    ledger.record(entry(302, "a", link(1), 203), |_, _| false);
    assert_eq!(ledger.order.len(), 3);
    assert_eq!(ledger.awaited(), 100);
    let mut failed = Vec::new();
    ledger.fail(link(1), false, |e| failed.push((e.message_id, e.seq)));
    let expected: Vec<(u64, u64)> = (102..200)
        .filter(|&id| id != 150)
        .map(|id| (id, id))
        .chain([(300, 200), (301, 202), (302, 203)])
        .collect();
    assert_eq!(failed, expected);
    assert_eq!((ledger.awaited(), ledger.held), (0, 0));
}

#[test]
fn an_answer_to_a_key_sent_twice_takes_the_older_entry_even_inside_a_run() {
    let mut ledger = PeerLedger::default();
    let a = Peer::client(b"a");
    for id in 100..200 {
        ledger.record(entry(id, "a", link(1), id), |_, _| false);
    }
    // The same key again, at the front of a run on another link.
    ledger.record(entry(150, "a", link(2), 0), |_, _| false);
    assert_eq!(ledger.arrive(150, a), Arrival::Answer);
    // The older entry (link 1) was answered: link 2's is still awaited.
    let mut failed = Vec::new();
    ledger.fail(link(2), false, |e| failed.push((e.message_id, e.link)));
    assert_eq!(failed, [(150, link(2))]);
    assert_eq!(ledger.awaited(), 99);
}

#[test]
fn a_full_ledger_evicts_acknowledged_entries_of_indexed_runs_and_skips_answered_ones() {
    let mut ledger = PeerLedger::default();
    let a = Peer::client(b"a");
    let total = MAX_AWAITED as u64;
    for id in 0..total {
        ledger.record(entry(id, "a", link(1), id), |_, _| false);
    }
    // Answers inside the run index it; entries 1 and 3 are answered.
    assert_eq!(ledger.arrive(3, a), Arrival::Answer);
    assert_eq!(ledger.arrive(1, a), Arrival::Answer);
    assert_eq!(ledger.held, MAX_AWAITED);
    // Full: the next records evict from the front, 64 at a time, the
    // acknowledged ones (seq < 10) and the answered ones (free).
    ledger.record(entry(total, "a", link(1), total), |_, seq| seq < 10);
    assert_eq!(ledger.evicted, 8, "0, 2 and 4..=9");
    assert_eq!(ledger.held, MAX_AWAITED + 1 - 10);
    assert_eq!(ledger.awaited(), MAX_AWAITED + 1 - 10);
    assert_eq!(ledger.arrive(9, a), Arrival::Other, "evicted");
    assert_eq!(ledger.arrive(10, a), Arrival::Answer, "kept");
}

#[test]
fn a_key_sent_again_after_its_notice_is_awaited_again() {
    let mut ledger = PeerLedger::default();
    let a = Peer::client(b"a");
    ledger.record(entry(7, "a", link(1), 1), |_, _| false);
    ledger.fail(link(1), false, |_| {});
    ledger.record(entry(7, "a", link(2), 1), |_, _| false);
    assert_eq!(ledger.arrive(7, a), Arrival::Answer);
    assert_eq!(ledger.arrive(7, a), Arrival::Other);
}
