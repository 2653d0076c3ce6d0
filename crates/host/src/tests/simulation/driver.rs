//! The host side of the world: what the I/O thread and the control side
//! would do (drain procs, remove connections and procs), the invariant
//! checks, and the drive to quiescence.

use hostmux_wire::FrameKind;

use super::conns::{Eof, Read, SimConn};
use super::ledger::Who;
use super::world::{
    far_answer, World, CLIENT_NAMES, DRAIN_ROUNDS, FAR_ADDR, LINGER, MAX_FRAME, OUTBOX_BYTES,
    OVERLOAD_WAIT, OWN_ADDR, PROC_NAMES, QUIESCE_ROUNDS,
};
use crate::dataplane::{Drain, Event as DataplaneEvent, ProcKey, Route};
use crate::stats::{ConnStats, ProcStats};

/// Actions (events) the data plane may ask of its shell in one step: each
/// wakes or dials something once; far more means it is asking in a circle.
const MAX_EVENTS_PER_STEP: usize = 10_000;
/// Quiet rounds in a row that end the drive to quiescence.
const QUIET_ROUNDS: usize = 8;

impl World {
    /// Client `c` reads what the host queued for it; a connection the host
    /// closed is removed (as its reader and writer tasks end).
    pub(super) fn read_client(&mut self, c: usize) -> Result<(), String> {
        let now = self.now();
        let Some(conn) = self.clients[c].as_mut() else {
            return Ok(());
        };
        if conn.read(&mut self.dp, &mut self.ledger, now, |_, _| {})? == Read::Closed {
            let conn = self.clients[c].take().expect("checked above");
            self.coverage.add_conn(&conn);
            self.dp.remove_conn(conn.key);
            if conn.eof == Eof::Sent && !conn.failed && !conn.leaving {
                // Half-closed: what it sent before must still be answered,
                // even if others sent it frames meanwhile (the host matches
                // answers by id and party, so theirs do not end its wait).
                if conn.received_foreign_frames {
                    self.coverage.half_closes_with_others_frames += 1;
                }
                self.retired
                    .extend(conn.expect.iter().map(|&id| (conn.who, id)));
            }
        }
        Ok(())
    }

    /// The other host: takes dials (the link connects at once), sends the
    /// answers it owes, reads what the link carried and answers requests
    /// on its next step.
    pub(super) fn link_step(&mut self) -> Result<(), String> {
        let now = self.now();
        for key in std::mem::take(&mut self.dials) {
            if self.link.is_none() {
                self.dp.remote_connected(key);
                self.link = Some(SimConn::new(Who::Far, key, self.limits));
            } else {
                self.dp.remove_conn(key);
            }
        }
        let Some(link) = self.link.as_mut().filter(|l| !l.leaving) else {
            return Ok(());
        };
        for (_, bytes) in self.far_pending.drain(..) {
            link.write(&bytes);
        }
        self.ledger.put_in += link.pump(&mut self.dp, &self.limits, now, LINGER);
        let limits = self.limits;
        let mut answers = Vec::new();
        let forwarded = &mut self.coverage.forwarded;
        let read = link.read(&mut self.dp, &mut self.ledger, now, |ledger, frame| {
            *forwarded += 1;
            if let Some(answer) = far_answer(frame, &limits) {
                ledger.sent(Who::Far, FrameKind::Data, frame.message_id());
                answers.push((frame.message_id(), answer));
            }
        })?;
        self.far_pending.extend(answers);
        if read == Read::Closed {
            let link = self.link.take().expect("checked above");
            self.coverage.add_conn(&link);
            self.dp.remove_conn(link.key);
        }
        Ok(())
    }

    /// The control side stops proc `p`: unbinds its route (if it is still
    /// its own) and closes its inbound ring; the proc reads what is left.
    pub(super) fn stop_proc(&mut self, p: usize) {
        if let Some(sim) = self.procs[p].as_mut().filter(|s| !s.stopping) {
            let name = PROC_NAMES[p].as_bytes();
            self.table.remove_if(name, Route::Proc(sim.key));
            self.dp.detach_proc(sim.key);
            sim.stopping = true;
        }
    }

