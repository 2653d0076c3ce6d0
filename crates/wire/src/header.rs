//! The routing header: its owned, borrowed and archived forms, and its
//! validation.
//!
//! The archived form, [`ArchivedRoutingHeader`], is what travels: a 48-byte
//! root at the end of the header region, preceded by the bytes of its four
//! strings laid out contiguously in field order. The owned [`RoutingHeader`]
//! exists so rkyv's derive defines that archived type; the hot paths use the
//! borrowed [`FrameHeader`], which archives to the very same bytes without
//! allocating (its `Archive`/`Serialize` impls are written by hand below).

use std::ops::BitOr;

use rkyv::boxed::{ArchivedBox, BoxResolver};
use rkyv::munge::munge;
use rkyv::rancor::{Failure, Fallible};
use rkyv::ser::allocator::SubAllocator;
use rkyv::ser::writer::Buffer;
use rkyv::ser::Writer;
use rkyv::{Archive, Deserialize, Place, Serialize, SerializeUnsized};

use crate::{validate_addr, validate_name, Limits, WireError};

/// Size of the archived header's root object in bytes.
pub const HEADER_ROOT_LEN: usize = 48;

/// Alignment of the archived header's root object (that of its `u64`).
pub const HEADER_ALIGN: usize = 8;

/// What a frame carries.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
#[repr(u8)]
pub enum FrameKind {
    /// An application message for the destination proc.
    Data = 0,
    /// A notice that a frame could not be delivered; the payload is an
    /// archived [`Undeliverable`](crate::Undeliverable).
    Undeliverable = 1,
    /// A request to the host's service proc; the payload is an archived
    /// [`ControlRequest`](crate::ControlRequest).
    ControlRequest = 2,
    /// The service proc's answer; the payload is an archived
    /// [`ControlResponse`](crate::ControlResponse).
    ControlResponse = 3,
}

impl From<&ArchivedFrameKind> for FrameKind {
    fn from(kind: &ArchivedFrameKind) -> Self {
        match kind {
            ArchivedFrameKind::Data => FrameKind::Data,
            ArchivedFrameKind::Undeliverable => FrameKind::Undeliverable,
            ArchivedFrameKind::ControlRequest => FrameKind::ControlRequest,
            ArchivedFrameKind::ControlResponse => FrameKind::ControlResponse,
        }
    }
}

/// Which kind of party sent a frame; selects how the sender fields are read.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
#[repr(u8)]
pub enum SenderKind {
    /// No sender given: replies go back on the connection the frame came in.
    Anonymous = 0,
    /// A named client connection (`sender_name`; `sender_addr` is empty).
    Client = 1,
    /// A proc (`sender_name`; `sender_addr` is its host, empty for "this host").
    Proc = 2,
}

impl From<&ArchivedSenderKind> for SenderKind {
    fn from(kind: &ArchivedSenderKind) -> Self {
        match kind {
            ArchivedSenderKind::Anonymous => SenderKind::Anonymous,
            ArchivedSenderKind::Client => SenderKind::Client,
            ArchivedSenderKind::Proc => SenderKind::Proc,
        }
    }
}

/// Frame flag bits. Unknown bits are rejected by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// If the frame cannot be delivered, send an `Undeliverable` frame back
    /// to its sender (otherwise the host only counts it as returned).
    pub const RETURN_UNDELIVERABLE: Flags = Flags(1);
    /// Every bit this version of the protocol defines.
    pub const KNOWN: Flags = Flags(1);

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Flags from raw bits, if every set bit is known.
    pub const fn from_bits(bits: u16) -> Option<Flags> {
        if bits & !Self::KNOWN.0 == 0 {
            Some(Flags(bits))
        } else {
            None
        }
    }

    /// True if every bit of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Flags {
    type Output = Flags;

    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// The owned routing header. Its archived form is the wire format; build
