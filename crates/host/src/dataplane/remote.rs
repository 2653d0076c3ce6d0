//! Links to other hosts: frames whose destination address is another host
//! are forwarded over a connection this host dials on first use and caches.
//!
//! **Dial policy.** The host dials only its configured peers
//! ([`HostConfig::peers`]). The destination address of every frame for
//! another host is checked against that list before anything else: a frame
//! for any other address is answered `NotAPeer` at once and no connection is
//! opened. A dial is asked for with a [`PeerAddr`], which only this module
//! makes and only from the configured list, so the hello carrying the host's
//! token (sent by the dialler, `crate::io::dial`) cannot go anywhere else,
//! whatever address a client, a proc or a remote sender names. Notices to
//! another host's procs go the same way, so they too reach peers only.
//!
//! The link is a connection slot that is not in the routing table, with a
//! [`LinkFlow`] (sequence numbers, acknowledgements, window, heartbeats:
//! `super::link`). While it connects, frames queue up to the window; a
//! full window holds their sources back, then `Overloaded`. Frames this
//! host's clients and procs send to a peer are kept in that peer's ledger
//! (`super::ledger`) until answered: when a link with the peer fails,
//! each is answered once here (`LinkFailed`, or `HostUnreachable` /
//! `PeerRefused` for a link that never came up) and a late answer is
//! dropped. A failed dial backs off; meanwhile frames for that peer are
//! answered at once with the dial's reason. Forwarded frames carry this host's primary
//! address (`crate::identity`) in their sender, so the far side can route
//! replies back (by dialling us, which it does only if this host is one of
//! its peers).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hostmux_wire::{
    encode_frame_to_vec, encoded_len, validate_addr, Addr, AddrKind, Flags, FrameDecoder,
    FrameHeader, FrameKind, Limits, ProcName, Sender, UndeliverableReason,
};

use super::ledger::{Arrival, Awaited, LocalSender, PeerLedger};
use super::link::LinkFlow;
use super::notices::{notice_header, notice_payload};
use super::rules::{self, Party};
use super::write::Source;
use super::{
    mark_dirty, notice_into_ring, push_notice, slot_of, slot_of_conn, ConnKey, ConnSlot, Dataplane,
    Event, Outcome, Peer,
};
use crate::config::HostConfig;

/// Why a link ended when the far host closed it cleanly (end of stream).
pub(crate) const CLOSED_BY_PEER: &str = "the other host closed the link";

/// Most other hosts one host keeps links to (bounds memory whatever the
/// configuration says).
const MAX_REMOTES: usize = 1024;

/// Most refused addresses logged one by one (each once); past that, one
/// line says that further ones are only counted. Bounds both the log and
/// the memory a sender naming ever new addresses can cost.
const MAX_REFUSED_LOGGED: usize = 256;

/// The address of one of this host's configured peers: the only kind of
/// address the host dials, so the only place its hello (and token) goes.
/// Made only in this module, from [`HostConfig::peers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerAddr(Addr);

impl PeerAddr {
    /// The peer's address as configured.
    pub(crate) fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// The configured peer that `dest` (a frame's destination address) names,
/// in its configured spelling or an equivalent one. Only TCP peers count
/// (links are TCP). Allocates nothing.
pub(super) fn configured_peer<'c>(peers: &'c [Addr], dest: &str) -> Option<&'c Addr> {
    configured_peer_index(peers, dest).map(|index| &peers[index])
}

/// Whether `text` is another spelling of the TCP address `peer`: the same
/// port, and the same IP address (`[::1]` and `[0:0::1]`, an IPv4 address
/// and its IPv4-mapped IPv6 form) or the same DNS name in any case. Any
/// other difference (`host` and `host.`, `127.1`) is a different address:
/// refusing a spelling is safe, dialling one is not. Allocates nothing.
pub(crate) fn same_endpoint(peer: &Addr, text: &str) -> bool {
    let AddrKind::Tcp { host, port } = peer.kind() else {
        return false;
    };
    if validate_addr(text).is_err() {
        return false;
    }
    let Some((other_host, other_port)) = text
        .strip_prefix("tcp:")
        .and_then(|rest| rest.rsplit_once(':'))
    else {
        return false;
    };
    let other_host = other_host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(other_host);
    if other_port.parse() != Ok(port) {
        return false;
    }
    match (host.parse::<IpAddr>(), other_host.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a.to_canonical() == b.to_canonical(),
        (Err(_), Err(_)) => host.eq_ignore_ascii_case(other_host),
        _ => false,
    }
}

