//! The table behaves like a `HashMap` under any sequence of updates.

use std::collections::HashMap;

use hostmux_router::{RouterError, RoutingTable};
use proptest::prelude::*;

use crate::name;

#[derive(Debug, Clone)]
enum Op {
    Insert(usize, u32),
    Remove(usize),
    /// Compare-and-remove expecting this route, or (`None`) the one bound.
    RemoveIf(usize, Option<u32>),
    Lookup(usize),
}

/// A small pool so that duplicates and removals of bound names are common.
const POOL: [&str; 7] = [
    "a",
    "b",
    "echo",
    "echo-1",
    "svc.v2",
    "Z_9",
    "a-proc-name-longer-than-thirty-bytes-so-not-inline",
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..POOL.len(), any::<u32>()).prop_map(|(n, r)| Op::Insert(n, r)),
        (0..POOL.len()).prop_map(Op::Remove),
        (0..POOL.len(), proptest::option::of(any::<u32>())).prop_map(|(n, r)| Op::RemoveIf(n, r)),
        (0..POOL.len()).prop_map(Op::Lookup),
    ]
}

proptest! {
    #[test]
    fn matches_a_hashmap_model(ops in proptest::collection::vec(op(), 0..64)) {
        let table = RoutingTable::new();
        let mut reader = table.reader();
        let mut model: HashMap<&str, u32> = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(n, route) => {
                    let result = table.insert(name(POOL[n]), route);
                    if model.contains_key(POOL[n]) {
                        prop_assert_eq!(result, Err(RouterError::Exists { name: name(POOL[n]) }));
                    } else {
                        prop_assert_eq!(result, Ok(()));
                        model.insert(POOL[n], route);
                    }
                }
                Op::Remove(n) => {
                    prop_assert_eq!(table.remove(POOL[n].as_bytes()), model.remove(POOL[n]));
                }
                Op::RemoveIf(n, expected) => {
                    let bound = model.get(POOL[n]).copied();
                    let expected = expected.or(bound).unwrap_or(0);
                    let removed = table.remove_if(POOL[n].as_bytes(), &expected);
                    prop_assert_eq!(removed, bound == Some(expected));
                    if removed {
                        model.remove(POOL[n]);
                    }
                }
                Op::Lookup(n) => {
                    let expected = model.get(POOL[n]).copied();
                    prop_assert_eq!(table.lookup(POOL[n].as_bytes()), expected);
                    prop_assert_eq!(reader.lookup(POOL[n].as_bytes()).copied(), expected);
                }
            }
            prop_assert_eq!(table.len(), model.len());
        }
        let mut listed: Vec<(String, u32)> =
            table.snapshot().iter().map(|(n, r)| (n.to_owned(), *r)).collect();
        listed.sort();
        let mut expected: Vec<(String, u32)> =
            model.iter().map(|(n, r)| ((*n).to_owned(), *r)).collect();
        expected.sort();
        prop_assert_eq!(listed, expected);
    }
}
