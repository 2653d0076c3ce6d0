//! The host-wide limits on connections: the memory budget for their read
//! buffers, the cap on frontend connections, and the counters of both.
//!
//! Everything here lives on the I/O thread (cells, not atomics). A
//! connection holds a [`Charge`] for the bytes its frame decoder's buffer
//! takes and raises it *before* the decoder grows
//! ([`FrameDecoder::planned_capacity`] says how much the next read needs),
//! so the sum of the charges is an upper bound of the buffers at every
//! moment and never exceeds [`HostConfig::conn_memory`]. A connection that
//! cannot be charged waits, unread (backpressure), until another releases
//! memory; a frame larger than the read chunk is charged whole once it
//! needs more than one (see [`charge_for_read_of`] for why).
//!
//! A decoder keeps a buffer grown for a large frame while large frames
//! keep coming (so a stream of them does not reallocate per frame), and
//! the charge stays with the buffer. When the budget is short (a
//! connection waits for memory, or more than half of it is charged), a
//! connection gives such a kept buffer back at its next read
//! ([`plan_read`]).
//!
//! At the cap, a new connection takes the place of the oldest one still
//! waiting to say hello, once that one has waited
//! [`HostConfig::hello_eviction_grace`]: connections that never say hello
//! cannot hold every place until their hello timeout (the evicted one is
//! closed, counted in `hellos_evicted`). Connections past their hello are
//! never evicted.
//!
//! Sans-IO apart from the wait, so the client-stream fuzz target drives
//! the same accounting.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hostmux_wire::FrameDecoder;
use tokio::sync::Notify;

use crate::config::HostConfig;
use crate::stats::ConnLimitStats;

/// The budget and the cap, with their counters.
#[derive(Debug)]
pub(crate) struct ConnBudget {
    limit: usize,
    max_connections: usize,
    used: Cell<usize>,
    /// Charges waiting for memory now.
    waiting: Cell<usize>,
    /// The most charged since the heap was last trimmed.
    peak_since_trim: Cell<usize>,
    /// Heap trims so far.
    trims: Cell<u64>,
    connections: Cell<usize>,
    counters: Cell<Counters>,
    /// Rung whenever memory is released.
    released: Notify,
    /// When the cap was last logged, and refusals and evictions since.
    cap_log: Cell<(Option<Instant>, u64, u64)>,
    /// Admitted frontend connections that have not said hello yet, oldest
    /// first: the ones a new connection may take the place of at the cap.
    awaiting_hello: RefCell<VecDeque<Rc<AwaitingHello>>>,
    /// How long one of those must have waited before it can be evicted.
    eviction_grace: Duration,
}

/// A frontend connection waiting to say hello, as the budget sees it.
#[derive(Debug)]
pub(crate) struct AwaitingHello {
    since: Instant,
    /// Its place went to a newer connection: it must close.
    evicted: Cell<bool>,
    /// Rung when it is evicted.
    evict: Notify,
}

impl AwaitingHello {
    /// Returns once this connection has been evicted.
    pub(crate) async fn evicted(&self) {
        if !self.evicted.get() {
            self.evict.notified().await;
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    high_water: usize,
    accepted: u64,
    refused_at_cap: u64,
    hello_too_large: u64,
    hello_timeouts: u64,
    frame_timeouts: u64,
    budget_waits: u64,
    closed_over_budget: u64,
    hellos_refused: u64,
    names_taken: u64,
    hellos_evicted: u64,
}

/// Why a charge could not be raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shortfall {
    /// Not now: other connections hold the memory.
    Wait,
    /// Never: more than the whole budget.
    OverBudget,
}

/// What a connection was closed for, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    HelloTooLarge,
    HelloTimeout,
    FrameTimeout,
    OverBudget,
    /// Its hello was refused (wrong token or destination) or malformed.
    HelloRefused,
    /// Its hello named a client already connected.
    NameTaken,
}

/// Charged bytes that, once mostly released, make the host trim its heap.
const TRIM_AFTER_PEAK: usize = 1 << 20;

/// What the cap did to make room, or not, for a new connection.
#[derive(Debug, Clone, Copy)]
enum CapAction {
    Refused,
    Evicted,
}

