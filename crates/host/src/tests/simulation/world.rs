//! The simulated world: one data plane, the clients, the procs, the other
//! host and the clock, advanced one [`Event`] at a time, with every
//! invariant checked after each step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hostmux_ring::{Consumer, Producer, SharedRing};
use hostmux_wire::{
    encode_frame_to_vec, Flags, FrameHeader, FrameKind, FrameView, Limits, ProcName, Sender,
    Undeliverable, UndeliverableReason,
};

use super::conns::{Eof, SimConn};
use super::coverage::Coverage;
use super::event::{Event, Shape};
use super::ledger::{Ledger, Who, REPLY, REQUEST};
use super::procs::SimProc;
use crate::config::HostConfig;
use crate::dataplane::rig::Rig;
use crate::dataplane::{ConnKey, Dataplane, ProcKey, Route, Table};

pub(super) const PROC_NAMES: [&str; 4] = ["p0", "p1", "p2", "p3"];
/// Client 2 is named like proc 3: client names and proc names are separate
/// namespaces, and neither may take, shadow or receive the other's frames.
pub(super) const CLIENT_NAMES: [&str; 3] = ["c0", "c1", "p3"];
/// Where frames may be sent, as (name, `TO_CLIENT`): procs, clients, the
/// service proc, nobody, and a client's name taken for a proc's (`c0`
/// without `TO_CLIENT`: no proc has it, so `NoSuchProc`).
const DESTS: [(&str, bool); 10] = [
    ("p0", false),
    ("p1", false),
    ("p2", false),
    ("p3", false),
    ("c0", true),
    ("c1", true),
    ("p3", true),
    (SERVICE, false),
    ("ghost", false),
    ("c0", false),
];
/// The service proc's name (as the rig routes it).
const SERVICE: &str = "service";
/// This host's address (as the rig names it).
pub(super) const OWN_ADDR: &str = "tcp:127.0.0.1:9";
/// The other host's address (the link's name in the host's counters), this
/// host's one configured peer.
pub(super) const FAR_ADDR: &str = "tcp:10.0.0.2:7000";
/// A host that is not a peer: frames for it are answered `NotAPeer`.
pub(super) const STRANGER_ADDR: &str = "tcp:10.0.0.3:7000";
/// The smallest ring there is: a few big frames fill it.
const RING_BYTES: usize = 1 << 16;
/// Payload of a big frame.
const BIG_PAYLOAD: usize = 20 * 1024;
/// The largest frame the simulation writes (big payload plus header).
pub(super) const MAX_FRAME: usize = BIG_PAYLOAD + 256;
pub(super) const OUTBOX_BYTES: usize = 32 * 1024;
pub(super) const OVERLOAD_WAIT: Duration = Duration::from_millis(50);
/// How long a half-closed client is kept for the answers it awaits.
pub(super) const LINGER: Duration = Duration::from_secs(1);
/// Drains of one proc in a row before the driver turns to other work.
pub(super) const DRAIN_ROUNDS: usize = 64;
/// Rounds after the last event within which all traffic must stop.
pub(super) const QUIESCE_ROUNDS: usize = 400;

pub(super) struct World {
    pub(super) dp: Dataplane,
    pub(super) table: Arc<Table>,
    pub(super) limits: Limits,
    pub(super) base: Instant,
    pub(super) elapsed: Duration,
    pub(super) clients: [Option<SimConn>; 3],
    pub(super) link: Option<SimConn>,
    /// Answers the other host has not sent yet, with their ids.
    pub(super) far_pending: Vec<(u64, Vec<u8>)>,
    pub(super) procs: [Option<SimProc>; 4],
    /// Ring ends of procs that died: kept mapped and untouched, as a dead
    /// process leaves them (dropping them would publish and close).
    pub(super) graveyard: Vec<(Consumer, Producer)>,
    pub(super) ledger: Ledger,
    /// Requests of half-closed clients the host has closed since.
    pub(super) retired: Vec<(Who, u64)>,
    /// Procs publish their read position before each outbound publication.
    pub(super) linked_read_position: bool,
    pub(super) to_drain: Vec<ProcKey>,
    /// What this run reached.
    pub(super) coverage: Coverage,
    /// Links the data plane asked to dial, not yet taken by the other host.
    pub(super) dials: Vec<ConnKey>,
}

