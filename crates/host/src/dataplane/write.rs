//! Slot lookups, ring writes and undeliverable notices shared by the
//! connection and drain paths. None of them allocates once queues are warm.

use hostmux_ring::{Producer, RingError};
use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{
    decode_frame_memo, encode_frame, encode_frame_to_vec, encoded_len, FrameHeader, FramePrefix,
    FrameView, HeaderMemo, Limits, Sender, Undeliverable, UndeliverableReason, WireError,
    FRAME_ALIGN, PREFIX_LEN, UNDELIVERABLE_LEN,
};

use super::rules::{self, Refusal};
use super::{ConnKey, ConnSlot, ProcKey, ProcSlot, RingWrite};

pub(super) fn slot_of(procs: &mut [Option<ProcSlot>], key: ProcKey) -> Option<&mut ProcSlot> {
    procs
        .get_mut(key.index as usize)?
        .as_mut()
        .filter(|s| s.generation == key.generation)
}

pub(super) fn slot_of_conn(conns: &mut [Option<ConnSlot>], key: ConnKey) -> Option<&mut ConnSlot> {
    conns
        .get_mut(key.index as usize)?
        .as_mut()
        .filter(|s| s.generation == key.generation)
}

pub(super) fn other_slot<'a>(
    left: &'a mut [Option<ProcSlot>],
    right: &'a mut [Option<ProcSlot>],
    pi: usize,
    qi: usize,
) -> Option<&'a mut ProcSlot> {
    if qi < pi {
        left.get_mut(qi)?.as_mut()
    } else {
        right.get_mut(qi - pi - 1)?.as_mut()
    }
}

pub(super) fn mark_dirty(dirty: &mut Vec<u32>, index: u32, slot: &mut ProcSlot) {
    if !slot.dirty {
        slot.dirty = true;
        dirty.push(index);
    }
}

/// Counts a client frame of `len` bytes written into `slot`'s inbound ring
/// (it has room again) and marks the ring for publication.
pub(super) fn count_written(dirty: &mut Vec<u32>, index: u32, slot: &mut ProcSlot, len: u64) {
    slot.full_since = None;
    slot.stats.frames_in += 1;
    slot.stats.bytes_in += len;
    mark_dirty(dirty, index, slot);
}

pub(super) fn mark_src_dirty(dirty: &mut Vec<u32>, index: usize, flag: &mut bool) {
    if !*flag {
        *flag = true;
        dirty.push(index as u32);
    }
}

pub(super) fn write_record(ring: &mut Producer, bytes: &[u8]) -> RingWrite {
    if ring.is_consumer_closed() {
        return RingWrite::Closed;
    }
    if bytes.len() > ring.max_payload() {
        return RingWrite::Oversized;
    }
    match ring.try_reserve(bytes.len()) {
        Ok(mut slot) => {
            slot.copy_from_slice(bytes);
            slot.commit();
            RingWrite::Written
        }
        Err(RingError::Full) => RingWrite::Full,
        Err(RingError::TooLarge { .. }) => RingWrite::Oversized,
        Err(_) => RingWrite::Closed,
    }
}

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

impl ConnSlot {
    /// Counts a frame of `len` bytes queued towards this connection.
    /// `answer`: it answers a frame this connection sent and the host
    /// delivered (a reply, a response, a notice about a delivered frame),
    /// so one fewer answer is awaited.
    pub(super) fn count_queued(&mut self, len: usize, answer: bool) {
        self.stats.frames_out += 1;
        self.stats.bytes_out += len as u64;
        self.stats.outbox_high_water = self.stats.outbox_high_water.max(self.outbox.len() as u64);
        if answer {
            self.awaiting_answers = self.awaiting_answers.saturating_sub(1);
        }
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
        conn.count_queued(range.len(), false);
    }
}

