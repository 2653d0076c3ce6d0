//! Readers racing a writer never see a torn table, and see updates in order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use hostmux_router::RoutingTable;

use crate::name;

/// A route that records the name it was bound to.
type Route = Arc<str>;

fn stable(i: usize) -> String {
    format!("stable-{i}")
}

/// Rounds each reader must complete while the writer runs, so the race
/// really happens however the threads are scheduled.
const MIN_ROUNDS_PER_READER: usize = 200;

/// Sets the flag when dropped, so readers stop even if the writer panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Counts a reader's rounds; saturates when the reader ends (or panics) so
/// the writer never waits for a reader that is gone.
struct Progress<'a>(&'a AtomicUsize);

impl Progress<'_> {
    fn round_done(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        self.0.store(usize::MAX, Ordering::Release);
    }
}

/// Waits (yielding) until every reader has done at least `rounds` rounds.
fn wait_for_readers(progress: &[AtomicUsize], rounds: usize) {
    while progress.iter().any(|p| p.load(Ordering::Acquire) < rounds) {
        thread::yield_now();
    }
}

/// The writer binds `stable-0..stable_count` in order and never removes them; in
/// between it binds and unbinds `churn-i`. A reader that has seen
/// `stable-k` must from then on find every `stable-j` with `j <= k`
/// (linearizability), and any route it finds must be the one bound to the
/// name it asked for (no torn state).
fn check_reader(
    mut lookup: impl FnMut(&[u8]) -> Option<Route>,
    writer_done: &AtomicBool,
    stable_count: usize,
    progress: Progress<'_>,
) -> usize {
    let mut highest_seen: Option<usize> = None;
    let mut rounds = 0;
    let mut check = |lookup: &mut dyn FnMut(&[u8]) -> Option<Route>| {
        let probe = highest_seen.map_or(0, |h| (h + 1).min(stable_count - 1));
        for i in [probe, highest_seen.unwrap_or(0) / 2, rounds % stable_count] {
            let key = stable(i);
            match lookup(key.as_bytes()) {
                Some(route) => {
                    assert_eq!(&*route, key, "route bound to another name");
                    highest_seen = Some(highest_seen.map_or(i, |h| h.max(i)));
                }
                None => assert!(
                    highest_seen.is_none_or(|h| i > h),
                    "stable-{i} vanished after stable-{highest_seen:?} was seen"
                ),
            }
        }
        let churn = format!("churn-{}", rounds % stable_count);
        if let Some(route) = lookup(churn.as_bytes()) {
            assert_eq!(&*route, churn, "route bound to another name");
        }
        assert_eq!(lookup(b"never-bound"), None);
        rounds += 1;
        progress.round_done();
    };
    while !writer_done.load(Ordering::Acquire) {
        check(&mut lookup);
    }
    // The writer has returned from every update: all must be visible now.
    for i in 0..stable_count {
        let key = stable(i);
        assert_eq!(lookup(key.as_bytes()).as_deref(), Some(key.as_str()));
    }
    for i in 0..stable_count {
        assert_eq!(lookup(format!("churn-{i}").as_bytes()), None);
    }
    rounds
}

#[test]
fn readers_racing_a_writer_see_whole_snapshots_in_order() {
    race_readers_against_a_writer(300);
}

/// The same race, long: run with `cargo test -p hostmux-router -- --ignored`.
#[test]
#[ignore]
fn stress_readers_racing_a_writer_see_whole_snapshots_in_order() {
    race_readers_against_a_writer(20_000);
}

