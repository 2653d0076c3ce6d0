//! The host's routing table: proc name → route.
//!
//! # Its one job
//!
//! For every frame the host reads (from a client connection or from a proc's
//! outbound ring) it must find where the frame's destination proc lives: a
//! local proc's inbound ring, the host's service proc, a connected client,
//! or another host. [`RoutingTable`] answers that question for a name
//! borrowed straight from the frame's routing header (`&[u8]`), without
//! locking, allocating or building a `String`. It is sans-IO: no runtime, no
//! threads of its own, generic over the route value `R` that the host
//! (`hostmux-host`) defines. Names are `hostmux_wire::ProcName`s.
//!
//! # Main types
//!
//! - [`RoutingTable`]: the shared table. [`lookup`](RoutingTable::lookup)
//!   from any thread; [`insert`](RoutingTable::insert) on spawn,
//!   [`remove`](RoutingTable::remove) on exit (or
//!   [`remove_if`](RoutingTable::remove_if), which removes only the route
//!   the caller looked up, never a newer binding of the same name),
//!   [`snapshot`](RoutingTable::snapshot) for listing.
//! - [`RouteReader`]: a per-thread handle for the I/O thread's hot path; it
//!   caches the current snapshot of every shard and returns routes by
//!   reference.
//! - [`RouteSnapshot`]: one consistent version of the whole table.
//! - [`RouterError`]: why an update was refused (a name already bound).
//!
//! # Invariants
//!
//! - A lookup sees one whole published version of the name's shard, never a
//!   torn one: any route it returns is the route bound to exactly that name.
//! - Updates are serialized and linearizable per name: after
//!   `insert`/`remove`/`remove_if` returns, every later lookup on every thread sees it,
//!   and a reader that has seen an update sees every update that returned
//!   before it. A name is unique while bound (`insert` fails with
//!   [`RouterError::Exists`]) and free again once `remove` returns.
//! - [`RoutingTable::snapshot`] is a consistent cut: every completed update
//!   and no part of any other. [`RoutingTable::insert_all`] checks every name
//!   before publishing anything (all or nothing), but lookups may see its
//!   routes appear shard by shard.
//! - Lookups allocate nothing (a counting-allocator test checks both the
//!   table's and the reader's lookup).
//! - Lookups do not validate: only valid names are ever inserted, so bytes
//!   that are not a valid name find nothing. Validating header names is the
//!   wire crate's job, done before routing.
//!
//! # Key design decision: sharded read-copy-update over `arc-swap`
//!
//! The table is 64 shards, each an immutable hash map behind its own
//! [`arc_swap::ArcSwap`]. A lookup hashes the name once, takes the shard
//! from bits of that hash and probes the shard's map with the same hash
//! (a `hashbrown::HashTable`, so nothing is hashed twice). An update (rare:
//! a proc spawn or exit) takes one mutex, copies the one shard it changes,
//! changes the copy and publishes it with one atomic swap. Readers never wait
//! on writers nor on each other. With a [`RouteReader`] (one
//! `arc_swap::Cache` per shard) a lookup in an unchanged shard costs the
//! hash, one relaxed load of the shard's pointer and the probe, nothing
//! written at all; [`RoutingTable::lookup`] pays arc-swap's per-call guard
//! instead (two atomic operations on a per-thread slot).
//!
//! Why shards: an unsharded table copied the whole map on every update,
//! about 5 MiB and a millisecond at 100,000 routes, and streaming that
//! through the shared cache made the reader's lookups three to four times
//! slower beside a busy writer (30–43 ns against 11 ns alone). A shard is 1/64 of the map (about 80 KiB at 100,000 routes), so
//! an update stays in the writer's own L2, and a reader re-loads only the
//! shard that changed. The price is that an update is atomic per shard, not
//! across the table: `insert_all` is validated as a whole but becomes
//! visible shard by shard, and listing takes the writer mutex to cut all
//! shards at once.
//!
//! Two details keep the I/O thread's lookups cheap while updates happen:
//!
//! - **Writers free, readers never do.** A replaced shard snapshot is kept
//!   by the table until no reader holds it and is then dropped by a later
//!   update (or [`RoutingTable::reclaim`]); a reader moving to a new
//!   snapshot only decrements a count. Without this a reader could end up
//!   dropping the last reference and freeing a map inside a lookup.
//! - **Names inline.** Names of up to 30 bytes (nearly all) are stored in the
//!   bucket, so a hit costs no pointer hop to the name (one cache miss fewer
//!   on a large table) and copying a shard writes nothing readers are
//!   reading; longer names are shared through an `Arc<str>`.
//!
//! [`RoutingTable::insert_all`] fills a table copying each shard once.
//!
//! The alternatives were measured in the same run (`benches/lookup.rs`,
//! figures in `docs/benchmarks.md`, "Routing table (issue 5)"): the reader
//! handle against the table's own `lookup`, `papaya`,
//! `parking_lot::RwLock<HashMap>` and `DashMap`, at 16, 1,000 and 100,000
//! routes, alone and beside a paced and a flat-out writer. Sharded, the
//! reader handle stays at 9–15 ns in all nine cases, including 100,000
//! routes beside a flat-out writer.
//!
//! # Hashing and HashDoS
//!
//! Lookup keys come from clients, so the hasher was chosen deliberately.
//! Keys in the table come only from spawns (the authenticated control
//! plane); a client can only probe. The table uses foldhash
//! ([`RouteHasher`]) seeded at random per process and per table: a client
//! cannot predict which names collide, so it cannot lengthen probe chains,
//! and even a spawner who wanted to cannot aim collisions at an unknown
//! seed. Names are short (≤ 64 bytes by default) and from a restricted
//! alphabet, where foldhash is several nanoseconds cheaper than std's SipHash
//! per lookup. A deployment that prefers SipHash's stronger guarantee can
//! pass `std::hash::RandomState` to [`RoutingTable::with_hasher`].
//!
//! # Example
//!
//! ```
//! use hostmux_router::{RouterError, RoutingTable};
//! use hostmux_wire::ProcName;
//!
//! #[derive(Clone, Debug, PartialEq)]
//! enum Route {
//!     LocalRing(u32),
//!     Remote(&'static str),
//! }
//!
//! let table = RoutingTable::new();
//! table.insert(ProcName::new("echo-1").unwrap(), Route::LocalRing(7)).unwrap();
//! table.insert(ProcName::new("far").unwrap(), Route::Remote("10.0.0.2:7000")).unwrap();
//!
//! // A name borrowed straight from a frame header.
//! let header_name: &[u8] = b"echo-1";
//! assert_eq!(table.lookup(header_name), Some(Route::LocalRing(7)));
//! assert_eq!(table.lookup(b"nobody"), None);
//!
//! // Names are unique while bound.
//! let again = table.insert(ProcName::new("echo-1").unwrap(), Route::LocalRing(8));
//! assert!(matches!(again, Err(RouterError::Exists { name }) if name.as_str() == "echo-1"));
//!
//! // The I/O thread keeps a reader handle and borrows routes from it.
//! let mut reader = table.reader();
//! assert_eq!(reader.lookup(b"far"), Some(&Route::Remote("10.0.0.2:7000")));
//!
//! // On exit the route is unbound and returned; the name is free again.
//! assert_eq!(table.remove(b"echo-1"), Some(Route::LocalRing(7)));
//! assert_eq!(reader.lookup(b"echo-1"), None);
//! table.insert(ProcName::new("echo-1").unwrap(), Route::LocalRing(9)).unwrap();
//! assert_eq!(table.snapshot().len(), 2);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod key;
mod reader;
mod table;

pub use error::RouterError;
pub use reader::RouteReader;
pub use table::{RouteHasher, RouteSnapshot, RoutingTable};
