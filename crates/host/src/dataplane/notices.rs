//! `Undeliverable` notices: their header and payload, written into a
//! proc's inbound ring or queued for a client, and how a refused frame is
//! disposed of as the rules say for its kind, whether a connection's
//! (`ConnSlot::refuse`) or a proc's own (`return_to_proc`): one notice
//! back, or dropped and counted. Allocation-free once queues are warm.

use hostmux_ring::Producer;
use hostmux_wire::{
    encode_frame, encode_frame_to_vec, encoded_len, FrameHeader, Limits, Sender, Undeliverable,
    UndeliverableReason, UNDELIVERABLE_LEN,
};

use super::rules::{self, Refusal};
use super::write::mark_dirty;
use super::{ConnSlot, ProcSlot};

/// The header of a notice about `original`, from the service proc `from`.
/// A notice about a frame another host relayed goes back over a link, so it
/// names this host (`own_addr`) as where it comes from; a local one leaves
/// the address empty ("the host that relays it").
pub(super) fn notice_header<'a>(
    original: &FrameHeader<'a>,
    from: &'a str,
    own_addr: &'a str,
) -> FrameHeader<'a> {
    let addr = match original.sender {
        Sender::Proc { addr, .. } if !addr.is_empty() => own_addr,
        _ => "",
    };
    Undeliverable::reply_header(original, Sender::Proc { addr, name: from })
}

/// The payload of a notice that `original` was not delivered for `reason`.
pub(super) fn notice_payload(
    original: &FrameHeader<'_>,
    reason: UndeliverableReason,
) -> [u8; UNDELIVERABLE_LEN] {
    Undeliverable {
        original_message_id: original.message_id,
        reason,
    }
    .to_bytes()
}

/// Encodes an `Undeliverable` notice straight into a proc's inbound ring.
pub(super) fn write_notice(
    ring: &mut Producer,
    original: &FrameHeader<'_>,
    reason: UndeliverableReason,
    from: &str,
    limits: &Limits,
) -> bool {
    // Procs are local: their notices name no address.
    let header = notice_header(original, from, "");
    let payload = notice_payload(original, reason);
    let len = encoded_len(&header, UNDELIVERABLE_LEN);
    if ring.is_consumer_closed() {
        return false;
    }
    match ring.try_reserve(len) {
        Ok(mut slot) => match encode_frame(&mut slot, &header, &payload, limits) {
            Ok(_) => {
                slot.commit();
                true
            }
            Err(_) => false,
        },
        Err(_) => false,
    }
}

pub(super) fn notice_into_ring(
    slot: &mut ProcSlot,
    original: &FrameHeader<'_>,
    reason: UndeliverableReason,
    from: &str,
    limits: &Limits,
) {
    let wrote = slot
        .inbound
        .as_mut()
        .is_some_and(|ring| write_notice(ring, original, reason, from, limits));
    if !wrote {
        slot.stats.notices_dropped += 1;
    }
}

/// Disposes of a frame the proc in `slot` (at `index`) sent that came back
/// refused for `reason`, as the rules say for its kind: counted returned
/// and answered with a notice into the proc's own inbound ring (marked
/// dirty; a notice the ring has no room for is counted dropped), or
/// dropped and counted.
pub(super) fn return_to_proc(
    slot: &mut ProcSlot,
    index: u32,
    dirty: &mut Vec<u32>,
    original: &FrameHeader<'_>,
    reason: UndeliverableReason,
    from: &str,
    limits: &Limits,
) {
    match rules::refusal(original.kind, reason) {
        Refusal::Notice(reason) => {
            slot.stats.outbound_returned.add(reason);
            let wrote = slot
                .inbound
                .as_mut()
                .is_some_and(|ring| write_notice(ring, original, reason, from, limits));
            if wrote {
                mark_dirty(dirty, index, slot);
            } else {
                slot.stats.notices_dropped += 1;
            }
        }
        Refusal::Drop(reason) => slot.stats.outbound_dropped.add(reason),
    }
}

impl ConnSlot {
    /// Counts a frame of `len` bytes queued towards this connection.
    pub(super) fn count_queued(&mut self, len: usize) {
        self.stats.frames_out += 1;
        self.stats.bytes_out += len as u64;
        self.stats.outbox_high_water = self.stats.outbox_high_water.max(self.outbox.len() as u64);
    }

    /// Disposes of a frame from this connection that was refused or could
    /// not be delivered, as the rules say for its kind: one notice back, or
    /// dropped and counted.
    pub(super) fn refuse(
        &mut self,
        original: &FrameHeader<'_>,
        reason: UndeliverableReason,
        from: &str,
        own_addr: &str,
        limits: &Limits,
    ) {
        match rules::refusal(original.kind, reason) {
            Refusal::Notice(reason) => {
                self.stats.returned.add(reason);
                push_notice(self, original, reason, from, own_addr, limits);
            }
            Refusal::Drop(reason) => self.stats.dropped.add(reason),
        }
    }
}

/// Queues an `Undeliverable` notice for a client (allocation-free once the
/// queue has grown to its working size).
pub(super) fn push_notice(
    conn: &mut ConnSlot,
    original: &FrameHeader<'_>,
    reason: UndeliverableReason,
    from: &str,
    own_addr: &str,
    limits: &Limits,
) {
    let header = notice_header(original, from, own_addr);
    let payload = notice_payload(original, reason);
    if let Ok(range) = encode_frame_to_vec(&mut conn.outbox, &header, &payload, limits) {
        conn.count_queued(range.len());
    }
}