fn race_readers_against_a_writer(stable_count: usize) {
    let table: Arc<RoutingTable<Route>> = Arc::new(RoutingTable::new());
    let writer_done = AtomicBool::new(false);
    let progress: [AtomicUsize; 3] = Default::default();

    thread::scope(|scope| {
        scope.spawn(|| {
            let _done = SetOnDrop(&writer_done);
            wait_for_readers(&progress, 1);
            for i in 0..stable_count {
                let churn = format!("churn-{i}");
                table
                    .insert(name(&churn), Route::from(churn.as_str()))
                    .unwrap();
                let key = stable(i);
                table.insert(name(&key), Route::from(key.as_str())).unwrap();
                assert_eq!(
                    table.remove(churn.as_bytes()).as_deref(),
                    Some(churn.as_str())
                );
            }
            let mut extra = 0usize;
            while progress
                .iter()
                .any(|p| p.load(Ordering::Acquire) < MIN_ROUNDS_PER_READER)
            {
                let churn = format!("churn-{}", extra % stable_count);
                table
                    .insert(name(&churn), Route::from(churn.as_str()))
                    .unwrap();
                table.remove(churn.as_bytes()).unwrap();
                extra += 1;
            }
        });
        let table_reader = scope.spawn(|| {
            let progress = Progress(&progress[0]);
            check_reader(
                |key| table.lookup(key),
                &writer_done,
                stable_count,
                progress,
            )
        });
        let handle_reader = scope.spawn(|| {
            let mut reader = table.reader();
            let progress = Progress(&progress[1]);
            check_reader(
                |key| reader.lookup(key).cloned(),
                &writer_done,
                stable_count,
                progress,
            )
        });
        let snapshot_reader = scope.spawn(|| {
            let progress = Progress(&progress[2]);
            let mut snapshots = 0;
            while !writer_done.load(Ordering::Acquire) {
                let snapshot = table.snapshot();
                // Stable names are inserted in order: a snapshot holds a prefix.
                let present = snapshot
                    .iter()
                    .filter(|(n, _)| n.starts_with("stable-"))
                    .count();
                for i in 0..stable_count {
                    assert_eq!(snapshot.get(stable(i).as_bytes()).is_some(), i < present);
                }
                for (n, route) in snapshot.iter() {
                    assert_eq!(n, &**route);
                }
                assert!(
                    snapshot.len() <= present + 1,
                    "at most one churn route at a time"
                );
                snapshots += 1;
                progress.round_done();
            }
            snapshots
        });
        let rounds = [table_reader, handle_reader, snapshot_reader]
            .map(|reader| reader.join().expect("reader panicked"));
        eprintln!("reader rounds while the writer ran: {rounds:?}");
    });
    assert_eq!(table.len(), stable_count);
}

/// Routes bound together by one `insert_all`, spread over many shards.
const BATCH: usize = 64;

/// `snapshot()` is a consistent cut across shards: a writer binds whole
/// batches with `insert_all` (published shard by shard), and every listing
/// taken meanwhile holds whole batches only.
#[test]
fn listings_hold_whole_batches_while_a_writer_inserts_them() {
    const BATCHES: usize = 100;
    let table: RoutingTable<Route> = RoutingTable::new();
    let writer_done = AtomicBool::new(false);
    let progress = [AtomicUsize::new(0)];
    thread::scope(|scope| {
        scope.spawn(|| {
            let _done = SetOnDrop(&writer_done);
            wait_for_readers(&progress, 1);
            for batch in 0..BATCHES {
                table
                    .insert_all((0..BATCH).map(|i| {
                        let key = format!("batch-{batch}-{i}");
                        (name(&key), Route::from(key.as_str()))
                    }))
                    .unwrap();
            }
        });
        let lister = scope.spawn(|| {
            let progress = Progress(&progress[0]);
            let mut listings = 0;
            while !writer_done.load(Ordering::Acquire) {
                let snapshot = table.snapshot();
                assert_eq!(snapshot.len() % BATCH, 0, "a listing split a batch");
                let batches = snapshot.len() / BATCH;
                for batch in 0..BATCHES {
                    for i in 0..BATCH {
                        let key = format!("batch-{batch}-{i}");
                        assert_eq!(
                            snapshot.get(key.as_bytes()).is_some(),
                            batch < batches,
                            "{key} in a listing of {batches} batches"
                        );
                    }
                }
                listings += 1;
                progress.round_done();
            }
            listings
        });
        let listings = lister.join().expect("lister panicked");
        eprintln!("listings while the writer ran: {listings}");
    });
    assert_eq!(table.snapshot().len(), BATCHES * BATCH);
}