/// frames from the borrowed [`FrameHeader`] instead to avoid allocating.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RoutingHeader {
    /// Sender-chosen id, echoed in replies and undeliverable notices.
    pub message_id: u64,
    /// Port (sub-address) inside the destination proc.
    pub dest_port: u32,
    /// Raw [`Flags`] bits.
    pub flags: u16,
    /// What the frame carries.
    pub kind: FrameKind,
    /// How to read `sender_name` and `sender_addr`.
    pub sender_kind: SenderKind,
    /// Destination proc name.
    pub dest_name: Box<str>,
    /// Destination host address; empty means the host that receives it.
    pub dest_addr: Box<str>,
    /// Sender proc or client name; empty for anonymous senders.
    pub sender_name: Box<str>,
    /// Sender proc's host address; empty for "this host" and non-procs.
    pub sender_addr: Box<str>,
}

/// Who sent a frame, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sender<'a> {
    /// Unnamed; replies go back on the incoming connection.
    Anonymous,
    /// A named client connection.
    Client {
        /// The client's name (proc-name character set).
        name: &'a str,
    },
    /// A proc.
    Proc {
        /// Its host's address text; empty means "the host that relays it".
        addr: &'a str,
        /// Its proc name.
        name: &'a str,
    },
}

impl<'a> Sender<'a> {
    fn kind(&self) -> SenderKind {
        match self {
            Sender::Anonymous => SenderKind::Anonymous,
            Sender::Client { .. } => SenderKind::Client,
            Sender::Proc { .. } => SenderKind::Proc,
        }
    }

    fn name(&self) -> &'a str {
        match *self {
            Sender::Anonymous => "",
            Sender::Client { name } | Sender::Proc { name, .. } => name,
        }
    }

    fn addr(&self) -> &'a str {
        match *self {
            Sender::Proc { addr, .. } => addr,
            _ => "",
        }
    }
}

/// A routing header borrowed from elsewhere: what the encoder takes and what
/// [`FrameView::fields`](crate::FrameView::fields) returns. `Copy`, no
/// allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader<'a> {
    /// What the frame carries.
    pub kind: FrameKind,
    /// Flag bits.
    pub flags: Flags,
    /// Sender-chosen message id.
    pub message_id: u64,
    /// Destination proc name (may be empty only on reply kinds).
    pub dest_name: &'a str,
    /// Port inside the destination proc.
    pub dest_port: u32,
    /// Destination host address text; empty means the receiving host.
    pub dest_addr: &'a str,
    /// Who sent it.
    pub sender: Sender<'a>,
}

impl<'a> FrameHeader<'a> {
    /// A data frame to `dest_name`, port 0, from an anonymous sender.
    pub fn data(dest_name: &'a str, message_id: u64) -> Self {
        Self {
            kind: FrameKind::Data,
            flags: Flags::NONE,
            message_id,
            dest_name,
            dest_port: 0,
            dest_addr: "",
            sender: Sender::Anonymous,
        }
    }

    /// Length of this header in archived form.
    pub fn archived_len(&self) -> usize {
        archived_len_for(self.string_bytes())
    }

    fn string_bytes(&self) -> usize {
        self.dest_name.len()
            + self.dest_addr.len()
            + self.sender.name().len()
            + self.sender.addr().len()
    }

    /// Checks the semantic rules the decoder enforces (names, addresses,
    /// sender shape), without allocating.
    pub fn validate(&self, limits: &Limits) -> Result<(), WireError> {
        check_fields(
            self.kind,
            self.flags.bits(),
            self.dest_name,
            self.dest_addr,
            self.sender.kind(),
            self.sender.name(),
            self.sender.addr(),
            limits,
        )
    }

