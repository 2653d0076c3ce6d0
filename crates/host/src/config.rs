//! Host configuration.

use std::path::PathBuf;
use std::time::Duration;

use hostmux_ring::RingMemory;
use hostmux_wire::{Addr, Limits};

use crate::TlsConfig;

/// Which frontend the host's I/O thread runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrontendKind {
    /// io_uring driven by the host through the `io-uring` crate
    /// ([`FrontendKind::IoUringDirect`]) if the kernel builds its ring, else io_uring through tokio-uring, else epoll. Logged at start.
    #[default]
    Auto,
    /// io_uring through tokio-uring; serving fails if io_uring is unavailable.
    IoUring,
    /// epoll through tokio's reactor.
    Epoll,
    /// io_uring through the `io-uring` crate, with a ring per I/O thread
    /// that the host drives itself (batched submission, fixed files);
    /// serving fails if io_uring is unavailable.
    IoUringDirect,
}

impl std::fmt::Display for FrontendKind {
    /// The name `hostmux serve --frontend-kind` takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrontendKind::Auto => "auto",
            FrontendKind::IoUring => "io-uring",
            FrontendKind::Epoll => "epoll",
            FrontendKind::IoUringDirect => "io-uring-direct",
        })
    }
}

/// How a host serves. `Default` is a sensible loopback setup.
///
/// Its `Debug` output never shows [`HostConfig::token`] (it prints
/// `Some(<redacted>)`), so a config can be logged whole.
#[derive(Clone)]
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
    /// Whether each proc's rings are allocated whole when it is spawned
    /// ([`RingMemory::Populated`]) or page by page as frames first reach
    /// each page ([`RingMemory::OnDemand`], the default: an idle proc then
    /// holds 8 KiB of ring memory instead of its rings' full size, and the
    /// first pass through each page costs a page fault once). See
    /// `docs/operations.md`, "Sizing rings for many procs", for the
    /// measurements behind the default.
    pub ring_memory: RingMemory,
    /// Bytes queued towards one client before the host stops reading from
    /// that client and returns frames for it as `Overloaded`.
    pub client_outbox_bytes: usize,
    /// Which frontend to run.
    pub frontend: FrontendKind,
    /// How many host I/O threads serve: each runs a complete data plane
    /// with its own lane (pair of rings) to every proc, and owns the
    /// connections handed to it. At least 1 ([`Host::serve`](crate::Host::serve)
    /// refuses 0 with [`HostError::InvalidIoThreads`](crate::HostError::InvalidIoThreads)).
    /// Default: [`default_io_threads`](crate::default_io_threads), a
    /// quarter of the cores the host may use, at least one (see
    /// docs/architecture.md, "Threads").
    pub io_threads: usize,
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
    /// Host-wide budget, in bytes, for the read buffers of every connection
    /// (clients, control-socket clients and links): each holds a 4 KiB
    /// buffer for its hello, then a 64 KiB one that grows only with bytes
    /// actually received, up to one frame. A connection whose buffer would
    /// take the total past this stops being read until others release
    /// memory; one that needs more than the whole budget, or waits longer
    /// than [`frame_timeout`](Self::frame_timeout), is closed. See
    /// `docs/operations.md`, "Memory limits".
    pub conn_memory: usize,
    /// Frontend connections served at once; a connection accepted beyond
    /// this is closed at once (logged at most once a second, counted in
    /// [`ConnLimitStats::refused_at_cap`](crate::ConnLimitStats::refused_at_cap)).
    /// The control socket is not capped, so an operator can still reach a
    /// host whose frontend is flooded.
    pub max_connections: usize,
    /// How long a frame may take to arrive, from its first byte to its
    /// last (time the host itself is not reading, because the client does
    /// not read its replies, does not count); a connection whose partial
    /// frame is older is closed.
    pub frame_timeout: Duration,
    /// How long a new connection may take to send its hello.
    pub hello_timeout: Duration,
    /// At the connection cap, a new frontend connection takes the place of
    /// the oldest one that has waited this long without saying hello (it
    /// is closed, counted in `hellos_evicted`), so connections that never
    /// say hello cannot keep clients out for the whole hello timeout.
    /// Default 100 ms: a client on the same network says hello well within
    /// it. [`Duration::MAX`] turns eviction off.
    pub hello_eviction_grace: Duration,
    /// Host-wide budget, in bytes, for replies and other frames from procs
    /// and clients queued for clients (each client's queue is also bounded
    /// by [`client_outbox_bytes`](Self::client_outbox_bytes)). A frame that
    /// would take the total past it is treated as meeting a full queue: a
    /// proc's drain waits (up to the overload wait, then `Overloaded`), a
    /// client's frame is returned `Overloaded`. So clients that never read
    /// cannot make the host hold more than this. See `docs/operations.md`,
    /// "Memory limits".
    pub reply_memory: usize,
    /// The other hosts this host may dial (TCP addresses). A frame for any
    /// other host's address is answered `NotAPeer` at once and no
    /// connection is opened; the hello with [`HostConfig::token`] goes only
    /// to these. Equivalent spellings of one address match (`tcp:[::1]:7`
    /// and `tcp:[0:0::1]:7`, DNS names in any case). Empty (the default):
    /// the host dials nobody. See `docs/operations.md`, "Peers".
    pub peers: Vec<Addr>,
    /// The addresses this host names itself by, the first one (the
    /// primary) in the frames it forwards to other hosts, in the proc ids
    /// it hands out and in its links' hellos: TCP addresses with a port and
    /// a specific host (an IP literal or a DNS name), possibly not its own
    /// bind address (a NAT or a name in front of it). Every one of them,
    /// the bound address and, for an unspecified bind (`0.0.0.0`, `[::]`),
    /// every address of the machine's interfaces with the bound port mean
    /// this host, in any equivalent spelling: frames for them are
    /// delivered here, and a peer among them is dropped from
    /// [`peers`](Self::peers) (logged) and never dialled. Empty (the
    /// default): the bound address; for an unspecified bind, every
    /// interface address with the bound port, non-loopback first (see
    /// [`Host::advertised`](crate::Host::advertised) and
    /// `docs/operations.md`, "Host identity").
    pub advertise: Vec<Addr>,
    /// The secret hosts present to each other on links (the hello of a
    /// link this host dials carries it; a connection whose hello carries
    /// it is another host's link, which may relay that host's procs but
    /// has no control-plane privilege). Distinct from [`token`](Self::token),
    /// which clients hold: so no client can pose as a peer. `None`: this
    /// host dials no link with a secret and accepts no link.
    pub peer_token: Option<String>,
    /// Flow control on each link this host dials: at most this many bytes
    /// of forwarded frames queued or written and not yet acknowledged by
    /// the far host (see `docs/wire.md`, "Links"). A full link holds its
    /// sources back like a full ring (a client's connection is not read,
    /// a proc's outbound ring is not drained) for up to the overload wait,
    /// then frames are returned `Overloaded`.
    pub link_window_bytes: usize,
    /// The same bound in frames (bounds the sending host's bookkeeping
    /// however small the frames are).
    pub link_window_frames: u64,
    /// How long the receiving end of a link may hold back the status that
    /// acknowledges frames it handled, so that one status covers every
    /// frame of that time instead of waking the sending host once per
    /// frame (once per round trip of a request and its reply). It is sent
    /// at once when an eighth of the window (frames or bytes) is waiting
    /// for it, with anything else written on the link, and when the
    /// sending host asks (a ping: a sender whose window is full sends
    /// one). `Duration::ZERO` acknowledges at once. Default 200 ms, chosen
    /// by measurement (docs/benchmarks.md, "Held-back acknowledgements").
    pub link_ack_delay: Duration,
    /// A link on which nothing (frame, acknowledgement or heartbeat) has
    /// arrived for this long is taken as dead: it is closed and every frame
    /// awaiting an answer through it is answered `LinkFailed`. Each side
    /// sends a heartbeat every quarter of it.
    pub link_timeout: Duration,
    /// After a failed dial, the next dial of that peer waits this long,
    /// doubling with each failure up to [`link_backoff_max`](Self::link_backoff_max)
    /// (each wait drawn within ±25 %); frames for the peer meanwhile are
    /// answered `HostUnreachable` (or `PeerRefused`) at once.
    pub link_backoff_min: Duration,
    /// The longest wait between dials of an unreachable peer.
    pub link_backoff_max: Duration,
    /// Mutual TLS: this host's certificate and key and the CA it trusts.
    /// With it, every link this host dials is TLS (the peer's certificate
    /// must chain to the CA and name the peer's address), the TCP frontend
    /// takes TLS clients beside plain ones ([`TlsConfig::plain_tcp`] says
    /// which plain ones it refuses), and a connection presenting
    /// [`peer_token`](Self::peer_token) must have presented a client
    /// certificate naming one of [`peers`](Self::peers). `None` (the
    /// default): plain TCP only. See `docs/operations.md`, "TLS".
    pub tls: Option<TlsConfig>,
    /// Frames of at least this many bytes (prefix, header, payload and
    /// padding) from a plain (not TLS) client connection to a local, ready
    /// proc are read from the socket straight into that proc's inbound
    /// ring once their header is in: no copy through the connection's
    /// buffer. While such a payload arrives the ring takes no other frame
    /// (see [`zero_copy_hold`](Self::zero_copy_hold)). `0` disables it.
    /// See `docs/operations.md`, "Zero-copy receive".
    pub zero_copy_threshold: usize,
    /// How long a frame read straight into a proc's ring (see
    /// [`zero_copy_threshold`](Self::zero_copy_threshold)) may hold that
    /// ring, which takes no other frame meanwhile: after this, or half the
    /// [`overload_wait`](Self::overload_wait) if that is shorter, the part
    /// read so far is moved out of the ring into the connection's buffer
    /// and the frame is finished the copied way (under the
    /// [`frame_timeout`](Self::frame_timeout)). So a sender that stalls
    /// mid-payload delays other frames for that proc by at most this.
    pub zero_copy_hold: Duration,
    /// The io-uring-direct frontend's multishot receive: the provided
    /// buffers each I/O thread registers with its ring, from which the
    /// kernel fills receive chunks that the host decodes in place
    /// (default [`RecvBuffers::DEFAULT`]). `None`: no buffer ring, one
    /// re-armed receive per read (what happens anyway, with one log line,
    /// where the kernel refuses buffer rings). Other frontends ignore it.
    pub uring_recv_buffers: Option<RecvBuffers>,
}

