//! What the data plane asks of its I/O shell.
//!
//! The data plane owns no runtime object (no task, channel or wake-up
//! primitive): where it needs something done outside itself it queues an
//! [`Event`], and the shell that drives it (`crate::io`) polls them with
//! [`Dataplane::poll_event`](super::Dataplane::poll_event) and carries them
//! out. A test or the simulation polls the same events and decides what
//! "waking a writer" means for its fake connections.

use hostmux_wire::AgentResponse;

use super::agent::AgentWaiter;
use super::remote::PeerAddr;
use super::ConnKey;
use crate::dataplane::service::ControlJob;

/// One thing the I/O shell must do.
#[derive(Debug)]
pub(crate) enum Event {
    /// The connection has bytes queued (or is closing): run its writer.
    WakeWriter(ConnKey),
    /// The connection's reader may go on: room appeared in the ring it
    /// waits on, its reply queue drained below half, the proc it waited for
    /// is gone, or (after a half-close) its last awaited answer arrived.
    WakeReader(ConnKey),
    /// A reply queue that a proc's drain waited on has room again (or its
    /// connection is gone): run the backend loop, which retries the drains.
    ReplyQueueRoom,
    /// Dial the link `link` to the peer `peer` (the data plane has queued
    /// frames on it already). Only a configured peer can be named here (see
    /// [`PeerAddr`]): the dial sends the host's token.
    Dial {
        /// The link's connection slot.
        link: ConnKey,
        /// The peer's address, as configured.
        peer: PeerAddr,
    },
    /// A privileged control request for the control side.
    Control(ControlJob),
    /// Hand `frame` to I/O thread `thread`, which owns its client.
    HandOff {
        /// The owning thread.
        thread: usize,
        /// The frame and its sender.
        frame: super::HandedFrame,
    },
    /// The connection is gone: forget whatever the shell keeps for it.
    ConnRemoved(ConnKey),
    /// The answer to an agent request made with `waiter`; `None`: it will
    /// never come (not written, or the proc failed or left first).
    AgentAnswer {
        /// The token given with the request.
        waiter: AgentWaiter,
        /// The agent's answer.
        response: Option<AgentResponse>,
    },
}