/// The links to other hosts, by their peer's configured address; per
/// configured peer, its ledger of frames awaiting answers and its dial
/// state; and the refused addresses already logged.
#[derive(Default)]
pub(crate) struct Remotes {
    by_addr: HashMap<Box<str>, ConnKey>,
    /// By index in `HostConfig::peers`.
    peers: Vec<PeerState>,
    refused_logged: HashSet<Box<str>>,
    refused_logging_stopped: bool,
}

/// One configured peer's state.
#[derive(Default)]
pub(crate) struct PeerState {
    /// Frames this host's senders sent there that await an answer.
    pub(super) ledger: Option<Box<PeerLedger>>,
    /// Dials failed since the last link came up: until when frames are
    /// answered at once instead of dialling, and with which reason.
    down: Option<Down>,
    /// A link to it was up and has not failed since.
    pub(super) up: bool,
    /// The link it dialled to this host (its frames, and its answers to
    /// ours, come that way), once known.
    pub(super) accepted: Option<ConnKey>,
    /// Counters for the stats.
    pub(super) dials: u64,
    pub(super) dial_failures: u64,
    pub(super) link_failures: u64,
    pub(super) answered_here: u64,
    /// Heartbeat round trips on the links this host dialled to it.
    pub(super) round_trips: crate::stats::LatencyHistogram,
}

impl PeerState {
    /// Why its dials fail, if they do.
    pub(super) fn down_reason(&self) -> Option<UndeliverableReason> {
        self.down.map(|d| d.reason)
    }
}

#[derive(Debug, Clone, Copy)]
struct Down {
    until: Instant,
    reason: UndeliverableReason,
    failures: u32,
}

impl Remotes {
    pub(super) fn forget(&mut self, addr: &str, key: ConnKey) {
        if self.by_addr.get(addr) == Some(&key) {
            self.by_addr.remove(addr);
        }
    }

    /// The state of configured peer `index` (made on first use).
    pub(super) fn peer_mut(&mut self, index: usize) -> &mut PeerState {
        if self.peers.len() <= index {
            self.peers.resize_with(index + 1, PeerState::default);
        }
        &mut self.peers[index]
    }

    /// Whether peer `index`'s ledger awaits no answer and holds no
    /// tombstone (its frames then need no ledger check).
    #[inline]
    pub(super) fn ledger_is_quiet(&self, index: usize) -> bool {
        self.peers
            .get(index)
            .and_then(|state| state.ledger.as_ref())
            .is_none_or(|ledger| ledger.is_quiet())
    }

    /// Configured peers' states, by index (for the stats).
    pub(super) fn peer_states(&self) -> &[PeerState] {
        &self.peers
    }

    /// A dial of (or the link to) peer `addr` failed for `reason`:
    /// `was_up` if its hello had been acknowledged. A broken link is
    /// redialled on the next frame; a failed dial backs off (see
    /// [`HostConfig::link_backoff_min`]). Logs once per change of state.
    pub(super) fn dial_failed(
        &mut self,
        addr: &str,
        reason: UndeliverableReason,
        detail: &str,
        was_up: bool,
        now: Instant,
        cfg: &HostConfig,
    ) {
        let closed_cleanly = detail == CLOSED_BY_PEER;
        let Some(index) = configured_peer_index(&cfg.peers, addr) else {
            return;
        };
        let state = self.peer_mut(index);
        if was_up {
            state.link_failures += 1;
            state.up = false;
            if closed_cleanly {
                // A peer shutting down closes its links: worth a line, not
                // a warning.
                tracing::info!(peer = addr, why = detail, "link to peer closed; frames awaiting answers through it are answered LinkFailed, the next frame redials");
            } else {
                tracing::warn!(peer = addr, why = detail, "link to peer down; frames awaiting answers through it are answered LinkFailed, the next frame redials");
            }
            return;
        }
        state.dial_failures += 1;
        let failures = state.down.map_or(0, |d| d.failures) + 1;
        let backoff = backoff(addr, failures, cfg.link_backoff_min, cfg.link_backoff_max);
        let changed = state.down.is_none_or(|d| d.reason != reason);
        state.down = Some(Down {
            until: now + backoff,
            reason,
            failures,
        });
        if changed {
            tracing::warn!(peer = addr, %reason, why = detail, retry_in = ?backoff, "cannot link to peer; frames for it are answered with that reason until a dial succeeds (redialled with backoff on the next frame; further failures with the same reason are not logged)");
        } else {
            tracing::debug!(peer = addr, %reason, why = detail, failures, retry_in = ?backoff, "dial of peer failed again");
        }
    }

