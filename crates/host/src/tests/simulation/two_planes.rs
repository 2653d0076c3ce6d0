//! Two data planes (two I/O threads) interleaved by a seeded scheduler.
//!
//! A smaller world than the main simulation's, for what only several
//! threads have: clients bound on either plane under host-wide names (a
//! name left on one plane may come back on the other), one proc with a
//! lane on each plane that answers on the lane a request came in on and
//! pushes frames of its own to any client on any lane (so frames for the
//! other plane's clients are handed over), hand-overs carried out in any
//! order relative to everything else, clients leaving while frames for
//! them are on their way. After every run, driven to quiescence:
//!
//! * accounting on the merged counters: per connection `accepted =
//!   delivered + returned + dropped`, and the proc's `frames_out =
//!   delivered + returned + dropped` (each plane counts what it carried
//!   out);
//! * every request of a client still connected is answered exactly once,
//!   in the order it sent (per client and proc pair, through one lane);
//!   anything else a connection reads answers a request its name sent (a
//!   name's earlier holder);
//! * every pushed frame reaches a holder of its client's name or comes
//!   back to the proc, at most once, never both.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hostmux_ring::{Consumer, Producer, SharedRing};
use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{
    decode_frame, encode_frame, encode_frame_to_vec, encoded_len, split_frame, Flags, FrameHeader,
    FrameKind, ProcName, Sender, FRAME_ALIGN,
};

use super::rng::Rng;
use crate::config::HostConfig;
use crate::dataplane::rig::Rig;
use crate::dataplane::{
    ClientNames, ConnKey, Dataplane, Delivery, Event, HandedFrame, Outbox, ProcKey,
};
use crate::identity::Identity;
use crate::stats::HostStats;

const CLIENTS: [&str; 3] = ["c0", "c1", "c2"];

/// The proc's side of one lane.
struct Lane {
    inbound: Consumer,
    outbound: Producer,
}

/// A client connection: its plane and what it sent and read.
struct Conn {
    plane: usize,
    key: ConnKey,
    name: &'static str,
    /// Request ids sent, in order.
    sent: Vec<u64>,
    /// Request ids answered, in the order read.
    answered: Vec<u64>,
    /// Pushes read.
    pushes: Vec<u64>,
}

struct World {
    planes: Vec<Dataplane>,
    key: ProcKey,
    lanes: Vec<Lane>,
    conns: Vec<Conn>,
    /// Frames on their way to a plane.
    handed: Vec<(usize, HandedFrame)>,
    next_id: u64,
    /// Pushes by id: to whom.
    pushed: HashMap<u64, &'static str>,
    /// Pushes that came back to the proc.
    returned_pushes: Vec<u64>,
    /// Every request id sent under each name (a name's later holder may
    /// read answers to its earlier holder's requests).
    sent_by_name: HashMap<&'static str, HashSet<u64>>,
    now: Instant,
    rng: Rng,
    /// Hand-overs carried out, for the coverage check.
    handed_over: u64,
}

impl World {
    fn new(seed: u64) -> World {
        let cfg = HostConfig {
            inbound_ring_bytes: 1 << 20,
            outbound_ring_bytes: 1 << 20,
            ..HostConfig::default()
        };
        let mut rig = Rig::new(cfg.clone());
        let names = Arc::new(ClientNames::default());
        rig.dp.share_client_names(names.clone(), 0);
        let p = rig.add_proc("p", 1 << 20, 1 << 20);
        let mut second = Dataplane::new(
            Arc::new(cfg),
            ProcName::new("service").unwrap(),
            rig.table.clone(),
            Identity::single("tcp:127.0.0.1:9"),
        );
        second.share_client_names(names, 1);
        let inbound = SharedRing::create(1 << 20).unwrap();
        let memfd = inbound.memfd().try_clone_to_owned().unwrap();
        let (host_in, proc_in) = inbound.split().unwrap();
        let (proc_out, host_out) = SharedRing::create(1 << 20).unwrap().split().unwrap();
        assert!(second.insert_proc(p.key, ProcName::new("p").unwrap(), host_in, memfd, host_out));
        second.mark_ready(p.key, false);
        World {
            planes: vec![rig.dp, second],
            key: p.key,
            lanes: vec![
                Lane {
                    inbound: p.inbound,
                    outbound: p.outbound,
                },
                Lane {
                    inbound: proc_in,
                    outbound: proc_out,
                },
            ],
            conns: Vec::new(),
            handed: Vec::new(),
            next_id: 0,
            pushed: HashMap::new(),
            returned_pushes: Vec::new(),
            sent_by_name: HashMap::new(),
            now: Instant::now(),
            rng: Rng::new(seed),
            handed_over: 0,
        }
    }

    fn step(&mut self) {
        self.now += Duration::from_micros(10);
        match self.rng.below(8) {
            0 => self.connect(),
            1 if !self.conns.is_empty() && self.rng.below(4) == 0 => self.disconnect(),
            1 | 2 => self.client_sends(),
            3 => self.proc_steps(),
            4 => {
                let plane = self.rng.below(2) as usize;
                self.drain(plane);
            }
            5 => self.carry_out_handed(),
            _ => self.clients_read(),
        }
    }

