//! The fast lane for a client's run of frames to another host: a frame
//! whose header repeats the previous one's (every byte but message id and
//! port, as the decoder's memo tells) goes onto the same link as that one,
//! with the same rewritten header, without being routed again.
//!
//! The full path ([`Dataplane::forward`]) decides a frame's fate from its
//! header alone: the admission rules, whether its address is this host,
//! which configured peer it names, how its sender and hop count are
//! rewritten. A repeated header gets the same decisions, so the lane keeps
//! them from the last forwarded frame: the link and peer, who the answers
//! come from, and the rewritten head (a [`RepeatedHead`], patched per frame
//! instead of validated and written again). What still depends on the
//! moment is checked per frame: the link is still the same connection,
//! and its window has room; anything else (a full window, a removed link)
//! leaves the frame to the full path, with nothing done.
//!
//! Every frame taken here is counted, acknowledged and recorded in the
//! peer's ledger exactly as the full path does it: the lane changes the
//! cost, not the contract.

use hostmux_wire::{FrameHeader, Limits, RepeatedHead};

use super::answers::Peer;
use super::ledger::{Awaited, LocalSender};
use super::{slot_of_conn, ConnKey, ConnSlot, Dataplane};

/// What a client connection's last forwarded frame was decided: the way
/// repeats of its header go (see the module doc).
pub(super) struct ForwardLane {
    /// The link it went on (`None`: no lane; the full path decides).
    link: Option<ConnKey>,
    /// The configured peer at the far end (an index in `HostConfig::peers`).
    peer: usize,
    /// Who its answers come from (the far host), as the client's awaited
    /// answers key them.
    went_to: Peer,
    /// The client, as the far host's answers name it.
    sender_name: Peer,
    /// Its rewritten head.
    head: RepeatedHead,
}

impl ForwardLane {
    pub(super) fn new() -> Self {
        ForwardLane {
            link: None,
            peer: 0,
            went_to: Peer::named(b""),
            sender_name: Peer::named(b""),
            head: RepeatedHead::new(),
        }
    }

    /// Closes the lane (a frame took the full path).
    #[inline]
    pub(super) fn close(&mut self) {
        self.link = None;
    }

    /// Opens the lane for repeats of a data frame just queued on `link` to
    /// configured peer `peer` with the rewritten `header`. Reuses the head's
    /// buffer (allocates only for a longer header than ever before).
    pub(super) fn open(
        &mut self,
        link: ConnKey,
        peer: usize,
        went_to: Peer,
        sender_name: Peer,
        header: &FrameHeader<'_>,
        limits: &Limits,
    ) {
        self.link = None;
        if self.head.set(header, limits).is_ok() {
            self.link = Some(link);
            self.peer = peer;
            self.went_to = went_to;
            self.sender_name = sender_name;
        }
    }
}

/// The slots of two different connections, both live.
fn two_conns(
    conns: &mut [Option<ConnSlot>],
    a: ConnKey,
    b: ConnKey,
) -> Option<(&mut ConnSlot, &mut ConnSlot)> {
    let (i, j) = (a.index as usize, b.index as usize);
    if i == j || i.max(j) >= conns.len() {
        return None;
    }
    let (slot_a, slot_b) = if i < j {
        let (left, right) = conns.split_at_mut(j);
        (&mut left[i], &mut right[0])
    } else {
        let (left, right) = conns.split_at_mut(i);
        (&mut right[0], &mut left[j])
    };
    let slot_a = slot_a.as_mut().filter(|s| s.generation == a.generation)?;
    let slot_b = slot_b.as_mut().filter(|s| s.generation == b.generation)?;
    Some((slot_a, slot_b))
}

