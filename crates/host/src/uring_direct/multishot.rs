//! A connection's multishot receive: the reading side of
//! [`super::Reader`] when its thread's ring has provided buffers.
//!
//! One multishot receive is armed at a time; its chunks come out in
//! stream order, and a new one is armed only after the old one's end was
//! taken, which comes after all of its chunks: so bytes delivered before a
//! cancellation are always consumed before anything read later.
//!
//! * The end of a multishot: end of stream; `ENOBUFS` (the thread's
//!   buffer ring ran dry): the next read is one plain receive into the
//!   decoder (progress without a buffer, and no spin re-arming into an
//!   empty ring), then it re-arms; cancelled, or stopped after a chunk:
//!   re-armed at the next read; `EINVAL` (a kernel without multishot
//!   receive): plain receives from then on, said once in the log.
//! * [`Receive::pause`]: the host stops reading the connection (a full
//!   ring, link window or reply queue): the multishot is cancelled, so
//!   the kernel stops filling the thread's shared buffers for it.
//! * The ring's cap of held buffers cancels a multishot whose reader lags
//!   ([`crate::RecvBuffers::held_per_conn`]).
//! * [`Receive::read_direct`]: a large frame is about to be read straight
//!   into a proc's ring: the multishot is cancelled and what it delivered
//!   is handed out first; the read after the frame is one plain receive
//!   (the next frame may be large too: its payload belongs in a ring, not
//!   in provided buffers), and the one after it re-arms.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use super::driver::{Multishot, Socket};
use super::sys::{Chunk, Shot};
use crate::frontend::Next;

/// Process-wide counts of the io-uring-direct frontend's multishot
/// receives (every host in the process adds to them).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveCounts {
    /// Multishot receives armed.
    pub armed: u64,
    /// Chunks they delivered.
    pub chunks: u64,
    /// Multishot receives ended by `ENOBUFS`.
    pub enobufs: u64,
    /// Multishot receives cancelled because the host stopped reading the
    /// connection.
    pub paused: u64,
    /// Multishot receives cancelled for a read straight into a ring.
    pub for_direct: u64,
    /// Reads made as one plain receive by a connection that lends chunks
    /// (after `ENOBUFS`, or multishot refused).
    pub single_reads: u64,
}

static ARMED: AtomicU64 = AtomicU64::new(0);
static CHUNKS: AtomicU64 = AtomicU64::new(0);
static ENOBUFS: AtomicU64 = AtomicU64::new(0);
static PAUSED: AtomicU64 = AtomicU64::new(0);
static FOR_DIRECT: AtomicU64 = AtomicU64::new(0);
pub(super) static SINGLE_READS: AtomicU64 = AtomicU64::new(0);

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The process-wide counts so far.
pub fn receive_counts() -> ReceiveCounts {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    ReceiveCounts {
        armed: get(&ARMED),
        chunks: get(&CHUNKS),
        enobufs: get(&ENOBUFS),
        paused: get(&PAUSED),
        for_direct: get(&FOR_DIRECT),
        single_reads: get(&SINGLE_READS),
    }
}

/// A connection's multishot state.
#[derive(Default)]
pub(crate) struct Receive {
    /// The armed multishot, until its end is taken.
    op: Option<Multishot>,
    /// The unconsumed rest of a chunk, given back: the stream's next bytes.
    kept: Option<Chunk>,
    /// The next read is one plain receive, not a multishot: after
    /// `ENOBUFS` (progress without a buffer, no spin re-arming into an
    /// empty ring), and after a large frame read straight into a ring (a
    /// multishot armed at once would fill provided buffers with the next
    /// large frame's payload before its header is seen, and that payload
    /// would then be copied out of them instead of read into the ring).
    read_once: bool,
    /// A multishot met the end of stream.
    eof: bool,
    /// The armed multishot was cancelled for a direct read: when its end
    /// is taken (perhaps only after the large frame was completed from its
    /// chunks), the next read is a plain one, as after any direct read.
    cancelled_for_direct: bool,
}