    /// Writes the archived header into `out`, which must be exactly
    /// [`archived_len`](Self::archived_len) bytes; returns that length.
    pub(crate) fn write_archived(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let needed = self.archived_len();
        if out.len() != needed {
            return Err(WireError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        let mut no_scratch: [std::mem::MaybeUninit<u8>; 0] = [];
        let written = rkyv::api::low::to_bytes_in_with_alloc::<_, _, Failure>(
            self,
            Buffer::from(&mut *out),
            SubAllocator::new(&mut no_scratch),
        )
        .map_err(|_| WireError::BufferTooSmall {
            needed,
            available: needed,
        })?
        .len();
        debug_assert_eq!(written, needed, "archived header length formula is wrong");
        Ok(written)
    }
}

impl RoutingHeader {
    /// Borrows this header as a [`FrameHeader`]. Unknown flag bits are
    /// dropped.
    pub fn as_frame_header(&self) -> FrameHeader<'_> {
        FrameHeader {
            kind: self.kind,
            flags: Flags(self.flags & Flags::KNOWN.bits()),
            message_id: self.message_id,
            dest_name: &self.dest_name,
            dest_port: self.dest_port,
            dest_addr: &self.dest_addr,
            sender: match self.sender_kind {
                SenderKind::Anonymous => Sender::Anonymous,
                SenderKind::Client => Sender::Client {
                    name: &self.sender_name,
                },
                SenderKind::Proc => Sender::Proc {
                    addr: &self.sender_addr,
                    name: &self.sender_name,
                },
            },
        }
    }
}

impl ArchivedRoutingHeader {
    /// Borrows this archived header as a [`FrameHeader`].
    pub fn fields(&self) -> FrameHeader<'_> {
        let name = self.sender_name.get();
        FrameHeader {
            kind: (&self.kind).into(),
            flags: Flags(self.flags.to_native() & Flags::KNOWN.bits()),
            message_id: self.message_id.to_native(),
            dest_name: self.dest_name.get(),
            dest_port: self.dest_port.to_native(),
            dest_addr: self.dest_addr.get(),
            sender: match SenderKind::from(&self.sender_kind) {
                SenderKind::Anonymous => Sender::Anonymous,
                SenderKind::Client => Sender::Client { name },
                SenderKind::Proc => Sender::Proc {
                    addr: self.sender_addr.get(),
                    name,
                },
            },
        }
    }
}

/// Resolver for the hand-written `Archive` impl of [`FrameHeader`].
#[doc(hidden)]
pub struct FrameHeaderResolver {
    kind: FrameKindResolver,
    sender_kind: SenderKindResolver,
    dest_name: BoxResolver,
    dest_addr: BoxResolver,
    sender_name: BoxResolver,
    sender_addr: BoxResolver,
}

impl Archive for FrameHeader<'_> {
    type Archived = ArchivedRoutingHeader;
    type Resolver = FrameHeaderResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        munge!(let ArchivedRoutingHeader {
            message_id, dest_port, flags, kind, sender_kind,
            dest_name, dest_addr, sender_name, sender_addr,
        } = out);
        self.message_id.resolve((), message_id);
        self.dest_port.resolve((), dest_port);
        self.flags.bits().resolve((), flags);
        self.kind.resolve(resolver.kind, kind);
        self.sender
            .kind()
            .resolve(resolver.sender_kind, sender_kind);
        ArchivedBox::resolve_from_ref(self.dest_name, resolver.dest_name, dest_name);
        ArchivedBox::resolve_from_ref(self.dest_addr, resolver.dest_addr, dest_addr);
        ArchivedBox::resolve_from_ref(self.sender.name(), resolver.sender_name, sender_name);
        ArchivedBox::resolve_from_ref(self.sender.addr(), resolver.sender_addr, sender_addr);
    }
}

impl<S> Serialize<S> for FrameHeader<'_>
where
    S: Fallible + Writer + ?Sized,
    str: SerializeUnsized<S>,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        // Out-of-line bytes are written in field order; the decoder's
        // canonical-layout check depends on it.
        Ok(FrameHeaderResolver {
            kind: self.kind.serialize(serializer)?,
            sender_kind: self.sender.kind().serialize(serializer)?,
            dest_name: ArchivedBox::serialize_from_ref(self.dest_name, serializer)?,
            dest_addr: ArchivedBox::serialize_from_ref(self.dest_addr, serializer)?,
            sender_name: ArchivedBox::serialize_from_ref(self.sender.name(), serializer)?,
            sender_addr: ArchivedBox::serialize_from_ref(self.sender.addr(), serializer)?,
        })
    }
}

/// Archived header length for the given total of string bytes: the strings,
/// zero padding to 8, then the 48-byte root.
pub(crate) fn archived_len_for(string_bytes: usize) -> usize {
    string_bytes.next_multiple_of(HEADER_ALIGN) + HEADER_ROOT_LEN
}

fn invalid_header(reason: impl Into<String>) -> WireError {
    WireError::InvalidHeader {
        reason: reason.into(),
    }
}

