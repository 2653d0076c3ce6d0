//! Echo through a real `hostmux-echo` process over its rings, side by side
//! with the same traffic over a Unix socket pair to a child process that
//! echoes length-prefixed frames. One run, ratios printed.
//!
//! * round trip: one frame out, wait for its reply; p50/p99 over N trips;
//! * throughput: batches of `BATCH` frames (one ring publish / one socket
//!   write per batch), then read the batch's replies; frames per second.
//!
//! `cargo bench -p hostmux-proc --bench echo` (env `ECHO_TRIPS`, default 100000).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hostmux_lifecycle::{CgroupMode, ProcHandle, ProcManager, ProcessProcManager};
use hostmux_proc::protocol::{host_ends, HostLane, HostLaneRings, ProcIdentity};
use hostmux_ring::{Doorbell, SharedRing};
use hostmux_wire::{
    decode_frame, encode_frame, encoded_len, FrameHeader, Limits, ProcId, ProcName, Sender,
};

const BATCH: usize = 32;
const SPIN: Duration = Duration::from_micros(20);

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("socket-echo") {
        socket_echo();
        return;
    }
    let trips: usize = std::env::var("ECHO_TRIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let manager = rt.block_on(async {
        ProcessProcManager::builder()
            .cgroups(CgroupMode::Disabled)
            .build()
    });
    let mut ring = RingPeer::start(&rt, &manager);
    let mut blocking_socket = SocketPeer::start(false);
    let mut socket = SocketPeer::start(true);

    println!(
        "echo through a real child process, {trips} round trips; machine shared with other builds"
    );
    let ring_rtt = percentiles(&mut |p| ring.round_trip(p), trips);
    let sock_rtt = percentiles(&mut |p| blocking_socket.round_trip(p), trips);
    println!(
        "round trip 64 B   ring p50 {:>6.2} µs p99 {:>6.2} µs | socket p50 {:>6.2} µs p99 {:>6.2} µs | p50 ratio socket/ring {:.2}",
        ring_rtt.0, ring_rtt.1, sock_rtt.0, sock_rtt.1, sock_rtt.0 / ring_rtt.0
    );
    let idle_trips = (trips / 20).max(100);
    let pause = Duration::from_micros(300);
    let ring_idle = percentiles_with_pause(&mut |p| ring.round_trip(p), idle_trips, pause);
    let sock_idle =
        percentiles_with_pause(&mut |p| blocking_socket.round_trip(p), idle_trips, pause);
    println!(
        "round trip 64 B after 300 µs idle ({idle_trips} trips, both sides asleep): ring p50 {:>6.2} µs p99 {:>6.2} µs | socket p50 {:>6.2} µs p99 {:>6.2} µs | p50 ratio socket/ring {:.2}",
        ring_idle.0, ring_idle.1, sock_idle.0, sock_idle.1, sock_idle.0 / ring_idle.0
    );
    for size in [64usize, 4096] {
        let frames = (trips * 4).min(400_000 * 64 / size.max(64)).max(BATCH);
        let ring_rate = throughput(&mut |p, n| ring.batch(p, n), size, frames);
        let sock_rate = throughput(&mut |p, n| socket.batch(p, n), size, frames);
        println!(
            "echo throughput {size:>4} B, batches of {BATCH}: ring {:>9.0} frames/s | socket {:>9.0} frames/s | ratio ring/socket {:.2}",
            ring_rate,
            sock_rate,
            ring_rate / sock_rate
        );
    }
    ring.stop(&rt);
    socket.stop();
    blocking_socket.stop();
}

fn percentiles(trip: &mut dyn FnMut(&[u8]), trips: usize) -> (f64, f64) {
    percentiles_with_pause(trip, trips, Duration::ZERO)
}

/// Round trips with `pause` between them (a pause past the spin time puts
/// both sides to sleep, so every trip pays the wake-ups).
fn percentiles_with_pause(
    trip: &mut dyn FnMut(&[u8]),
    trips: usize,
    pause: Duration,
) -> (f64, f64) {
    let payload = [7u8; 64];
    for _ in 0..1000.min(trips) {
        trip(&payload);
    }
    let mut samples = Vec::with_capacity(trips);
    for _ in 0..trips {
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let start = Instant::now();
        trip(&payload);
        samples.push(start.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.5).as_secs_f64() * 1e6, at(0.99).as_secs_f64() * 1e6)
}

