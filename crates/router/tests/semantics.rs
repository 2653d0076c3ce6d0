//! Insert, lookup, remove and listing, one thread.

use hostmux_router::{RouterError, RoutingTable};

use crate::name;

#[test]
fn lookup_finds_inserted_routes_by_borrowed_bytes() {
    let table = RoutingTable::new();
    table.insert(name("echo"), 1u32).unwrap();
    table.insert(name("sink"), 2).unwrap();
    let header: Vec<u8> = b"sink".to_vec();
    assert_eq!(table.lookup(&header), Some(2));
    assert_eq!(table.lookup(b"echo"), Some(1));
    assert!(table.contains(b"echo"));
    assert_eq!(table.len(), 2);
    assert!(!table.is_empty());
}

#[test]
fn duplicate_insert_is_rejected_naming_the_proc_and_keeps_the_first_route() {
    let table = RoutingTable::new();
    table.insert(name("echo"), 1u32).unwrap();
    let err = table.insert(name("echo"), 2).unwrap_err();
    assert_eq!(err, RouterError::Exists { name: name("echo") });
    assert_eq!(err.to_string(), "route for proc `echo` already exists");
    assert_eq!(table.lookup(b"echo"), Some(1));
    assert_eq!(table.len(), 1);
}

#[test]
fn remove_returns_the_route_and_frees_the_name() {
    let table = RoutingTable::new();
    table.insert(name("echo"), 1u32).unwrap();
    assert_eq!(table.remove(b"echo"), Some(1));
    assert_eq!(table.lookup(b"echo"), None);
    assert!(table.is_empty());
    assert_eq!(table.remove(b"echo"), None, "second remove finds nothing");
    table.insert(name("echo"), 3).unwrap();
    assert_eq!(table.lookup(b"echo"), Some(3));
}

#[test]
fn remove_if_removes_only_the_expected_route() {
    let table = RoutingTable::new();
    table.insert(name("echo"), 1u32).unwrap();
    table.insert(name("sink"), 5).unwrap();
    // Another route bound to the name: nothing changes.
    assert!(!table.remove_if(b"echo", &2));
    assert_eq!(table.lookup(b"echo"), Some(1));
    assert_eq!(table.len(), 2);
    // Unbound and invalid names: nothing changes.
    assert!(!table.remove_if(b"nobody", &1));
    assert!(!table.remove_if(b"\xff", &1));
    assert_eq!(table.len(), 2);
    // The expected route: removed, the name is free, the others stay.
    assert!(table.remove_if(b"echo", &1));
    assert_eq!(table.lookup(b"echo"), None);
    assert_eq!(table.len(), 1);
    assert!(!table.remove_if(b"echo", &1), "second remove finds nothing");
    assert_eq!(table.lookup(b"sink"), Some(5));
    // A rebinding under the same name is a different route.
    table.insert(name("echo"), 3).unwrap();
    assert!(!table.remove_if(b"echo", &1));
    assert_eq!(table.reader().lookup(b"echo"), Some(&3));
    assert!(table.remove_if(b"echo", &3));
    assert_eq!(table.snapshot().len(), 1);
}

#[test]
fn unknown_and_invalid_names_find_nothing() {
    let table = RoutingTable::new();
    table.insert(name("echo"), 1u32).unwrap();
    let too_long = vec![b'e'; 10_000];
    for bytes in [
        &b""[..],
        b"ech",
        b"echo ",
        b"ECHO",
        b".echo",
        b"ec\0ho",
        b"\xff\xfe",
        &too_long,
    ] {
        assert_eq!(table.lookup(bytes), None, "{bytes:?}");
        assert_eq!(table.reader().lookup(bytes), None, "{bytes:?}");
    }
    assert_eq!(table.remove(b"\xff"), None);
    assert_eq!(table.len(), 1);
}