/// Validates an archived header region (exactly `header_len` bytes, 8-byte
/// aligned in memory) and returns the archived root.
///
/// Order: bytecheck (bounds, UTF-8, enum tags), then the canonical layout
/// (strings contiguous from offset 0 in field order, zero padding, exact
/// length), then the semantic rules of [`FrameHeader::validate`].
pub(crate) fn check_header<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<&'a ArchivedRoutingHeader, WireError> {
    if bytes.len() < HEADER_ROOT_LEN {
        return Err(invalid_header(format!(
            "header is {} bytes, shorter than its {HEADER_ROOT_LEN}-byte root",
            bytes.len()
        )));
    }
    let header = match rkyv::api::low::access::<ArchivedRoutingHeader, Failure>(bytes) {
        Ok(header) => header,
        Err(_) => {
            // Validate again with an error type that says why; this path is
            // cold and the stream is poisoned anyway.
            let reason =
                rkyv::api::low::access::<ArchivedRoutingHeader, rkyv::rancor::Error>(bytes)
                    .err()
                    .map_or_else(|| "bytecheck failed".to_owned(), |e| e.to_string());
            return Err(invalid_header(reason));
        }
    };
    let base = bytes.as_ptr() as usize;
    let mut next = 0;
    for (field, text) in [
        ("dest_name", header.dest_name.get()),
        ("dest_addr", header.dest_addr.get()),
        ("sender_name", header.sender_name.get()),
        ("sender_addr", header.sender_addr.get()),
    ] {
        if text.as_ptr() as usize - base != next {
            return Err(invalid_header(format!(
                "{field} is not at offset {next}: strings must be contiguous in field order"
            )));
        }
        next += text.len();
    }
    let expected = archived_len_for(next);
    if bytes.len() != expected {
        return Err(WireError::HeaderTrailingBytes {
            len: bytes.len(),
            expected,
        });
    }
    if bytes[next..expected - HEADER_ROOT_LEN]
        .iter()
        .any(|&b| b != 0)
    {
        return Err(invalid_header("padding before the root is not zero"));
    }
    // The root's own padding byte-free layout: 8+4+2+1+1+4*8 = 48, no gaps.
    check_fields(
        (&header.kind).into(),
        header.flags.to_native(),
        header.dest_name.get(),
        header.dest_addr.get(),
        (&header.sender_kind).into(),
        header.sender_name.get(),
        header.sender_addr.get(),
        limits,
    )?;
    Ok(header)
}

#[allow(clippy::too_many_arguments)] // one argument per header field
fn check_fields(
    kind: FrameKind,
    flags: u16,
    dest_name: &str,
    dest_addr: &str,
    sender_kind: SenderKind,
    sender_name: &str,
    sender_addr: &str,
    limits: &Limits,
) -> Result<(), WireError> {
    if Flags::from_bits(flags).is_none() {
        return Err(invalid_header(format!("unknown flag bits {flags:#06x}")));
    }
    let reply = matches!(kind, FrameKind::Undeliverable | FrameKind::ControlResponse);
    if !(reply && dest_name.is_empty()) {
        validate_name(dest_name.as_bytes(), limits.max_name_len)
            .map_err(|e| invalid_header(format!("dest_name: {e}")))?;
    }
    if !dest_addr.is_empty() {
        validate_addr(dest_addr).map_err(|e| invalid_header(format!("dest_addr: {e}")))?;
    }
    match sender_kind {
        SenderKind::Anonymous if sender_name.is_empty() && sender_addr.is_empty() => Ok(()),
        SenderKind::Anonymous => Err(invalid_header("anonymous sender has a name or address")),
        SenderKind::Client if !sender_addr.is_empty() => {
            Err(invalid_header("client sender has an address"))
        }
        SenderKind::Client | SenderKind::Proc => {
            validate_name(sender_name.as_bytes(), limits.max_name_len)
                .map_err(|e| invalid_header(format!("sender_name: {e}")))?;
            if !sender_addr.is_empty() {
                validate_addr(sender_addr)
                    .map_err(|e| invalid_header(format!("sender_addr: {e}")))?;
            }
            Ok(())
        }
    }
}
