//! Zero-copy receive, the I/O side: a large frame's payload read from the
//! socket straight into its proc's ring (the data plane's side, and what is
//! counted, is `crate::dataplane::zero_copy`).
//!
//! [`receive_direct`] runs when the decoder holds the prefix and header of
//! a partial frame of at least [`HostConfig::zero_copy_threshold`] bytes. If
//! the data plane reserves the frame in its proc's ring (a
//! [`HeldRecord`](hostmux_ring::HeldRecord) that owns the ring's mapping),
//! the rest of the payload is read into that reservation with
//! [`ConnReader::read_direct`] (readiness, then a non-blocking read: no
//! operation outlives the future), and the frame is delivered by the one
//! routing decision. The ring takes no other frame meanwhile, so the hold
//! is bounded: if the sender stalls past [`HostConfig::zero_copy_hold`] (or
//! half the overload wait), ends its stream or fails mid-payload, or the proc's
//! route changed by the time the frame is whole, the bytes read so far are
//! moved out of the ring into the decoder (the reservation is abandoned,
//! unpublished) and the frame is finished the copied way, exactly as if
//! it had never been held.

use std::time::Instant;

use hostmux_wire::rkyv::util::AlignedVec;
use hostmux_wire::{FrameDecoder, FRAME_ALIGN};

use super::*;
use crate::dataplane::copy_partial_head;

/// What [`receive_direct`] did with the frame at the front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direct {
    /// Not taken: the copied path reads it.
    NotTaken,
    /// Read straight into its ring and delivered: the decoder moved past it.
    Delivered,
    /// Taken, then moved back into the decoder (stall, end of stream, read
    /// error, or a route that changed): the copied path finishes it, and it
    /// must not be taken again.
    MovedBack,
}

/// Reads the partial frame at the front of `decoder` straight into its
/// proc's ring if it qualifies (see the module docs). `scratch` holds the
/// validated copy of its header meanwhile.
pub(super) async fn receive_direct<F: Frontend>(
    reader: &mut F::Reader,
    decoder: &mut FrameDecoder,
    scratch: &mut AlignedVec<FRAME_ALIGN>,
    dataplane: &Shared,
    key: ConnKey,
    cfg: &HostConfig,
) -> Direct {
    let threshold = cfg.zero_copy_threshold;
    if threshold == 0 || !reader.reads_direct() {
        return Direct::NotTaken;
    }
    let limits = *decoder.limits();
    let front = decoder.front_bytes();
    // The header, validated in host memory: the ring's copy is memory the
    // proc may write.
    let Some((head, prefix)) = copy_partial_head(front, scratch, &limits) else {
        return Direct::NotTaken;
    };
    let frame_len = prefix.frame_len();
    if frame_len < threshold {
        return Direct::NotTaken;
    }
    let begun = dataplane
        .borrow_mut()
        .begin_zero_copy(key, &head, front, frame_len);
    let Some((mut held, q)) = begun else {
        return Direct::NotTaken;
    };
    let received = front.len();
    let mut filled = received;
    let hold_until = Instant::now() + cfg.zero_copy_hold.min(cfg.overload_wait / 2);
    while filled < frame_len {
        let read = reader.read_direct(&mut held.bytes_mut()[filled..]);
        match tokio::time::timeout_at(hold_until.into(), read).await {
            Ok(Ok(n)) if n > 0 => filled += n,
            // End of stream, a read error or a stall: moved back below,
            // and the copied path meets the same end (or waits out the
            // stall under the frame timeout).
            Ok(_) | Err(_) => break,
        }
    }
    if filled == frame_len {
        let finished =
            dataplane
                .borrow_mut()
                .finish_zero_copy(key, q, (&prefix, &head), held, Instant::now());
        match finished {
            Ok(()) => {
                let skipped = decoder.skip_front_frame(frame_len);
                debug_assert!(skipped, "the held frame was the decoder's front frame");
                return Direct::Delivered;
            }
            Err(back) => held = back,
        }
    }
    decoder.feed(&held.bytes_mut()[received..filled]);
    drop(held);
    dataplane.borrow_mut().zero_copy_moved_back(q);
    Direct::MovedBack
}
