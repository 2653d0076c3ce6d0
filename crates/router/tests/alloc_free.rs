//! Lookups make no heap calls: the host looks a route up for every frame.

use std::sync::Arc;

use hostmux_router::RoutingTable;

use crate::{heap_calls_during, name, HeapCalls, NO_HEAP_CALLS};

fn table_of(count: usize) -> (RoutingTable<Arc<u64>>, Vec<Vec<u8>>) {
    let table = RoutingTable::new();
    table
        .insert_all((0..count).map(|i| (name(&format!("proc-{i}")), Arc::new(i as u64))))
        .unwrap();
    let keys = (0..count)
        .map(|i| format!("proc-{i}").into_bytes())
        .chain([b"absent".to_vec(), b"\xff bad".to_vec()])
        .collect();
    (table, keys)
}

#[test]
fn table_lookup_allocates_nothing() {
    let (table, keys) = table_of(1_000);
    // First use of arc-swap on a thread registers its per-thread debt slots
    // once; warm that up outside the counted region.
    assert!(table.lookup(&keys[0]).is_some());
    let mut found = 0;
    let calls = heap_calls_during(|| {
        for key in &keys {
            found += usize::from(table.lookup(key).is_some());
        }
    });
    assert_eq!(found, 1_000);
    assert_eq!(calls, NO_HEAP_CALLS, "table lookups touched the heap");
}

#[test]
fn reader_lookup_allocates_and_frees_nothing_even_across_updates() {
    let (table, keys) = table_of(1_000);
    let mut reader = table.reader();
    assert!(reader.lookup(&keys[0]).is_some());
    let mut found = 0;
    let calls = heap_calls_during(|| {
        for key in &keys {
            found += usize::from(reader.lookup(key).is_some());
        }
    });
    assert_eq!(found, 1_000);
    assert_eq!(calls, NO_HEAP_CALLS, "reader lookups touched the heap");

    // After an update the reader moves to the new snapshot: it allocates
    // nothing, and it does not free the old one either (a writer does).
    table.insert(name("late"), Arc::new(0)).unwrap();
    let calls = heap_calls_during(|| {
        assert!(reader.lookup(b"late").is_some());
        assert!(reader.lookup(&keys[1]).is_some());
    });
    assert_eq!(calls, NO_HEAP_CALLS, "reader reload touched the heap");
}

#[test]
fn counting_allocator_sees_heap_calls() {
    // Guards the tests above against a counter that never counts.
    let calls = heap_calls_during(|| {
        std::hint::black_box(Box::new(1u8));
    });
    assert_eq!(
        calls,
        HeapCalls {
            allocations: 1,
            deallocations: 1
        }
    );
}