/// The provided buffers of an io-uring-direct I/O thread (see
/// [`HostConfig::uring_recv_buffers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvBuffers {
    /// Buffers in the ring: a power of two (the kernel's rule), at most
    /// 32768.
    pub count: u16,
    /// Bytes in each buffer: the most one chunk brings.
    pub len: u32,
    /// Delivered buffers one connection may hold before its multishot is
    /// cancelled (re-armed once it has given them back): a connection
    /// whose frames wait cannot take every buffer of its thread.
    pub held_per_conn: u16,
}

impl RecvBuffers {
    /// 64 buffers of 64 KiB, at most 16 held by one connection (the
    /// default, `serve --recv-buffers 64x64K`). 64 KiB is
    /// the decoder's read chunk (what a single read takes today, so a
    /// chunk carries as many frames as a read did); 64 of them (4 MiB per
    /// I/O thread, mapped on first touch) keep 4 connections streaming at
    /// their cap, with more sharing the rest; 16 (1 MiB) is about what a
    /// loopback socket's receive queue holds, so a busy connection rarely
    /// meets its cap while a stalled one holds at most a quarter.
    pub const DEFAULT: RecvBuffers = RecvBuffers {
        count: 64,
        len: 64 << 10,
        held_per_conn: 16,
    };
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
            ring_memory: RingMemory::OnDemand,
            client_outbox_bytes: 4 << 20,
            frontend: FrontendKind::Auto,
            io_threads: crate::cores::default_io_threads(),
            service_name: "service".to_owned(),
            drain_budget: 256,
            control_socket: None,
            poll_spin: Duration::from_micros(20),
            half_close_linger: Duration::from_secs(5),
            max_hops: 8,
            conn_memory: 256 << 20,
            max_connections: 1024,
            frame_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            hello_eviction_grace: Duration::from_millis(100),
            reply_memory: 256 << 20,
            peers: Vec::new(),
            advertise: Vec::new(),
            peer_token: None,
            link_window_bytes: 8 << 20,
            link_window_frames: 32_768,
            link_ack_delay: Duration::from_millis(200),
            link_timeout: Duration::from_secs(2),
            link_backoff_min: Duration::from_millis(100),
            link_backoff_max: Duration::from_secs(5),
            tls: None,
            zero_copy_threshold: 64 << 10,
            zero_copy_hold: Duration::from_millis(10),
            uring_recv_buffers: Some(RecvBuffers::DEFAULT),
        }
    }
}