impl World {
    pub(super) fn new(linked_read_position: bool) -> World {
        let cfg = HostConfig {
            overload_wait: OVERLOAD_WAIT,
            client_outbox_bytes: OUTBOX_BYTES,
            inbound_ring_bytes: RING_BYTES,
            outbound_ring_bytes: RING_BYTES,
            drain_budget: 16,
            half_close_linger: LINGER,
            peers: vec![FAR_ADDR.parse().expect("a valid address")],
            ..HostConfig::default()
        };
        let limits = cfg.limits;
        let rig = Rig::new(cfg);
        World {
            dp: rig.dp,
            table: rig.table,
            limits,
            base: Instant::now(),
            elapsed: Duration::ZERO,
            clients: Default::default(),
            link: None,
            far_pending: Vec::new(),
            procs: Default::default(),
            graveyard: Vec::new(),
            ledger: Ledger::default(),
            retired: Vec::new(),
            linked_read_position,
            to_drain: Vec::new(),
            coverage: Coverage {
                runs: 1,
                ..Coverage::default()
            },
            dials: Vec::new(),
        }
    }

    pub(super) fn now(&self) -> Instant {
        self.base + self.elapsed
    }

    /// Runs one event, then checks every invariant.
    pub(super) fn step(&mut self, event: Event) -> Result<(), String> {
        self.apply(event)?;
        self.settle()?;
        self.check()
    }