/// How often reaching the connection cap is logged, at most.
const CAP_LOG_EVERY: Duration = Duration::from_secs(1);

impl ConnBudget {
    pub(crate) fn new(cfg: &HostConfig) -> Rc<Self> {
        Rc::new(Self {
            limit: cfg.conn_memory,
            max_connections: cfg.max_connections,
            used: Cell::new(0),
            waiting: Cell::new(0),
            peak_since_trim: Cell::new(0),
            trims: Cell::new(0),
            connections: Cell::new(0),
            counters: Cell::new(Counters::default()),
            released: Notify::new(),
            cap_log: Cell::new((None, 0, 0)),
            awaiting_hello: RefCell::new(VecDeque::new()),
            eviction_grace: cfg.hello_eviction_grace,
        })
    }

    /// A charge of nothing yet.
    pub(crate) fn charge(self: &Rc<Self>) -> Charge {
        Charge {
            budget: self.clone(),
            bytes: 0,
            waiting: false,
            lowering_for_others: false,
        }
    }

    /// Bytes charged now.
    pub(crate) fn used(&self) -> usize {
        self.used.get()
    }

    /// The budget.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// True when memory is short: a connection waits for some, or more
    /// than half of the budget is charged. Connections then give back
    /// buffers kept from large frames ([`plan_read`]).
    pub(crate) fn is_short(&self) -> bool {
        self.waiting.get() > 0 || self.used.get() > self.limit / 2
    }

    /// Admits a frontend connection under the cap, or refuses it (counted,
    /// and logged at most once a second with the count since the last
    /// line).
    ///
    /// At the cap, the oldest connection still waiting for its hello gives
    /// its place up if it has waited the eviction grace (it is told to
    /// close, and its place passes to the new one).
    pub(crate) fn admit(self: &Rc<Self>, peer: &str, now: Instant) -> Option<Admission> {
        let below_cap = self.connections.get() < self.max_connections;
        if !below_cap && !self.evict_oldest_awaiting_hello(now) {
            self.count(|c| c.refused_at_cap += 1);
            self.log_cap(peer, now, CapAction::Refused);
            return None;
        }
        if below_cap {
            self.connections.set(self.connections.get() + 1);
        } else {
            self.count(|c| c.hellos_evicted += 1);
            self.log_cap(peer, now, CapAction::Evicted);
        }
        self.count(|c| c.accepted += 1);
        let hello = Rc::new(AwaitingHello {
            since: now,
            evicted: Cell::new(false),
            evict: Notify::new(),
        });
        self.awaiting_hello.borrow_mut().push_back(hello.clone());
        Some(Admission {
            budget: self.clone(),
            awaiting_hello: Some(hello),
        })
    }

    /// Logs reaching the cap at most once a second, with what was done at
    /// it since the last line.
    fn log_cap(&self, peer: &str, now: Instant, action: CapAction) {
        let (last, mut refused, mut evicted) = self.cap_log.get();
        match action {
            CapAction::Refused => refused += 1,
            CapAction::Evicted => evicted += 1,
        }
        if last.is_some_and(|at| now.duration_since(at) < CAP_LOG_EVERY) {
            self.cap_log.set((last, refused, evicted));
            return;
        }
        tracing::warn!(
            peer,
            max_connections = self.max_connections,
            refused,
            evicted_before_hello = evicted,
            "connection cap reached: closing new connections at accept, or the oldest ones still without a hello (raise serve --max-connections)"
        );
        self.cap_log.set((Some(now), 0, 0));
    }

    /// Evicts the oldest connection waiting for its hello if it has waited
    /// the grace; true if one was (its place is then free for another).
    fn evict_oldest_awaiting_hello(&self, now: Instant) -> bool {
        let mut awaiting = self.awaiting_hello.borrow_mut();
        let Some(oldest) = awaiting.front() else {
            return false;
        };
        if now.saturating_duration_since(oldest.since) < self.eviction_grace {
            return false;
        }
        let oldest = awaiting.pop_front().expect("looked at above");
        oldest.evicted.set(true);
        oldest.evict.notify_one();
        true
    }

