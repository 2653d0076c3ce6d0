//! Slot lookups, ring writes and undeliverable notices shared by the
//! connection and drain paths. None of them allocates once queues are warm.

use hostmux_ring::{Producer, RingError};
use hostmux_wire::{
    encode_frame, encode_frame_to_vec, encoded_len, FrameHeader, Limits, Sender, Undeliverable,
    UndeliverableReason, UNDELIVERABLE_LEN,
};

use super::{ConnKey, ConnSlot, ProcKey, ProcSlot, RingWrite};
use crate::stats::ProcStats;

pub(super) fn procs_stats_left_right<'a>(
    left: &'a [Option<ProcSlot>],
    right: &'a [Option<ProcSlot>],
    src: &'a ProcStats,
) -> impl Iterator<Item = &'a ProcStats> + 'a {
    left.iter()
        .flatten()
        .map(|s| &s.stats)
        .chain(std::iter::once(src))
        .chain(right.iter().flatten().map(|s| &s.stats))
}

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

pub(super) fn notice_header<'a>(original: &FrameHeader<'a>, from: &'a str) -> FrameHeader<'a> {
    Undeliverable::reply_header(
        original,
        Sender::Proc {
            addr: "",
            name: from,
        },
    )
}

/// Encodes an `Undeliverable` notice straight into a proc's inbound ring.
pub(super) fn write_notice(
    ring: &mut Producer,
    original: &FrameHeader<'_>,
    reason: UndeliverableReason,
    from: &str,
    limits: &Limits,
) -> bool {
    let header = notice_header(original, from);
    let payload = Undeliverable {
        original_message_id: original.message_id,
        reason,
    }
    .to_bytes();
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

/// Queues an `Undeliverable` notice for a client (allocation-free once the
/// queue has grown to its working size).
pub(super) fn push_notice(
    conn: &mut ConnSlot,
    original: &FrameHeader<'_>,
    reason: UndeliverableReason,
    from: &str,
    limits: &Limits,
) {
    let header = notice_header(original, from);
    let payload = Undeliverable {
        original_message_id: original.message_id,
        reason,
    }
    .to_bytes();
    if let Ok(range) = encode_frame_to_vec(&mut conn.outbox, &header, &payload, limits) {
        conn.stats.frames_out += 1;
        conn.stats.bytes_out += range.len() as u64;
        conn.stats.outbox_high_water = conn.stats.outbox_high_water.max(conn.outbox.len() as u64);
    }
}