    /// Proc `p` is gone (`clean`: it exited, closing its ring ends; else it
    /// died and they stay as it left them). The host removes it; its final
    /// counters must account for every record it published.
    pub(super) fn remove_proc(&mut self, p: usize, clean: bool) -> Result<(), String> {
        let Some(mut sim) = self.procs[p].take() else {
            return Ok(());
        };
        for id in sim.take_in_hand() {
            self.ledger.excuse(id);
        }
        let (key, published) = (sim.key, sim.published);
        if clean {
            self.coverage.exits += 1;
            drop(sim);
        } else {
            self.graveyard.push((sim.inbound, sim.outbound));
        }
        self.dp.remove_proc(key, self.now());
        let stats = self.dp.stats();
        let gone = stats.gone_procs.last().expect("just removed");
        if gone.name != PROC_NAMES[p] || gone.frames_out != published {
            return Err(format!(
                "accounting: proc {} published {published} records, the host counted {} drained ({gone:?})",
                PROC_NAMES[p], gone.frames_out
            ));
        }
        Ok(())
    }

    /// The host doorbell fired: drain what it lists, the drains waiting on
    /// a reply queue that has room, and blocked drains past their deadline.
    pub(super) fn doorbell(&mut self) -> Result<(), String> {
        let now = self.now();
        let mut keys = std::mem::take(&mut self.to_drain);
        keys.clear();
        self.dp.poll_doorbell(&mut keys);
        self.dp.take_conn_room(&mut keys);
        if self
            .dp
            .earliest_drain_deadline()
            .is_some_and(|at| at <= now)
        {
            self.dp.blocked_drains(&mut keys);
        }
        for &key in &keys {
            self.drain(key)?;
        }
        self.to_drain = keys;
        Ok(())
    }

