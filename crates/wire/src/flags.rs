//! The routing header's `flags` field: flag bits in the low byte, the hop
//! count in the high byte.
//!
//! The field is one little-endian `u16` at root offset 12 (see
//! `docs/wire.md`). Bits 0-7 are flag bits: bit 0 is
//! [`Flags::RETURN_UNDELIVERABLE`], bit 1 [`Flags::TO_CLIENT`] (the
//! destination names a client connection, not a proc), bit 2
//! [`Flags::FROM_CLIENT`] (the sender, relayed as a proc of another host,
//! is a client connection of that host); bits 3-7 are reserved and a
//! receiver rejects a header that sets them. Client names and proc names
//! are separate namespaces: the two client bits say which one a name
//! belongs to. Bits 8-15 are the hop count: how many
//! times hosts have forwarded the frame over a link to another host so far.
//! Any hop count is valid in a header; what it means is the hosts' rule:
//!
//! * an originator (a client, a proc, a host's service proc) sends 0;
//! * a host that forwards a frame over a link to another host increments
//!   it (a frame whose count is already 255 cannot be forwarded: it has
//!   reached every possible limit);
//! * a host that receives from a link a frame whose count has reached its
//!   maximum ([`DEFAULT_MAX_HOPS`] unless configured) drops it, counts it,
//!   and, if it was a [`Data`](crate::FrameKind::Data) frame, returns an
//!   `Undeliverable` notice with reason
//!   [`HopLimit`](crate::UndeliverableReason::HopLimit) to its sender.
//!
//! So no configuration (two hosts pointing at each other, a host that does
//! not recognise one of its own addresses) can make a frame circulate for
//! ever. The count lives inside the existing 32-byte root, so the layout,
//! and every header encoded before it existed (count 0), stay as they were.

use std::ops::BitOr;

/// How many host-to-host hops a frame may take before a host drops it, unless
/// the host is configured otherwise. A frame arriving over a link with a hop
/// count of at least this many is dropped (and, if it is a data frame,
/// returned to its sender as
/// [`HopLimit`](crate::UndeliverableReason::HopLimit)). Eight is far more
/// than any sane topology needs (a frame crosses one link, at most two when
/// a host relays) and small enough that a loop ends after a few frames.
pub const DEFAULT_MAX_HOPS: u8 = 8;

/// The flag bits (low byte) of the field.
const FLAG_BITS: u16 = 0x00ff;
/// Where the hop count sits in the field.
const HOPS_SHIFT: u32 = 8;

/// The routing header's `flags` field: flag bits (bits 0-7) and the hop
/// count (bits 8-15).
///
/// Unknown flag bits are rejected by the decoder; every hop count is valid.
///
/// ```
/// use hostmux_wire::Flags;
///
/// let flags = Flags::RETURN_UNDELIVERABLE.with_hops(3);
/// assert_eq!(flags.hops(), 3);
/// assert!(flags.contains(Flags::RETURN_UNDELIVERABLE));
/// assert_eq!(flags.bits(), 0x0301);
/// assert_eq!(Flags::from_bits(0x0301), Some(flags));
/// assert_eq!(Flags::from_bits(0x0008), None); // bit 3 is not defined
/// let reply = Flags::TO_CLIENT | Flags::RETURN_UNDELIVERABLE;
/// assert!(reply.contains(Flags::TO_CLIENT) && !reply.contains(Flags::FROM_CLIENT));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// No flags, hop count 0.
    pub const NONE: Flags = Flags(0);
    /// Advisory: the sender wants to hear if the frame cannot be delivered.
    /// Hosts neither read nor change it: every frame whose kind may be
    /// answered gets its one `Undeliverable` notice when it cannot be
    /// delivered, whether this bit is set or not (see `docs/wire.md`,
    /// "Flags").
    pub const RETURN_UNDELIVERABLE: Flags = Flags(1);
    /// `dest_name` names a client connection of the host at `dest_addr`,
    /// not a proc: the host looks it up among its clients only. Without
    /// it a name is a proc's (or the service proc's), whatever clients are
    /// called, so a client can neither take, shadow nor receive a proc's
    /// name. Set on every reply, notice and response to a client (see
    /// [`FrameHeader::reply_target`](crate::FrameHeader::reply_target)).
    pub const TO_CLIENT: Flags = Flags(1 << 1);
    /// The sender, `Sender::Proc { addr, name }`, is a client connection
    /// of the host at `addr`, not a proc: a host sets it when it forwards
    /// its client's frame over a link to another host (it rewrites the
    /// client's sender into a proc sender that names itself). Only links
    /// may carry it: a host refuses it from a client or a proc
    /// (`Malformed`). Answers to such a frame carry [`Flags::TO_CLIENT`].
    pub const FROM_CLIENT: Flags = Flags(1 << 2);
    /// Every flag bit this version of the protocol defines (the hop count's
    /// bits are not flag bits and are not included).
    pub const KNOWN: Flags = Flags(0b111);

    /// The raw 16 bits as they travel: flag bits and hop count.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Flags from the raw 16 bits, if every set flag bit (bits 0-7) is
    /// known; the hop count (bits 8-15) may be anything.
    pub const fn from_bits(bits: u16) -> Option<Flags> {
        if bits & FLAG_BITS & !Self::KNOWN.0 == 0 {
            Some(Flags(bits))
        } else {
            None
        }
    }

    /// Flags from the raw 16 bits with unknown flag bits dropped; the hop
    /// count is kept.
    pub const fn from_bits_truncate(bits: u16) -> Flags {
        Flags(bits & !(FLAG_BITS & !Self::KNOWN.0))
    }

    /// The same hop count with the flag bits of `other` added (`other`'s
    /// hop count is ignored).
    #[inline]
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | (other.0 & FLAG_BITS))
    }

    /// The same hop count with the flag bits of `other` cleared.
    #[inline]
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !(other.0 & FLAG_BITS))
    }

    /// True if every flag bit of `other` is set in `self`. Hop counts are
    /// not compared.
    pub const fn contains(self, other: Flags) -> bool {
        let wanted = other.0 & FLAG_BITS;
        self.0 & wanted == wanted
    }

    /// How many times hosts have forwarded the frame over a link to another
    /// host so far (0 from its originator).
    #[inline]
    pub const fn hops(self) -> u8 {
        (self.0 >> HOPS_SHIFT) as u8
    }

    /// The same flag bits with the hop count `hops`.
    #[inline]
    pub const fn with_hops(self, hops: u8) -> Flags {
        Flags((self.0 & FLAG_BITS) | ((hops as u16) << HOPS_SHIFT))
    }
}

