//! hostmux-host: the [`Host`] — one frontend address for every proc on a
//! machine, shared-memory rings to each proc, and the service proc.
//!
//! # Its one job
//!
//! Move frames between clients and procs, and between procs, without losing
//! any silently: a frame read from a client connection is looked up by its
//! destination name and written (one copy) into that proc's inbound ring; a
//! frame a proc writes into its outbound ring is routed to another proc's
//! ring (ring to ring, one copy), back to a connected client, or to the
//! service proc. Every accepted frame is delivered or answered to its sender
//! with an `Undeliverable` notice and its reason. Around that, the host
//! spawns procs through a `hostmux-lifecycle` manager, waits for readiness,
//! and terminates them.
//!
//! # Main types
//!
//! * [`Host`]: [`Host::serve`] (any manager), [`Host::serve_processes`] (OS
//!   procs, with the agent stop hook), [`Host::spawn`],
//!   [`Host::terminate_proc`], [`Host::kill_proc`],
//!   [`Host::terminate_children`], [`Host::list`], [`Host::stats`],
//!   [`Host::handle_control`]; [`ServeHandle`] keeps it serving (drop or
//!   [`ServeHandle::shutdown`] stops it).
//! * [`HostConfig`] / [`FrontendKind`]: limits, token, control socket,
//!   timeouts, ring sizes, the I/O thread's spin.
//! * [`ProcSpec`]: how a proc receives its rings ([`ChildRings`]);
//!   [`ProcessProc`] for OS processes (the `hostmux-proc` boot protocol),
//!   [`LocalProc`] for in-process procs ([`LocalProc::booted`]: a
//!   `hostmux-proc` loop in one call), any `FnOnce(ChildRings)` closure for
//!   a custom manager; [`ProcEndpoint`] is an in-process proc's attached
//!   view. [`SpawnByRequest`]: how a control-plane `Spawn` becomes a spec;
//!   [`WithoutSpawnRequests`] serves a custom manager that takes none.
//! * Clients of a host, one implementation for every user (the CLI, the
//!   tests, the benchmarks): [`Client`] (tokio, data plane; halves
//!   [`ClientWriter`] and [`ClientReader`]), [`BlockingClient`] (the same on
//!   std sockets, with read timeouts and one `write` per batch) and
//!   [`ControlClient`] (control plane, over a [`Client`]). Both data clients
//!   wrap the sans-IO [`ClientEncoder`] (hello and frames into a batch) and
//!   [`ClientDecoder`] (frames read in place), so the client side of the
//!   hello and of the codec is written once.
//! * [`HostStats`], [`ProcStats`], [`ConnStats`]: counters with
//!   `accepted = delivered + returned` per connection and per proc;
//!   [`Host::serve_metrics`] serves them as Prometheus series
//!   ([`metrics`]).
//! * [`encode_hello`] / [`is_hello_ack`]: the connection hello.
//! * [`HostError`]: the crate's one error enum.
//!
//! # OS procs and the control plane
//!
//! A [`ProcessProc`] is spawned by the lifecycle crate's
//! `ProcessProcManager` with its ring memfds and both doorbells as
//! inherited fds (`hostmux_proc::protocol::child_config`). It is ready once
//! it wrote its ready record *and* its agent answered a ping the host wrote
//! into its inbound ring (answers come back on `AGENT_PORT` and are taken by
//! the host, not the service proc). Terminating it writes the agent's `Stop`
//! behind the frames already in its ring, closes the ring, and lets the
//! lifecycle escalate (SIGTERM, then SIGKILL after the grace). A proc that
//! exits for any cause is unbound, its unread frames are returned
//! `ProcExited`, its rings are unmapped, and its terminal status stays in
//! [`Host::list`] (the last 64). A spec with a [`RestartPolicy`]
//! ([`ProcessProc::restart`], `spawn --restart`) is started again after it
//! ends, under the same name and route, with new rings, after a doubling
//! wait and within a start limit; a stop, kill or shutdown ends that.
//!
//! Control requests (spawn, terminate, kill, list, stats, terminate-all) are
//! carried out only for privileged connections: the control socket
//! ([`HostConfig::control_socket`], mode 0600, peer uid checked with
//! `SO_PEERCRED`) or a frontend connection that presented the host's token.
//! Others get `ControlResponse::Error { kind: Unauthorized, .. }`; a
//! control-socket peer of another uid gets it in place of its hello's ack
//! and is disconnected. Procs can run as another user
//! ([`ProcessProc::run_as`], the request's `user`/`group`), and then cannot
//! reach the control socket at all. See `docs/operations.md`.
//!
//! # How it is built
//!
//! Each **I/O thread** ([`HostConfig::io_threads`], default a quarter of
//! the cores: [`default_io_threads`]) owns its lane (a ring pair) of every
//! proc, the connections handed to it and a reader handle of the shared
//! routing table, so every ring keeps exactly one producer and one consumer
//! without locks (see docs/architecture.md, "Threads"). The routing logic is a sans-IO core (the
//! `dataplane` module: handle a frame, drain a proc's ring, flush, counters)
//! driven by a small `Frontend` trait with three implementations: io_uring
//! through tokio-uring (reads land straight in the frame decoder's aligned
//! buffer), epoll through tokio, and io_uring driven by the host itself
//! through the `io-uring` crate ([`FrontendKind::IoUringDirect`]: a ring
//! per I/O thread, batched submission, fixed files). [`FrontendKind::Auto`]
//! runs the last of these where the kernel builds its ring, else
//! tokio-uring's, else epoll, and logs which one runs. Control
//! operations run on the caller's tokio runtime and reach each I/O thread
//! through its command queue plus a ring of its doorbell.
//!
//! Each I/O thread waits for all procs with **one doorbell** (an eventfd
//! every proc holds for its lane on that thread) plus a pending flag in each ring: a proc rings it only when the host
//! announced that it sleeps on that ring, so while traffic flows nobody
//! makes a system call to wake anybody, and an idle host sleeps in one
//! `epoll_wait` whatever the number of procs. The same doorbell carries
//! "space available" for a full inbound ring.
//!
//! After a wake-up the I/O thread keeps polling the rings for
//! [`HostConfig::poll_spin`] (20 µs, yielding the CPU between looks) before
//! it sleeps again, so a proc that answers within that time costs no
//! wake-up; an idle host is never woken and never spins.
//!
//! A proc's ring is memory the proc can rewrite at any time, so the host
//! copies each record's prefix and routing header into a host-local,
//! 16-aligned buffer, validates and routes from that copy, and copies only
//! the payload ring to ring (still one copy of the payload, no allocation).
//!
//! # Key design decision: block the reader, not the host
//!
//! A full inbound ring stops reading only the connection whose frame did not
//! fit: the frame is kept (copied once into that connection's stash, which
//! only happens on this slow path), the ring is armed to ring the doorbell
//! when space appears, and the connection retries on that wake-up or returns
//! the frame `Overloaded` after [`HostConfig::overload_wait`]. Other
//! connections and other procs carry on. A proc whose outbound frame meets a
//! full ring keeps it in its own ring (so the proc itself is slowed, not the
//! host) under the same deadline. A client that stops reading its replies
//! stops being read once its reply queue is half of
//! [`HostConfig::client_outbox_bytes`]; a proc's frame that does not fit in
//! the queue stays in the proc's ring until the client's writer makes room,
//! under the same deadline, then frames for it are returned `Overloaded`:
//! host memory is bounded whatever peers do, and a client that reads slower
//! than a proc answers slows the proc instead of losing replies.
//!
//! # The hello
//!
//! A connection's first frame is its hello (client name, and the token when
//! the host has one); see [`encode_hello`]: a `Data` frame to the service
//! proc on a reserved port, defined in `hostmux_wire::hello` (re-exported
//! here).
//!
//! # Other hosts
//!
//! A frame whose destination address is another host's frontend (TCP) is
//! forwarded over a link this host dials on first use and caches (the
//! `dataplane::remote` module): the link says hello as a client named
//! `peer-<hash of this host's address>` with this host's token, and the
//! frame's sender is rewritten to carry this host's address so replies can
//! be routed back (the far host dials us for them). If the dial or the hello
//! fails, or the link closes, frames still queued on it are returned
//! `NoSuchProc`; if the peer refused the link (its TLS handshake or a hello
//! refusal), `PeerRefused`. With [`HostConfig::tls`] every link is mutual
//! TLS and the TCP frontend takes TLS clients too ([`TlsConfig`]). Frames already written to a link's socket when it breaks
//! are not tracked further (no end-to-end acknowledgement yet).
//!
//! # Not yet
//!
//! Registered buffers and multishot operations on io_uring; end-to-end
//! acknowledgement of frames already written to a link to another host.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use hostmux_host::{Host, HostConfig, LocalProc, Received};
//! use hostmux_lifecycle::LocalProcManager;
//! use hostmux_wire::Addr;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let (host, serving) = Host::serve(
//!     LocalProcManager::new(),
//!     Addr::tcp("127.0.0.1", 0).unwrap(),
//!     // One I/O thread, so one lane per proc: what `attach` serves.
//!     HostConfig { io_threads: 1, ..HostConfig::default() },
//! )
//! .await
//! .unwrap();
//!
//! // An in-process proc: maps its rings, reports ready, and runs until the
//! // host closes its inbound ring.
//! let spec = LocalProc::new(|mut cx, rings| async move {
//!     let mut endpoint = rings.attach().map_err(|e| e.to_string())?;
//!     cx.report_ready();
//!     tokio::task::spawn_blocking(move || loop {
//!         match endpoint.recv(Duration::from_secs(60), |_frame| ()) {
//!             Ok(Received::Closed) | Err(_) => return,
//!             _ => {}
//!         }
//!     })
//!     .await
//!     .map_err(|e| e.to_string())
//! });
//! let id = host.spawn("echo", spec).await.unwrap();
//! assert_eq!(id.name().as_str(), "echo");
//! assert_eq!(id.addr(), host.addr());
//!
//! let stats = host.stats().await.unwrap();
//! assert!(stats.proc("echo").unwrap().ready);
//!
//! let status = host.terminate_proc("echo", Duration::from_secs(5)).await.unwrap();
//! assert!(status.success());
//! assert!(host.procs().is_empty());
//! serving.shutdown();
//! # });
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod client;
mod config;
mod control;
mod cores;
mod dataplane;
mod epoll;
mod error;
mod frontend;
mod host;
mod identity;
mod io;
mod logged;
pub mod metrics;
mod process;
mod restart;
mod spec;
mod stats;
#[allow(unsafe_code)]
mod sys;
mod uring;
mod uring_direct;

