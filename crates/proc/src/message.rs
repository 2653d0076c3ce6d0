//! [`Message`]: a received frame and its reply.

use hostmux_wire::{encoded_len, FrameHeader, FrameKind, FrameView, ProcName, Sender};

use crate::dest::Dest;
use crate::outbox::{data_header, Outbox};
use crate::slot::Slot;
use crate::ProcError;

/// A received frame, read in place from an inbound ring: the validated
/// routing header and the payload (16-byte aligned, so an rkyv archive in it
/// can be read with `rkyv::access` without a copy).
///
/// The record's space goes back to the host when the message is gone: the
/// next receive call releases it. A reply is the exception: once the reply
/// is published (at once, or with its batch inside
/// [`Proc::recv_batch`](crate::Proc::recv_batch)), the record counts as
/// consumed, because its lane's inbound read position is published right
/// before the reply, which goes out on the same lane (so a proc that dies never has a message both answered and
/// returned by its host). The host may then reuse the record: read what you
/// need from the payload before replying. Replying needs no other borrow:
/// the message carries the proc's [`Outbox`].
///
/// Only a [`FrameKind::Data`] message can be answered; the reply calls
/// refuse any other kind with [`ProcError::NotAnswerable`].
#[derive(Debug)]
pub struct Message<'a> {
    pub(crate) frame: FrameView<'a>,
    pub(crate) outbox: &'a mut Outbox,
    /// The inbound ring index after this message's record.
    pub(crate) read_end: u64,
    // Its lane is `outbox.handled_lane`, not a field here: with a lane
    // field the compiler moved the returned message with `memcpy` calls
    // (three per `recv` in the profile loop instead of one; see
    // `docs/benchmarks.md`, "Proc lanes: one-lane cost").
}

impl<'a> Message<'a> {
    /// The validated frame (header fields, prefix, raw bytes).
    pub fn frame(&self) -> FrameView<'a> {
        self.frame
    }

    /// The payload, borrowed from the ring.
    pub fn payload(&self) -> &'a [u8] {
        self.frame.payload()
    }

    /// Who sent it.
    pub fn sender(&self) -> Sender<'a> {
        self.frame.sender()
    }

    /// The port it was sent to.
    pub fn port(&self) -> u32 {
        self.frame.dest_port()
    }

    /// Its message id.
    pub fn message_id(&self) -> u64 {
        self.frame.message_id()
    }

    /// What it carries (data, undeliverable notice, ...).
    pub fn kind(&self) -> FrameKind {
        self.frame.kind()
    }

    /// The lane it came in on (see [`protocol`](crate::protocol)): its reply
    /// goes out on the same lane.
    pub fn lane(&self) -> usize {
        self.outbox.handled_lane
    }

    /// The proc's outbox, to send other frames while handling this one.
    pub fn outbox(&mut self) -> &mut Outbox {
        self.outbox
    }

    /// Replies with `payload` (one copy, into the outbound ring of the lane
    /// the message came in on): a data frame to the sender (proc or client,
    /// on this host or another), on the port this message was sent to, with
    /// its message id. Refuses a
    /// message that is not data ([`ProcError::NotAnswerable`]) and one
    /// from an anonymous sender ([`ProcError::NoReplyAddress`]). The
    /// message's record is published as consumed no later than the reply.
    pub fn reply(&mut self, payload: &[u8]) -> Result<(), ProcError> {
        let dest = reply_dest(&self.frame)?;
        self.outbox.write_data(
            dest,
            self.frame.dest_port(),
            self.frame.message_id(),
            payload,
            Some(self.read_end),
        )
    }

    /// Reserves the reply in the ring with room for `len` payload bytes, to
    /// serialise into in place; see [`Outbox::reserve`].
    pub fn reply_slot(&mut self, len: usize) -> Result<Slot<'_>, ProcError> {
        let dest = reply_dest(&self.frame)?;
        self.outbox.reserve_data(
            dest,
            self.frame.dest_port(),
            self.frame.message_id(),
            len,
            Some(self.read_end),
        )
    }

    /// Async [`reply`](Message::reply): waits for room on the proc doorbell
    /// instead of blocking the thread.
    pub async fn reply_async(&mut self, payload: &[u8]) -> Result<(), ProcError> {
        let frame_len = {
            let header = reply_header(&self.frame, &self.outbox.name)?;
            encoded_len(&header, payload.len())
        };
        self.outbox
            .writer(self.lane())
            .wait_for_room_async(frame_len)
            .await?;
        self.reply(payload)
    }
}

/// The header of a reply to `frame` from proc `name`: a data frame to the
/// frame's sender, on the port it was sent to, with its message id.
pub(crate) fn reply_header<'a>(
    frame: &FrameView<'a>,
    name: &'a ProcName,
) -> Result<FrameHeader<'a>, ProcError> {
    Ok(data_header(
        reply_dest(frame)?,
        frame.dest_port(),
        frame.message_id(),
        name,
    ))
}

/// Where a reply to `frame` goes: its sender (a client, with `TO_CLIENT`,
/// or a proc; see `FrameHeader::reply_target`). Only a
/// data frame is answered: a reply to a notice or a control response is
/// refused (as ICMP never errors about an error), so no two parties can
/// bounce frames at each other.
fn reply_dest<'a>(frame: &FrameView<'a>) -> Result<Dest<'a>, ProcError> {
    if frame.kind() != FrameKind::Data {
        return Err(ProcError::NotAnswerable {
            kind: frame.kind(),
            message_id: frame.message_id(),
        });
    }
    if frame.sender() == Sender::Anonymous {
        return Err(ProcError::NoReplyAddress {
            message_id: frame.message_id(),
        });
    }
    // A client (one of this host's, or one another host relayed as
    // `FROM_CLIENT`) is answered in the client namespace (`TO_CLIENT`).
    let target = frame.fields().reply_target();
    Ok(Dest {
        name: target.name,
        addr: target.addr,
        to_client: target.to_client,
    })
}