    /// Drains one proc until it is idle or blocked (bounded), then kills
    /// the procs the data plane failed.
    pub(super) fn drain(&mut self, key: ProcKey) -> Result<(), String> {
        let now = self.now();
        for _ in 0..DRAIN_ROUNDS {
            let drain = self.dp.drain_outbound(key, now);
            if let Some(sim) = self.procs.iter_mut().flatten().find(|s| s.key == key) {
                sim.drain_blocked = matches!(drain, Drain::Blocked(_));
                self.coverage.drains_blocked += u64::from(sim.drain_blocked);
            }
            if drain != Drain::More {
                break;
            }
        }
        let mut failed = Vec::new();
        self.dp.take_failed(&mut failed);
        for key in failed {
            if let Some(p) = self
                .procs
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.key == key))
            {
                self.remove_proc(p, false)?;
            }
        }
        Ok(())
    }

    /// Closes half-closed connections that got their answers (or whose
    /// linger ran out), and removes the connections whose peer left once
    /// they hold no frame (the reader resolves a held frame before it
    /// notices the peer left).
    pub(super) fn settle(&mut self) -> Result<(), String> {
        let now = self.now();
        // What the data plane asked its shell to do: wake a reader (it
        // retries its held frame, or finds its half-close answered), dial.
        let mut events = 0;
        while let Some(event) = self.dp.poll_event() {
            events += 1;
            if events > MAX_EVENTS_PER_STEP {
                return Err(format!(
                    "livelock: the data plane asked for more than {MAX_EVENTS_PER_STEP} actions in one step (the last: {event:?})"
                ));
            }
            match event {
                DataplaneEvent::WakeReader(key) => {
                    // Only a reader that waits is woken: one holding a
                    // frame, one paused on a full reply queue, or one
                    // lingering after a half-close (a wake-up is a hint;
                    // the shell's `Notify` coalesces the rest).
                    let conns = self
                        .clients
                        .iter_mut()
                        .chain(std::iter::once(&mut self.link));
                    let waiting = |c: &&mut SimConn| {
                        c.is_holding() || c.has_unread() || matches!(c.eof, Eof::Lingering(_))
                    };
                    if let Some(conn) = conns.flatten().filter(waiting).find(|c| c.key == key) {
                        self.ledger.put_in += conn.pump(&mut self.dp, &self.limits, now, LINGER);
                    }
                }
                DataplaneEvent::Dial { link, peer } => {
                    // The simulation's one peer is the other host; this
                    // host's own address means itself and is never dialled,
                    // and neither is the stranger (not a peer).
                    if peer.as_str() != FAR_ADDR {
                        return Err(format!(
                            "dial to a non-peer: the data plane asked to dial {} (this host is {OWN_ADDR}, its one peer {FAR_ADDR})",
                            peer.as_str()
                        ));
                    }
                    self.coverage.dials += 1;
                    self.dials.push(link);
                }
                // The simulation reads queues and retries drains on its own
                // schedule; nothing here is privileged.
                DataplaneEvent::WakeWriter(_)
                | DataplaneEvent::ReplyQueueRoom
                | DataplaneEvent::Control(_)
                | DataplaneEvent::AgentAnswer { .. }
                | DataplaneEvent::ConnRemoved(_) => {}
                // One data plane: no other thread to hand a frame to.
                DataplaneEvent::HandOff { .. } => {
                    unreachable!("the simulation runs one data plane")
                }
            }
        }
        let conns = self
            .clients
            .iter_mut()
            .chain(std::iter::once(&mut self.link));
        for slot in conns {
            if let Some(conn) = slot.as_mut().filter(|c| matches!(c.eof, Eof::Lingering(_))) {
                self.ledger.put_in += conn.pump(&mut self.dp, &self.limits, now, LINGER);
            }
            if let Some(conn) = slot.as_mut().filter(|c| c.leaving) {
                if conn.is_holding() {
                    self.ledger.put_in += conn.pump(&mut self.dp, &self.limits, now, LINGER);
                }
                if !conn.is_holding() {
                    let conn = slot.take().expect("checked above");
                    self.coverage.add_conn(&conn);
                    self.dp.remove_conn(conn.key);
                }
            }
        }
        Ok(())
    }

    /// Every invariant that holds after every step.
    pub(super) fn check(&mut self) -> Result<(), String> {
        self.ledger.check_ratio()?;
        let stats = self.dp.stats();
        for conn in &stats.conns {
            let sim = if conn.name == FAR_ADDR {
                self.link.as_ref()
            } else {
                CLIENT_NAMES
                    .iter()
                    .position(|n| *n == conn.name)
                    .and_then(|c| self.clients[c].as_ref())
            };
            let held = sim.map_or(0, |s| u64::from(s.is_holding()));
            check_conn(conn, held)?;
            if let Some(sim) = sim {
                if conn.accepted != sim.handed {
                    return Err(format!(
                        "accounting: connection {} accepted {} frames, the host read {}",
                        conn.name, conn.accepted, sim.handed
                    ));
                }
            }
        }
        for conn in &stats.closed_conns {
            check_conn(conn, 0)?;
        }
        for proc in &stats.procs {
            let blocked = PROC_NAMES
                .iter()
                .position(|n| *n == proc.name)
                .and_then(|p| self.procs[p].as_ref())
                .is_some_and(|s| s.drain_blocked);
            check_proc(proc, u64::from(blocked))?;
        }
        for proc in &stats.gone_procs {
            check_proc(proc, 0)?;
        }
        Ok(())
    }

    /// No more events: every party keeps doing its part (clients read,
    /// procs read and answer, the host drains, time passes every deadline)
    /// until nothing moves; then every proc is stopped and the world runs
    /// quiet again; then every request that must be answered was, once.
    pub(super) fn finish(&mut self) -> Result<(), String> {
        self.quiesce()?;
        for p in 0..PROC_NAMES.len() {
            self.stop_proc(p);
        }
        self.quiesce()?;
        for conn in self.clients.iter().flatten() {
            if !conn.failed && !conn.leaving {
                for &id in &conn.expect {
                    self.ledger.check_answered(conn.who, id)?;
                }
            }
        }
        let stats = self.dp.stats();
        self.coverage.add_returned(&stats);
        for conn in self
            .clients
            .iter()
            .chain(std::iter::once(&self.link))
            .flatten()
        {
            self.coverage.add_conn(conn);
        }
        self.coverage.drain_fast_lane = self.dp.drain_fast_lane;
        self.coverage.host_writes = self.ledger.host_writes;
        self.coverage.put_in = self.ledger.put_in;
        for &(who, id) in &self.retired {
            self.ledger.check_answered(who, id)?;
        }
        Ok(())
    }

    fn quiesce(&mut self) -> Result<(), String> {
        let mut quiet = 0;
        for _ in 0..QUIESCE_ROUNDS {
            let before = (self.ledger.host_writes, self.ledger.put_in);
            let now = self.now();
            for c in 0..CLIENT_NAMES.len() {
                if let Some(conn) = self.clients[c].as_mut() {
                    self.ledger.put_in += conn.pump(&mut self.dp, &self.limits, now, LINGER);
                }
                self.read_client(c)?;
            }
            self.link_step()?;
            for p in 0..PROC_NAMES.len() {
                if let Some(sim) = self.procs[p].as_mut() {
                    // Starting procs run too (they may have sent frames).
                    sim.step(usize::MAX, None, &mut self.ledger, &self.limits)?;
                    if sim.stopping && sim.is_done() {
                        self.remove_proc(p, true)?;
                    }
                }
            }
            self.doorbell()?;
            let keys: Vec<ProcKey> = self.procs.iter().flatten().map(|s| s.key).collect();
            for key in keys {
                self.drain(key)?;
            }
            self.settle()?;
            self.check()?;
            self.elapsed += OVERLOAD_WAIT / 4;
            let busy = before != (self.ledger.host_writes, self.ledger.put_in)
                || !self.far_pending.is_empty()
                || self
                    .clients
                    .iter()
                    .chain(std::iter::once(&self.link))
                    .flatten()
                    .any(|c| c.is_holding() || (c.has_unread() && !c.failed))
                || self
                    .procs
                    .iter()
                    .flatten()
                    .any(|s| s.drain_blocked || !s.is_caught_up());
            if busy {
                quiet = 0;
            } else {
                quiet += 1;
                if quiet == QUIET_ROUNDS {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "livelock: traffic still flowing {QUIESCE_ROUNDS} rounds after the last event ({} frames written by the host for {} put in)",
            self.ledger.host_writes, self.ledger.put_in
        ))
    }
}

