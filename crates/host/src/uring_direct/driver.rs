//! The I/O thread's io_uring driver: one ring per thread, owned by a
//! thread-local [`Driver`], and the futures that wait on its operations.
//!
//! One job: turn ring operations into futures, and decide when the ring
//! meets the kernel. Operations are pushed onto the submission queue as
//! tasks create them; the queue is submitted in one `io_uring_enter` per
//! batch ([`Driver::submit`]), from these places only:
//!
//! * the runtime's park hook (`on_thread_park`): nothing is left to run,
//!   so everything queued goes in before the thread sleeps (and what
//!   completed meanwhile is reaped: a task it wakes keeps the thread up);
//! * [`Driver::turn`], which the I/O loop calls on every turn of its spin
//!   and after every drain round ([`crate::frontend::Frontend::turn`]):
//!   the spin never parks, so without it a reply would wait for the spin's
//!   end (the problem `crate::uring`'s docs describe);
//! * a send: a reply goes out at once, with whatever else is queued;
//! * a socket's backlog read on the spot, when something is queued (a
//!   reader that never waits must not hold back another task's operation);
//! * before a fixed-file slot is emptied (an SQE still queued that names
//!   the slot must not meet the slot's next file).
//!
//! Completions are reaped from the completion queue in memory (no system
//! call) in [`Driver::turn`], and by the reaper task when the ring's
//! eventfd (registered with the ring, watched by tokio's reactor) becomes
//! readable; each wakes the task whose operation it answers.
//!
//! Invariant: the driver is used only on its own thread (it is `!Send`,
//! reached through a thread-local), and the ring is borrowed only inside
//! the driver's own methods, never across an `.await` or a wake.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::sys::{Lent, OpId, Ring, RingCounts, Setup, Shot, Target};
use crate::config::RecvBuffers;

/// SQ entries per ring: a batch bigger than this is submitted in parts.
const RING_ENTRIES: u32 = 256;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Driver>>> = const { RefCell::new(None) };
}

/// A thread's ring, its fixed-file table and the reaper's eventfd.
pub(crate) struct Driver {
    ring: RefCell<Ring>,
    files: RefCell<FileTable>,
    /// Wakers taken out of the ring by a reap, woken after its borrow ends.
    wake: RefCell<Vec<Waker>>,
    eventfd: RefCell<Option<OwnedFd>>,
    /// Backlog reads made on the spot (no ring operation).
    on_the_spot: Cell<u64>,
    /// Multishot receives may be armed (a buffer ring is registered and
    /// the kernel took the first multishot).
    multishot: Cell<bool>,
}

/// Logs once per process that multishot receive is off.
fn multishot_off_once(why: &str, error: &io::Error) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            error = %error,
            "io_uring multishot receive off ({why}): the io-uring-direct frontend reads with one receive per read"
        );
    });
}

/// The ring's fixed-file table: which slots are free.
struct FileTable {
    size: u32,
    /// Never used so far: slots `next..size`.
    next: u32,
    /// Emptied slots, reused first.
    free: Vec<u32>,
}

