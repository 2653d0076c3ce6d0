//! Who may send which [`FrameKind`], and which frames may be answered: the
//! rules every hostmux party applies, written once.
//!
//! | kind              | originated by                                   | may be answered |
//! |-------------------|-------------------------------------------------|-----------------|
//! | `Data`            | clients, procs (and the host's service proc)    | yes: a reply, or one `Undeliverable` notice |
//! | `ControlRequest`  | clients, to the host's service proc             | yes: one `ControlResponse` (or one notice) |
//! | `Undeliverable`   | a host only                                     | never           |
//! | `ControlResponse` | a host only (its service proc)                  | never           |
//!
//! A notice or a response is never answered, neither with a notice nor with
//! a reply, just as ICMP never sends an error about an error: if it were,
//! two parties that each answer what they cannot handle would bounce frames
//! between them for ever. A host drops an `Undeliverable` or
//! `ControlResponse` it cannot deliver and only counts it. A link between
//! two hosts may carry every kind (a notice or response on its way back to
//! a remote sender); the [hop count](crate::Flags::hops) ends any frame
//! that circulates among hosts.

use crate::FrameKind;

impl FrameKind {
    /// Every kind, in tag order.
    pub const ALL: [FrameKind; 4] = [
        FrameKind::Data,
        FrameKind::Undeliverable,
        FrameKind::ControlRequest,
        FrameKind::ControlResponse,
    ];

    /// Whether a frame of this kind may be answered: with a reply by its
    /// receiver, or with an `Undeliverable` notice by a host that cannot
    /// deliver it. True for `Data` and `ControlRequest`; false for
    /// `Undeliverable` and `ControlResponse`, which are themselves answers:
    /// a notice or a response is never answered, as ICMP never errors about
    /// an error, so no two parties can answer each other for ever.
    ///
    /// ```
    /// use hostmux_wire::FrameKind;
    ///
    /// assert!(FrameKind::Data.may_be_answered());
    /// assert!(!FrameKind::Undeliverable.may_be_answered());
    /// ```
    #[inline]
    pub const fn may_be_answered(self) -> bool {
        match self {
            FrameKind::Data | FrameKind::ControlRequest => true,
            FrameKind::Undeliverable | FrameKind::ControlResponse => false,
        }
    }

    /// Whether only a host may originate frames of this kind: true for
    /// `Undeliverable` and `ControlResponse`. A host refuses them from a
    /// client or a proc (it may relay them between hosts over a link, where
    /// another host originated them).
    ///
    /// ```
    /// use hostmux_wire::FrameKind;
    ///
    /// assert!(FrameKind::ControlResponse.host_only());
    /// assert!(!FrameKind::ControlRequest.host_only());
    /// ```
    #[inline]
    pub const fn host_only(self) -> bool {
        match self {
            FrameKind::Undeliverable | FrameKind::ControlResponse => true,
            FrameKind::Data | FrameKind::ControlRequest => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::FrameKind;

    #[test]
    fn requests_may_be_answered_and_answers_never_are() {
        let answerable: Vec<_> = FrameKind::ALL
            .into_iter()
            .filter(|kind| kind.may_be_answered())
            .collect();
        assert_eq!(answerable, [FrameKind::Data, FrameKind::ControlRequest]);
    }

    #[test]
    fn only_hosts_originate_notices_and_responses() {
        let host_only: Vec<_> = FrameKind::ALL
            .into_iter()
            .filter(|kind| kind.host_only())
            .collect();
        assert_eq!(
            host_only,
            [FrameKind::Undeliverable, FrameKind::ControlResponse]
        );
    }

    #[test]
    fn what_only_a_host_originates_is_never_answered() {
        // The no-loop argument: everything a host originates on its own
        // initiative is an answer, and answers end there.
        for kind in FrameKind::ALL {
            assert_eq!(kind.host_only(), !kind.may_be_answered(), "{kind:?}");
        }
    }

    #[test]
    fn all_is_in_tag_order() {
        for (tag, kind) in FrameKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, tag);
        }
    }
}