/// Prints the token as `Some(<redacted>)` and the other fields as they are.
/// Only fields listed here are printed: one added later shows as `..` until
/// someone adds it here, having decided whether it is a secret.
impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// Stands in for a secret in `Debug` output; shows neither its bytes
        /// nor its length.
        struct Redacted;
        impl std::fmt::Debug for Redacted {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("<redacted>")
            }
        }
        f.debug_struct("HostConfig")
            .field("limits", &self.limits)
            .field("token", &self.token.as_ref().map(|_| Redacted))
            .field("spawn_ready_timeout", &self.spawn_ready_timeout)
            .field("overload_wait", &self.overload_wait)
            .field("inbound_ring_bytes", &self.inbound_ring_bytes)
            .field("outbound_ring_bytes", &self.outbound_ring_bytes)
            .field("ring_memory", &self.ring_memory)
            .field("client_outbox_bytes", &self.client_outbox_bytes)
            .field("frontend", &self.frontend)
            .field("io_threads", &self.io_threads)
            .field("service_name", &self.service_name)
            .field("drain_budget", &self.drain_budget)
            .field("poll_spin", &self.poll_spin)
            .field("control_socket", &self.control_socket)
            .field("half_close_linger", &self.half_close_linger)
            .field("max_hops", &self.max_hops)
            .field("peers", &self.peers)
            .field("link_window_bytes", &self.link_window_bytes)
            .field("link_window_frames", &self.link_window_frames)
            .field("link_ack_delay", &self.link_ack_delay)
            .field("link_timeout", &self.link_timeout)
            .field("link_backoff_min", &self.link_backoff_min)
            .field("link_backoff_max", &self.link_backoff_max)
            .field("advertise", &self.advertise)
            .field("tls", &self.tls)
            .field("zero_copy_threshold", &self.zero_copy_threshold)
            .field("zero_copy_hold", &self.zero_copy_hold)
            .field("uring_recv_buffers", &self.uring_recv_buffers)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_the_token() {
        let secret = "s3cret-token-value";
        let config = HostConfig {
            token: Some(secret.to_owned()),
            ..HostConfig::default()
        };
        for shown in [format!("{config:?}"), format!("{config:#?}")] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
            // The other fields are still there.
            assert!(shown.contains("service_name: \"service\""), "{shown}");
        }
        assert!(format!("{config:?}").contains("token: Some(<redacted>)"));
        let without = format!("{:?}", HostConfig::default());
        assert!(without.contains("token: None"), "{without}");
    }
}