impl Dataplane {
    /// Forwards `bytes` (a whole frame from client `key` whose header
    /// repeats its previous frame's) the way that frame went, if the lane
    /// is open, the link is the same and its window has room. False:
    /// nothing done, nothing counted; the full path decides.
    #[inline(always)]
    pub(super) fn forward_repeat(&mut self, key: ConnKey, bytes: &[u8]) -> bool {
        let limits = self.limits;
        let window_bytes = self.cfg.link_window_bytes;
        let window_frames = self.cfg.link_window_frames;
        let Some(lane) = slot_of_conn(&mut self.conns, key).map(|c| &c.forward_lane) else {
            return false;
        };
        let Some(link) = lane.link else {
            return false;
        };
        let (peer, went_to, sender_name) = (lane.peer, lane.went_to, lane.sender_name);
        let Some((conn, link_conn)) = two_conns(&mut self.conns, key, link) else {
            return false;
        };
        // A connection that is itself a link has its own frames counted
        // and acknowledged: the full path does that.
        if conn.flow.is_some() {
            return false;
        }
        let Some(flow) = link_conn.flow.as_mut() else {
            return false;
        };
        let Some(message_id) = hostmux_wire::frame_message_id(bytes) else {
            return false;
        };
        let Ok(prefix) = hostmux_wire::FramePrefix::parse(bytes, &limits) else {
            return false;
        };
        let len = conn.forward_lane.head.encoded_len(prefix.payload_len());
        if !flow.has_room(len, window_bytes, window_frames) {
            return false;
        }
        if conn
            .forward_lane
            .head
            .reencode_to_vec(&mut link_conn.outbox, bytes, &limits)
            .is_err()
        {
            return false;
        }
        let seq = flow.count_sent(len);
        link_conn.stats.frames_out += 1;
        link_conn.stats.bytes_out += len as u64;
        link_conn.stats.outbox_high_water = link_conn
            .stats
            .outbox_high_water
            .max(link_conn.outbox.len() as u64);
        conn.stats.accepted += 1;
        conn.stats.bytes_in += bytes.len() as u64;
        conn.stats.delivered += 1;
        conn.answers.expect(message_id, went_to);
        self.await_answer(
            peer,
            Awaited {
                message_id,
                sender_name,
                sender: LocalSender::Client(key),
                went_to,
                link,
                seq,
            },
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use hostmux_wire::{
        encode_frame_to_vec, FrameDecoder, FrameHeader, Limits, Sender, UndeliverableReason,
    };

    use super::*;
    use crate::config::HostConfig;
    use crate::dataplane::rig::Rig;
    use crate::dataplane::{Blocker, Delivery, Event, Outbox};

    const PEER: &str = "tcp:10.0.0.2:7000";

    fn config(window_frames: u64) -> HostConfig {
        HostConfig {
            peers: vec![PEER.parse().unwrap()],
            link_window_frames: window_frames,
            ..HostConfig::default()
        }
    }

    /// A client's run to `echo` at the peer: ids, ports and payload sizes
    /// vary (what a repeat may change), with one frame to another proc in
    /// the middle (the lane closes and opens again).
    fn run() -> Vec<u8> {
        run_frames(0..200).concat()
    }

    fn run_frames(ids: std::ops::Range<u64>) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for id in ids {
            let mut bytes = Vec::new();
            let dest = if id == 100 { "other" } else { "echo" };
            let header = FrameHeader {
                dest_addr: PEER,
                dest_port: (id % 3) as u32,
                sender: Sender::Client { name: "c" },
                ..FrameHeader::data(dest, id)
            };
            let payload = vec![id as u8; (id as usize * 7) % 90];
            encode_frame_to_vec(&mut bytes, &header, &payload, &Limits::default()).unwrap();
            frames.push(bytes);
        }
        frames
    }

    /// Feeds `bytes` through one decoder the way the I/O thread does
    /// (repeats first, then the full path); returns the frames the lanes
    /// took and the first blocked delivery, if any.
    fn read_like_the_shell(
        dp: &mut Dataplane,
        conn: ConnKey,
        bytes: &[u8],
    ) -> (usize, Option<Delivery>) {
        let mut decoder = FrameDecoder::new(Limits::default());
        decoder.feed(bytes);
        let mut repeats = 0;
        loop {
            repeats += dp.deliver_repeats(conn, &mut decoder);
            match decoder.next_frame().unwrap() {
                Some(frame) => match dp.handle_conn_frame(conn, &frame, true, None, Instant::now())
                {
                    Delivery::Done => {}
                    blocked => return (repeats, Some(blocked)),
                },
                None => return (repeats, None),
            }
        }
    }

    /// Each frame on its own decoder: every one takes the full path.
    fn read_one_by_one(dp: &mut Dataplane, conn: ConnKey, bytes: &[u8]) {
        let mut decoder = FrameDecoder::new(Limits::default());
        decoder.feed(bytes);
        while let Some(frame) = decoder.next_frame().unwrap() {
            let mut alone = FrameDecoder::new(Limits::default());
            alone.feed(frame.as_bytes());
            let frame = alone.next_frame().unwrap().unwrap();
            assert!(!frame.repeats_previous_header());
            let delivery = dp.handle_conn_frame(conn, &frame, true, None, Instant::now());
            assert_eq!(delivery, Delivery::Done);
        }
    }

    fn link_of(dp: &mut Dataplane) -> ConnKey {
        let mut link = None;
        while let Some(event) = dp.poll_event() {
            if let Event::Dial { link: key, .. } = event {
                link = Some(key);
            }
        }
        link.expect("one dial")
    }

    /// What the host did with the client's frames: the link's queue, and
    /// the counters and tables that answers and acknowledgements use.
    fn outcome(dp: &mut Dataplane, conn: ConnKey, link: ConnKey) -> (Vec<u8>, u64, u64, u64, u64) {
        // (A link that is still dialling keeps its queue to itself.)
        let queued = dp.conn_mut(link).unwrap().outbox.clone();
        let awaited = dp.remotes.peer_states()[0]
            .ledger
            .as_ref()
            .map_or(0, |ledger| ledger.awaited()) as u64;
        let sent = dp.conn_mut(link).unwrap().flow.as_ref().unwrap().sent;
        let client = dp.conn_mut(conn).unwrap();
        let counted = client.stats.accepted * 1_000_000 + client.stats.delivered;
        (queued, counted, client.answers.awaiting(), awaited, sent)
    }

    #[test]
    fn a_run_through_the_lane_is_forwarded_exactly_as_the_full_path_forwards_it() {
        let bytes = run();
        let mut fast = Rig::new(config(32_768));
        let conn = fast.add_conn("c");
        let (repeats, blocked) = read_like_the_shell(&mut fast.dp, conn, &bytes);
        assert_eq!(blocked, None);
        // Everything but the first frame of each of the three runs.
        assert_eq!(repeats, 197, "frames that took the lane");
        let link = link_of(&mut fast.dp);
        let fast_outcome = outcome(&mut fast.dp, conn, link);

        let mut slow = Rig::new(config(32_768));
        let conn = slow.add_conn("c");
        read_one_by_one(&mut slow.dp, conn, &bytes);
        let link = link_of(&mut slow.dp);
        let slow_outcome = outcome(&mut slow.dp, conn, link);

        assert_eq!(fast_outcome.1, 200 * 1_000_000 + 200);
        assert_eq!(fast_outcome.2, 200, "answers the client awaits");
        assert_eq!(fast_outcome.3, 200, "frames in the peer's ledger");
        assert_eq!(fast_outcome.4, 200, "frames counted on the link");
        assert_eq!(fast_outcome, slow_outcome);
        // And what went on the link names this host as the sender.
        let mut decoder = FrameDecoder::new(Limits::default());
        decoder.feed(&fast_outcome.0);
        let mut ids = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            assert_eq!(frame.sender().addr(), "tcp:127.0.0.1:9");
            assert_eq!(frame.hops(), 1);
            ids.push(frame.message_id());
        }
        assert_eq!(ids, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_window_leaves_the_frame_to_the_full_path_which_holds_the_client() {
        let mut rig = Rig::new(config(50));
        let conn = rig.add_conn("c");
        let (repeats, blocked) = read_like_the_shell(&mut rig.dp, conn, &run());
        // 50 frames fit; the 51st is a repeat the lane declines, and the
        // full path holds the client on the link.
        assert_eq!(repeats, 49);
        let link = link_of(&mut rig.dp);
        assert!(
            matches!(blocked, Some(Delivery::Blocked(Blocker::Link(l), _)) if l == link),
            "{blocked:?}"
        );
        assert_eq!(rig.dp.conn_mut(conn).unwrap().stats.accepted, 51);
    }

    #[test]
    fn after_the_link_fails_repeats_are_answered_once_and_never_queued_on_it() {
        let mut rig = Rig::new(config(32_768));
        let conn = rig.add_conn("c");
        let (_, blocked) = read_like_the_shell(&mut rig.dp, conn, &run_frames(0..50).concat());
        assert_eq!(blocked, None);
        let link = link_of(&mut rig.dp);
        let now = Instant::now();
        rig.dp
            .link_failed(link, UndeliverableReason::HostUnreachable, "test", now);
        rig.dp.remove_conn(link);
        // The rest of the run: the lane's link is gone, so each frame takes
        // the full path, which answers it (the peer is backing off).
        let (repeats, blocked) =
            read_like_the_shell(&mut rig.dp, conn, &run_frames(50..200).concat());
        assert_eq!((repeats, blocked), (0, None));
        let mut buf = Vec::new();
        assert_eq!(
            rig.dp.take_outbox(conn, &mut buf, Instant::now()),
            Outbox::Bytes
        );
        let mut decoder = FrameDecoder::new(Limits::default());
        decoder.feed(&buf);
        let mut ids = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            ids.push(frame.message_id());
        }
        ids.sort_unstable();
        ids.dedup();
        let sent = rig.dp.conn_mut(conn).unwrap().stats.accepted;
        assert_eq!(sent, 200);
        assert_eq!(ids.len(), 200, "every frame answered once");
    }

    /// `count` anonymous data frames to `dest` at `addr`, back to back.
    fn anonymous_run(dest: &str, addr: &str, count: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        for id in 1..=count {
            let header = FrameHeader {
                dest_addr: addr,
                sender: Sender::Anonymous,
                ..FrameHeader::data(dest, id)
            };
            encode_frame_to_vec(&mut bytes, &header, b"x", &Limits::default()).unwrap();
        }
        bytes
    }

    #[test]
    fn anonymous_frames_for_another_host_are_refused_here_without_a_dial() {
        let mut rig = Rig::new(config(32_768));
        let conn = rig.add_conn("c");
        let (_, blocked) = read_like_the_shell(&mut rig.dp, conn, &anonymous_run("echo", PEER, 5));
        assert_eq!(blocked, None);
        assert!(
            !std::iter::from_fn(|| rig.dp.poll_event()).any(|e| matches!(e, Event::Dial { .. })),
            "no dial for frames nobody could answer"
        );
        let mut buf = Vec::new();
        assert_eq!(
            rig.dp.take_outbox(conn, &mut buf, Instant::now()),
            Outbox::Bytes
        );
        let mut decoder = FrameDecoder::new(Limits::default());
        decoder.feed(&buf);
        let mut answered = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            let notice = hostmux_wire::Undeliverable::decode(frame.payload()).unwrap();
            answered.push((frame.message_id(), notice.reason));
        }
        assert_eq!(
            answered,
            (1..=5)
                .map(|id| (id, UndeliverableReason::Malformed))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn delivered_anonymous_frames_await_no_answer_on_either_path() {
        let mut rig = Rig::new(HostConfig::default());
        let _echo = rig.add_proc("echo", 1 << 16, 1 << 16);
        let conn = rig.add_conn("c");
        // The first frame takes the full path, the rest the ring's lane.
        let (repeats, blocked) =
            read_like_the_shell(&mut rig.dp, conn, &anonymous_run("echo", "", 10));
        assert_eq!((repeats, blocked), (9, None));
        let client = rig.dp.conn_mut(conn).unwrap();
        assert_eq!(client.stats.delivered, 10);
        assert_eq!(client.answers.awaiting(), 0);
        // So a half-close ends at once: nothing to linger for.
        assert!(!rig.dp.half_close(conn));
    }
}