fn throughput(batch: &mut dyn FnMut(&[u8], usize), size: usize, frames: usize) -> f64 {
    let payload = vec![3u8; size];
    batch(&payload, BATCH * 10);
    let start = Instant::now();
    let mut done = 0;
    while done < frames {
        batch(&payload, BATCH);
        done += BATCH;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

struct RingPeer {
    /// The proc's one lane.
    ends: HostLane,
    doorbell: Doorbell,
    limits: Limits,
    handle: hostmux_lifecycle::ProcessHandle,
}

impl RingPeer {
    fn start(rt: &tokio::runtime::Runtime, manager: &ProcessProcManager) -> Self {
        let limits = Limits::default();
        let id: ProcId = "unix:@bench/echo".parse().unwrap();
        let service: ProcName = "service".parse().unwrap();
        let doorbell = Doorbell::new().unwrap();
        let (config, ends) = host_ends(
            hostmux_lifecycle::ProcessConfig::new(env!("CARGO_BIN_EXE_hostmux-echo")),
            ProcIdentity {
                id: &id,
                service_name: &service,
                limits,
            },
            vec![HostLaneRings {
                inbound: SharedRing::create(1 << 20).unwrap(),
                outbound: SharedRing::create(1 << 20).unwrap(),
                host_doorbell: &doorbell,
            }],
        )
        .unwrap();
        let ends = ends.lanes.into_iter().next().expect("one lane");
        let handle = rt
            .block_on(manager.spawn(id.name().clone(), config))
            .unwrap();
        rt.block_on(handle.ready()).unwrap();
        Self {
            ends,
            doorbell,
            limits,
            handle,
        }
    }

    fn send(&mut self, payload: &[u8], id: u64) {
        let header = FrameHeader {
            dest_port: 1,
            sender: Sender::Client { name: "bench" },
            ..FrameHeader::data("echo", id)
        };
        let mut slot = loop {
            match self
                .ends
                .inbound
                .try_reserve(encoded_len(&header, payload.len()))
            {
                Ok(slot) => break slot,
                Err(hostmux_ring::RingError::Full) => {
                    let _ = self
                        .ends
                        .inbound
                        .wait_writable(encoded_len(&header, payload.len()), None)
                        .unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        };
        encode_frame(&mut slot, &header, payload, &self.limits).unwrap();
        slot.commit();
    }

    /// Waits for one reply and checks its length: spins like the proc
    /// (`hostmux_proc::spin_for`), then sleeps on the host doorbell.
    fn recv(&mut self, len: usize) {
        loop {
            let outbound = &mut self.ends.outbound;
            let arrived = hostmux_proc::spin_for(SPIN, || {
                outbound
                    .is_readable()
                    .map_err(|source| hostmux_proc::ProcError::Ring {
                        ring: "outbound",
                        source,
                    })
            })
            .unwrap();
            if arrived {
                let record = self.ends.outbound.peek().unwrap().expect("readable");
                let frame = decode_frame(record, &self.limits).unwrap();
                assert_eq!(frame.payload().len(), len);
                self.ends.outbound.release().unwrap();
                return;
            }
            if self.ends.outbound.arm_doorbell().unwrap() {
                self.doorbell.wait(Some(Duration::from_secs(10))).unwrap();
                self.doorbell.drain().unwrap();
                self.ends.outbound.take_pending();
                self.ends.outbound.disarm();
            }
        }
    }

    fn round_trip(&mut self, payload: &[u8]) {
        self.send(payload, 1);
        self.ends.inbound.publish().unwrap();
        self.recv(payload.len());
    }

    fn batch(&mut self, payload: &[u8], n: usize) {
        for i in 0..n {
            self.send(payload, i as u64);
        }
        self.ends.inbound.publish().unwrap();
        for _ in 0..n {
            self.recv(payload.len());
        }
    }

    fn stop(self, rt: &tokio::runtime::Runtime) {
        let status = rt
            .block_on(self.handle.terminate(Duration::from_secs(5)))
            .unwrap();
        assert!(status.success(), "{status:?}");
    }
}

struct SocketPeer {
    stream: UnixStream,
    child: Child,
    buf: Vec<u8>,
    back: Vec<u8>,
}

impl SocketPeer {
    /// A child echoing over a socket pair; `nonblocking` for the batched
    /// runs (event-loop style), blocking for round trips (write, then a
    /// read that sleeps: the cheapest blocking round trip).
    fn start(nonblocking: bool) -> Self {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .arg("socket-echo")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .spawn()
            .unwrap();
        ours.set_nonblocking(nonblocking).unwrap();
        Self {
            stream: ours,
            child,
            buf: Vec::new(),
            back: Vec::new(),
        }
    }

    fn round_trip(&mut self, payload: &[u8]) {
        self.buf.clear();
        self.buf
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(payload);
        self.stream.write_all(&self.buf).unwrap();
        self.stream.read_exact(&mut self.buf).unwrap();
    }

    /// Writes `n` length-prefixed frames (as few writes as the socket
    /// takes), reads the `n` echoes back, interleaving both so neither side
    /// blocks on a full socket buffer (as an event-loop host would).
    fn batch(&mut self, payload: &[u8], n: usize) {
        self.buf.clear();
        for _ in 0..n {
            self.buf
                .extend_from_slice(&(payload.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(payload);
        }
        let total = self.buf.len();
        self.back.resize(total, 0);
        let (mut written, mut read) = (0, 0);
        while read < total {
            let mut progressed = false;
            if written < total {
                match self.stream.write(&self.buf[written..]) {
                    Ok(k) => {
                        written += k;
                        progressed = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            match self.stream.read(&mut self.back[read..]) {
                Ok(0) => panic!("echo child closed"),
                Ok(k) => {
                    read += k;
                    progressed = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            if !progressed {
                use rustix::event::{poll, PollFd, PollFlags};
                let flags = if written < total {
                    PollFlags::IN | PollFlags::OUT
                } else {
                    PollFlags::IN
                };
                let mut fds = [PollFd::new(&self.stream, flags)];
                let _ = poll(&mut fds, None);
            }
        }
    }

    fn stop(mut self) {
        drop(self.stream);
        self.child.wait().unwrap();
    }
}

/// The baseline child: echoes whatever arrives on stdin (a Unix socket),
/// whole frames at a time, one write per read.
fn socket_echo() {
    let fd = std::io::stdin().as_fd().try_clone_to_owned().unwrap();
    let mut stream = UnixStream::from(fd);
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    loop {
        let n = match stream.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        // Echo only whole frames, as a real server would parse them.
        let mut whole = 0;
        while filled - whole >= 4 {
            let len = u32::from_le_bytes(buf[whole..whole + 4].try_into().unwrap()) as usize;
            if filled - whole < 4 + len {
                break;
            }
            whole += 4 + len;
        }
        if whole > 0 {
            stream.write_all(&buf[..whole]).unwrap();
            buf.copy_within(whole..filled, 0);
            filled -= whole;
        }
    }
}