    fn connect(&mut self) {
        let name = CLIENTS[self.rng.below(CLIENTS.len() as u64) as usize];
        let plane = self.rng.below(2) as usize;
        let held = self.conns.iter().any(|c| c.name == name);
        let key = self.planes[plane].add_conn(ProcName::new(name).unwrap());
        assert_eq!(key.is_some(), !held, "{name} is unique across the planes");
        if let Some(key) = key {
            self.conns.push(Conn {
                plane,
                key,
                name,
                sent: Vec::new(),
                answered: Vec::new(),
                pushes: Vec::new(),
            });
        }
    }

    fn disconnect(&mut self) {
        let at = self.rng.below(self.conns.len() as u64) as usize;
        let conn = self.conns.swap_remove(at);
        self.planes[conn.plane].remove_conn(conn.key);
        self.events(conn.plane);
    }

    fn client_sends(&mut self) {
        if self.conns.is_empty() {
            return;
        }
        let at = self.rng.below(self.conns.len() as u64) as usize;
        self.next_id += 1;
        let id = self.next_id;
        let conn = &mut self.conns[at];
        let header = FrameHeader {
            sender: Sender::Client { name: conn.name },
            ..FrameHeader::data("p", id)
        };
        let mut bytes = Vec::new();
        encode_frame_to_vec(&mut bytes, &header, b"req", &Default::default()).unwrap();
        let mut aligned = AlignedVec::<FRAME_ALIGN>::new();
        aligned.extend_from_slice(&bytes);
        let frame = decode_frame(&aligned, &Default::default()).unwrap();
        let delivery =
            self.planes[conn.plane].handle_conn_frame(conn.key, &frame, true, None, self.now);
        assert_eq!(delivery, Delivery::Done, "1 MiB rings never fill here");
        conn.sent.push(id);
        self.sent_by_name.entry(conn.name).or_default().insert(id);
        let plane = conn.plane;
        self.planes[plane].flush();
        self.events(plane);
    }

    /// The proc reads one record from a lane: answers a request on that
    /// lane, notes a push that came back; sometimes pushes to a client.
    fn proc_steps(&mut self) {
        let lane = self.rng.below(2) as usize;
        let ring = &mut self.lanes[lane];
        if let Some(record) = ring.inbound.peek().unwrap() {
            let mut aligned = AlignedVec::<FRAME_ALIGN>::new();
            aligned.extend_from_slice(record);
            let frame = decode_frame(&aligned, &Default::default()).unwrap();
            match frame.kind() {
                FrameKind::Data => {
                    let to = frame.sender().name().to_owned();
                    proc_send(&mut ring.outbound, &to, frame.message_id(), b"re");
                }
                FrameKind::Undeliverable => self.returned_pushes.push(frame.message_id()),
                other => panic!("the proc got a {other:?}"),
            }
            ring.inbound.release().unwrap();
            ring.inbound.publish_released().unwrap();
            ring.inbound.publish_released().unwrap();
        }
        if self.rng.below(3) == 0 {
            let to = CLIENTS[self.rng.below(CLIENTS.len() as u64) as usize];
            self.next_id += 1;
            self.pushed.insert(self.next_id, to);
            proc_send(&mut self.lanes[lane].outbound, to, self.next_id, b"push");
        }
    }

    fn drain(&mut self, plane: usize) {
        let now = self.now;
        while self.planes[plane].drain_outbound(self.key, now) == crate::dataplane::Drain::More {}
        self.events(plane);
    }

    /// Takes the plane's events: hand-overs wait to be carried out.
    fn events(&mut self, plane: usize) {
        while let Some(event) = self.planes[plane].poll_event() {
            if let Event::HandOff { thread, frame } = event {
                assert_ne!(thread, plane, "handed to another plane");
                self.handed.push((thread, frame));
            }
        }
    }

    fn carry_out_handed(&mut self) {
        if self.handed.is_empty() {
            return;
        }
        let at = self.rng.below(self.handed.len() as u64) as usize;
        let (plane, frame) = self.handed.remove(at);
        self.handed_over += 1;
        self.planes[plane].take_handed_frame(frame, self.now);
        self.events(plane);
    }

    fn clients_read(&mut self) {
        for conn in &mut self.conns {
            let mut bytes = Vec::new();
            if self.planes[conn.plane].take_outbox(conn.key, &mut bytes, Instant::now())
                != Outbox::Bytes
            {
                continue;
            }
            let mut aligned = AlignedVec::<FRAME_ALIGN>::new();
            aligned.extend_from_slice(&bytes);
            let mut rest: &[u8] = &aligned;
            while !rest.is_empty() {
                let (frame, after) = split_frame(rest, &Default::default()).unwrap();
                rest = after;
                assert_eq!(frame.kind(), FrameKind::Data, "no notices to clients here");
                match frame.payload() {
                    b"re" => conn.answered.push(frame.message_id()),
                    b"push" => conn.pushes.push(frame.message_id()),
                    other => panic!("unexpected payload {other:?}"),
                }
            }
        }
    }