impl BitOr for Flags {
    type Output = Flags;

    /// The union of both sides' flag bits. The hop counts are OR-ed bit by
    /// bit too, which means nothing: combine flags with count 0 and set the
    /// count with [`Flags::with_hops`].
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_hop_count_is_the_high_byte() {
        assert_eq!(Flags::NONE.hops(), 0);
        assert_eq!(Flags::NONE.with_hops(1).bits(), 0x0100);
        assert_eq!(Flags::NONE.with_hops(255).bits(), 0xff00);
        assert_eq!(Flags::RETURN_UNDELIVERABLE.with_hops(8).bits(), 0x0801);
        // Setting the count replaces it and keeps the flag bits.
        let flags = Flags::RETURN_UNDELIVERABLE.with_hops(200).with_hops(2);
        assert_eq!((flags.hops(), flags.bits()), (2, 0x0201));
        assert!(flags.contains(Flags::RETURN_UNDELIVERABLE));
        assert!(!Flags::NONE
            .with_hops(1)
            .contains(Flags::RETURN_UNDELIVERABLE));
        // Counts are not flag bits: `contains` ignores them.
        assert!(Flags::NONE.contains(Flags::NONE.with_hops(3)));
    }

    #[test]
    fn the_client_bits_are_bits_one_and_two_and_keep_the_hop_count() {
        assert_eq!(Flags::TO_CLIENT.bits(), 0x0002);
        assert_eq!(Flags::FROM_CLIENT.bits(), 0x0004);
        assert_eq!(Flags::KNOWN.bits(), 0x0007);
        let flags = Flags::RETURN_UNDELIVERABLE
            .with_hops(3)
            .with(Flags::FROM_CLIENT);
        assert_eq!((flags.bits(), flags.hops()), (0x0305, 3));
        assert!(flags.contains(Flags::FROM_CLIENT) && !flags.contains(Flags::TO_CLIENT));
        let flags = flags.without(Flags::FROM_CLIENT).with(Flags::TO_CLIENT);
        assert_eq!(flags.bits(), 0x0303);
        assert_eq!(Flags::from_bits(0xff06).map(Flags::hops), Some(255));
    }

    #[test]
    fn unknown_flag_bits_are_refused_whatever_the_hop_count() {
        for bit in 3..8 {
            assert_eq!(Flags::from_bits(1 << bit), None, "bit {bit}");
            assert_eq!(Flags::from_bits(0x0800 | 1 << bit), None, "bit {bit}");
            assert_eq!(Flags::from_bits_truncate(0x0801 | 1 << bit).bits(), 0x0801);
        }
        assert_eq!(Flags::from_bits(0xff01).map(Flags::hops), Some(255));
        assert_eq!(Flags::from_bits(0xff00), Some(Flags::NONE.with_hops(255)));
    }

    proptest! {
        #[test]
        fn from_bits_accepts_exactly_the_known_flag_bits_with_any_hop_count(bits in any::<u16>()) {
            let accepted = Flags::from_bits(bits);
            prop_assert_eq!(accepted.is_some(), bits & 0x00f8 == 0);
            if let Some(flags) = accepted {
                prop_assert_eq!(flags.bits(), bits);
                prop_assert_eq!(flags.hops(), (bits >> 8) as u8);
                prop_assert_eq!(Flags::from_bits_truncate(bits), flags);
            }
            let truncated = Flags::from_bits_truncate(bits);
            prop_assert_eq!(Flags::from_bits(truncated.bits()), Some(truncated));
            prop_assert_eq!(truncated.hops(), (bits >> 8) as u8);
        }

        #[test]
        fn with_hops_round_trips(flag in any::<bool>(), hops in any::<u8>(), before in any::<u8>()) {
            let base = if flag { Flags::RETURN_UNDELIVERABLE } else { Flags::NONE };
            let flags = base.with_hops(before).with_hops(hops);
            prop_assert_eq!(flags.hops(), hops);
            prop_assert_eq!(flags.with_hops(0), base);
            prop_assert_eq!(Flags::from_bits(flags.bits()), Some(flags));
        }
    }
}