fn check_conn(conn: &ConnStats, held: u64) -> Result<(), String> {
    let settled = conn.delivered + conn.returned.total() + conn.dropped.total();
    if conn.accepted != settled + held {
        return Err(format!(
            "accounting: connection {} accepted {} != delivered {} + returned {} + dropped {} + held {held}",
            conn.name,
            conn.accepted,
            conn.delivered,
            conn.returned.total(),
            conn.dropped.total()
        ));
    }
    if conn.outbox_high_water > (OUTBOX_BYTES + MAX_FRAME) as u64 {
        return Err(format!(
            "memory: connection {}'s reply queue reached {} bytes (bound {OUTBOX_BYTES} + one frame)",
            conn.name, conn.outbox_high_water
        ));
    }
    Ok(())
}

fn check_proc(proc: &ProcStats, blocked: u64) -> Result<(), String> {
    let settled =
        proc.outbound_delivered + proc.outbound_returned.total() + proc.outbound_dropped.total();
    if proc.frames_out != settled + blocked {
        return Err(format!(
            "accounting: proc {} sent {} != delivered {} + returned {} + dropped {} + blocked {blocked}",
            proc.name,
            proc.frames_out,
            proc.outbound_delivered,
            proc.outbound_returned.total(),
            proc.outbound_dropped.total()
        ));
    }
    Ok(())
}
