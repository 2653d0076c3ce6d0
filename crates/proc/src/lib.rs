//! hostmux-proc: the child side of hostmux. A proc boots from what its host
//! handed it, reads frames in place from its inbound rings, writes frames
//! into its outbound rings, and answers its host through a built-in agent.
//! It has one pair of rings (a *lane*) per host I/O thread; with one thread,
//! one lane.
//!
//! # The job
//!
//! Give proc authors the cheapest correct path to the host: a received
//! message is a validated routing header and a payload *borrowed from the
//! shared-memory ring* (16-byte aligned, so `rkyv::access` reads an archive
//! where it lies); a send encodes the frame straight into the outbound ring
//! (one copy of the payload, none with [`Outbox::reserve`]). Nothing on the
//! receive, send or reply path allocates.
//!
//! # Main types
//!
//! * [`boot`] / [`boot_with`] (OS procs) and [`boot_from`] (in-process procs,
//!   tests) return a [`Proc`]; [`protocol`] defines the ring boot protocol
//!   for both sides, including the host's one call, [`protocol::host_ends`].
//!   The variable names, the readiness report and fd adoption come from
//!   `hostmux-boot`, which the lifecycle manager shares: this crate does not
//!   depend on the manager.
//! * [`Proc::recv`], [`Proc::recv_timeout`], [`Proc::recv_batch`],
//!   [`Proc::recv_async`] yield [`Message`]s; [`Message::reply`] answers the
//!   sender in one call.
//! * [`Outbox`]: [`Outbox::send`], [`Outbox::reserve`] → [`Slot`],
//!   [`Outbox::send_async`], [`Outbox::batch`] → [`SendBatch`] (many
//!   sends, one publication per lane); [`Dest`] names a destination;
//!   [`pair_lane`] is the lane of a pair of names.
//! * The agent answers [`hostmux_wire::AgentRequest`]s on
//!   [`hostmux_wire::AGENT_PORT`]: ping, stop, stats.
//! * [`ProcError`]: the crate's one error type; boot errors name the
//!   parameter at fault.
//! * [`StopHandle`] ([`Proc::stop_handle`]): asks a proc to stop from
//!   another thread, as SIGTERM does (in-process procs have no signals of
//!   their own; `hostmux_host::LocalProc::booted` uses it).
//!
//! # Invariants
//!
//! * One owner: a [`Proc`] is the only consumer of each lane's inbound ring
//!   and the only producer of each lane's outbound ring (`&mut self`
//!   everywhere); each host I/O thread is the other end of its own lane.
//! * Receives read every lane round robin, starting after the lane of the
//!   last message: a busy lane cannot starve another, and each lane's
//!   order is kept. A receive sleeps only when every lane is empty, after
//!   announcing its sleep on every lane (see [`protocol`] and
//!   `docs/proc.md`), so a frame on any lane wakes it.
//! * A reply (and an agent answer) goes out on the lane its message came
//!   in on; any other frame on the lane of the unordered pair {own name,
//!   destination name} ([`pair_lane`]): traffic between two procs keeps one
//!   lane both ways, and so its order. Nothing is ordered across lanes.
//! * Per-frame work is paid once per run of frames: a send to the
//!   destination and port of the previous data frame copies its cached,
//!   already validated frame head and patches the message id; a received
//!   header that repeats the previous one but for message id and port is
//!   recognised by `hostmux_wire::HeaderMemo` without validating it again.
//! * Backpressure never drops: a send into a full ring waits (spin, then
//!   sleep per the ring protocol) up to the send timeout, then fails with
//!   [`ProcError::Backpressure`] and the caller decides.
//! * A stop (agent `Stop`, SIGTERM or SIGINT) runs the stop hook once; the
//!   receive calls keep handing out what is already in the ring and report
//!   [`Recv::Stopped`] once it is empty, so a proc's main loop ends and the
//!   process exits 0.
//! * Only a data message is answered ([`ProcError::NotAnswerable`]
//!   otherwise), and a message's record is published as consumed no later
//!   than its reply, by the same lane's outbound ring (see [`Message`]): a
//!   proc that dies never has an id both answered and returned by its host.
//! * Agent requests are honoured only from the host's service proc (the host
//!   guarantees sender names); others are answered `Refused(NotFromHost)`.
//!
//! # Key design decision: the agent lives inside receive
//!
//! Each inbound ring has exactly one consumer, so the agent cannot be a
//! thread of its own without a lock or a second ring. Instead every receive
//! call answers agent requests it finds at the head of a lane's ring (on
//! that lane) before it hands out the next application message. Costs: none on the hot path (one
//! port comparison per frame), no thread, no allocation; the consequence is
//! that a proc answers its host while it receives, which is also the right
//! readiness signal: a proc that stopped receiving is not serving.
//!
//! # Example
//!
//! Booting from rings created in the same process (a real host passes the
//! memfds to a child, which calls [`boot`]):
//!
//! ```
//! use std::time::Duration;
//! use hostmux_proc::{boot_from, protocol::{BootParams, LaneFds}, Recv};
//! use hostmux_ring::{Doorbell, SharedRing};
//! use hostmux_wire::{decode_frame, encode_frame, encoded_len, FrameHeader, Limits, Sender};
//!
//! let limits = Limits::default();
//! let (inbound, outbound) = (SharedRing::create(1 << 16)?, SharedRing::create(1 << 16)?);
//! let params = BootParams {
//!     id: "unix:@demo/echo".parse()?,
//!     service_name: "service".parse()?,
//!     limits,
//!     lanes: vec![LaneFds {
//!         inbound: inbound.memfd().try_clone_to_owned()?,
//!         outbound: outbound.memfd().try_clone_to_owned()?,
//!         host_doorbell: Doorbell::new()?,
//!     }],
//!     proc_doorbell: None,
//! };
//! let mut proc = boot_from(params)?;
//! let (mut to_proc, mut from_proc) = (inbound.into_producer()?, outbound.into_consumer()?);
//!
//! // The host delivers a frame from client "cli" to port 7...
//! let header = FrameHeader { dest_port: 7, sender: Sender::Client { name: "cli" }, ..FrameHeader::data("echo", 42) };
//! let mut slot = to_proc.try_reserve(encoded_len(&header, 5))?;
//! encode_frame(&mut slot, &header, b"hello", &limits)?;
//! slot.commit();
//! to_proc.publish()?;
//!
//! // ...the proc reads it in place and replies in one call...
//! let Recv::Message(mut message) = proc.recv_timeout(Duration::from_secs(5))? else { panic!() };
//! assert_eq!(message.payload(), b"hello");
//! assert_eq!(message.payload().as_ptr() as usize % 16, 0);
//! let payload = message.payload();
//! message.reply(payload)?;
//!
//! // ...and the reply goes back to the client, same port and message id.
//! let reply = decode_frame(from_proc.peek()?.expect("a reply"), &limits)?;
//! assert_eq!((reply.dest_name(), reply.dest_port(), reply.message_id()), ("cli", 7, 42));
//! assert_eq!(reply.payload(), b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
// Adopting inherited fds and registering fds with tokio are `hostmux-boot`'s
// (its `sys` module); this crate has no unsafe code of its own.
#![forbid(unsafe_code)]

mod dest;
mod error;
mod head_cache;
mod inbox;
mod lane;
mod message;
mod outbox;
mod proc;
pub mod protocol;
mod signals;
mod slot;
mod wait;

pub use dest::Dest;
pub use error::ProcError;
pub use lane::{pair_lane, LANE_QUANTUM};
pub use message::Message;
pub use outbox::{Outbox, SendBatch, DEFAULT_SEND_TIMEOUT};
pub use proc::{
    boot, boot_from, boot_with, BatchRecv, BootOptions, Proc, Recv, ANSWERING_SPIN, DEFAULT_SPIN,
    SIGNAL_CHECK_INTERVAL,
};
pub use signals::StopHandle;
pub use slot::Slot;
pub use wait::{spin_for, PURE_SPIN};