    fn apply(&mut self, event: Event) -> Result<(), String> {
        let now = self.now();
        match event {
            Event::Connect { client } => {
                let c = client as usize % CLIENT_NAMES.len();
                if self.clients[c].is_none() {
                    let name = ProcName::new(CLIENT_NAMES[c]).expect("valid name");
                    if let Some(key) = self.dp.add_conn(name) {
                        self.clients[c] =
                            Some(SimConn::new(Who::Client(c as u8), key, self.limits));
                    }
                }
            }
            Event::Send {
                client,
                dest,
                count,
                shape,
            } => {
                let c = client as usize % CLIENT_NAMES.len();
                let Some(conn) = self.clients[c].as_mut().filter(|c| c.writable()) else {
                    return Ok(());
                };
                let (dest, to_client) = DESTS[dest as usize % DESTS.len()];
                for _ in 0..count {
                    let id = self.ledger.new_id();
                    let sender = match shape {
                        Shape::Anonymous => Sender::Anonymous,
                        Shape::ForgedSender => Sender::Client {
                            name: CLIENT_NAMES[(c + 1) % CLIENT_NAMES.len()],
                        },
                        _ => Sender::Client {
                            name: CLIENT_NAMES[c],
                        },
                    };
                    let (kind, bytes) = frame(shape, dest, to_client, id, sender, &self.limits);
                    self.ledger.sent(conn.who, kind, id);
                    if shape == Shape::Stranger {
                        self.ledger.sent_to_stranger(id);
                    }
                    // Clients answer nothing, and the service proc answers
                    // only control requests (it consumes data), so requests
                    // to them need not be answered. A frame for a stranger
                    // goes to no one and is answered `NotAPeer`.
                    let answered = matches!(shape, Shape::Request | Shape::Big | Shape::Remote)
                        && !to_client
                        && dest != SERVICE;
                    if answered || shape == Shape::Stranger {
                        conn.expect.push(id);
                    }
                    conn.write(&bytes);
                }
                self.ledger.put_in += conn.pump(&mut self.dp, &self.limits, now, LINGER);
            }
            Event::ClientGarbage { client } => {
                let c = client as usize % CLIENT_NAMES.len();
                if let Some(conn) = self.clients[c].as_mut().filter(|c| c.writable()) {
                    // A length prefix past every limit (put in: the host
                    // may answer it with one notice).
                    conn.write(&[0xFF; 16]);
                    self.ledger.put_in += 1;
                    self.ledger.put_in += conn.pump(&mut self.dp, &self.limits, now, LINGER);
                }
            }
            Event::ClientRead { client } => {
                self.read_client(client as usize % CLIENT_NAMES.len())?;
            }
            Event::HalfClose { client } => {
                let c = client as usize % CLIENT_NAMES.len();
                if let Some(conn) = self.clients[c].as_mut().filter(|c| c.writable()) {
                    conn.eof = Eof::Pending;
                    self.coverage.half_closed += 1;
                    self.ledger.put_in += conn.pump(&mut self.dp, &self.limits, now, LINGER);
                }
            }
            Event::Disconnect { client } => {
                let c = client as usize % CLIENT_NAMES.len();
                if let Some(conn) = self.clients[c].as_mut() {
                    conn.leaving = true;
                    conn.expect.clear();
                }
            }
            Event::Spawn { proc, behaviour } => {
                let p = proc as usize % PROC_NAMES.len();
                if self.procs[p].is_none() {
                    let name = PROC_NAMES[p];
                    let inbound = SharedRing::create(RING_BYTES).expect("memfd");
                    let memfd = inbound.memfd().try_clone_to_owned().expect("dup");
                    let (host_in, proc_in) = inbound.split().expect("split");
                    let (proc_out, host_out) = SharedRing::create(RING_BYTES)
                        .expect("memfd")
                        .split()
                        .expect("split");
                    let proc_name = ProcName::new(name).expect("valid name");
                    let key = self
                        .dp
                        .add_proc(proc_name.clone(), host_in, memfd, host_out);
                    self.table.remove(name.as_bytes());
                    self.table
                        .insert(proc_name, Route::Proc(key))
                        .expect("name unbound above");
                    self.procs[p] = Some(SimProc::new(
                        p as u8,
                        name,
                        key,
                        behaviour,
                        proc_in,
                        proc_out,
                        self.linked_read_position,
                    ));
                }
            }
            Event::Ready { proc } => {
                if let Some(sim) = self.procs[proc as usize % PROC_NAMES.len()].as_mut() {
                    if !sim.ready {
                        sim.ready = true;
                        self.dp.mark_ready(sim.key, false);
                    }
                }
            }
            Event::ProcStep { proc, records } => {
                let p = proc as usize % PROC_NAMES.len();
                if let Some(sim) = self.procs[p].as_mut() {
                    // A slow proc reads one record now and then.
                    let records = match sim.behaviour {
                        super::event::Behaviour::Slow if records < 8 => 0,
                        super::event::Behaviour::Slow => 1,
                        _ => records as usize,
                    };
                    sim.step(records, None, &mut self.ledger, &self.limits)?;
                }
            }
            Event::ProcSend {
                proc,
                dest,
                count,
                shape,
            } => {
                let p = proc as usize % PROC_NAMES.len();
                for _ in 0..count {
                    let Some(sim) = self.procs[p].as_mut().filter(|s| s.is_caught_up()) else {
                        break;
                    };
                    let id = self.ledger.new_id();
                    let (dest, to_client) = DESTS[dest as usize % DESTS.len()];
                    let sender = match shape {
                        Shape::Anonymous => Sender::Anonymous,
                        Shape::ForgedSender => Sender::Proc {
                            addr: "",
                            name: PROC_NAMES[(p + 1) % PROC_NAMES.len()],
                        },
                        _ => Sender::Proc {
                            addr: "",
                            name: sim.name,
                        },
                    };
                    let (kind, bytes) = frame(shape, dest, to_client, id, sender, &self.limits);
                    self.ledger.sent(sim.who, kind, id);
                    if shape == Shape::Stranger {
                        self.ledger.sent_to_stranger(id);
                    }
                    sim.send(bytes, &mut self.ledger);
                }
            }
            Event::ProcGarbage { proc } => {
                if let Some(sim) = self.procs[proc as usize % PROC_NAMES.len()].as_mut() {
                    sim.garbage(&mut self.ledger);
                }
            }
            Event::Crash { proc, point } => {
                let p = proc as usize % PROC_NAMES.len();
                if let Some(sim) = self.procs[p].as_mut() {
                    self.coverage.crashes[point as usize] += 1;
                    sim.step(1, Some(point), &mut self.ledger, &self.limits)?;
                    self.remove_proc(p, false)?;
                }
            }
            Event::Stop { proc } => self.stop_proc(proc as usize % PROC_NAMES.len()),
            Event::Exit { proc } => {
                let p = proc as usize % PROC_NAMES.len();
                if let Some(sim) = self.procs[p].as_mut() {
                    if sim.stopping && sim.is_done() {
                        self.remove_proc(p, true)?;
                    }
                }
            }
            Event::Rebind { name, to } => {
                let name = PROC_NAMES[name as usize % PROC_NAMES.len()];
                if let Some(sim) = &self.procs[to as usize % PROC_NAMES.len()] {
                    self.table.remove(name.as_bytes());
                    self.table
                        .insert(ProcName::new(name).expect("valid"), Route::Proc(sim.key))
                        .expect("name unbound above");
                }
            }
            Event::Unbind { name } => {
                self.table
                    .remove(PROC_NAMES[name as usize % PROC_NAMES.len()].as_bytes());
            }
            Event::Doorbell => self.doorbell()?,
            Event::Drain { proc } => {
                if let Some(key) = self.procs[proc as usize % PROC_NAMES.len()]
                    .as_ref()
                    .map(|s| s.key)
                {
                    self.drain(key)?;
                }
            }
            Event::Link { fail: true } => {
                if let Some(link) = self.link.as_mut() {
                    link.leaving = true;
                    self.coverage.link_failures += 1;
                    // Answers the other host held die with the link: the
                    // host answers their requests (`LinkFailed`) itself
                    // when it removes the link, so none is excused.
                    self.far_pending.clear();
                }
            }
            Event::Link { fail: false } => self.link_step()?,
            Event::Advance { millis } => {
                self.elapsed += Duration::from_millis(u64::from(millis));
            }
        }
        Ok(())
    }
}