    /// Refuses a frame for `addr`, which is not a peer: logs the address
    /// at WARN the first time (up to [`MAX_REFUSED_LOGGED`] addresses).
    fn refuse_stranger(&mut self, addr: &str) -> Forward {
        if !self.refused_logged.contains(addr) {
            if self.refused_logged.len() < MAX_REFUSED_LOGGED {
                self.refused_logged.insert(addr.into());
                // Debug formatting: the text came from a frame (a Unix
                // path may hold control characters).
                tracing::warn!(
                    addr = ?addr,
                    "refused frames for another host that is not a peer: no connection opened, \
                     senders answered NotAPeer (logged once per address); \
                     to let this host dial it, serve with --peer ADDR"
                );
            } else if !self.refused_logging_stopped {
                self.refused_logging_stopped = true;
                tracing::warn!(
                    logged = MAX_REFUSED_LOGGED,
                    "frames named too many different non-peer addresses; further ones are \
                     refused NotAPeer and counted without being logged"
                );
            }
        }
        Forward::Refused(UndeliverableReason::NotAPeer)
    }
}

/// The wait before dial number `failures + 1` of `addr`: the minimum
/// doubled per failure, capped, then spread within ±25 % by a hash of the
/// address and the count (deterministic, so a simulation replays, yet
/// different hosts and attempts do not dial in step).
fn backoff(addr: &str, failures: u32, min: Duration, max: Duration) -> Duration {
    let doubled = min.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let base = doubled.min(max);
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ u64::from(failures);
    for byte in addr.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    // A factor in [0.75, 1.25).
    let factor = 0.75 + (hash % 1000) as f64 / 2000.0;
    base.mul_f64(factor)
}

/// The index in `peers` of the configured peer that `dest` names (see
/// [`configured_peer`]).
pub(super) fn configured_peer_index(peers: &[Addr], dest: &str) -> Option<usize> {
    // A validated address is TCP exactly when it says so (no parse needed).
    let tcp = |peer: &Addr| peer.as_str().starts_with("tcp:");
    // The exact text first (a compare; the kind check parses).
    peers
        .iter()
        .position(|peer| peer.as_str() == dest && tcp(peer))
        .or_else(|| {
            peers
                .iter()
                .position(|peer| tcp(peer) && same_endpoint(peer, dest))
        })
}

/// What became of a frame handed to [`forward_header`].
enum Forward {
    /// Queued on the link to configured peer `peer` as frame `seq`.
    Queued {
        link: ConnKey,
        seq: u64,
        peer: usize,
    },
    /// The link's window is full.
    Full(ConnKey),
    /// Answered at once with this reason.
    Refused(UndeliverableReason),
}

