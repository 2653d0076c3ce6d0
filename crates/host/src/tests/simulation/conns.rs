//! Simulated connections: clients, and the link to the other host. Each is
//! driven as the I/O thread drives a socket (read a chunk, route its frames,
//! hold a frame a full ring refused, stop reading while the reply queue is
//! over half full) and read as the peer reads it.

use std::time::{Duration, Instant};

use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{
    decode_frame, Flags, FrameDecoder, FrameKind, FrameView, Limits, Sender, FRAME_ALIGN,
};

use super::ledger::{Ledger, Who, REQUEST};
use super::world::CLIENT_NAMES;
use crate::dataplane::{Blocker, ConnKey, Dataplane, Delivery, Outbox};

/// Bytes the host reads from a connection in one go.
const READ_CHUNK: usize = 8 * 1024;

/// Where a connection's write side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Eof {
    Open,
    /// The peer shut its write side; the host has not read to the end yet.
    Pending,
    /// The host read to the end; the connection waits for the answers the
    /// client is owed until they came or the deadline (the linger).
    Lingering(Instant),
    /// The host closed its side (the writer sends what is queued).
    Sent,
}

/// A frame a full ring refused, held by the reader.
struct Held {
    frame: AlignedVec<FRAME_ALIGN>,
    on: Blocker,
    deadline: Instant,
}

pub(super) struct SimConn {
    pub(super) who: Who,
    pub(super) key: ConnKey,
    /// Bytes the peer wrote that the host has not read yet (the socket).
    socket: Vec<u8>,
    /// The host's decoder of this connection.
    stream: FrameDecoder,
    /// The peer's decoder of what the host sends it.
    inbox: FrameDecoder,
    held: Option<Held>,
    pub(super) eof: Eof,
    /// The peer went away; removed once no frame is held.
    pub(super) leaving: bool,
    /// Broke the framing.
    pub(super) failed: bool,
    /// Frames the host read from it.
    pub(super) handed: u64,
    /// Requests that must get exactly one answer.
    pub(super) expect: Vec<u64>,
    /// It was sent frames that answer nothing of its own (others' requests,
    /// stray replies), before or after its half-close: they must not end
    /// its linger before its own answers came (coverage counts them).
    pub(super) received_foreign_frames: bool,
    /// Frames it had to hold so far (coverage).
    pub(super) holds: u64,
    /// Half-closes whose linger ran out (coverage).
    pub(super) lingers_expired: u64,
    buf: Vec<u8>,
}

/// What a connection's peer found when it read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Read {
    Nothing,
    Frames,
    Closed,
}

impl SimConn {
    pub(super) fn new(who: Who, key: ConnKey, limits: Limits) -> SimConn {
        SimConn {
            who,
            key,
            socket: Vec::new(),
            stream: FrameDecoder::new(limits),
            inbox: FrameDecoder::new(limits),
            held: None,
            eof: Eof::Open,
            leaving: false,
            failed: false,
            handed: 0,
            expect: Vec::new(),
            received_foreign_frames: false,
            holds: 0,
            lingers_expired: 0,
            buf: Vec::new(),
        }
    }

    /// Whether the peer may still write.
    pub(super) fn writable(&self) -> bool {
        self.eof == Eof::Open && !self.failed && !self.leaving
    }

    pub(super) fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// Whether bytes wait in the socket or the decoder.
    pub(super) fn has_unread(&self) -> bool {
        !self.socket.is_empty() || self.stream.buffered_len() > 0
    }

    /// The peer writes `bytes`.
    pub(super) fn write(&mut self, bytes: &[u8]) {
        self.socket.extend_from_slice(bytes);
    }

