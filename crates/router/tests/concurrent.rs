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
