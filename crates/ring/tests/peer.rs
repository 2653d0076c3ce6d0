//! The peer process: this test binary started again with `HOSTMUX_RING_PEER`
//! set runs only [`peer_process_entry`], which plays the child side of a ring.
//!
//! The parent listens on an abstract Unix socket, the peer connects and
//! receives the ring memfd (and a doorbell eventfd) with `SCM_RIGHTS`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hostmux_ring::{recv_fds, send_fds, Doorbell, SharedRing, WaitOutcome};
use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags};

use crate::records;

const ROLE: &str = "HOSTMUX_RING_PEER";
const SOCKET: &str = "HOSTMUX_RING_SOCKET";
const COUNT: &str = "HOSTMUX_RING_COUNT";
const SEED: &str = "HOSTMUX_RING_SEED";
const MAX_LEN: &str = "HOSTMUX_RING_MAX_LEN";
const PACE_NS: &str = "HOSTMUX_RING_PACE_NS";
const EXPECT_FULL: &str = "HOSTMUX_RING_EXPECT_FULL";

/// What the peer does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Role {
    /// Attach as producer, write `count` records, close.
    Produce,
    /// Like `Produce`, ringing the doorbell received after the memfd.
    ProduceWithDoorbell,
    /// Write `count` records, then exit without closing the ring.
    ProduceThenVanish,
    /// Attach as consumer, verify `count` records, close.
    Consume,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Produce => "produce",
            Role::ProduceWithDoorbell => "produce-doorbell",
            Role::ProduceThenVanish => "produce-vanish",
            Role::Consume => "consume",
        }
    }
}

/// How the peer runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) role: Role,
    pub(crate) count: u64,
    pub(crate) seed: u64,
    pub(crate) max_len: usize,
    /// Busy-wait this long per record (makes this side the slow one).
    pub(crate) pace: Duration,
    /// Fail unless the peer had to wait for the other side at least once.
    pub(crate) expect_full: bool,
}

/// A running peer process.
pub(crate) struct Peer {
    pub(crate) child: Child,
    pidfd: OwnedFd,
}

impl Peer {
    /// Start the peer and hand it `fds` over a Unix socket.
    pub(crate) fn spawn(plan: Plan, fds: &[BorrowedFd<'_>]) -> Peer {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "hostmux-ring-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let listener =
            UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "peer::peer_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, plan.role.name())
            .env(SOCKET, &name)
            .env(COUNT, plan.count.to_string())
            .env(SEED, plan.seed.to_string())
            .env(MAX_LEN, plan.max_len.to_string())
            .env(PACE_NS, plan.pace.as_nanos().to_string())
            .env(EXPECT_FULL, if plan.expect_full { "1" } else { "0" })
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pidfd =
            rustix::process::pidfd_open(Pid::from_child(&child), PidfdFlags::empty()).unwrap();
        // Accept with a bound: a peer that dies before connecting fails the test.
        let mut pfd = [PollFd::new(&listener, PollFlags::IN)];
        let ready = rustix::event::poll(
            &mut pfd,
            Some(&rustix::time::Timespec {
                tv_sec: 20,
                tv_nsec: 0,
            }),
        );
        if ready != Ok(1) {
            let _ = child.kill();
            panic!("peer did not connect: {ready:?}, status {:?}", child.wait());
        }
        let (stream, _) = listener.accept().unwrap();
        send_fds(&stream, fds).unwrap();
        Peer { child, pidfd }
    }

    /// Whether the peer process has exited (its pidfd is readable).
    pub(crate) fn has_exited(&self) -> bool {
        let mut pfd = [PollFd::new(&self.pidfd, PollFlags::IN)];
        rustix::event::poll(&mut pfd, Some(&rustix::time::Timespec::default())) == Ok(1)
    }

    /// Wait (bounded) for the exit code.
    pub(crate) fn exit_code(mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let mut pfd = [PollFd::new(&self.pidfd, PollFlags::IN)];
            let _ = rustix::event::poll(
                &mut pfd,
                Some(&rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: 100_000_000,
                }),
            );
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
        }
        let _ = self.child.kill();
        panic!("peer did not exit within {limit:?}");
    }
}