impl FileTable {
    fn take(&mut self) -> Option<u32> {
        if let Some(slot) = self.free.pop() {
            return Some(slot);
        }
        (self.next < self.size).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

impl Driver {
    /// A driver with a ring set up as `setup` asks and a sparse fixed-file
    /// table of up to `file_slots` slots (fewer where the kernel or the
    /// descriptor limit refuses that many; none at all is allowed: sockets
    /// then go by descriptor).
    /// With `recv`, it registers a provided buffer ring for multishot
    /// receives (else, or where the kernel refuses it, reads are single
    /// receives).
    pub(crate) fn new(
        setup: Setup,
        file_slots: u32,
        recv: Option<RecvBuffers>,
    ) -> io::Result<Rc<Driver>> {
        let mut ring = Ring::new(RING_ENTRIES, setup)?;
        let multishot = match recv {
            Some(b) => match ring.register_buf_pool(b.count, b.len, usize::from(b.held_per_conn)) {
                Ok(()) => true,
                Err(e) => {
                    multishot_off_once("the kernel refused a provided buffer ring", &e);
                    false
                }
            },
            None => false,
        };
        let mut size = file_slots;
        while size > 0 {
            match ring.register_file_table(size) {
                Ok(()) => break,
                Err(e) => {
                    tracing::debug!(error = %e, size, "fixed-file table refused; trying half");
                    size /= 2;
                }
            }
        }
        Ok(Rc::new(Driver {
            ring: RefCell::new(ring),
            files: RefCell::new(FileTable {
                size,
                next: 0,
                free: Vec::new(),
            }),
            wake: RefCell::new(Vec::new()),
            eventfd: RefCell::new(None),
            on_the_spot: Cell::new(0),
            multishot: Cell::new(multishot),
        }))
    }

    /// This thread's driver.
    pub(crate) fn current() -> io::Result<Rc<Driver>> {
        CURRENT
            .with(|current| current.borrow().clone())
            .ok_or_else(|| {
                io::Error::other(
                    "no io_uring driver on this thread (not an io-uring-direct runtime)",
                )
            })
    }

    /// Makes `driver` this thread's driver until [`Driver::uninstall`].
    pub(crate) fn install(driver: Rc<Driver>) {
        CURRENT.with(|current| *current.borrow_mut() = Some(driver));
    }

    /// Forgets this thread's driver (it is dropped with its last user).
    pub(crate) fn uninstall() {
        let driver = CURRENT.with(|current| current.borrow_mut().take());
        drop(driver);
    }

    /// This thread's driver, if it has one (`None` on other runtimes).
    fn current_if_any() -> Option<Rc<Driver>> {
        CURRENT.with(|current| current.try_borrow().ok().and_then(|d| d.clone()))
    }

    /// The park hook's work, if there is a driver: submits what is queued
    /// and reaps what completed (a task it wakes keeps the runtime from
    /// sleeping: tokio checks for work after the hook).
    pub(crate) fn park_current() {
        if let Some(driver) = Self::current_if_any() {
            driver.turn();
        }
    }

    /// [`Driver::turn`] on this thread's driver, if it has one.
    pub(crate) fn turn_current() {
        if let Some(driver) = Self::current_if_any() {
            driver.turn();
        }
    }

    /// Submits everything queued in one `io_uring_enter` (none if the
    /// queue is empty).
    pub(crate) fn submit(&self) {
        if let Err(e) = self.ring.borrow_mut().submit() {
            tracing::warn!(error = %e, "io_uring submit failed");
        }
    }

    /// Submits if anything is queued; returns whether it was.
    pub(crate) fn submit_if_queued(&self) -> bool {
        let queued = self.ring.borrow_mut().unsubmitted() > 0;
        if queued {
            self.submit();
        }
        queued
    }

    /// The I/O loop's turn: submit what is queued, reap what completed
    /// (with [`Setup::Deferred`] the reap's own enter submits too).
    pub(crate) fn turn(&self) {
        if self.setup() != Setup::Deferred {
            self.submit();
        }
        self.reap();
    }

    /// Moves posted completions to their operations and wakes their tasks.
    pub(crate) fn reap(&self) {
        let mut wake = std::mem::take(&mut *self.wake.borrow_mut());
        {
            let mut ring = self.ring.borrow_mut();
            if let Err(e) = ring.reap() {
                tracing::warn!(error = %e, "io_uring reap failed");
            }
            ring.take_woken(&mut wake);
        }
        for waker in wake.drain(..) {
            waker.wake();
        }
        *self.wake.borrow_mut() = wake;
    }

    /// The ring's counts (pushes, enters, completions).
    pub(crate) fn counts(&self) -> RingCounts {
        self.ring.borrow().counts()
    }

    /// Operations holding a slot (and any memory lent to the kernel).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.ring.borrow().in_flight()
    }

    /// SQEs queued and not yet submitted.
    #[cfg(test)]
    pub(crate) fn ring_unsubmitted(&self) -> usize {
        self.ring.borrow_mut().unsubmitted()
    }

    /// True while multishot receives may be armed.
    pub(crate) fn multishot(&self) -> bool {
        self.multishot.get()
    }

    /// The kernel refused a multishot receive (before 6.0): single
    /// receives from now on.
    pub(crate) fn multishot_refused(&self, error: &io::Error) {
        self.multishot.set(false);
        multishot_off_once("the kernel refused a multishot receive", error);
    }

    /// Provided buffers held by readers (delivered, not given back).
    #[cfg(test)]
    pub(crate) fn buffers_out(&self) -> u16 {
        self.ring.borrow().buffers_out()
    }

    /// Backlog reads made on the spot so far.
    pub(crate) fn on_the_spot(&self) -> u64 {
        self.on_the_spot.get()
    }

    pub(crate) fn count_on_the_spot(&self) {
        self.on_the_spot.set(self.on_the_spot.get() + 1);
    }

    pub(crate) fn setup(&self) -> Setup {
        self.ring.borrow().setup()
    }

    /// Registers a fresh eventfd with the ring and returns the task that
    /// reaps completions whenever it is signalled (spawn it on the
    /// thread's `LocalSet`).
    pub(crate) fn reaper(self: &Rc<Self>) -> io::Result<impl Future<Output = ()>> {
        use rustix::event::{eventfd, EventfdFlags};
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        // Registered first: a failure leaves nothing registered with tokio.
        self.ring.borrow().register_eventfd(fd.as_fd())?;
        let watched = hostmux_boot::reactor::register_readable(fd.try_clone()?)?;
        *self.eventfd.borrow_mut() = Some(fd);
        let driver = Rc::downgrade(self);
        Ok(async move {
            loop {
                let Ok(mut ready) = watched.readable().await else {
                    return;
                };
                // The reactor watches the eventfd edge-triggered, and the
                // kernel signals it (a new edge) for every completion: so
                // the counter is never read (a system call per wake-up
                // saved; it saturates harmlessly). Readiness is cleared
                // before the reap, so a completion posted after the reap
                // looked makes the next edge.
                ready.clear_ready();
                let Some(driver) = driver.upgrade() else {
                    return;
                };
                driver.reap();
            }
        })
    }

    /// Puts a socket into the fixed-file table; its [`Target`] for
    /// operations (its descriptor when the table is full).
    fn adopt(&self, fd: &OwnedFd) -> (Target, Option<u32>) {
        use std::os::fd::AsRawFd;
        let slot = self.files.borrow_mut().take();
        if let Some(slot) = slot {
            match self.ring.borrow().update_file(slot, Some(fd.as_fd())) {
                Ok(()) => return (Target::Fixed(slot), Some(slot)),
                Err(e) => {
                    tracing::debug!(error = %e, slot, "fixed-file slot refused the socket");
                    self.files.borrow_mut().free.push(slot);
                }
            }
        }
        (Target::Fd(fd.as_raw_fd()), None)
    }

    /// Empties a fixed-file slot for reuse, after submitting what is
    /// queued (an SQE that names the slot was made for the old file).
    fn release(&self, slot: u32) {
        self.submit_if_queued();
        match self.ring.borrow().update_file(slot, None) {
            Ok(()) => self.files.borrow_mut().free.push(slot),
            // Leave the slot out of use rather than aim at a stale file.
            Err(e) => tracing::warn!(error = %e, slot, "fixed-file slot not emptied"),
        }
    }
}

/// A connection's socket, adopted into its thread's ring: in a fixed-file
/// slot while it lives; the slot is emptied (and reused) when it drops.
pub(crate) struct Socket {
    driver: Rc<Driver>,
    target: Target,
    slot: Option<u32>,
    /// Declared last: closed after the slot is emptied.
    fd: OwnedFd,
}

impl Socket {
    /// Adopts `fd` (non-blocking) into this thread's ring.
    pub(crate) fn adopt(fd: OwnedFd) -> io::Result<Socket> {
        let driver = Driver::current()?;
        let (target, slot) = driver.adopt(&fd);
        Ok(Socket {
            driver,
            target,
            slot,
            fd,
        })
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub(crate) fn driver(&self) -> &Rc<Driver> {
        &self.driver
    }

    /// The fixed-file slot, if the socket has one.
    #[cfg(test)]
    pub(crate) fn slot(&self) -> Option<u32> {
        self.slot
    }

    /// A receive into the decoder's spare room, queued (not submitted).
    pub(crate) fn recv_decoder(&self, decoder: hostmux_wire::FrameDecoder) -> Op {
        let id = self
            .driver
            .ring
            .borrow_mut()
            .recv_decoder(self.target, decoder);
        Op::new(&self.driver, id)
    }

    /// A multishot receive into the ring's provided buffers, queued (not
    /// submitted). Only while [`Driver::multishot`] says so.
    pub(crate) fn recv_multi(&self) -> Multishot {
        let id = self.driver.ring.borrow_mut().recv_multi(self.target);
        Multishot {
            driver: self.driver.clone(),
            id,
            ended: false,
            cancelled: false,
        }
    }

    /// A receive into `buf[..buf.len()]`, queued (not submitted).
    pub(crate) fn recv_bytes(&self, buf: Vec<u8>) -> Op {
        let id = self.driver.ring.borrow_mut().recv_bytes(self.target, buf);
        Op::new(&self.driver, id)
    }

    /// A send of `buf[from..]`, submitted at once with whatever else is
    /// queued: a reply never waits for a batch.
    pub(crate) fn send(&self, buf: Vec<u8>, from: usize) -> Op {
        let id = self.driver.ring.borrow_mut().send(self.target, buf, from);
        self.driver.submit();
        Op::new(&self.driver, id)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // A queued SQE that names the descriptor must reach the kernel
        // before the descriptor closes (and its number is reused).
        self.driver.submit_if_queued();
        if let Some(slot) = self.slot {
            self.driver.release(slot);
        }
    }
}

/// A ring operation's future: the result (a byte count, or the error) and
/// the memory it was lent. Dropped unfinished, it leaves the memory with
/// the driver until the kernel answers (see [`super::sys`]).
pub(crate) struct Op {
    driver: Rc<Driver>,
    id: OpId,
    finished: bool,
}

impl Op {
    fn new(driver: &Rc<Driver>, id: OpId) -> Op {
        Op {
            driver: driver.clone(),
            id,
            finished: false,
        }
    }
}

impl Future for Op {
    type Output = (io::Result<usize>, Lent);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled = self.driver.ring.borrow_mut().poll_op(self.id, cx);
        match polled {
            Poll::Ready((result, lent)) => {
                self.finished = true;
                let result = if result < 0 {
                    Err(io::Error::from_raw_os_error(-result))
                } else {
                    Ok(result as usize)
                };
                Poll::Ready((result, lent))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if !self.finished {
            self.driver.ring.borrow_mut().abandon(self.id);
        }
    }
}

/// A multishot receive: its chunks in stream order, then its end. Dropped
/// before its end, it is cancelled and the chunks it still delivers go
/// straight back to the buffer ring.
pub(crate) struct Multishot {
    driver: Rc<Driver>,
    id: OpId,
    /// Its end was taken: its slot is free.
    ended: bool,
    cancelled: bool,
}

impl Multishot {
    /// The next chunk, or the end once every chunk was taken (then the
    /// multishot is over: arm a new one to read on). Cancel-safe.
    pub(crate) async fn next(&mut self) -> Shot {
        debug_assert!(!self.ended, "a multishot is not polled past its end");
        let shot =
            std::future::poll_fn(|cx| self.driver.ring.borrow_mut().poll_shot(self.id, cx)).await;
        self.ended = matches!(shot, Shot::Ended(_));
        shot
    }

    /// Asks the kernel to end it; what it delivered first still comes
    /// from [`next`](Self::next), then the end.
    pub(crate) fn cancel(&mut self) {
        if !self.ended && !self.cancelled {
            self.cancelled = true;
            self.driver.ring.borrow_mut().cancel_multi(self.id);
        }
    }

    /// True once the kernel ended it (its last completion was reaped).
    #[cfg(test)]
    pub(crate) fn has_ended(&self) -> bool {
        self.ended || self.driver.ring.borrow().shot_ended(self.id)
    }

    /// True once [`cancel`](Self::cancel) was called.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled
    }
}

impl Drop for Multishot {
    fn drop(&mut self) {
        if !self.ended {
            self.driver.ring.borrow_mut().abandon(self.id);
        }
    }
}