/// Copies the prefix and routing header of `record` (a proc's ring record,
/// memory the proc may rewrite at any time) into the host-local `scratch`
/// and validates them there. Returns a view of the copy (its payload is
/// empty: the copy's prefix is rewritten to a payload-less frame for the
/// check) and the original prefix, whose payload range locates the payload
/// in `record`. Routing decisions read only the copy, so a proc cannot turn
/// a validated header into an invalid one behind the host's back. The
/// header is checked through the proc's `memo`: a run of records that
/// differ only in message id and port is validated once (the comparison
/// is against the memo's own copy, so it is as safe as a full check).
/// Allocation-free once `scratch` has room for `16 + max_header_len` bytes.
pub(crate) fn copy_head<'s>(
    record: &[u8],
    scratch: &'s mut AlignedVec<FRAME_ALIGN>,
    memo: &'s mut HeaderMemo,
    limits: &Limits,
) -> Result<(FrameView<'s>, FramePrefix), WireError> {
    let room = PREFIX_LEN + limits.max_header_len.next_multiple_of(FRAME_ALIGN);
    scratch.clear();
    scratch.extend_from_slice(&record[..record.len().min(room)]);
    let prefix = FramePrefix::parse(scratch, limits)?;
    if record.len() < prefix.frame_len() {
        return Err(WireError::Truncated {
            needed: prefix.frame_len(),
            available: record.len(),
        });
    }
    let head_len = prefix.payload_offset();
    let head_only = FramePrefix::for_lengths(prefix.header_len(), 0, limits)?;
    scratch[..PREFIX_LEN].copy_from_slice(&head_only.to_bytes());
    let scratch: &'s AlignedVec<FRAME_ALIGN> = scratch;
    let view = decode_frame_memo(&scratch[..head_len], limits, memo)?;
    Ok((view, prefix))
}

/// Writes a frame from its parts into a ring record: the original prefix,
/// the validated header copy (`head` is a [`copy_head`] view), the payload
/// (straight from the source ring: the one copy) and zero padding.
pub(super) fn write_parts(
    ring: &mut Producer,
    prefix: &FramePrefix,
    head: &FrameView<'_>,
    payload: &[u8],
) -> RingWrite {
    if ring.is_consumer_closed() {
        return RingWrite::Closed;
    }
    let len = prefix.frame_len();
    if len > ring.max_payload() {
        return RingWrite::Oversized;
    }
    match ring.try_reserve(len) {
        Ok(mut slot) => {
            fill_parts(&mut slot, prefix, head, payload);
            slot.commit();
            RingWrite::Written
        }
        Err(RingError::Full) => RingWrite::Full,
        Err(RingError::TooLarge { .. }) => RingWrite::Oversized,
        Err(_) => RingWrite::Closed,
    }
}

/// Appends a frame from its parts to a client's queue (see [`write_parts`]).
pub(super) fn extend_parts(
    out: &mut Vec<u8>,
    prefix: &FramePrefix,
    head: &FrameView<'_>,
    payload: &[u8],
) {
    // Appended piece by piece: zero-filling the frame first and then
    // overwriting it wrote every byte twice.
    let head_len = prefix.payload_offset();
    let end = out.len() + prefix.frame_len();
    out.reserve(prefix.frame_len());
    out.extend_from_slice(&prefix.to_bytes());
    out.extend_from_slice(&head.as_bytes()[PREFIX_LEN..head_len]);
    out.extend_from_slice(payload);
    out.resize(end, 0);
}

fn fill_parts(out: &mut [u8], prefix: &FramePrefix, head: &FrameView<'_>, payload: &[u8]) {
    let head_len = prefix.payload_offset();
    out[..PREFIX_LEN].copy_from_slice(&prefix.to_bytes());
    out[PREFIX_LEN..head_len].copy_from_slice(&head.as_bytes()[PREFIX_LEN..head_len]);
    let range = prefix.payload_range();
    out[range.clone()].copy_from_slice(payload);
    out[range.end..].fill(0);
}
