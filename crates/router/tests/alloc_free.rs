//! Lookups allocate nothing: the host looks a route up for every frame.

use std::sync::Arc;

use hostmux_router::RoutingTable;

use crate::{allocations_during, name};

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
    let allocations = allocations_during(|| {
        for key in &keys {
            found += usize::from(table.lookup(key).is_some());
        }
    });
    assert_eq!(found, 1_000);
    assert_eq!(allocations, 0, "table lookups allocated");
}

#[test]
fn reader_lookup_allocates_nothing_even_across_updates() {
    let (table, keys) = table_of(1_000);
    let mut reader = table.reader();
    assert!(reader.lookup(&keys[0]).is_some());
    let mut found = 0;
    let allocations = allocations_during(|| {
        for key in &keys {
            found += usize::from(reader.lookup(key).is_some());
        }
    });
    assert_eq!(found, 1_000);
    assert_eq!(allocations, 0, "reader lookups allocated");

    // After an update the reader reloads the snapshot: still no allocation
    // on the reading thread (the writer allocated the new snapshot).
    table.insert(name("late"), Arc::new(0)).unwrap();
    let allocations = allocations_during(|| {
        assert!(reader.lookup(b"late").is_some());
        assert!(reader.lookup(&keys[1]).is_some());
    });
    assert_eq!(allocations, 0, "reader reload allocated");
}

#[test]
fn counting_allocator_sees_allocations() {
    // Guards the two tests above against a counter that never counts.
    let allocations = allocations_during(|| {
        std::hint::black_box(Box::new(1u8));
    });
    assert_eq!(allocations, 1);
}