#[doc(hidden)]
pub mod fuzzing;

// Test-only unsafe: the counting global allocator.
#[cfg(test)]
#[allow(unsafe_code)]
mod tests;

pub use client::{
    BlockingClient, Client, ClientDecoder, ClientEncoder, ClientReader, ClientWriter,
    ControlClient, ReceivedFrame,
};
pub use config::{FrontendKind, HostConfig, RecvBuffers};
pub use cores::{available_cores, default_io_threads};
pub use error::HostError;
pub use host::{Host, ServeHandle};
pub use hostmux_wire::{encode_hello, is_hello_ack, HELLO_PORT};
pub use io::tls::{PlainTcp, TlsConfig};
pub use process::{ProcessProc, SpawnByRequest, SpecRefused, WithoutSpawnRequests};
pub use restart::{
    RestartLimit, RestartMode, RestartPolicy, DEFAULT_RESTART_DELAY, DEFAULT_RESTART_DELAY_MAX,
    DEFAULT_RESTART_RESET_AFTER,
};
pub use spec::{ChildRings, LaneFds, LocalProc, ProcEndpoint, ProcSpec, Received};
pub use stats::{
    ConnClass, ConnClassStats, ConnLimitStats, ConnStats, HostStats, LatencyHistogram,
    LifecycleStats, LinkStats, ProcStats, ReplyMemoryStats, Returned, LATENCY_BOUNDS_US, REASONS,
};
/// The io-uring-direct frontend's multishot counts (process-wide), for
/// tests and measurements.
#[doc(hidden)]
pub use uring_direct::{
    receive_counts as uring_receive_counts, ReceiveCounts as UringReceiveCounts,
};

