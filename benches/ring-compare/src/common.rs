//! Process plumbing shared by every transport: spawning the peer (this binary
//! again), passing fds over a control socket, CPU pinning, the message format.

use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rustix::thread::{sched_setaffinity, CpuSet};

/// First 8 bytes of the message that ends a throughput run.
pub const SENTINEL: u64 = u64::MAX;

/// Pin the calling thread (and so a single-threaded process) to `cpu`.
pub fn pin_to(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu);
    if let Err(e) = sched_setaffinity(None, &set) {
        eprintln!("warning: cannot pin to cpu {cpu}: {e}");
    }
}

/// The parent's handle on a running peer.
pub struct Peer {
    pub child: Child,
    pub control: UnixStream,
}

impl Peer {
    /// Start `self_exe peer <args>` and send it `fds` over the control socket.
    pub fn spawn(args: &[String], fds: &[BorrowedFd<'_>]) -> Peer {
        let name = format!(
            "hostmux-ring-compare-{}-{}",
            std::process::id(),
            args.join("-")
        );
        let listener =
            UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .arg("peer")
            .arg(&name)
            .args(args)
            .spawn()
            .unwrap();
        let (control, _) = listener.accept().unwrap();
        hostmux_ring::send_fds(&control, fds).unwrap();
        Peer { child, control }
    }

    /// Tell the peer to start.
    pub fn go(&mut self) {
        self.control.write_all(b"G").unwrap();
    }

    /// Wait for the peer's "ready" byte.
    pub fn wait_ready(&mut self) {
        let mut b = [0u8; 1];
        self.control.read_exact(&mut b).unwrap();
    }

    pub fn finish(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "peer failed: {status}");
    }
}

/// The peer's side of the control socket.
pub struct Control {
    pub stream: UnixStream,
    pub fds: Vec<OwnedFd>,
}

impl Control {
    pub fn connect(name: &str) -> Control {
        let stream =
            UnixStream::connect_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let fds = hostmux_ring::recv_fds(&stream).unwrap();
        Control { stream, fds }
    }

    pub fn ready(&mut self) {
        self.stream.write_all(b"R").unwrap();
    }

    pub fn wait_go(&mut self) {
        let mut b = [0u8; 1];
        self.stream.read_exact(&mut b).unwrap();
    }
}

/// Source bytes the producer copies into each message.
pub fn payload_source(size: usize) -> Vec<u8> {
    (0..size).map(|i| i as u8).collect()
}

/// Write message `seq`: sequence number, then payload bytes.
#[inline]
pub fn write_message(dst: &mut [u8], seq: u64, src: &[u8]) {
    dst[..8].copy_from_slice(&seq.to_le_bytes());
    let len = dst.len();
    dst[8..].copy_from_slice(&src[8..len]);
}

#[inline]
pub fn message_seq(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

/// Counts messages in order; panics on reordering, and on a gap unless
/// created with [`Counter::tolerating_loss`] (then gaps are counted).
pub struct Counter {
    pub next: u64,
    pub received: u64,
    pub lost: u64,
    pub bytes: u64,
    pub started: Option<Instant>,
    tolerate_loss: bool,
}

impl Counter {
    pub fn new() -> Counter {
        Counter {
            next: 0,
            received: 0,
            lost: 0,
            bytes: 0,
            started: None,
            tolerate_loss: false,
        }
    }

    /// For a transport observed to drop messages despite its lossless
    /// configuration (iceoryx2 here): count the gaps instead of failing.
    pub fn tolerating_loss() -> Counter {
        Counter {
            tolerate_loss: true,
            ..Counter::new()
        }
    }

    /// Account one message; returns false at the sentinel.
    #[inline]
    pub fn take(&mut self, message: &[u8]) -> bool {
        let seq = message_seq(message);
        if seq == SENTINEL {
            return false;
        }
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
        if self.tolerate_loss && seq > self.next {
            self.lost += seq - self.next;
            self.next = seq;
        }
        assert_eq!(seq, self.next, "message lost or reordered");
        // Every consumer reads the whole payload once, as a real one would.
        let folded = message.chunks_exact(8).fold(0u64, |acc, word| {
            acc ^ u64::from_le_bytes(word.try_into().unwrap())
        });
        std::hint::black_box(folded);
        self.next += 1;
        self.received += 1;
        self.bytes += message.len() as u64;
        true
    }

    pub fn result(&self) -> Throughput {
        let secs = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        Throughput {
            msgs_per_sec: self.received as f64 / secs,
            bytes_per_sec: self.bytes as f64 / secs,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Throughput {
    pub msgs_per_sec: f64,
    pub bytes_per_sec: f64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50_ns: f64,
    pub p99_ns: f64,
}

/// Round trips: run `one` (one round trip) after a warm-up for `duration`,
/// then report percentiles. Samples are preallocated.
pub fn measure_rtt(duration: Duration, mut one: impl FnMut(u64)) -> Latency {
    for seq in 0..2_000 {
        one(seq);
    }
    let mut samples: Vec<u64> = Vec::with_capacity(2_000_000);
    let end = Instant::now() + duration;
    let mut seq = 2_000;
    while Instant::now() < end && samples.len() < samples.capacity() {
        let t = Instant::now();
        one(seq);
        samples.push(t.elapsed().as_nanos() as u64);
        seq += 1;
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize] as f64;
    Latency {
        p50_ns: at(0.50),
        p99_ns: at(0.99),
    }
}

/// Whether the producer's time is up (checked every 256 messages).
#[inline]
pub fn time_up(n: u64, end: Instant) -> bool {
    n.is_multiple_of(256) && Instant::now() >= end
}
