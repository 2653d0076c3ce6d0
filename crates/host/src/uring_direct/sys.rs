//! The io-uring-direct frontend's only `unsafe`: an io_uring whose
//! operations own the memory they lend to the kernel.
//!
//! One job: push receive and send operations onto the submission queue
//! (SQ), submit them, and match their completions (CQ) back to the
//! operation that waits for them. Everything above this (futures, the
//! thread's driver, sockets, fixed-file slots) is safe code in
//! [`super::driver`].
//!
//! # Invariants
//!
//! * Every buffer the kernel may read or write ([`Lent`]) is moved into
//!   the operation's slot in [`Ring::slots`] before its SQE is pushed, and
//!   leaves the slot only when that operation's completion was reaped:
//!   [`Ring::poll_op`] hands it back after the CQE; an operation given up
//!   ([`Ring::abandon`], a dropped future) keeps it until its CQE (the
//!   kernel's answer to the `AsyncCancel` pushed for it) and then frees
//!   it. The heap bytes of a `Vec` or a decoder do not move when the owner
//!   moves, so the pointer in the SQE stays valid that long.
//! * Nothing touches a lent buffer while it is lent (the slot is private
//!   to this module).
//! * `user_data` is the slot's index and a generation, so a completion (or a
//!   cancellation) can never be taken for a later operation that reuses
//!   the slot.
//! * Dropping the ring first cancels what is still in flight and waits
//!   (bounded) for the kernel to answer; a buffer whose answer never came
//!   is leaked rather than freed under the kernel.
//! * Provided buffers ([`BufPool`], the ring's one buffer group for
//!   multishot receives): a buffer is the kernel's while its id is in the
//!   buffer ring; a completion that names it hands it to exactly one
//!   [`Chunk`], the only reader of its bytes, and the chunk's drop is the
//!   only place that puts it back. The pool's memory is unmapped only when
//!   the last chunk is gone and the ring has unregistered the group (or
//!   never, if a multishot's final answer never came).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hostmux_wire::FrameDecoder;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

mod bufs;
pub(crate) use bufs::Chunk;
use bufs::{BufPool, BUF_GROUP};

/// `io_uring_enter`'s flag to wait for (and, with deferred task running,
/// post) completions (linux/io_uring.h).
const IORING_ENTER_GETEVENTS: u32 = 1;

/// CQ entries per SQ entry: room for every connection's read and reply to
/// complete at once without the kernel holding completions back in its
/// overflow list.
const CQ_PER_SQ: u32 = 16;

/// `user_data` of an `AsyncCancel`: its own completion is ignored.
const CANCEL: u64 = u64::MAX;

/// How the ring is set up (see the module docs of [`super`] for which is
/// used and why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setup {
    /// `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER`:
    /// completions for this thread run as task work at its next system
    /// call (the spin's `sched_yield` is one) instead of interrupting it.
    Cooperative,
    /// `IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER`:
    /// completions are posted only when this thread enters the ring to
    /// get events, so every reap is a system call.
    Deferred,
    /// No flags: the kernel interrupts the thread to post completions.
    Plain,
}

/// Where an operation's socket is: a slot of the ring's fixed-file table
/// (`IOSQE_FIXED_FILE`), or a plain descriptor (when the table is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Fixed(u32),
    Fd(RawFd),
}

/// Memory lent to the kernel for one operation.
// The decoder is moved in whole (about 300 bytes, no allocation): boxing it
// would allocate on every read.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Lent {
    /// A frame decoder: the receive fills its spare room (the caller
    /// commits the byte count).
    Decoder(FrameDecoder),
    /// A byte buffer: a receive fills `..len()`; a send sends `[from..]`.
    Bytes(Vec<u8>),
}

/// One operation's place in the ring.
enum Slot {
    Free,
    /// Submitted (or queued); its task waits.
    Waiting {
        lent: Lent,
        waker: Option<Waker>,
    },
    /// Completed, not yet taken by its task.
    Done {
        lent: Lent,
        result: i32,
    },
    /// Its future was dropped: the kernel's answer frees it.
    Abandoned {
        lent: Lent,
    },
    /// A multishot receive: one `user_data`, a completion per chunk (each
    /// naming a provided buffer, with `IORING_CQE_F_MORE` while it goes
    /// on), kept until a completion without `MORE`.
    Multishot(Shots),
}