    /// Forgets `hello` as waiting (it said hello, or its connection ended).
    fn forget_awaiting(&self, hello: &Rc<AwaitingHello>) {
        let mut awaiting = self.awaiting_hello.borrow_mut();
        if let Some(at) = awaiting.iter().position(|a| Rc::ptr_eq(a, hello)) {
            awaiting.remove(at);
        }
    }

    /// Counts a connection closed for `why`.
    pub(crate) fn count_closed(&self, why: Closed) {
        self.count(|c| match why {
            Closed::HelloTooLarge => c.hello_too_large += 1,
            Closed::HelloTimeout => c.hello_timeouts += 1,
            Closed::FrameTimeout => c.frame_timeouts += 1,
            Closed::OverBudget => c.closed_over_budget += 1,
            Closed::HelloRefused => c.hellos_refused += 1,
            Closed::NameTaken => c.names_taken += 1,
        });
    }

    fn count(&self, update: impl FnOnce(&mut Counters)) {
        let mut counters = self.counters.get();
        update(&mut counters);
        self.counters.set(counters);
    }

    /// The counters, for [`HostStats`](crate::HostStats).
    pub(crate) fn stats(&self) -> ConnLimitStats {
        let c = self.counters.get();
        ConnLimitStats {
            memory_limit: self.limit as u64,
            memory_used: self.used.get() as u64,
            memory_high_water: c.high_water as u64,
            connections: self.connections.get() as u64,
            max_connections: self.max_connections as u64,
            refused_at_cap: c.refused_at_cap,
            accepted: c.accepted,
            hello_too_large: c.hello_too_large,
            hello_timeouts: c.hello_timeouts,
            frame_timeouts: c.frame_timeouts,
            budget_waits: c.budget_waits,
            closed_over_budget: c.closed_over_budget,
            hellos_refused: c.hellos_refused,
            names_taken: c.names_taken,
            hellos_evicted: c.hellos_evicted,
        }
    }
}

/// One frontend connection under the cap; dropping it frees its place
/// (unless a newer connection took it: see [`ConnBudget::admit`]).
#[derive(Debug)]
pub(crate) struct Admission {
    budget: Rc<ConnBudget>,
    /// Until its hello: how the budget may evict it.
    awaiting_hello: Option<Rc<AwaitingHello>>,
}

impl Admission {
    /// While the connection has not said hello: what tells it it was
    /// evicted.
    pub(crate) fn awaiting_hello(&self) -> Option<Rc<AwaitingHello>> {
        self.awaiting_hello.clone()
    }

    /// The connection said hello: it keeps its place from now on. False
    /// if it had been evicted already (it must close).
    pub(crate) fn hello_done(&mut self) -> bool {
        if let Some(hello) = &self.awaiting_hello {
            if hello.evicted.get() {
                return false;
            }
            self.budget.forget_awaiting(hello);
            self.awaiting_hello = None;
        }
        true
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let budget = &self.budget;
        if let Some(hello) = self.awaiting_hello.take() {
            if hello.evicted.get() {
                // Its place went to the connection that evicted it.
                return;
            }
            budget.forget_awaiting(&hello);
        }
        budget.connections.set(budget.connections.get() - 1);
    }
}

/// The bytes of the budget one connection holds; released when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Rc<ConnBudget>,
    bytes: usize,
    /// Counted in the budget's waiters (its last raise was refused for
    /// now).
    waiting: bool,
    /// Its next lowering gives memory to connections short of it
    /// ([`plan_read`] under pressure): the heap is not trimmed for it,
    /// since they are about to use those pages.
    lowering_for_others: bool,
}

