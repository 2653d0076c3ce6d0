//! Host configuration.

use std::path::PathBuf;
use std::time::Duration;

use hostmux_wire::{Addr, Limits};

/// Which frontend the host's I/O thread runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrontendKind {
    /// io_uring if the kernel lets us build a ring, else epoll. Logged at start.
    #[default]
    Auto,
    /// io_uring through tokio-uring; serving fails if io_uring is unavailable.
    IoUring,
    /// epoll through tokio's reactor.
    Epoll,
}

/// How a host serves. `Default` is a sensible loopback setup.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Frame and name limits enforced on every connection and ring.
    pub limits: Limits,
    /// The token a client must present in its hello. `None`: no token, and
    /// then only loopback (or Unix) frontend addresses may be bound.
    pub token: Option<String>,
    /// How long [`Host::spawn`](crate::Host::spawn) waits for a proc to report
    /// ready. `Duration::ZERO` disables the timeout (wait until it is ready or
    /// ends).
    pub spawn_ready_timeout: Duration,
    /// How long a frame may wait for room in a full inbound ring before it is
    /// returned as `Overloaded`.
    pub overload_wait: Duration,
    /// Size of each proc's inbound ring (power of two, 64 KiB..256 MiB).
    pub inbound_ring_bytes: usize,
    /// Size of each proc's outbound ring (power of two, 64 KiB..256 MiB).
    pub outbound_ring_bytes: usize,
    /// Bytes queued towards one client before the host stops reading from
    /// that client and returns frames for it as `Overloaded`.
    pub client_outbox_bytes: usize,
    /// Which frontend to run.
    pub frontend: FrontendKind,
    /// Name of the host's service proc (the control plane's data-plane face).
    pub service_name: String,
    /// Records drained from one proc's outbound ring before the host turns to
    /// other work (fairness between procs and connections).
    pub drain_budget: usize,
    /// After a doorbell wake-up the I/O thread keeps polling the procs'
    /// rings this long (yielding the CPU between looks) before it sleeps
    /// again. Zero: sleep at once. An idle host is never woken, so it never
    /// spins.
    pub poll_spin: Duration,
    /// Where to create the control socket (a Unix socket, mode 0600; peers
    /// must run as the host's uid or root). `None`: no control socket; the
    /// control plane is then reachable only over a frontend connection that
    /// presented [`HostConfig::token`].
    pub control_socket: Option<PathBuf>,
    /// After a client half-closes (shuts down its write side), how long the
    /// host keeps the connection open for the answers to the frames it sent
    /// before. The connection closes as soon as every delivered frame that
    /// may be answered has been, or when this runs out.
    pub half_close_linger: Duration,
    /// Links between hosts a frame may cross; a frame that arrives over a
    /// link having crossed this many is dropped (a data frame's sender is
    /// told `HopLimit`). See `docs/wire.md`.
    pub max_hops: u8,
    /// The other hosts this host may dial (TCP addresses). A frame for any
    /// other host's address is answered `NotAPeer` at once and no
    /// connection is opened; the hello with [`HostConfig::token`] goes only
    /// to these. Equivalent spellings of one address match (`tcp:[::1]:7`
    /// and `tcp:[0:0::1]:7`, DNS names in any case). Empty (the default):
    /// the host dials nobody. See `docs/operations.md`, "Peers".
    pub peers: Vec<Addr>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            token: None,
            spawn_ready_timeout: Duration::from_secs(30),
            overload_wait: Duration::from_millis(500),
            inbound_ring_bytes: 1 << 20,
            outbound_ring_bytes: 1 << 20,
            client_outbox_bytes: 4 << 20,
            frontend: FrontendKind::Auto,
            service_name: "service".to_owned(),
            drain_budget: 256,
            control_socket: None,
            poll_spin: Duration::from_micros(20),
            half_close_linger: Duration::from_secs(5),
            max_hops: 8,
            peers: Vec::new(),
        }
    }
}