/// A multishot receive's delivered chunks and end.
struct Shots {
    /// Delivered, not yet taken by its reader, in stream order.
    chunks: VecDeque<Chunk>,
    /// The last completion's result once the kernel ended it: 0 at end
    /// of stream, `-errno`, or the byte count of a last chunk.
    ended: Option<i32>,
    waker: Option<Waker>,
    /// An `AsyncCancel` was pushed for it.
    cancelled: bool,
    /// Its reader is gone: chunks are given back as they come, and the
    /// slot is freed at the end.
    abandoned: bool,
}

/// What a multishot receive has for its reader.
pub(crate) enum Shot {
    /// The next bytes of the stream.
    Chunk(Chunk),
    /// It ended after every chunk was taken: 0 at end of stream, `-errno`
    /// (`ENOBUFS`: the buffer ring ran dry; `ECANCELED`: cancelled), or a
    /// positive count (it stopped after a chunk, and may be re-armed).
    Ended(i32),
}

/// An operation in the ring, as its future names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpId {
    index: u32,
    generation: u32,
}

impl OpId {
    fn user_data(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }
}

/// Counts, for tests and measurements.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingCounts {
    /// Operations pushed onto the SQ (cancellations included).
    pub(crate) pushed: u64,
    /// `io_uring_enter` calls made to submit (each hands over every
    /// queued SQE) or to get deferred completions.
    pub(crate) enters: u64,
    /// Completions reaped.
    pub(crate) reaped: u64,
    /// Multishot receives armed.
    pub(crate) armed: u64,
    /// Chunks (provided buffers) delivered by multishot receives.
    pub(crate) chunks: u64,
    /// Multishot receives ended by `ENOBUFS` (the buffer ring ran dry).
    pub(crate) enobufs: u64,
    /// Multishot receives cancelled because their reader held its cap of
    /// delivered buffers.
    pub(crate) cap_cancels: u64,
    /// Multishot receives cancelled by their reader (it stopped reading,
    /// or reads straight into a ring).
    pub(crate) cancels: u64,
}

/// An io_uring and the operations in it.
pub(crate) struct Ring {
    uring: IoUring,
    setup: Setup,
    /// The provided buffers multishot receives draw from, if registered.
    pool: Option<Rc<BufPool>>,
    /// Delivered chunks a multishot receive may hold before it is
    /// cancelled (its reader is slow, or stopped).
    held_cap: usize,
    /// Multishots to cancel once a reap is over (it holds the CQ).
    to_cancel: Vec<u64>,
    /// Chunk queues of ended multishots, reused (no allocation per arm).
    spare_queues: Vec<VecDeque<Chunk>>,
    slots: Vec<Slot>,
    generations: Vec<u32>,
    free: Vec<u32>,
    /// Slots not free.
    in_flight: usize,
    counts: RingCounts,
    /// Wakers of operations whose completion was reaped, for the driver to
    /// wake once it no longer borrows the ring.
    woken: Vec<Waker>,
}

impl Ring {
    /// A ring of `entries` SQEs set up as `setup` asks, or the next
    /// simpler setup where the kernel refuses it.
    pub(crate) fn new(entries: u32, setup: Setup) -> io::Result<Ring> {
        let built = match setup {
            Setup::Cooperative => IoUring::builder()
                .setup_cqsize(entries * CQ_PER_SQ)
                .setup_coop_taskrun()
                .setup_single_issuer()
                .build(entries),
            Setup::Deferred => IoUring::builder()
                .setup_cqsize(entries * CQ_PER_SQ)
                .setup_defer_taskrun()
                .setup_single_issuer()
                .build(entries),
            Setup::Plain => IoUring::builder()
                .setup_cqsize(entries * CQ_PER_SQ)
                .build(entries),
        };
        let (uring, setup) = match built {
            Ok(uring) => (uring, setup),
            Err(e) if setup != Setup::Plain => {
                tracing::debug!(error = %e, ?setup, "io_uring setup refused; a plain ring instead");
                let plain = IoUring::builder()
                    .setup_cqsize(entries * CQ_PER_SQ)
                    .build(entries)?;
                (plain, Setup::Plain)
            }
            Err(e) => return Err(e),
        };
        Ok(Ring {
            uring,
            setup,
            pool: None,
            held_cap: 0,
            to_cancel: Vec::new(),
            spare_queues: Vec::new(),
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
            counts: RingCounts::default(),
            woken: Vec::new(),
        })
    }

