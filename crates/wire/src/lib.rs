//! hostmux-wire: the frame format every hostmux piece speaks, and nothing
//! else: no sockets, no runtime, no clock.
//!
//! # What a frame is
//!
//! A 16-byte little-endian prefix ([`FramePrefix`]: frame, header and payload
//! lengths, magic, version), a small rkyv-archived routing header
//! ([`ArchivedRoutingHeader`]: destination proc name + port, sender, message
//! id, [`Flags`], [`FrameKind`]), and an opaque payload. Header and payload
//! each start at a 16-byte offset and every frame's length is a multiple of
//! 16, so in a buffer whose start is 16-byte aligned every frame is aligned
//! too and its header can be validated and read in place. `docs/wire.md`
//! gives the byte layout precisely enough to write a client in any language.
//!
//! # Main types
//!
//! * [`encode_frame`], [`encode_frame_head`], [`encode_frame_to_vec`] write
//!   a frame from a borrowed [`FrameHeader`]; they allocate nothing.
//!   [`RepeatedHead`] re-encodes a run of frames whose headers differ only
//!   in message id and port without validating each header again.
//! * [`FrameDecoder`] splits a byte stream fed in arbitrary chunks into
//!   [`FrameView`]s borrowed from its aligned buffer (the host reads the
//!   socket straight into that buffer); [`decode_frame`] and [`split_frame`]
//!   do the same for one aligned frame, e.g. a shared-memory ring record.
//! * [`ProcName`], [`Addr`], [`ProcId`]: validated ids with text forms that
//!   round-trip.
//! * [`Flags`]: flag bits and the hop count that ends frames circulating
//!   between hosts ([`DEFAULT_MAX_HOPS`]).
//! * The answering rules, as data: [`FrameKind::may_be_answered`] (a notice
//!   or a response never is) and [`FrameKind::host_only`] (only a host
//!   originates notices and responses).
//! * [`Undeliverable`] and the control-plane payloads ([`ControlRequest`],
//!   [`ControlResponse`]) shared by the host, its service proc and clients.
//!
//! # Invariants
//!
//! * Every length is checked against [`Limits`] as soon as the 16-byte prefix
//!   is in, before anything else is buffered or allocated.
//! * A [`FrameView`] exists only for a frame whose header passed the layout
//!   checks (what rkyv's bytecheck checks, and the one canonical layout) and
//!   the semantic checks (names, addresses, flags); the payload is never
//!   inspected.
//! * The encoding is canonical: a frame that decodes re-encodes to the same
//!   bytes (the fuzz targets check this).
//! * Encoding and decoding allocate nothing per frame (a counting-allocator
//!   test checks this); errors may allocate their message.
//!
//! # Key design decision: rkyv for the header, validated in place
//!
//! The host must read the destination name of every frame at line rate. An
//! archived header is read where it lies: validation is bounds and UTF-8
//! checks over a few dozen bytes, and the name comes out as a `&str` into the
//! frame for the routing-table lookup, with no deserialisation and no
//! `String`. The price is that alignment has to be designed in, hence the
//! 16-byte padding rules. The header keeps its four strings in one
//! out-of-line text, so there is one UTF-8 check per frame. Because only
//! one canonical layout is valid, the hot path checks, reads and writes it
//! by hand with fixed-offset loads and stores (15% fewer instructions per
//! frame over the host's whole proc-to-client path than with rkyv's
//! generic validator, measured with callgrind);
//! rkyv's `access`/bytecheck and serializer (through a hand-written
//! `Serialize` impl for the borrowed [`FrameHeader`]) remain as the
//! reference that tests and the fuzz target compare against.
//!
//! # Relation to the other crates
//!
//! `hostmux-ring` carries whole encoded frames as ring records; the host
//! (`hostmux-host`) decodes client streams with [`FrameDecoder`] and looks
//! [`FrameView::dest_name`] up in `hostmux-router`'s table; the child-side
//! `hostmux-proc` decodes ring records with [`decode_frame`].
//!
//! # Example
//!
//! ```
//! use hostmux_wire::{encode_frame_to_vec, FrameDecoder, FrameHeader, Limits, Sender};
//!
//! let limits = Limits::default();
//! let header = FrameHeader {
//!     dest_port: 7,
//!     sender: Sender::Client { name: "cli" },
//!     ..FrameHeader::data("echo", 42)
//! };
//! let mut stream = Vec::new();
//! encode_frame_to_vec(&mut stream, &header, b"hello", &limits)?;
//!
//! let mut decoder = FrameDecoder::new(limits);
//! let (first, rest) = stream.split_at(5); // any chunking works
//! decoder.feed(first);
//! assert!(decoder.next_frame()?.is_none());
//! decoder.feed(rest);
//! let frame = decoder.next_frame()?.expect("one whole frame");
//! assert_eq!(frame.dest_name(), "echo");
//! assert_eq!(frame.message_id(), 42);
//! assert_eq!(frame.payload(), b"hello");
//! assert_eq!(frame.fields(), header);
//! assert_eq!(frame.as_bytes().len() % 16, 0);
//! # Ok::<(), hostmux_wire::WireError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod addr;
mod agent;
mod control;
mod decoder;
mod error;
mod flags;
mod frame;
mod header;
mod hello;
mod layout;
mod limits;
mod link;
mod memo;
mod name;
mod repeat;
mod rules;
mod undeliverable;