/// Re-exported: how procs end and what bulk terminate reports.
pub use hostmux_lifecycle::{TerminalStatus, TerminateSummary};
pub use hostmux_ring::RingMemory;

/// Whether io_uring can be used on this machine (a ring can be built).
pub fn io_uring_available() -> bool {
    uring::available()
}

/// `docs/porting-from-hyperactor.md`, compiled: its Rust block names every
/// hostmux item its tables map hyperactor's to.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/porting-from-hyperactor.md")]
pub struct PortingFromHyperactor;

#[cfg(test)]
mod porting_doc {
    /// Every `hostmux_*::…` path in the porting guide's text is named in
    /// its compiled block (its type and its last segment), so the doctest
    /// above checks that it exists.
    #[test]
    fn every_path_in_the_porting_guide_is_compiled() {
        let doc = include_str!("../../../docs/porting-from-hyperactor.md");
        let (prose, block) = doc
            .split_once("```rust")
            .expect("the guide ends with a compiled block");
        let words: std::collections::HashSet<&str> = block
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        let mut checked = 0;
        for quoted in prose.split('`').skip(1).step_by(2) {
            for path in quoted.split([' ', ',', '(', ')']) {
                if !path.starts_with("hostmux_") || !path.contains("::") || path.contains('*') {
                    continue;
                }
                let segments: Vec<&str> = path.split("::").collect();
                for segment in &segments[1..] {
                    assert!(
                        words.contains(segment),
                        "`{path}` is named in the guide but `{segment}` is not in its compiled block"
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} paths found");
    }
}