    pub(crate) fn setup(&self) -> Setup {
        self.setup
    }

    pub(crate) fn counts(&self) -> RingCounts {
        self.counts
    }

    /// Operations whose slot is taken (waiting, done and not yet taken,
    /// or abandoned and not yet answered).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// SQEs pushed and not yet submitted.
    pub(crate) fn unsubmitted(&mut self) -> usize {
        self.uring.submission().len()
    }

    /// Has the kernel signal `eventfd` whenever it posts a completion.
    pub(crate) fn register_eventfd(&self, eventfd: BorrowedFd<'_>) -> io::Result<()> {
        self.uring.submitter().register_eventfd(eventfd.as_raw_fd())
    }

    /// Registers an empty fixed-file table of `slots` entries.
    pub(crate) fn register_file_table(&self, slots: u32) -> io::Result<()> {
        self.uring.submitter().register_files_sparse(slots)
    }

    /// Puts `fd` into fixed-file slot `slot`, or empties the slot (`None`).
    /// Callers submit first: an SQE still queued that names the slot would
    /// otherwise meet the slot's next file.
    pub(crate) fn update_file(&self, slot: u32, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let fd = fd.map_or(-1, |fd| fd.as_raw_fd());
        self.uring
            .submitter()
            .register_files_update(slot, &[fd])
            .map(drop)
    }

    /// A receive into the decoder's spare room.
    pub(crate) fn recv_decoder(&mut self, target: Target, decoder: FrameDecoder) -> OpId {
        self.push_with(target, Lent::Decoder(decoder), |lent| match lent {
            Lent::Decoder(decoder) => {
                let spare = decoder.spare_capacity_mut();
                Recv::Into(spare.as_mut_ptr(), spare.len())
            }
            _ => unreachable!("a decoder was lent"),
        })
    }

    /// A receive into `buf[..buf.len()]`.
    pub(crate) fn recv_bytes(&mut self, target: Target, buf: Vec<u8>) -> OpId {
        self.push_with(target, Lent::Bytes(buf), |lent| match lent {
            Lent::Bytes(buf) => Recv::Into(buf.as_mut_ptr(), buf.len()),
            _ => unreachable!("bytes were lent"),
        })
    }

    /// A send of `buf[from..]` (`MSG_NOSIGNAL`: a closed peer is an error,
    /// not a signal).
    pub(crate) fn send(&mut self, target: Target, buf: Vec<u8>, from: usize) -> OpId {
        self.push_with(target, Lent::Bytes(buf), |lent| match lent {
            Lent::Bytes(buf) => {
                let rest = &buf[from.min(buf.len())..];
                Recv::Send(rest.as_ptr(), rest.len())
            }
            _ => unreachable!("bytes were lent"),
        })
    }

    /// Registers `count` provided buffers of `len` bytes each as the
    /// ring's buffer group for multishot receives, each receive holding
    /// at most `held_cap` delivered and untaken ones before it is
    /// cancelled. Fails where the kernel has no buffer rings (before
    /// 5.19) or the memory cannot be mapped; the ring is unchanged then.
    pub(crate) fn register_buf_pool(
        &mut self,
        count: u16,
        len: u32,
        held_cap: usize,
    ) -> io::Result<()> {
        let pool = BufPool::new(count, len)?;
        // SAFETY: the entries live in `pool`'s mapping, which stays mapped
        // while the group is registered: the ring keeps an `Rc` of the pool
        // and unregisters the group before dropping it (or leaks it).
        unsafe {
            self.uring
                .submitter()
                .register_buf_ring(pool.entries as u64, pool.count, BUF_GROUP)?;
        }
        self.pool = Some(Rc::new(pool));
        self.held_cap = held_cap.max(1);
        Ok(())
    }

    /// Provided buffers handed to readers and not yet given back.
    #[cfg(test)]
    pub(crate) fn buffers_out(&self) -> u16 {
        self.pool.as_ref().map_or(0, |pool| pool.out.get())
    }