/// Encodes a frame of `shape` to `dest` (a client's name if `to_client`);
/// returns its kind and bytes.
fn frame(
    shape: Shape,
    dest: &str,
    to_client: bool,
    id: u64,
    sender: Sender<'_>,
    limits: &Limits,
) -> (FrameKind, Vec<u8>) {
    let mut header = FrameHeader {
        sender,
        flags: if to_client {
            Flags::TO_CLIENT
        } else {
            Flags::NONE
        },
        ..FrameHeader::data(dest, id)
    };
    let mut payload = vec![REQUEST; 24];
    match shape {
        Shape::Request | Shape::Anonymous | Shape::ForgedSender => {}
        Shape::Big => payload.resize(BIG_PAYLOAD, 7),
        Shape::StrayReply => payload[0] = REPLY,
        Shape::ForgedNotice => {
            header.kind = FrameKind::Undeliverable;
            payload = Undeliverable {
                original_message_id: id,
                reason: UndeliverableReason::NoSuchProc,
            }
            .to_bytes()
            .to_vec();
        }
        Shape::ForgedResponse => {
            header.kind = FrameKind::ControlResponse;
            payload[0] = 0;
        }
        Shape::ControlRequest => {
            header.kind = FrameKind::ControlRequest;
            payload[0] = 0;
        }
        Shape::Remote => header.dest_addr = FAR_ADDR,
        Shape::Stranger => header.dest_addr = STRANGER_ADDR,
    }
    let mut bytes = Vec::new();
    encode_frame_to_vec(&mut bytes, &header, &payload, limits).expect("a valid frame");
    (header.kind, bytes)
}

/// The other host's answer to a request it received over the link.
pub(super) fn far_answer(frame: &FrameView<'_>, limits: &Limits) -> Option<Vec<u8>> {
    if frame.kind() != FrameKind::Data || frame.payload().first() != Some(&REQUEST) {
        return None;
    }
    if frame.sender() == Sender::Anonymous {
        return None;
    }
    // A client of the simulated host arrives as `FROM_CLIENT`: its answer
    // is addressed `TO_CLIENT`.
    let target = frame.fields().reply_target();
    let header = FrameHeader {
        kind: FrameKind::Data,
        flags: target.flags(),
        message_id: frame.message_id(),
        dest_name: target.name,
        dest_port: 0,
        dest_addr: target.addr,
        sender: Sender::Proc {
            addr: FAR_ADDR,
            name: "far",
        },
    };
    let mut bytes = Vec::new();
    encode_frame_to_vec(&mut bytes, &header, &[REPLY; 8], limits).ok()?;
    Some(bytes)
}