/// Names the reapers share: few, so that they race on each one.
const REAPED_NAMES: [&str; 3] = ["reaped-0", "reaped-1", "reaped-2"];
/// Stale compare-and-removes each reaper must have seen refused before the
/// race ends, so that the race really happened.
const MIN_STALE_PER_REAPER: usize = 200;
/// A bound on each reaper's rounds, so a race that never happens fails the
/// test instead of hanging it.
const MAX_ROUNDS_PER_REAPER: usize = 5_000_000;

/// Several reapers race on the same names. Each round one looks a name up,
/// gets the generation bound to it, and compare-and-removes that
/// generation; if that succeeds it binds the name to a fresh generation at
/// once. A reaper whose lookup went stale (another reaper removed and
/// rebound the name since) must be refused: every generation is removed at
/// most once, and no newer binding is ever removed by a stale remover
/// (which would show as a generation reported twice and another never
/// reported nor bound).
#[test]
fn a_remover_holding_a_stale_route_never_removes_a_newer_binding() {
    let table: RoutingTable<u64> = RoutingTable::new();
    let next_generation = AtomicUsize::new(0);
    let generation = || next_generation.fetch_add(1, Ordering::Relaxed) as u64;
    for reaped in REAPED_NAMES {
        table.insert(name(reaped), generation()).unwrap();
    }
    let stale_counts: [AtomicUsize; 3] = Default::default();
    let reaped: Vec<(Vec<u64>, usize, usize)> = thread::scope(|scope| {
        let reapers: Vec<_> = (0..stale_counts.len())
            .map(|reaper| {
                let (table, stale_counts, generation) = (&table, &stale_counts, &generation);
                scope.spawn(move || {
                    let progress = Progress(&stale_counts[reaper]);
                    let mut removed = Vec::new();
                    let mut round_count = 0;
                    for round in 0..MAX_ROUNDS_PER_REAPER {
                        round_count = round;
                        if stale_counts
                            .iter()
                            .all(|stale| stale.load(Ordering::Acquire) >= MIN_STALE_PER_REAPER)
                        {
                            break;
                        }
                        let reaped = REAPED_NAMES[(round + reaper) % REAPED_NAMES.len()];
                        // Unbound for a moment while its remover rebinds it.
                        let Some(seen) = table.lookup(reaped.as_bytes()) else {
                            continue;
                        };
                        if table.remove_if(reaped.as_bytes(), &seen) {
                            removed.push(seen);
                            // Only the remover rebinds, so the name is free.
                            table.insert(name(reaped), generation()).unwrap();
                        } else {
                            progress.round_done();
                        }
                    }
                    let stale = progress.0.load(Ordering::Acquire);
                    assert!(
                        stale >= MIN_STALE_PER_REAPER,
                        "reaper {reaper}: only {stale} stale removes in \
                         {MAX_ROUNDS_PER_REAPER} rounds; the race did not happen"
                    );
                    (removed, stale, round_count)
                })
            })
            .collect();
        reapers
            .into_iter()
            .map(|reaper| reaper.join().expect("reaper panicked"))
            .collect()
    });
    let mut accounted: Vec<u64> = reaped
        .iter()
        .flat_map(|(removed, _, _)| removed)
        .copied()
        .collect();
    let removes = accounted.len();
    let snapshot = table.snapshot();
    assert_eq!(snapshot.len(), REAPED_NAMES.len(), "every name stays bound");
    accounted.extend(snapshot.iter().map(|(_, generation)| *generation));
    accounted.sort_unstable();
    let generations = next_generation.load(Ordering::Relaxed) as u64;
    // Each generation ever bound is either removed exactly once or still
    // bound: none removed twice, none lost.
    let twice: Vec<u64> = accounted
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
        .collect();
    assert!(
        twice.is_empty(),
        "{} generations removed twice (a stale remover removed a newer binding), first {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(
        accounted,
        (0..generations).collect::<Vec<_>>(),
        "a generation was lost"
    );
    let per_reaper: Vec<_> = reaped
        .iter()
        .map(|(_, stale, rounds)| (*stale, *rounds))
        .collect();
    eprintln!(
        "{removes} compare-and-removes succeeded; (stale refused, rounds) per reaper: {per_reaper:?}"
    );
}