    /// A multishot receive into the buffer group (see
    /// [`register_buf_pool`](Self::register_buf_pool), which must have
    /// succeeded).
    pub(crate) fn recv_multi(&mut self, target: Target) -> OpId {
        let chunks = self.spare_queues.pop().unwrap_or_default();
        let id = self.take_slot(Slot::Multishot(Shots {
            chunks,
            ended: None,
            waker: None,
            cancelled: false,
            abandoned: false,
        }));
        let entry = match target {
            Target::Fixed(slot) => opcode::RecvMulti::new(types::Fixed(slot), BUF_GROUP).build(),
            Target::Fd(fd) => opcode::RecvMulti::new(types::Fd(fd), BUF_GROUP).build(),
        };
        self.counts.armed += 1;
        self.push(&entry.user_data(id.user_data()));
        id
    }

    /// The multishot's next chunk, or its end once every chunk was taken
    /// (the slot is freed then); else registers the task's waker.
    pub(crate) fn poll_shot(&mut self, id: OpId, cx: &mut Context<'_>) -> Poll<Shot> {
        let at = id.index as usize;
        debug_assert_eq!(self.generations[at], id.generation);
        let Slot::Multishot(shots) = &mut self.slots[at] else {
            unreachable!("a multishot is polled only by its live reader");
        };
        if let Some(chunk) = shots.chunks.pop_front() {
            return Poll::Ready(Shot::Chunk(chunk));
        }
        let Some(result) = shots.ended else {
            match &shots.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => shots.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        };
        self.free_multishot(at);
        Poll::Ready(Shot::Ended(result))
    }

    /// True once the multishot's last completion was reaped.
    #[cfg(test)]
    pub(crate) fn shot_ended(&self, id: OpId) -> bool {
        match &self.slots[id.index as usize] {
            Slot::Multishot(shots) => shots.ended.is_some(),
            _ => true,
        }
    }

    /// Asks the kernel to end the multishot (once): chunks it delivers
    /// before the end stay queued for the reader, in order.
    pub(crate) fn cancel_multi(&mut self, id: OpId) {
        let at = id.index as usize;
        if let Slot::Multishot(shots) = &mut self.slots[at] {
            if shots.ended.is_none() && !shots.cancelled {
                shots.cancelled = true;
                self.counts.cancels += 1;
                self.push_cancel(id.user_data());
            }
        }
    }

    fn push_cancel(&mut self, user_data: u64) {
        let cancel = opcode::AsyncCancel::new(user_data)
            .build()
            .user_data(CANCEL);
        self.push(&cancel);
    }

    fn free_multishot(&mut self, at: usize) {
        if let Slot::Multishot(mut shots) = std::mem::replace(&mut self.slots[at], Slot::Free) {
            shots.chunks.clear();
            self.spare_queues.push(shots.chunks);
        }
        self.free.push(at as u32);
        self.in_flight -= 1;
    }

    /// Moves `lent` into a free slot, then builds and pushes the SQE from
    /// the slot's copy (so the pointer is the one the slot keeps alive).
    fn push_with(
        &mut self,
        target: Target,
        lent: Lent,
        region: impl FnOnce(&mut Lent) -> Recv,
    ) -> OpId {
        let id = self.take_slot(Slot::Waiting { lent, waker: None });
        let Slot::Waiting { lent, .. } = &mut self.slots[id.index as usize] else {
            unreachable!("the slot was just filled");
        };
        let entry = match region(lent) {
            Recv::Into(ptr, len) => {
                let len = u32::try_from(len).unwrap_or(u32::MAX);
                match target {
                    Target::Fixed(slot) => opcode::Recv::new(types::Fixed(slot), ptr, len).build(),
                    Target::Fd(fd) => opcode::Recv::new(types::Fd(fd), ptr, len).build(),
                }
            }
            Recv::Send(ptr, len) => {
                let len = u32::try_from(len).unwrap_or(u32::MAX);
                let flags = libc::MSG_NOSIGNAL;
                match target {
                    Target::Fixed(slot) => opcode::Send::new(types::Fixed(slot), ptr, len)
                        .flags(flags)
                        .build(),
                    Target::Fd(fd) => opcode::Send::new(types::Fd(fd), ptr, len)
                        .flags(flags)
                        .build(),
                }
            }
        };
        self.push(&entry.user_data(id.user_data()));
        id
    }

