//! Links to other hosts: frames whose destination address is another host
//! are forwarded over a connection this host dials on first use and caches.
//!
//! The link is an ordinary connection slot (bounded queue, counters) that is
//! not in the routing table. While it connects, frames queue (up to the
//! client queue bound, then `Overloaded`); if the dial or the hello fails,
//! or the link later closes, every frame still queued is returned to its
//! sender as `NoSuchProc`. Forwarded frames carry this host's address in
//! their sender, so the far side can route replies back (by dialling us).

use std::collections::{HashMap, VecDeque};

use hostmux_wire::{
    encode_frame_to_vec, encoded_len, Addr, AddrKind, Flags, FrameDecoder, FrameHeader, Limits,
    ProcName, Sender, UndeliverableReason,
};

use super::write::{notice_header, notice_payload};
use super::{slot_of_conn, AwaitedAnswers, ConnKey, ConnSlot, Dataplane, Event, Outcome, Peer};
use crate::config::HostConfig;
use crate::stats::ConnStats;

/// Most other hosts one host keeps links to (bounds memory whatever
/// addresses frames name).
const MAX_REMOTES: usize = 1024;

/// The links to other hosts, by address text.
#[derive(Default)]
pub(crate) struct Remotes {
    by_addr: HashMap<Box<str>, ConnKey>,
}

impl Remotes {
    pub(super) fn forget(&mut self, addr: &str, key: ConnKey) {
        if self.by_addr.get(addr) == Some(&key) {
            self.by_addr.remove(addr);
        }
    }
}

/// Queues a frame (`header`, `payload`) on the link to its destination
/// host, opening the link on first use (see [`Dataplane::forward`]).
#[allow(clippy::too_many_arguments)]
fn forward_header<'a>(
    conns: &mut Vec<Option<ConnSlot>>,
    remotes: &mut Remotes,
    events: &mut VecDeque<Event>,
    generation: &mut u32,
    own_addr: &'a str,
    limits: &Limits,
    cfg: &HostConfig,
    mut header: FrameHeader<'a>,
    payload: &[u8],
) -> Outcome {
    let addr = header.dest_addr;
    let key = match remotes.by_addr.get(addr) {
        Some(&key) => key,
        None => {
            // Only TCP addresses name other hosts.
            let is_tcp = addr
                .parse::<Addr>()
                .is_ok_and(|a| matches!(a.kind(), AddrKind::Tcp { .. }));
            if !is_tcp {
                return Outcome::Returned(UndeliverableReason::NoSuchProc);
            }
            if remotes.by_addr.len() >= MAX_REMOTES {
                return Outcome::Returned(UndeliverableReason::Overloaded);
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
            let slot = ConnSlot {
                generation: *generation,
                name: ProcName::new("peer").expect("a valid name"),
                outbox: Vec::with_capacity(64 * 1024),
                stats: ConnStats {
                    name: addr.to_owned(),
                    ..ConnStats::default()
                },
                closing: false,
                dialled: Some(addr.into()),
                connecting: true,
                privileged: false,
                full_since: None,
                drains_waiting: false,
                answers: AwaitedAnswers::default(),
                lingering: false,
                repeat_route: None,
                repeat_peer: Peer::named(b""),
            };
            if index == conns.len() {
                conns.push(Some(slot));
            } else {
                conns[index] = Some(slot);
            }
            remotes.by_addr.insert(addr.into(), key);
            events.push_back(Event::Dial {
                link: key,
                addr: addr.into(),
            });
            key
        }
    };
    let Some(conn) = slot_of_conn(conns, key) else {
        return Outcome::Returned(UndeliverableReason::NoSuchProc);
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
    let len = encoded_len(&header, payload.len());
    if conn.outbox.len() + len > cfg.client_outbox_bytes {
        return Outcome::Returned(UndeliverableReason::Overloaded);
    }
    if encode_frame_to_vec(&mut conn.outbox, &header, payload, limits).is_err() {
        return Outcome::Returned(UndeliverableReason::Malformed);
    }
    conn.stats.frames_out += 1;
    conn.stats.bytes_out += len as u64;
    conn.stats.outbox_high_water = conn.stats.outbox_high_water.max(conn.outbox.len() as u64);
    Outcome::Delivered
}

impl Dataplane {
    /// Whether `addr` (a frame's destination address) means this host.
    pub(crate) fn is_local_addr(&self, addr: &str) -> bool {
        addr.is_empty() || addr == &*self.own_addr
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
        if let Some(conn) = self.conn_mut(key) {
            conn.connecting = false;
            self.events.push_back(Event::WakeWriter(key));
        }
    }

    /// Sends a notice about `original`, from another host's proc, back to
    /// it over a link (the notice is itself never answered: if it cannot go,
    /// it is dropped).
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
        let _ = self.forward(header, &payload);
    }

    /// Queues a frame (`header`, `payload`) on the link to its destination
    /// host, opening the link on first use; its sender is rewritten to name
    /// this host and its hop count goes up by one.
    pub(super) fn forward(&mut self, header: FrameHeader<'_>, payload: &[u8]) -> Outcome {
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
        forward_header(
            conns, remotes, events, generation, own_addr, limits, cfg, header, payload,
        )
    }

    /// Returns every frame still queued on a link as `NoSuchProc`.
    pub(super) fn return_queued_forwards(&mut self, key: ConnKey) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        let queued = std::mem::take(&mut conn.outbox);
        if queued.is_empty() {
            return;
        }
        // Slow path: re-read the queued frames from an aligned buffer.
        let mut decoder = FrameDecoder::new(self.limits);
        decoder.feed(&queued);
        let mut originals: Vec<Vec<u8>> = Vec::new();
        while let Ok(Some(frame)) = decoder.next_frame() {
            originals.push(frame.as_bytes().to_vec());
        }
        let mut aligned = FrameDecoder::new(self.limits);
        for bytes in originals {
            aligned.feed(&bytes);
            if let Ok(Some(frame)) = aligned.next_frame() {
                let fields: FrameHeader<'_> = frame.fields();
                self.notify_sender(&fields, UndeliverableReason::NoSuchProc);
            }
        }
    }
}