/// Queues a frame (`header`, `payload`) on the link to its destination
/// host, opening the link on first use if that host is a configured peer
/// (see [`Dataplane::forward`]).
#[allow(clippy::too_many_arguments)]
fn forward_header<'a>(
    conns: &mut Vec<Option<ConnSlot>>,
    remotes: &mut Remotes,
    events: &mut VecDeque<Event>,
    generation: &mut u32,
    own_addr: &'a str,
    limits: &Limits,
    cfg: &HostConfig,
    header: &mut FrameHeader<'a>,
    payload: &[u8],
    now: Instant,
) -> Forward {
    let addr = header.dest_addr;
    let Some(peer_index) = configured_peer_index(&cfg.peers, addr) else {
        return remotes.refuse_stranger(addr);
    };
    let peer = &cfg.peers[peer_index];
    let key = match remotes.by_addr.get(peer.as_str()) {
        Some(&key) => key,
        None => {
            // A peer whose dials fail is answered at once until its
            // backoff ends; then the next frame dials again.
            let state = remotes.peer_mut(peer_index);
            if let Some(down) = state.down {
                if now < down.until {
                    return Forward::Refused(down.reason);
                }
            }
            state.dials += 1;
            let peer = PeerAddr(peer.clone());
            match open_link(conns, remotes, events, generation, peer, peer_index) {
                Some(key) => key,
                None => return Forward::Refused(UndeliverableReason::Overloaded),
            }
        }
    };
    let Some(conn) = slot_of_conn(conns, key) else {
        return Forward::Refused(UndeliverableReason::HostUnreachable);
    };
    header.sender = match header.sender {
        Sender::Proc { addr: "", name } => Sender::Proc {
            addr: own_addr,
            name,
        },
        // A client of ours travels as a "proc" of this host, marked as a
        // client so that answers to it carry `TO_CLIENT` (docs/wire.md).
        Sender::Client { name } => {
            header.flags = header.flags.with(Flags::FROM_CLIENT);
            Sender::Proc {
                addr: own_addr,
                name,
            }
        }
        other => other,
    };
    // One more link crossed (the far host refuses it past its limit).
    header.flags = header
        .flags
        .with_hops(header.flags.hops().saturating_add(1));
    let len = encoded_len(header, payload.len());
    let Some(flow) = conn.flow.as_mut() else {
        return Forward::Refused(UndeliverableReason::LinkFailed);
    };
    if !flow.has_room(len, cfg.link_window_bytes, cfg.link_window_frames) {
        return Forward::Full(key);
    }
    if encode_frame_to_vec(&mut conn.outbox, header, payload, limits).is_err() {
        return Forward::Refused(UndeliverableReason::Malformed);
    }
    let seq = flow.count_sent(len);
    conn.stats.frames_out += 1;
    conn.stats.bytes_out += len as u64;
    conn.stats.outbox_high_water = conn.stats.outbox_high_water.max(conn.outbox.len() as u64);
    Forward::Queued {
        link: key,
        seq,
        peer: peer_index,
    }
}

/// Makes the connection slot of a link to `peer` (connecting, frames queue
/// on it) and asks the I/O shell to dial it. `None`: too many links.
fn open_link(
    conns: &mut Vec<Option<ConnSlot>>,
    remotes: &mut Remotes,
    events: &mut VecDeque<Event>,
    generation: &mut u32,
    peer: PeerAddr,
    peer_index: usize,
) -> Option<ConnKey> {
    if remotes.by_addr.len() >= MAX_REMOTES {
        return None;
    }
    *generation = generation.wrapping_add(1);
    let index = conns
        .iter()
        .position(Option::is_none)
        .unwrap_or(conns.len());
    let key = ConnKey {
        index: index as u32,
        generation: *generation,
    };
    let mut slot = ConnSlot::new(
        *generation,
        ProcName::new("peer").expect("a valid name"),
        peer.as_str().to_owned(),
        Some(peer.as_str().into()),
    );
    slot.flow = Some(LinkFlow::new(true, Some(peer_index)));
    if index == conns.len() {
        conns.push(Some(slot));
    } else {
        conns[index] = Some(slot);
    }
    remotes.by_addr.insert(peer.as_str().into(), key);
    events.push_back(Event::Dial { link: key, peer });
    Some(key)
}