    fn take_slot(&mut self, slot: Slot) -> OpId {
        self.in_flight += 1;
        match self.free.pop() {
            Some(index) => {
                let at = index as usize;
                self.generations[at] = self.generations[at].wrapping_add(1);
                self.slots[at] = slot;
                OpId {
                    index,
                    generation: self.generations[at],
                }
            }
            None => {
                let index = u32::try_from(self.slots.len()).expect("fewer than 2^32 operations");
                self.slots.push(slot);
                self.generations.push(0);
                OpId {
                    index,
                    generation: 0,
                }
            }
        }
    }

    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every SQE pushed here either lends no memory (an
            // `AsyncCancel`) or points into a `Lent` that `push_with` just
            // moved into its slot, where it stays until the operation's
            // completion is reaped (see the module's invariants).
            let pushed = unsafe { self.uring.submission().push(entry) };
            if pushed.is_ok() {
                self.counts.pushed += 1;
                return;
            }
            // The SQ is full: hand it to the kernel, then push again. A
            // submit the kernel refuses (EBUSY: completions it could not
            // post wait in its overflow list) needs the CQ emptied first.
            if let Err(e) = self.submit() {
                tracing::debug!(error = %e, "io_uring submit refused; reaping first");
                if let Err(e) = self.reap() {
                    tracing::warn!(error = %e, "io_uring reap failed");
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Hands every queued SQE to the kernel in one `io_uring_enter` (none
    /// if nothing is queued).
    pub(crate) fn submit(&mut self) -> io::Result<()> {
        if self.uring.submission().is_empty() {
            return Ok(());
        }
        self.counts.enters += 1;
        self.uring.submit().map(drop)
    }

    /// The wakers [`Ring::reap`] collected, swapped into `into` (empty) for
    /// the caller to wake outside any borrow of the ring.
    pub(crate) fn take_woken(&mut self, into: &mut Vec<Waker>) {
        std::mem::swap(&mut self.woken, into);
    }

    /// Moves every posted completion to its operation's slot, collecting
    /// each waiting task's waker ([`Ring::take_woken`]). With
    /// [`Setup::Deferred`] this first enters the ring to have the kernel
    /// post what it holds.
    pub(crate) fn reap(&mut self) -> io::Result<usize> {
        if self.setup == Setup::Deferred {
            self.counts.enters += 1;
            let queued = u32::try_from(self.unsubmitted()).unwrap_or(u32::MAX);
            // SAFETY: `enter` with a null argument and `GETEVENTS` only
            // submits what is queued (pushed under the invariants above)
            // and runs the ring's deferred work; it takes no pointers.
            unsafe {
                self.uring.submitter().enter::<libc::sigset_t>(
                    queued,
                    0,
                    IORING_ENTER_GETEVENTS,
                    None,
                )?;
            }
        }
        let mut reaped = 0;
        let mut ended_abandoned = Vec::new();
        let Ring {
            uring,
            slots,
            generations,
            free,
            in_flight,
            counts,
            woken,
            pool,
            held_cap,
            to_cancel,
            ..
        } = self;
        for cqe in uring.completion() {
            let user_data = cqe.user_data();
            if user_data == CANCEL {
                continue;
            }
            reaped += 1;
            let index = (user_data & u64::from(u32::MAX)) as usize;
            let generation = (user_data >> 32) as u32;
            if generations.get(index) != Some(&generation) {
                continue;
            }
            if let Slot::Multishot(shots) = &mut slots[index] {
                let (result, flags) = (cqe.result(), cqe.flags());
                if let (Some(bid), Some(pool)) = (cqueue::buffer_select(flags), pool.as_ref()) {
                    counts.chunks += 1;
                    let chunk = Chunk::new(pool, bid, result);
                    if !shots.abandoned && !chunk.is_empty() {
                        shots.chunks.push_back(chunk);
                    }
                }
                if !cqueue::more(flags) {
                    shots.ended = Some(result);
                    if result == -libc::ENOBUFS {
                        counts.enobufs += 1;
                    }
                    if shots.abandoned {
                        ended_abandoned.push(index);
                    }
                } else if shots.chunks.len() >= *held_cap && !shots.cancelled {
                    shots.cancelled = true;
                    counts.cap_cancels += 1;
                    to_cancel.push(user_data);
                }
                if let Some(waker) = shots.waker.take() {
                    woken.push(waker);
                }
                continue;
            }
            let slot = std::mem::replace(&mut slots[index], Slot::Free);
            match slot {
                Slot::Waiting { lent, waker } => {
                    if let Some(waker) = waker {
                        woken.push(waker);
                    }
                    slots[index] = Slot::Done {
                        lent,
                        result: cqe.result(),
                    };
                }
                Slot::Abandoned { lent } => {
                    drop(lent);
                    free.push(index as u32);
                    *in_flight -= 1;
                }
                other => slots[index] = other,
            }
        }
        counts.reaped += reaped as u64;
        for at in ended_abandoned {
            self.free_multishot(at);
        }
        let mut cancels = std::mem::take(&mut self.to_cancel);
        for user_data in cancels.drain(..) {
            self.push_cancel(user_data);
        }
        self.to_cancel = cancels;
        Ok(reaped)
    }

    /// The operation's result (a byte count or `-errno`) and its memory
    /// once its completion was reaped; else registers the task's waker.
    pub(crate) fn poll_op(&mut self, id: OpId, cx: &mut Context<'_>) -> Poll<(i32, Lent)> {
        let at = id.index as usize;
        debug_assert_eq!(self.generations[at], id.generation);
        match &mut self.slots[at] {
            Slot::Waiting { waker, .. } => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Slot::Done { .. } => {
                let Slot::Done { lent, result } =
                    std::mem::replace(&mut self.slots[at], Slot::Free)
                else {
                    unreachable!("matched above");
                };
                self.free.push(id.index);
                self.in_flight -= 1;
                Poll::Ready((result, lent))
            }
            Slot::Free | Slot::Abandoned { .. } | Slot::Multishot(_) => {
                unreachable!("an operation is polled only by its live future")
            }
        }
    }

    /// The operation's future was dropped: a completed one is freed now;
    /// one the kernel may still use keeps its memory until its completion
    /// arrives, and is cancelled so that it arrives soon.
    pub(crate) fn abandon(&mut self, id: OpId) {
        let at = id.index as usize;
        match std::mem::replace(&mut self.slots[at], Slot::Free) {
            Slot::Done { lent, .. } => {
                drop(lent);
                self.free.push(id.index);
                self.in_flight -= 1;
            }
            Slot::Waiting { lent, .. } => {
                self.slots[at] = Slot::Abandoned { lent };
                self.push_cancel(id.user_data());
            }
            Slot::Multishot(mut shots) => {
                // Its delivered chunks go back to the buffer ring now.
                shots.chunks.clear();
                shots.waker = None;
                let (ended, cancelled) = (shots.ended.is_some(), shots.cancelled);
                shots.abandoned = true;
                self.slots[at] = Slot::Multishot(shots);
                if ended {
                    self.free_multishot(at);
                } else if !cancelled {
                    self.push_cancel(id.user_data());
                }
            }
            other => self.slots[at] = other,
        }
    }
}

/// The region an SQE names, taken from the slot's own copy of the memory.
enum Recv {
    Into(*mut u8, usize),
    Send(*const u8, usize),
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Cancel what is left, then wait (bounded) for the kernel's answers.
        for at in 0..self.slots.len() {
            let live = match &self.slots[at] {
                Slot::Waiting { .. } => true,
                Slot::Multishot(shots) => !shots.abandoned,
                _ => false,
            };
            if live {
                let id = OpId {
                    index: at as u32,
                    generation: self.generations[at],
                };
                self.abandon(id);
            }
        }
        let unanswered = |s: &Slot| match s {
            Slot::Abandoned { .. } => true,
            Slot::Multishot(shots) => shots.ended.is_none(),
            _ => false,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while self.slots.iter().any(unanswered) && std::time::Instant::now() < deadline {
            let wait = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&wait);
            let _ = self.uring.submitter().submit_with_args(1, &args);
            if self.reap().is_err() {
                break;
            }
        }
        // Whatever the kernel never answered keeps its memory forever.
        let mut answered = true;
        for slot in self.slots.drain(..) {
            match slot {
                Slot::Abandoned { lent } | Slot::Waiting { lent, .. } => {
                    answered = false;
                    std::mem::forget(lent);
                }
                Slot::Multishot(shots) if shots.ended.is_none() => {
                    answered = false;
                    std::mem::forget(shots);
                }
                _ => {}
            }
        }
        // The buffers are unmapped only once the kernel can no longer pick
        // one: every multishot answered, the group unregistered.
        if let Some(pool) = self.pool.take() {
            if answered
                && self
                    .uring
                    .submitter()
                    .unregister_buf_ring(BUF_GROUP)
                    .is_ok()
            {
                drop(pool);
            } else {
                std::mem::forget(pool);
            }
        }
    }
}