#[doc(hidden)]
pub mod fuzzing;

pub use addr::{validate_addr, Addr, AddrKind, ProcId, MAX_ADDR_LEN, MAX_UNIX_PATH_LEN};
pub use agent::{
    AgentRefusal, AgentRequest, AgentResponse, AgentStats, ArchivedAgentRefusal,
    ArchivedAgentRequest, ArchivedAgentResponse, ArchivedAgentStats, AGENT_MESSAGE_MAX_LEN,
    AGENT_PORT,
};
pub use control::{
    ArchivedControlErrorKind, ArchivedControlRequest, ArchivedControlResponse, ArchivedEnvVar,
    ArchivedLinkInfo, ArchivedProcCounters, ArchivedProcInfo, ArchivedProcState,
    ArchivedRestartRequest, ArchivedRestartWhen, ArchivedSpawnRequest, ArchivedTerminateSummary,
    ControlErrorKind, ControlRequest, ControlResponse, EnvVar, LinkInfo, ProcCounters, ProcInfo,
    ProcState, ReadyMode, RestartRequest, RestartWhen, SpawnRequest, TerminateSummary,
    MAX_ACCOUNT_NAME_LEN, MAX_READY_HOST_LEN, REASON_COUNT,
};
pub use decoder::{
    FrameDecoder, LentChunk, Repeats, DEFAULT_READ_CHUNK, SHRINK_AFTER_UNNEEDED_READS,
};
pub use error::WireError;
pub use flags::{Flags, DEFAULT_MAX_HOPS};
pub use frame::{
    decode_frame, decode_frame_memo, encode_frame, encode_frame_head, encode_frame_to_vec,
    encoded_len, frame_message_id, frame_message_id_offset, set_frame_hops, split_frame,
    FramePrefix, FrameView, FRAME_ALIGN, MAGIC, PREFIX_LEN, VERSION,
};
pub use header::{
    ArchivedFrameKind, ArchivedRoutingHeader, ArchivedSenderKind, FrameHeader, FrameKind,
    ReplyTarget, RoutingHeader, Sender, SenderKind, HEADER_ALIGN, HEADER_ROOT_LEN,
};
pub use hello::{
    check_hello, encode_hello, encode_hello_ack, encode_hello_refusal, hello_limits, hello_refusal,
    is_hello_ack, HelloRefusal, HELLO_PORT, MAX_HELLO_LEN,
};
pub use limits::Limits;
pub use link::{
    encode_link_status, is_link_status, link_status, ArchivedLinkStatus, LinkStatus, LINK_PORT,
    LINK_STATUS_LEN,
};
pub use memo::{HeaderMemo, HEADER_MEMO_CAPACITY};
pub use name::{validate_name, ProcName, DEFAULT_MAX_NAME_LEN};
pub use repeat::RepeatedHead;
pub use undeliverable::{
    ArchivedUndeliverable, ArchivedUndeliverableReason, Undeliverable, UndeliverableReason,
    UNDELIVERABLE_LEN,
};

/// The rkyv version this crate archives with, for callers that access the
/// archived types directly.
pub use rkyv;