impl Dataplane {
    /// Whether `addr` (a frame's destination address) means this host:
    /// empty, the primary address's exact text (one compare, the common
    /// case), or any alias in any spelling (`crate::identity`).
    pub(crate) fn is_local_addr(&self, addr: &str) -> bool {
        if addr.is_empty() || addr == &*self.own_addr {
            return true;
        }
        // A configured peer's address as configured, unless it is an alias
        // (found once, when the data plane was made), is another host: a
        // compare per peer, where the alias check parses the text.
        if self.foreign_peers.iter().any(|peer| &**peer == addr) {
            return false;
        }
        self.identity.is_alias(addr)
    }

    /// Who a frame to `dest_name` at `dest_addr` goes to, as the answers a
    /// client awaits are keyed: the named proc or (`to_client`) client on
    /// this host, or whatever lives on the other host (its answers carry
    /// that host's address).
    pub(super) fn peer_of(&self, dest_name: &str, dest_addr: &str, to_client: bool) -> Peer {
        if !self.is_local_addr(dest_addr) {
            Peer::remote(dest_addr.as_bytes())
        } else if to_client {
            Peer::client(dest_name.as_bytes())
        } else {
            Peer::named(dest_name.as_bytes())
        }
    }

    /// The link's hello was acknowledged: its queued frames may go.
    pub(crate) fn remote_connected(&mut self, key: ConnKey) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        conn.connecting = false;
        let peer = conn.flow.as_mut().and_then(|flow| {
            flow.up = true;
            flow.peer
        });
        let addr = conn.dialled.clone();
        self.events.push_back(Event::WakeWriter(key));
        if let Some(index) = peer {
            let state = self.remotes.peer_mut(index);
            let failed_dials = state.down.take().map_or(0, |d| d.failures);
            state.up = true;
            tracing::info!(
                peer = addr.as_deref().unwrap_or(""),
                failed_dials,
                "link to peer up"
            );
        }
    }

    /// Sends a notice about `original`, from another host's proc, back to
    /// it over a link (the notice is itself never answered: if it cannot go,
    /// it is dropped). Like every forward, it goes only to a configured
    /// peer: a frame that claims a sender on any other host gets no notice
    /// and makes the host dial nobody.
    pub(super) fn notify_remote_sender(
        &mut self,
        original: &FrameHeader<'_>,
        reason: UndeliverableReason,
    ) {
        let payload = notice_payload(original, reason);
        // Cold path (a proc died or a link failed): the name is cloned so the
        // header does not borrow the data plane it is forwarded through. The
        // forward names this host in the sender.
        let service = self.service_name.clone();
        let header = notice_header(original, service.as_str(), "");
        let now = self.last_now;
        let _ = self.forward(header, &payload, None, now);
    }

    /// Queues a frame (`header`, `payload`) on the link to its destination
    /// host, opening the link on first use; its sender is rewritten to name
    /// this host and its hop count goes up by one. A destination that is
    /// not a configured peer is `Returned(NotAPeer)`, with no dial; a peer
    /// whose dials fail is answered with the dial's reason until its
    /// backoff ends. An anonymous frame is `Returned(Malformed)`: no other
    /// host could answer it. A frame from this host's client or proc that
    /// may be answered is recorded in the peer's ledger until its answer
    /// comes. A
    /// full link window holds `source` back (`None`: a notice, which is
    /// dropped instead).
    pub(super) fn forward(
        &mut self,
        header: FrameHeader<'_>,
        payload: &[u8],
        source: Option<Source>,
        now: Instant,
    ) -> Outcome {
        // An anonymous frame has no return address another host could use:
        // the far host would refuse it and could tell nobody. It is refused
        // here, where the notice can still go back on its connection.
        if matches!(header.sender, Sender::Anonymous) {
            return Outcome::Returned(UndeliverableReason::Malformed);
        }
        let message_id = header.message_id;
        let answerable = rules::may_be_answered(header.kind);
        let went_to = Peer::remote(header.dest_addr.as_bytes());
        let sender_name = match header.sender {
            Sender::Client { name } => Some(Peer::client(name.as_bytes())),
            Sender::Proc { addr: "", name } => Some(Peer::named(name.as_bytes())),
            _ => None,
        };
        let local = match source {
            Some(Source::Conn {
                key,
                party: Party::Client,
                ..
            }) => Some(LocalSender::Client(key)),
            Some(Source::Proc { key, .. }) => Some(LocalSender::Proc(key)),
            _ => None,
        };
        let Dataplane {
            conns,
            remotes,
            events,
            generation,
            own_addr,
            limits,
            cfg,
            ..
        } = self;
        let kind = header.kind;
        let mut header = header;
        let forwarded = forward_header(
            conns,
            remotes,
            events,
            generation,
            own_addr,
            limits,
            cfg,
            &mut header,
            payload,
            now,
        );
        match forwarded {
            Forward::Queued { link, seq, peer } => {
                // Repeats of a client's data frame may follow it (see
                // `forward_lane`).
                if let (Some(LocalSender::Client(key)), Some(sender_name), FrameKind::Data) =
                    (local, sender_name, kind)
                {
                    if let Some(conn) = slot_of_conn(conns, key) {
                        conn.forward_lane
                            .open(link, peer, went_to, sender_name, &header, limits);
                    }
                }
                match (sender_name, local) {
                    (Some(sender_name), Some(sender)) if answerable => self.await_answer(
                        peer,
                        Awaited {
                            message_id,
                            sender_name,
                            sender,
                            went_to,
                            link,
                            seq,
                        },
                    ),
                    (Some(sender_name), _) => {
                        self.answers_request_from(peer, message_id, sender_name);
                    }
                    (None, _) => {}
                }
                Outcome::Delivered
            }
            Forward::Refused(reason) => Outcome::Returned(reason),
            Forward::Full(link) => self.wait_for_link(link, source, now),
        }
    }

    /// `entry`, a frame of this host's sender just queued on a link to
    /// configured peer `peer`, awaits an answer from that host: it goes in
    /// the peer's ledger, unless it is itself an answer to a request the
    /// peer sent here (a reply), which awaits nothing.
    pub(super) fn await_answer(&mut self, peer: usize, entry: Awaited) {
        if self.answers_request_from(peer, entry.message_id, entry.sender_name) {
            return;
        }
        let ledger = self
            .remotes
            .peer_mut(peer)
            .ledger
            .get_or_insert_with(Default::default);
        let conns = &self.conns;
        ledger.record(entry, |link, seq| {
            conns
                .get(link.index as usize)
                .and_then(Option::as_ref)
                .filter(|c| c.generation == link.generation)
                .and_then(|c| c.flow.as_ref())
                // A link that is gone has answered its frames.
                .is_none_or(|flow| flow.is_acked(seq))
        });
    }

    /// Whether a frame with `message_id` from this host's `sender_name`,
    /// queued for configured peer `peer`, answers a request the peer sent
    /// here (one that peer's link awaits an answer to; now answered).
    fn answers_request_from(&mut self, peer: usize, message_id: u64, sender_name: Peer) -> bool {
        self.remotes
            .peer_mut(peer)
            .accepted
            .and_then(|key| slot_of_conn(&mut self.conns, key))
            .is_some_and(|conn| conn.answers.answer_if_tracked(message_id, sender_name))
    }

    /// `link`'s window is full: `source` waits for room (acknowledgements)
    /// like it waits for room in a ring, up to the overload wait; then,
    /// and for a notice at once, `Overloaded`.
    fn wait_for_link(&mut self, link: ConnKey, source: Option<Source>, now: Instant) -> Outcome {
        let overload_wait = self.cfg.overload_wait;
        let Some(conn) = slot_of_conn(&mut self.conns, link) else {
            return Outcome::Returned(UndeliverableReason::LinkFailed);
        };
        if let Some(flow) = conn.flow.as_mut() {
            flow.window_waits += 1;
            // The far host may be holding its acknowledgement back: ask.
            if flow.ask_for_status(now) {
                self.events.push_back(Event::WakeWriter(link));
            }
        }
        let since = *conn.full_since.get_or_insert(now);
        let waited_out = now.saturating_duration_since(since) >= overload_wait;
        match source {
            Some(Source::Conn { key, .. }) if !waited_out => {
                if let Some(flow) = conn.flow.as_mut() {
                    if !flow.reader_waiters.contains(&key) {
                        flow.reader_waiters.push(key);
                    }
                }
                Outcome::LinkFull(link, since + overload_wait)
            }
            Some(Source::Proc { key, exiting }) if !waited_out && !exiting => {
                conn.drains_waiting = true;
                self.block_drain(key, key, since);
                Outcome::Full(key, since + overload_wait)
            }
            _ => Outcome::Returned(UndeliverableReason::Overloaded),
        }
    }

    /// A frame from configured peer `peer` for this host's party named
    /// `to` with `message_id`: whether it answers a frame in that peer's
    /// ledger, or arrives after that frame was answered here (drop it).
    pub(super) fn arrive_from_peer(&mut self, peer: usize, message_id: u64, to: Peer) -> Arrival {
        match self
            .remotes
            .peers
            .get_mut(peer)
            .and_then(|state| state.ledger.as_mut())
        {
            Some(ledger) => ledger.arrive(message_id, to),
            None => Arrival::Other,
        }
    }

    /// Link `key` (to or from configured peer `peer`) is being removed:
    /// every frame awaiting an answer through it (`all`: through any link
    /// with that peer) is answered here with `reason`.
    pub(super) fn answer_awaited(
        &mut self,
        peer: usize,
        key: ConnKey,
        all: bool,
        reason: UndeliverableReason,
    ) {
        let Some(ledger) = self
            .remotes
            .peers
            .get_mut(peer)
            .and_then(|state| state.ledger.as_mut())
        else {
            return;
        };
        let mut failed = Vec::new();
        ledger.fail(key, all, |entry| failed.push(*entry));
        self.remotes.peer_mut(peer).answered_here += failed.len() as u64;
        for entry in failed {
            self.answer_locally(&entry, reason);
        }
    }

    /// Queues the notice that answers `entry` for its sender on this host.
    fn answer_locally(&mut self, entry: &Awaited, reason: UndeliverableReason) {
        let limits = self.limits;
        let service = self.service_name.clone();
        match entry.sender {
            LocalSender::Client(c) => {
                let Some(conn) = self.conn_mut(c) else {
                    return;
                };
                let name = conn.name.clone();
                let original = FrameHeader {
                    sender: Sender::Client {
                        name: name.as_str(),
                    },
                    ..FrameHeader::data(service.as_str(), entry.message_id)
                };
                push_notice(conn, &original, reason, service.as_str(), "", &limits);
                conn.answers.answer(entry.message_id, entry.went_to);
                let linger_done = conn.lingering && conn.answers.awaiting() == 0;
                self.events.push_back(Event::WakeWriter(c));
                if linger_done {
                    self.events.push_back(Event::WakeReader(c));
                }
            }
            LocalSender::Proc(p) => {
                let Dataplane { procs, dirty, .. } = self;
                let Some(slot) = slot_of(procs, p) else {
                    return;
                };
                let name = slot.name.clone();
                let original = FrameHeader {
                    sender: Sender::Proc {
                        addr: "",
                        name: name.as_str(),
                    },
                    ..FrameHeader::data(service.as_str(), entry.message_id)
                };
                notice_into_ring(slot, &original, reason, service.as_str(), &limits);
                mark_dirty(dirty, p.index, slot);
            }
        }
    }

    /// Returns every frame still queued on a link whose sender is on
    /// another host (relayed) with `reason`; this host's own senders'
    /// frames are answered from the ledger.
    pub(super) fn return_queued_forwards(&mut self, key: ConnKey, reason: UndeliverableReason) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        let queued = std::mem::take(&mut conn.outbox);
        if queued.is_empty() {
            return;
        }
        // Cold path: re-read the queued frames (one decoder over the whole
        // queue: each frame is read in place, nothing is copied per frame).
        let mut decoder = FrameDecoder::with_read_chunk(self.limits, queued.len().max(1));
        decoder.feed(&queued);
        while let Ok(Some(frame)) = decoder.next_frame() {
            let fields: FrameHeader<'_> = frame.fields();
            if !self.is_local_addr(fields.sender.addr()) {
                self.notify_sender(&fields, reason);
            }
        }
    }
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