impl Charge {
    /// The budget it is charged to.
    pub(crate) fn budget(&self) -> &ConnBudget {
        &self.budget
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Sets the charge to `bytes`: lowering always succeeds (and wakes
    /// waiters); raising succeeds only within the budget.
    pub(crate) fn set(&mut self, bytes: usize) -> Result<(), Shortfall> {
        let budget = &self.budget;
        let others = budget.used.get() - self.bytes;
        if bytes > self.bytes {
            if bytes > budget.limit {
                return Err(Shortfall::OverBudget);
            }
            if others + bytes > budget.limit {
                return Err(Shortfall::Wait);
            }
        }
        let lowered = bytes < self.bytes;
        let used = others + bytes;
        budget.used.set(used);
        self.bytes = bytes;
        budget.count(|c| c.high_water = c.high_water.max(used));
        budget
            .peak_since_trim
            .set(budget.peak_since_trim.get().max(used));
        if lowered {
            budget.released.notify_waiters();
            // After a burst (many connections, or large frames) has gone,
            // hand the freed buffers back to the kernel: the allocator
            // would otherwise keep them for reuse and the host's resident
            // memory would stay at the burst's level. Never for a buffer
            // given up under pressure (it is about to be reused), and
            // never between frames of a stream (a kept buffer is not
            // lowered while large frames keep coming).
            let peak = budget.peak_since_trim.get();
            let for_others = std::mem::take(&mut self.lowering_for_others);
            if !for_others && peak >= TRIM_AFTER_PEAK && used <= peak / 8 {
                crate::sys::trim_heap();
                budget.trims.set(budget.trims.get() + 1);
                budget.peak_since_trim.set(used);
            }
        }
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.set_waiting(false);
        self.lowering_for_others = false;
        let _ = self.set(0);
    }
}

impl Charge {
    /// [`set`](Self::set) for a read, counting its outcome: a first
    /// refusal of a waiting connection (`already_waiting` false) counts a
    /// budget wait, an over-budget refusal a connection closed.
    pub(crate) fn set_for_read(
        &mut self,
        bytes: usize,
        already_waiting: bool,
    ) -> Result<(), Shortfall> {
        let outcome = self.set(bytes);
        self.set_waiting(outcome == Err(Shortfall::Wait));
        match outcome {
            Err(Shortfall::OverBudget) => self.budget.count_closed(Closed::OverBudget),
            Err(Shortfall::Wait) if !already_waiting => {
                self.budget.count(|c| c.budget_waits += 1);
                tracing::debug!(
                    bytes,
                    used = self.budget.used(),
                    limit = self.budget.limit,
                    "connection memory budget exhausted: not reading this connection until memory is released"
                );
            }
            _ => {}
        }
        outcome
    }

    /// Counts this charge among the budget's waiters, or not.
    fn set_waiting(&mut self, waiting: bool) {
        if waiting != self.waiting {
            let waiters = &self.budget.waiting;
            if waiting {
                waiters.set(waiters.get() + 1);
            } else {
                waiters.set(waiters.get() - 1);
            }
            self.waiting = waiting;
        }
    }
}

/// Raises `charge` to `bytes`, waiting (the connection is not read
/// meanwhile) until other connections release enough, at most until
/// `deadline`. Fails with a reason for the log (and counts it) when the
/// budget can never hold `bytes` or the deadline passes.
pub(crate) async fn charge_to(
    charge: &mut Charge,
    bytes: usize,
    deadline: Instant,
) -> Result<(), String> {
    let budget = charge.budget.clone();
    let mut waiting = false;
    loop {
        // Made before the attempt, so a release between the attempt and
        // the wait is not missed.
        let released = budget.released.notified();
        match charge.set_for_read(bytes, waiting) {
            Ok(()) => return Ok(()),
            Err(Shortfall::OverBudget) => {
                return Err(format!(
                    "its read buffer needs {bytes} bytes, more than the whole connection memory budget of {} (serve --conn-memory)",
                    budget.limit
                ));
            }
            Err(Shortfall::Wait) => {
                waiting = true;
                if tokio::time::timeout_at(deadline.into(), released)
                    .await
                    .is_err()
                {
                    budget.count_closed(Closed::OverBudget);
                    return Err(format!(
                        "waited too long for {bytes} bytes of the connection memory budget ({} of {} in use; serve --conn-memory)",
                        budget.used(),
                        budget.limit
                    ));
                }
            }
        }
    }
}

/// Charges what `decoder`'s next read needs: see [`plan_read`].
pub(crate) async fn charge_for_read(
    charge: &mut Charge,
    decoder: &mut FrameDecoder,
    deadline: Instant,
) -> Result<(), String> {
    let bytes = plan_read(charge, decoder);
    charge_to(charge, bytes, deadline).await
}

/// The charge `decoder`'s next read needs ([`charge_for_read_of`]), after
/// asking it to give back a buffer kept from a large frame if the budget
/// is short ([`ConnBudget::is_short`]): a kept buffer is a cache, and the
/// memory goes to connections that wait for it first (so that lowering
/// does not trim the heap). Set `charge` to the result before the read.
pub(crate) fn plan_read(charge: &mut Charge, decoder: &mut FrameDecoder) -> usize {
    let for_others = decoder.holds_unneeded_buffer() && charge.budget.is_short();
    if for_others {
        decoder.shrink_at_next_read();
    }
    charge.lowering_for_others = for_others;
    charge_for_read_of(decoder)
}

/// The charge a connection needs before `decoder`'s next read: its planned
/// capacity, except that a frame larger than the read chunk is charged
/// whole as soon as its buffer must grow past the read chunk (after the
/// peer sent about three quarters of a read chunk of it).
///
/// Charging by the bytes received alone would let connections growing
/// towards large frames deadlock: each holding part of the budget, each
/// waiting for more. Admitting a large frame whole means a connection that
/// waits holds no more than one read chunk (or the buffer its last large
/// frame left), and every admitted frame can complete; the allocation
/// itself still grows only with received bytes. The price: a peer that
/// sends 48 KiB of a frame announcing 16 MiB holds 16 MiB of budget (not
/// of memory) for at most the frame timeout.
pub(crate) fn charge_for_read_of(decoder: &FrameDecoder) -> usize {
    let planned = decoder.planned_capacity();
    if planned <= decoder.read_chunk() {
        return planned;
    }
    decoder.pending_frame_len().unwrap_or(0).max(planned)
}

/// The charge a connection needs before a chunk is lent to `decoder`
/// (multishot receive): what a read would need
/// ([`charge_for_read_of`]), and a partial frame larger than the read
/// chunk whole (lending may grow the buffer to hold it, with no read to
/// charge it before).
pub(crate) fn charge_for_lend_of(decoder: &FrameDecoder) -> usize {
    let frame = decoder
        .pending_frame_len()
        .filter(|&len| len > decoder.read_chunk())
        .unwrap_or(0);
    charge_for_read_of(decoder)
        .max(frame.next_multiple_of(16))
        .max(decoder.buffer_capacity())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize, max_connections: usize) -> Rc<ConnBudget> {
        ConnBudget::new(&HostConfig {
            conn_memory: limit,
            max_connections,
            ..HostConfig::default()
        })
    }

    #[test]
    fn charges_stay_within_the_budget_and_release_on_drop() {
        let budget = budget(100, 8);
        let mut a = budget.charge();
        let mut b = budget.charge();
        assert_eq!(a.set(60), Ok(()));
        assert_eq!(b.set(50), Err(Shortfall::Wait));
        assert_eq!(b.set(101), Err(Shortfall::OverBudget));
        assert_eq!(b.set(40), Ok(()));
        assert_eq!(budget.used(), 100);
        assert_eq!(a.set(10), Ok(()));
        assert_eq!(b.set(90), Ok(()));
        drop(b);
        assert_eq!(budget.used(), 10);
        assert_eq!(budget.stats().memory_high_water, 100);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    /// A connection reads `bytes` as the I/O thread does: charge first
    /// ([`plan_read`]), then read at most `step` bytes, then take frames.
    fn read_charged(
        charge: &mut Charge,
        decoder: &mut FrameDecoder,
        mut bytes: &[u8],
        step: usize,
    ) {
        while !bytes.is_empty() {
            let need = plan_read(charge, decoder);
            charge.set(need).expect("within the budget");
            let spare = decoder.spare_capacity_mut();
            let n = spare.len().min(step).min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            decoder.commit(n);
            bytes = &bytes[n..];
            assert!(decoder.buffer_capacity() <= charge.bytes());
            while decoder.next_frame().unwrap().is_some() {}
        }
    }

    fn frames(count: u64, payload_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for id in 0..count {
            hostmux_wire::encode_frame_to_vec(
                &mut out,
                &hostmux_wire::FrameHeader::data("sink", id),
                &vec![1; payload_len],
                &hostmux_wire::Limits::default(),
            )
            .unwrap();
        }
        out
    }

    #[test]
    fn a_kept_buffer_stays_charged_until_small_frames_shrink_it() {
        let budget = budget(64 << 20, 8);
        let mut charge = budget.charge();
        let mut decoder = FrameDecoder::new(hostmux_wire::Limits::default());
        let chunk = decoder.read_chunk();
        read_charged(&mut charge, &mut decoder, &frames(4, 1 << 20), 256 << 10);
        assert_eq!(budget.trims.get(), 0, "no heap trim between frames");
        let kept = decoder.buffer_capacity();
        assert!(kept > 1 << 20);
        // Between frames of the stream: buffer and charge both stay.
        assert_eq!(plan_read(&mut charge, &mut decoder), kept);
        assert_eq!(budget.used(), kept);
        // Small frames, one read each: the buffer and the charge come back
        // to one read chunk after SHRINK_AFTER_UNNEEDED_READS reads.
        let small = frames(1, 100);
        for _ in 0..hostmux_wire::SHRINK_AFTER_UNNEEDED_READS {
            read_charged(&mut charge, &mut decoder, &small, small.len());
            assert_eq!(charge.bytes(), kept);
        }
        read_charged(&mut charge, &mut decoder, &small, small.len());
        assert_eq!(decoder.buffer_capacity(), chunk);
        assert_eq!(charge.bytes(), chunk);
        assert_eq!(budget.used(), chunk);
        assert_eq!(budget.trims.get(), 1, "the heap is trimmed once it is over");
    }

    #[test]
    fn a_kept_buffer_is_given_back_when_another_connection_waits() {
        let budget = budget(4 << 20, 8);
        let mut streaming = budget.charge();
        let mut decoder = FrameDecoder::new(hostmux_wire::Limits::default());
        read_charged(&mut streaming, &mut decoder, &frames(2, 1 << 20), 256 << 10);
        assert!(streaming.bytes() > 1 << 20, "kept: the budget is not short");
        let mut other = budget.charge();
        other.set(900 << 10).unwrap();
        assert!(!budget.is_short(), "under half the budget");
        let mut waiter = budget.charge();
        let wanted = 2200 << 10;
        assert_eq!(waiter.set_for_read(wanted, false), Err(Shortfall::Wait));
        assert!(budget.used() <= budget.limit() / 2);
        assert!(budget.is_short(), "short because a connection waits");
        // The streaming connection's next read gives its buffer back...
        let need = plan_read(&mut streaming, &mut decoder);
        assert!(streaming.lowering_for_others, "no trim for it");
        streaming.set(need).unwrap();
        assert!(!streaming.lowering_for_others);
        decoder.spare_capacity_mut();
        assert_eq!(need, decoder.read_chunk());
        assert_eq!(decoder.buffer_capacity(), decoder.read_chunk());
        // ...and the waiter gets its memory; it no longer counts as waiting.
        assert_eq!(waiter.set_for_read(wanted, true), Ok(()));
        assert_eq!(budget.waiting.get(), 0);
        drop(waiter);
        assert!(!budget.is_short());
    }

    #[test]
    fn the_cap_refuses_and_counts_beyond_max_connections() {
        let budget = budget(100, 2);
        let now = Instant::now();
        let first = budget.admit("a", now).unwrap();
        let _second = budget.admit("b", now).unwrap();
        assert!(budget.admit("c", now).is_none());
        assert!(budget.admit("d", now).is_none());
        drop(first);
        assert!(budget.admit("e", now).is_some());
        let stats = budget.stats();
        assert_eq!(stats.refused_at_cap, 2);
        assert_eq!(stats.connections, 1);
    }

    #[test]
    fn a_waiting_charge_proceeds_when_memory_is_released() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let budget = budget(100, 8);
            let mut holder = budget.charge();
            holder.set(80).unwrap();
            let mut waiter = budget.charge();
            let deadline = Instant::now() + Duration::from_secs(10);
            let (charged, ()) = tokio::join!(charge_to(&mut waiter, 50, deadline), async {
                tokio::task::yield_now().await;
                holder.set(0).unwrap();
            });
            assert_eq!(charged, Ok(()));
            assert_eq!(budget.stats().budget_waits, 1);
            // Never: more than the whole budget fails at once.
            let mut greedy = budget.charge();
            let refused = charge_to(&mut greedy, 101, deadline).await;
            assert!(refused.unwrap_err().contains("more than the whole"));
            assert_eq!(budget.stats().closed_over_budget, 1);
        });
    }
}