    /// Everything on its way arrives: drains, hand-overs and reads until
    /// nothing moves.
    fn quiesce(&mut self) {
        for _ in 0..1000 {
            for _ in 0..4 {
                for lane in 0..2 {
                    while self.lanes[lane].inbound.peek().unwrap().is_some() {
                        self.proc_reads_only(lane);
                    }
                }
                self.drain(0);
                self.drain(1);
            }
            while !self.handed.is_empty() {
                self.carry_out_handed();
            }
            self.clients_read();
            let idle = self.handed.is_empty()
                && (0..2).all(|lane| self.lanes[lane].inbound.peek().unwrap().is_none());
            if idle {
                return;
            }
        }
        panic!("no quiescence");
    }

    /// [`World::proc_steps`] without pushes (for quiescence).
    fn proc_reads_only(&mut self, lane: usize) {
        let ring = &mut self.lanes[lane];
        let Some(record) = ring.inbound.peek().unwrap() else {
            return;
        };
        let mut aligned = AlignedVec::<FRAME_ALIGN>::new();
        aligned.extend_from_slice(record);
        let frame = decode_frame(&aligned, &Default::default()).unwrap();
        match frame.kind() {
            FrameKind::Data => {
                let to = frame.sender().name().to_owned();
                proc_send(&mut ring.outbound, &to, frame.message_id(), b"re");
            }
            FrameKind::Undeliverable => self.returned_pushes.push(frame.message_id()),
            other => panic!("the proc got a {other:?}"),
        }
        ring.inbound.release().unwrap();
        ring.inbound.publish_released().unwrap();
    }

    fn merged_stats(&mut self) -> HostStats {
        let mut total = HostStats::default();
        for (thread, plane) in self.planes.iter_mut().enumerate() {
            crate::io::merge_thread_stats(&mut total, plane.stats(), thread);
        }
        total
    }

    fn check(&mut self) {
        let stats = self.merged_stats();
        for conn in stats.conns.iter().chain(&stats.closed_conns) {
            assert_eq!(
                conn.accepted,
                conn.delivered + conn.returned.total() + conn.dropped.total(),
                "{conn:?}"
            );
        }
        let p = stats.procs.iter().find(|p| p.name == "p").unwrap();
        assert_eq!(
            p.frames_out,
            p.outbound_delivered + p.outbound_returned.total() + p.outbound_dropped.total(),
            "{p:?}"
        );
        for conn in &self.conns {
            let own: Vec<u64> = conn
                .answered
                .iter()
                .copied()
                .filter(|id| conn.sent.contains(id))
                .collect();
            assert_eq!(own, conn.sent, "{}: each request once, in order", conn.name);
            let sent_by_name = &self.sent_by_name[conn.name];
            for id in &conn.answered {
                assert!(
                    sent_by_name.contains(id),
                    "{}: answer {id} to a request of its name",
                    conn.name
                );
            }
        }
        let returned: HashSet<u64> = self.returned_pushes.iter().copied().collect();
        assert_eq!(
            returned.len(),
            self.returned_pushes.len(),
            "a push came back twice"
        );
        let mut seen = HashSet::new();
        for conn in &self.conns {
            for id in &conn.pushes {
                assert!(seen.insert(*id), "push {id} read twice");
                assert!(!returned.contains(id), "push {id} delivered and returned");
                assert_eq!(
                    self.pushed.get(id),
                    Some(&conn.name),
                    "push {id} to its client"
                );
            }
        }
    }
}

/// The proc sends `body` to client `to` with message id `id`.
fn proc_send(outbound: &mut Producer, to: &str, id: u64, body: &[u8]) {
    let header = FrameHeader {
        flags: Flags::TO_CLIENT,
        sender: Sender::Proc {
            addr: "",
            name: "p",
        },
        ..FrameHeader::data(to, id)
    };
    let mut slot = outbound
        .try_reserve(encoded_len(&header, body.len()))
        .unwrap();
    encode_frame(&mut slot, &header, body, &Default::default()).unwrap();
    slot.commit();
    outbound.publish().unwrap();
}

#[test]
fn simulation_two_planes_interleaved_keep_accounting_order_and_exactly_once() {
    let (mut handed_over, mut returned, mut pushes_read) = (0, 0, 0);
    for seed in 0..40u64 {
        let mut world = World::new(seed);
        for _ in 0..400 {
            world.step();
        }
        world.quiesce();
        world.check();
        handed_over += world.handed_over;
        returned += world.returned_pushes.len();
        pushes_read += world.conns.iter().map(|c| c.pushes.len()).sum::<usize>();
    }
    // The runs reached what they are for.
    assert!(handed_over > 100, "hand-overs: {handed_over}");
    assert!(returned > 10, "pushes returned: {returned}");
    assert!(pushes_read > 10, "pushes read: {pushes_read}");
}