#[test]
fn insert_all_is_all_or_nothing() {
    let table = RoutingTable::new();
    table.insert(name("b"), 0u32).unwrap();
    let err = table
        .insert_all([(name("a"), 1), (name("b"), 2), (name("c"), 3)])
        .unwrap_err();
    assert_eq!(err, RouterError::Exists { name: name("b") });
    let err = table
        .insert_all([(name("x"), 1), (name("x"), 2)])
        .unwrap_err();
    assert_eq!(err, RouterError::Exists { name: name("x") });
    assert_eq!(table.len(), 1, "failed batches leave the table unchanged");
    assert_eq!(table.lookup(b"a"), None);
    table
        .insert_all((0..100).map(|i| (name(&format!("p{i}")), i)))
        .unwrap();
    assert_eq!(table.len(), 101);
    assert_eq!(table.lookup(b"p99"), Some(99));
}

#[test]
fn reader_follows_updates_and_borrows_routes() {
    let table = RoutingTable::new();
    let mut reader = table.reader();
    assert!(reader.is_empty());
    table.insert(name("echo"), String::from("ring-7")).unwrap();
    assert_eq!(reader.lookup(b"echo").map(String::as_str), Some("ring-7"));
    assert_eq!(reader.len(), 1);
    table.remove(b"echo");
    assert_eq!(reader.lookup(b"echo"), None);
}

#[test]
fn snapshot_is_a_stable_consistent_listing() {
    let table = RoutingTable::new();
    table.insert(name("a"), 1u32).unwrap();
    table.insert(name("b"), 2).unwrap();
    let before = table.snapshot();
    table.remove(b"a");
    table.insert(name("c"), 3).unwrap();
    let mut listed: Vec<(String, u32)> = before.iter().map(|(n, r)| (n.to_owned(), *r)).collect();
    listed.sort();
    assert_eq!(listed, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
    assert_eq!(before.get(b"a"), Some(&1));
    assert_eq!(before.len(), 2);
    let after = table.snapshot();
    assert_eq!(after.get(b"a"), None);
    assert_eq!(after.get(b"c"), Some(&3));
    assert_eq!(format!("{table:?}"), "RoutingTable { len: 2, .. }");
}

#[test]
fn std_siphash_table_behaves_the_same() {
    let table = RoutingTable::with_hasher(std::hash::RandomState::new());
    table.insert(name("echo"), 1u32).unwrap();
    assert_eq!(table.lookup(b"echo"), Some(1));
    assert!(table.insert(name("echo"), 2).is_err());
    assert_eq!(table.remove(b"echo"), Some(1));
}

#[test]
fn replaced_snapshots_are_freed_by_the_writer_not_the_reader() {
    use std::sync::Arc;
    let table = RoutingTable::new();
    let route = Arc::new(7u32);
    table.insert(name("echo"), route.clone()).unwrap();
    let mut reader = table.reader();
    assert!(reader.lookup(b"echo").is_some());
    // The reader caches the snapshot holding `echo`; removing retires it.
    assert_eq!(table.remove(b"echo"), Some(route.clone()));
    assert_eq!(
        Arc::strong_count(&route),
        2,
        "the reader's snapshot holds it"
    );
    table.reclaim();
    assert_eq!(Arc::strong_count(&route), 2, "still in use: not freed");
    // The reader moves on without freeing the retired snapshot itself...
    reader.refresh();
    assert!(reader.lookup(b"echo").is_none());
    assert_eq!(Arc::strong_count(&route), 2, "the table still holds it");
    // ...a writer does: explicitly, or at the next update.
    table.reclaim();
    assert_eq!(Arc::strong_count(&route), 1);

    let route = Arc::new(8u32);
    table.insert(name("echo"), route.clone()).unwrap();
    assert!(reader.lookup(b"echo").is_some());
    table.remove(b"echo");
    assert!(reader.lookup(b"echo").is_none());
    assert_eq!(Arc::strong_count(&route), 2);
    table.insert(name("other"), Arc::new(0)).unwrap();
    assert_eq!(Arc::strong_count(&route), 1);
}

#[test]
fn reader_moves_into_the_thread_that_uses_it() {
    let table = std::sync::Arc::new(RoutingTable::new());
    table.insert(name("echo"), 1u32).unwrap();
    let mut reader = table.reader();
    let io_thread = std::thread::spawn(move || reader.lookup(b"echo").copied());
    assert_eq!(io_thread.join().unwrap(), Some(1));
}