    /// The host's reader runs: retries a held frame (gives it up at its
    /// deadline), then reads and routes chunks until the socket is empty,
    /// a frame is held, or the reply queue is over half full; after a
    /// half-close, lingers for the answers the client awaits (at most
    /// `linger`), then closes. Returns the frames the host read.
    pub(super) fn pump(
        &mut self,
        dp: &mut Dataplane,
        limits: &Limits,
        now: Instant,
        linger: Duration,
    ) -> u64 {
        let before = self.handed;
        if let Some(held) = self.held.take() {
            let frame = decode_frame(&held.frame, limits).expect("a held frame decodes");
            match dp.handle_conn_frame(self.key, &frame, false, held.on.ring(), now) {
                Delivery::Done => {}
                Delivery::Blocked(..) if now >= held.deadline => {
                    dp.give_up_conn_frame(self.key, &frame, held.on);
                }
                Delivery::Blocked(on, _) => {
                    self.held = Some(Held { on, ..held });
                }
            }
        }
        while self.held.is_none() && !self.failed && !dp.outbox_full(self.key) {
            self.route_buffered(dp, now);
            if self.held.is_some() || self.failed || self.socket.is_empty() {
                break;
            }
            let n = self.socket.len().min(READ_CHUNK);
            self.stream.feed(&self.socket[..n]);
            self.socket.drain(..n);
        }
        dp.flush();
        if self.held.is_none() && !self.failed && self.eof == Eof::Pending && !self.has_unread() {
            self.eof = if dp.half_close(self.key) {
                Eof::Lingering(now + linger)
            } else {
                dp.close_conn(self.key);
                Eof::Sent
            };
        }
        if let Eof::Lingering(deadline) = self.eof {
            if !dp.awaits_answers(self.key) {
                dp.close_conn(self.key);
                self.eof = Eof::Sent;
            } else if now >= deadline {
                // The linger ran out: what is still owed may never come.
                dp.close_conn(self.key);
                self.eof = Eof::Sent;
                self.expect.clear();
                self.lingers_expired += 1;
            }
        }
        self.handed - before
    }

    fn route_buffered(&mut self, dp: &mut Dataplane, now: Instant) {
        loop {
            self.handed += dp.deliver_repeats(self.key, &mut self.stream) as u64;
            match self.stream.next_frame() {
                Ok(Some(frame)) => {
                    self.handed += 1;
                    if let Delivery::Blocked(on, deadline) =
                        dp.handle_conn_frame(self.key, &frame, true, None, now)
                    {
                        let mut stash = AlignedVec::new();
                        stash.extend_from_slice(frame.as_bytes());
                        self.holds += 1;
                        self.held = Some(Held {
                            frame: stash,
                            on,
                            deadline,
                        });
                        return;
                    }
                }
                Ok(None) => return,
                Err(_) => {
                    // As the I/O thread: a framing error fails the
                    // connection (a notice, then it closes).
                    dp.fail_conn(self.key);
                    dp.close_conn(self.key);
                    self.failed = true;
                    self.expect.clear();
                    return;
                }
            }
        }
    }

    /// The connection's writer runs at `now` and the peer reads what it
    /// sent; each frame goes to `seen`.
    pub(super) fn read(
        &mut self,
        dp: &mut Dataplane,
        ledger: &mut Ledger,
        now: Instant,
        mut seen: impl FnMut(&mut Ledger, &FrameView<'_>),
    ) -> Result<Read, String> {
        self.buf.clear();
        match dp.take_outbox(self.key, &mut self.buf, now) {
            Outbox::Empty | Outbox::Later(_) => return Ok(Read::Nothing),
            Outbox::Closed => return Ok(Read::Closed),
            Outbox::Bytes => {}
        }
        self.inbox.feed(&self.buf);
        loop {
            let frame = match self.inbox.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    return Err(format!(
                        "the host sent {:?} a malformed stream: {e}",
                        self.who
                    ))
                }
            };
            ledger.received(self.who, &frame)?;
            if let Who::Client(c) = self.who {
                check_for_client(&frame, CLIENT_NAMES[usize::from(c)])?;
            }
            if !self.expect.contains(&frame.message_id()) {
                self.received_foreign_frames = true;
            }
            // Clients answer nothing: a request that reaches one is done.
            if self.who != Who::Far
                && frame.kind() == FrameKind::Data
                && frame.payload().first() == Some(&REQUEST)
            {
                ledger.excuse(frame.message_id());
            }
            seen(ledger, &frame);
        }
        Ok(Read::Frames)
    }
}

/// Names and kinds: a client receives data only for its own name in the
/// client namespace (`TO_CLIENT`), and nothing but the host originates a
/// notice or a response (their sender is the service proc). (A notice
/// about a refused frame goes back on the connection that sent it and is
/// addressed to the sender that frame claimed, forged or not.)
fn check_for_client(frame: &FrameView<'_>, name: &str) -> Result<(), String> {
    let to_client = frame.flags().contains(Flags::TO_CLIENT);
    let host_answer = matches!(
        frame.kind(),
        FrameKind::Undeliverable | FrameKind::ControlResponse
    );
    let for_this_client = to_client && frame.dest_name() == name;
    if !(host_answer || for_this_client) {
        return Err(format!(
            "client {name} received a {:?} for {:?} (to a client: {to_client})",
            frame.kind(),
            frame.dest_name()
        ));
    }
    if host_answer
        && frame.sender()
            != (Sender::Proc {
                addr: "",
                name: "service",
            })
    {
        return Err(format!(
            "client {name} received a {:?} from {:?}: only the host originates those",
            frame.kind(),
            frame.sender()
        ));
    }
    Ok(())
}
