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

/// Pin the calling thread (and so a single-threaded process) to `cpu`,
/// unless `RC_UNPINNED` is set (the scheduler then places both ends).
pub fn pin_to(cpu: usize) {
    if std::env::var_os("RC_UNPINNED").is_some() {
        return;
    }
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
            long_waits: 0,
            others_cpu: 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Throughput {
    pub msgs_per_sec: f64,
    pub bytes_per_sec: f64,
    /// Consumer waits that outlasted the spin (slept, or descheduled); ring only.
    pub long_waits: u64,
    /// CPUs' worth of time other processes used during the measurement; ring only.
    pub others_cpu: f64,
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

/// Cross-core cache-line round trip, ns (median of `duration` of ping-pong
/// between this thread, pinned to CPU 0, and a helper thread pinned to CPU 1),
/// no ring involved. On the 2-vCPU VMs this flips between about 120 ns and
/// about 500 ns as the hypervisor places the vCPUs: it tells which mode a
/// measurement ran in.
pub fn cross_core_probe_ns(duration: Duration) -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    #[repr(align(128))]
    struct Line(AtomicU64);
    static PING: Line = Line(AtomicU64::new(0));
    static PONG: Line = Line(AtomicU64::new(0));
    const STOP: u64 = u64::MAX;
    let start = PING.0.load(Ordering::Relaxed);
    let echo = std::thread::spawn(move || {
        pin_to(1);
        let mut last = start;
        loop {
            let v = PING.0.load(Ordering::Acquire);
            if v != last {
                last = v;
                PONG.0.store(v, Ordering::Release);
                if v == STOP {
                    break;
                }
            }
            std::hint::spin_loop();
        }
    });
    pin_to(0);
    let mut samples = Vec::with_capacity(100_000);
    let end = Instant::now() + duration;
    let mut seq = start.wrapping_add(1) % STOP;
    while Instant::now() < end && samples.len() < samples.capacity() {
        seq = seq.wrapping_add(1) % STOP;
        let t = Instant::now();
        PING.0.store(seq, Ordering::Release);
        while PONG.0.load(Ordering::Acquire) != seq {
            std::hint::spin_loop();
        }
        samples.push(t.elapsed().as_nanos() as u64);
    }
    PING.0.store(STOP, Ordering::Release);
    echo.join().unwrap();
    PING.0.store(0, Ordering::Release);
    PONG.0.store(0, Ordering::Release);
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or(0) as f64
}

/// CPU time (all CPUs, as a fraction of one CPU) used by processes other
/// than this one and its reaped children between two [`CpuSnapshot`]s.
#[derive(Clone, Copy)]
pub struct CpuSnapshot {
    at: Instant,
    busy_ticks: u64,
    ours_ticks: u64,
}

impl CpuSnapshot {
    pub fn now() -> CpuSnapshot {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let busy_ticks = stat
            .lines()
            .next()
            .map(|cpu| {
                let f: Vec<u64> = cpu
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal: busy = all but idle, iowait.
                f.iter().take(8).sum::<u64>() - f.get(3).unwrap_or(&0) - f.get(4).unwrap_or(&0)
            })
            .unwrap_or(0);
        // utime, stime, cutime, cstime (fields 14-17, ticks): this process
        // and its reaped children.
        let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let after_comm = own.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ours_ticks: u64 = after_comm
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|v| v.parse::<u64>().ok())
            .sum();
        CpuSnapshot {
            at: Instant::now(),
            busy_ticks,
            ours_ticks,
        }
    }

    /// Other processes' CPU use since `earlier`, in CPUs (0.0 = none, 1.0 = one full CPU).
    pub fn others_since(&self, earlier: &CpuSnapshot) -> f64 {
        let tick = 0.01; // USER_HZ = 100
        let busy = (self.busy_ticks - earlier.busy_ticks) as f64 * tick;
        let ours = (self.ours_ticks - earlier.ours_ticks) as f64 * tick;
        ((busy - ours) / (self.at - earlier.at).as_secs_f64()).max(0.0)
    }
}