impl Receive {
    /// True while it holds stream bytes or a multishot (reads must come
    /// from it, in order).
    pub(crate) fn active(&self) -> bool {
        self.op.is_some() || self.kept.is_some()
    }

    /// True while a multishot is armed and the kernel has not ended it.
    #[cfg(test)]
    pub(crate) fn armed(&self) -> bool {
        self.op.as_ref().is_some_and(|op| !op.has_ended())
    }

    /// The stream's next chunk (see [`crate::frontend::ConnReader::next_chunk`]).
    pub(crate) async fn next_chunk(&mut self, socket: &Socket) -> io::Result<Next<Chunk>> {
        if let Some(chunk) = self.kept.take() {
            return Ok(Next::Chunk(chunk));
        }
        loop {
            if self.eof {
                return Ok(Next::Eof);
            }
            let op = match &mut self.op {
                Some(op) => op,
                None => {
                    if std::mem::take(&mut self.read_once) || !socket.driver().multishot() {
                        return Ok(Next::Read);
                    }
                    bump(&ARMED);
                    self.op.insert(socket.recv_multi())
                }
            };
            match op.next().await {
                Shot::Chunk(chunk) => {
                    bump(&CHUNKS);
                    return Ok(Next::Chunk(chunk));
                }
                Shot::Ended(result) => {
                    self.op = None;
                    if let Some(next) = self.ended(result, socket)? {
                        return Ok(next);
                    }
                }
            }
        }
    }

    /// What a multishot's end means for the reader: `Some` to return, or
    /// `None` to read on.
    fn ended(&mut self, result: i32, socket: &Socket) -> io::Result<Option<Next<Chunk>>> {
        if std::mem::take(&mut self.cancelled_for_direct) {
            self.read_once = true;
        }
        match -result {
            0 => {
                self.eof = true;
                Ok(Some(Next::Eof))
            }
            libc::ENOBUFS => {
                bump(&ENOBUFS);
                self.read_once = true;
                Ok(None)
            }
            libc::EINVAL | libc::EOPNOTSUPP => {
                socket
                    .driver()
                    .multishot_refused(&io::Error::from_raw_os_error(-result));
                Ok(None)
            }
            // Cancelled, or stopped after a last chunk: re-armed.
            errno if errno <= 0 || errno == libc::ECANCELED => Ok(None),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    /// Gives back a chunk's unconsumed rest (after `used` bytes).
    pub(crate) fn keep(&mut self, mut chunk: Chunk, used: usize) {
        chunk.advance(used);
        if !chunk.is_empty() {
            debug_assert!(self.kept.is_none(), "one chunk is lent at a time");
            self.kept = Some(chunk);
        }
    }

    /// The host stops reading: the multishot is cancelled.
    pub(crate) fn pause(&mut self) {
        if let Some(op) = &mut self.op {
            if !op.is_cancelled() {
                bump(&PAUSED);
                op.cancel();
            }
        }
    }

    /// A read straight into `buf` (a proc's ring): what the multishot
    /// delivered comes first (copied once, from its buffer); `None` once
    /// it holds nothing and is over, and the socket is to be read.
    pub(crate) async fn read_direct(
        &mut self,
        socket: &Socket,
        buf: &mut [u8],
    ) -> Option<io::Result<usize>> {
        loop {
            if let Some(chunk) = self.kept.take() {
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                self.keep(chunk, n);
                return Some(Ok(n));
            }
            if self.eof {
                return Some(Ok(0));
            }
            let Some(op) = self.op.as_mut() else {
                // The socket is read straight into the ring now; the read
                // after this frame is one plain receive (see `read_once`).
                self.read_once = true;
                return None;
            };
            if !op.is_cancelled() {
                bump(&FOR_DIRECT);
                op.cancel();
                self.cancelled_for_direct = true;
            }
            match op.next().await {
                Shot::Chunk(chunk) => {
                    bump(&CHUNKS);
                    self.kept = Some(chunk);
                }
                Shot::Ended(result) => {
                    self.op = None;
                    match self.ended(result, socket) {
                        Ok(Some(_)) => return Some(Ok(0)),
                        Ok(None) => {
                            self.read_once = true;
                            return None;
                        }
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
        }
    }
}