fn env_u64(key: &str) -> u64 {
    std::env::var(key).unwrap().parse().unwrap()
}

/// Busy-wait for `pace` (to be the slow side without sleeping).
pub(crate) fn busy_wait(pace: Duration) {
    let until = Instant::now() + pace;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Entry point of the peer process; does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = std::env::var(SOCKET).unwrap();
    let stream =
        UnixStream::connect_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
    let mut fds = recv_fds(&stream).unwrap().into_iter();
    let ring = SharedRing::attach(fds.next().expect("memfd")).unwrap();
    let plan = Plan {
        role: Role::Produce,
        count: env_u64(COUNT),
        seed: env_u64(SEED),
        max_len: env_u64(MAX_LEN) as usize,
        pace: Duration::from_nanos(env_u64(PACE_NS)),
        expect_full: env_u64(EXPECT_FULL) == 1,
    };
    let code = match role.as_str() {
        "consume" => consume(ring, plan),
        "produce" | "produce-doorbell" | "produce-vanish" => {
            let doorbell = fds.next().map(|fd| Doorbell::from_fd(fd).unwrap());
            produce(ring, plan, doorbell, role == "produce-vanish")
        }
        other => {
            eprintln!("peer: unknown role {other}");
            9
        }
    };
    std::process::exit(code);
}

fn produce(ring: SharedRing, plan: Plan, doorbell: Option<Doorbell>, vanish: bool) -> i32 {
    let mut producer = ring.into_producer().unwrap();
    producer.set_consumer_doorbell(doorbell);
    let mut waited = 0u64;
    for seq in 0..plan.count {
        let patience = Duration::from_secs(20);
        match records::produce(&mut producer, plan.seed, seq, plan.max_len, patience) {
            Ok(waits) => waited += waits,
            Err(problem) => {
                eprintln!("peer producer: {problem}");
                return 3;
            }
        }
        if !plan.pace.is_zero() || seq % 16 == 15 {
            producer.publish().unwrap();
        }
        busy_wait(plan.pace);
    }
    producer.publish().unwrap();
    if plan.expect_full && waited == 0 {
        eprintln!("peer producer: never had to wait for space");
        return 5;
    }
    if vanish {
        // Exit without dropping the producer: the closed flag stays unset.
        std::process::exit(0);
    }
    drop(producer);
    0
}

fn consume(ring: SharedRing, plan: Plan) -> i32 {
    let mut consumer = ring.into_consumer().unwrap();
    let mut seq = 0u64;
    let mut waits = 0u64;
    while seq < plan.count {
        match consumer.peek() {
            Ok(Some(record)) => {
                if let Err(problem) = records::verify(plan.seed, seq, plan.max_len, record) {
                    eprintln!("peer consumer: {problem}");
                    return 2;
                }
                seq += 1;
                consumer.release().unwrap();
                busy_wait(plan.pace);
            }
            Ok(None) => {
                waits += 1;
                match consumer
                    .wait_readable(Some(Duration::from_secs(20)))
                    .unwrap()
                {
                    WaitOutcome::Ready => {}
                    other => {
                        eprintln!("peer consumer: after {seq} records: {other:?}");
                        return 3;
                    }
                }
            }
            Err(e) => {
                eprintln!("peer consumer: {e}");
                return 4;
            }
        }
    }
    if plan.expect_full && waits == 0 {
        eprintln!("peer consumer: never had to wait for records");
        return 5;
    }
    0
}

/// The fds a ring peer needs: the memfd, then optionally a doorbell.
pub(crate) fn fds_for<'a>(
    ring: &'a SharedRing,
    doorbell: Option<&'a Doorbell>,
) -> Vec<BorrowedFd<'a>> {
    let mut fds = vec![ring.memfd()];
    fds.extend(doorbell.map(AsFd::as_fd));
    fds
}
