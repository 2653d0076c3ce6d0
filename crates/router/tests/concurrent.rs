//! Readers racing a writer never see a torn table, and see updates in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use hostmux_router::RoutingTable;

use crate::name;

const STABLE: usize = 300;

/// A route that records the name it was bound to.
type Route = Arc<str>;

fn stable(i: usize) -> String {
    format!("stable-{i}")
}

/// Sets the flag when dropped, so readers stop even if the writer panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The writer binds `stable-0..STABLE` in order and never removes them; in
/// between it binds and unbinds `churn-i`. A reader that has seen
/// `stable-k` must from then on find every `stable-j` with `j <= k`
/// (linearizability), and any route it finds must be the one bound to the
/// name it asked for (no torn state).
fn check_reader(mut lookup: impl FnMut(&[u8]) -> Option<Route>, writer_done: &AtomicBool) -> usize {
    let mut highest_seen: Option<usize> = None;
    let mut rounds = 0;
    let mut check = |lookup: &mut dyn FnMut(&[u8]) -> Option<Route>| {
        let probe = highest_seen.map_or(0, |h| (h + 1).min(STABLE - 1));
        for i in [probe, highest_seen.unwrap_or(0) / 2, rounds % STABLE] {
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
        let churn = format!("churn-{}", rounds % STABLE);
        if let Some(route) = lookup(churn.as_bytes()) {
            assert_eq!(&*route, churn, "route bound to another name");
        }
        assert_eq!(lookup(b"never-bound"), None);
        rounds += 1;
    };
    while !writer_done.load(Ordering::Acquire) {
        check(&mut lookup);
    }
    // The writer has returned from every update: all must be visible now.
    for i in 0..STABLE {
        let key = stable(i);
        assert_eq!(lookup(key.as_bytes()).as_deref(), Some(key.as_str()));
    }
    for i in 0..STABLE {
        assert_eq!(lookup(format!("churn-{i}").as_bytes()), None);
    }
    rounds
}

#[test]
fn readers_racing_a_writer_see_whole_snapshots_in_order() {
    let table: Arc<RoutingTable<Route>> = Arc::new(RoutingTable::new());
    let writer_done = AtomicBool::new(false);
    let start = Barrier::new(4);

    thread::scope(|scope| {
        scope.spawn(|| {
            let _done = SetOnDrop(&writer_done);
            start.wait();
            for i in 0..STABLE {
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
        });
        let table_reader = scope.spawn(|| {
            start.wait();
            check_reader(|key| table.lookup(key), &writer_done)
        });
        let handle_reader = scope.spawn(|| {
            let mut reader = table.reader();
            start.wait();
            check_reader(|key| reader.lookup(key).cloned(), &writer_done)
        });
        let snapshot_reader = scope.spawn(|| {
            start.wait();
            let mut snapshots = 0;
            while !writer_done.load(Ordering::Acquire) {
                let snapshot = table.snapshot();
                // Stable names are inserted in order: a snapshot holds a prefix.
                let stable_count = snapshot
                    .iter()
                    .filter(|(n, _)| n.starts_with("stable-"))
                    .count();
                for i in 0..STABLE {
                    assert_eq!(
                        snapshot.get(stable(i).as_bytes()).is_some(),
                        i < stable_count
                    );
                }
                for (n, route) in snapshot.iter() {
                    assert_eq!(n, &**route);
                }
                assert!(
                    snapshot.len() <= stable_count + 1,
                    "at most one churn route at a time"
                );
                snapshots += 1;
            }
            snapshots
        });
        let rounds = [table_reader, handle_reader, snapshot_reader]
            .map(|reader| reader.join().expect("reader panicked"));
        eprintln!("reader rounds while the writer ran: {rounds:?}");
    });
    assert_eq!(table.len(), STABLE);
}
