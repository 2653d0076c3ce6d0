//! The routing header: its archived, borrowed and owned forms, and its
//! validation.
//!
//! The archived form, [`ArchivedRoutingHeader`], is what travels: a 32-byte
//! root at the end of the header region, preceded by one UTF-8 text holding
//! the four strings (destination name and address, sender name and address)
//! back to back; the root stores each string's length. One out-of-line object
//! instead of four keeps bytecheck's work (one subtree claim, one UTF-8 check)
//! and the canonical-layout check small: this is the per-frame hot path.
//!
//! The archived type is declared by hand (`Portable` + `CheckBytes` derives)
//! and the borrowed [`FrameHeader`] implements rkyv's `Archive`/`Serialize`
//! for it directly, so encoding needs neither an owned header nor a scratch
//! allocator.

use rkyv::boxed::{ArchivedBox, BoxResolver};
use rkyv::bytecheck::CheckBytes;
use rkyv::munge::munge;
use rkyv::primitive::{ArchivedU16, ArchivedU32, ArchivedU64, ArchivedUsize, FixedUsize};
use rkyv::rancor::{Failure, Fallible};
use rkyv::ser::allocator::SubAllocator;
use rkyv::ser::writer::Buffer;
use rkyv::ser::{Positional, Writer};
use rkyv::{Archive, Deserialize, Place, Portable, Serialize};

use crate::{validate_addr, validate_name, Flags, Limits, WireError};

/// Size of the archived header's root object in bytes.
pub const HEADER_ROOT_LEN: usize = 32;

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
    #[inline]
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
    #[inline]
    fn from(kind: &ArchivedSenderKind) -> Self {
        match kind {
            ArchivedSenderKind::Anonymous => SenderKind::Anonymous,
            ArchivedSenderKind::Client => SenderKind::Client,
            ArchivedSenderKind::Proc => SenderKind::Proc,
        }
    }
}

/// An owned routing header, for code off the hot path (tests, tools, control
/// clients). [`as_frame_header`](Self::as_frame_header) borrows it for encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutingHeader {
    /// Sender-chosen id, echoed in replies and undeliverable notices.
    pub message_id: u64,
    /// Port (sub-address) inside the destination proc.
    pub dest_port: u32,
    /// Flag bits and hop count ([`Flags::hops`]).
    pub flags: Flags,
    /// What the frame carries.
    pub kind: FrameKind,
    /// How to read `sender_name` and `sender_addr`.
    pub sender_kind: SenderKind,
    /// Destination proc name.
    pub dest_name: String,
    /// Destination host address; empty means the host that receives it.
    pub dest_addr: String,
    /// Sender proc or client name; empty for anonymous senders.
    pub sender_name: String,
    /// Sender proc's host address; empty for "this host" and non-procs.
    pub sender_addr: String,
}

/// The archived routing header, read in place from a frame.
///
/// Layout (`repr(C)`, 32 bytes, 8-byte aligned, little-endian, no padding):
/// `message_id: u64` at 0, `dest_port: u32` at 8, `flags: u16` at 12 (flag
/// bits in its low byte, the hop count in its high byte), `kind: u8` at 14, `sender_kind: u8` at 15, then the `u16` lengths of
/// `dest_name` (16), `dest_addr` (18), `sender_name` (20) and `sender_addr`
/// (22), then `text` at 24: an rkyv `ArchivedBox<str>` (`i32` offset from
/// byte 24 to the text, `u32` text length). The text is the four strings
/// concatenated in that order.
///
/// Obtain one from a validated [`FrameView`](crate::FrameView); the accessors
/// never panic, even on a header that only passed bytecheck.
#[derive(Portable, CheckBytes, Debug)]
#[bytecheck(crate = rkyv::bytecheck)]
#[repr(C)]
pub struct ArchivedRoutingHeader {
    message_id: ArchivedU64,
    dest_port: ArchivedU32,
    flags: ArchivedU16,
    kind: ArchivedFrameKind,
    sender_kind: ArchivedSenderKind,
    dest_name_len: ArchivedU16,
    dest_addr_len: ArchivedU16,
    sender_name_len: ArchivedU16,
    sender_addr_len: ArchivedU16,
    text: ArchivedBox<str>,
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
    /// The sender of this kind with these flat fields (those a kind does
    /// not use are ignored).
    #[inline]
    pub(crate) fn from_parts(kind: SenderKind, name: &'a str, addr: &'a str) -> Self {
        match kind {
            SenderKind::Anonymous => Sender::Anonymous,
            SenderKind::Client => Sender::Client { name },
            SenderKind::Proc => Sender::Proc { addr, name },
        }
    }

    #[inline]
    pub(crate) fn kind(&self) -> SenderKind {
        match self {
            Sender::Anonymous => SenderKind::Anonymous,
            Sender::Client { .. } => SenderKind::Client,
            Sender::Proc { .. } => SenderKind::Proc,
        }
    }

    /// The sender's name (empty for an anonymous sender).
    #[inline]
    pub fn name(&self) -> &'a str {
        match *self {
            Sender::Anonymous => "",
            Sender::Client { name } | Sender::Proc { name, .. } => name,
        }
    }

    /// The sender's host address (empty unless a proc's, and for a proc of
    /// the host that relays the frame).
    #[inline]
    pub fn addr(&self) -> &'a str {
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
    /// Flag bits and hop count ([`Flags::hops`]).
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

    /// Where an answer to this frame (a reply, a notice, a control
    /// response) goes: its sender's name and host address, and whether
    /// that name is a client's ([`Flags::TO_CLIENT`] on the answer). A
    /// sender is a client when it says so (`Sender::Client`) or when a host
    /// relayed a client's frame as a proc of its own ([`Flags::FROM_CLIENT`]).
    /// An anonymous sender has an empty name (its answer goes back on the
    /// connection the frame came in).
    ///
    /// ```
    /// use hostmux_wire::{Flags, FrameHeader, Sender};
    ///
    /// let from_client = FrameHeader {
    ///     sender: Sender::Client { name: "cli" },
    ///     ..FrameHeader::data("echo", 1)
    /// };
    /// let target = from_client.reply_target();
    /// assert_eq!((target.name, target.addr, target.to_client), ("cli", "", true));
    /// assert_eq!(target.flags(), Flags::TO_CLIENT);
    ///
    /// let relayed = FrameHeader {
    ///     flags: Flags::FROM_CLIENT.with_hops(1),
    ///     sender: Sender::Proc { addr: "tcp:10.0.0.5:7000", name: "cli" },
    ///     ..FrameHeader::data("echo", 1)
    /// };
    /// assert!(relayed.reply_target().to_client);
    /// ```
    #[inline]
    pub fn reply_target(&self) -> ReplyTarget<'a> {
        let (name, addr) = match self.sender {
            Sender::Anonymous => ("", ""),
            Sender::Client { name } => (name, ""),
            Sender::Proc { addr, name } => (name, addr),
        };
        let to_client = match self.sender {
            Sender::Anonymous => false,
            Sender::Client { .. } => true,
            Sender::Proc { .. } => self.flags.contains(Flags::FROM_CLIENT),
        };
        ReplyTarget {
            name,
            addr,
            to_client,
        }
    }

    /// Whether `dest_name` names a client connection ([`Flags::TO_CLIENT`])
    /// rather than a proc.
    #[inline]
    pub fn to_client(&self) -> bool {
        self.flags.contains(Flags::TO_CLIENT)
    }

    /// Length of this header in archived form.
    #[inline]
    pub fn archived_len(&self) -> usize {
        archived_len_for(self.string_bytes())
    }

    #[inline]
    fn string_bytes(&self) -> usize {
        self.dest_name.len()
            + self.dest_addr.len()
            + self.sender.name().len()
            + self.sender.addr().len()
    }

    /// Checks the semantic rules the decoder enforces (names, addresses,
    /// sender shape), without allocating.
    #[inline]
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
    /// [`archived_len`](Self::archived_len) bytes; returns that length. The
    /// fields must have passed [`validate`](Self::validate). Hand-laid
    /// (`layout::write_header`); the bytes are those of
    /// [`write_archived_rkyv`](Self::write_archived_rkyv).
    #[inline]
    pub(crate) fn write_archived(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let needed = self.archived_len();
        if out.len() != needed {
            return Err(WireError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        crate::layout::write_header(self, out);
        Ok(needed)
    }

    /// The reference encoder: rkyv's serializer through the hand-written
    /// `Serialize` impl below. Tests and the fuzz targets compare it with
    /// [`write_archived`](Self::write_archived).
    pub(crate) fn write_archived_rkyv(&self, out: &mut [u8]) -> Result<usize, WireError> {
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

/// Where an answer to a frame goes ([`FrameHeader::reply_target`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyTarget<'a> {
    /// The answer's `dest_name`: the sender's name (empty for an anonymous
    /// sender).
    pub name: &'a str,
    /// The answer's `dest_addr`: the sender's host address (empty for this
    /// host).
    pub addr: &'a str,
    /// The name is a client connection's: the answer carries
    /// [`Flags::TO_CLIENT`].
    pub to_client: bool,
}

impl ReplyTarget<'_> {
    /// The flag bits an answer to this target carries: [`Flags::TO_CLIENT`]
    /// or none (hop count 0).
    #[inline]
    pub fn flags(&self) -> Flags {
        if self.to_client {
            Flags::TO_CLIENT
        } else {
            Flags::NONE
        }
    }
}

impl RoutingHeader {
    /// Borrows this header as a [`FrameHeader`].
    pub fn as_frame_header(&self) -> FrameHeader<'_> {
        FrameHeader {
            kind: self.kind,
            flags: self.flags,
            message_id: self.message_id,
            dest_name: &self.dest_name,
            dest_port: self.dest_port,
            dest_addr: &self.dest_addr,
            sender: Sender::from_parts(self.sender_kind, &self.sender_name, &self.sender_addr),
        }
    }
}

impl From<FrameHeader<'_>> for RoutingHeader {
    fn from(header: FrameHeader<'_>) -> Self {
        Self {
            message_id: header.message_id,
            dest_port: header.dest_port,
            flags: header.flags,
            kind: header.kind,
            sender_kind: header.sender.kind(),
            dest_name: header.dest_name.to_owned(),
            dest_addr: header.dest_addr.to_owned(),
            sender_name: header.sender.name().to_owned(),
            sender_addr: header.sender.addr().to_owned(),
        }
    }
}

impl ArchivedRoutingHeader {
    /// The sender-chosen message id.
    #[inline]
    pub fn message_id(&self) -> u64 {
        self.message_id.to_native()
    }

    /// The port inside the destination proc.
    #[inline]
    pub fn dest_port(&self) -> u32 {
        self.dest_port.to_native()
    }

    /// The flag bits and hop count (unknown flag bits dropped; the decoder
    /// rejects them).
    #[inline]
    pub fn flags(&self) -> Flags {
        Flags::from_bits_truncate(self.flags.to_native())
    }

    /// The hop count: how many times hosts have forwarded the frame over a
    /// link so far (the high byte of `flags`).
    #[inline]
    pub fn hops(&self) -> u8 {
        self.flags().hops()
    }

    /// What the frame carries.
    #[inline]
    pub fn kind(&self) -> FrameKind {
        (&self.kind).into()
    }

    /// How to read the sender fields.
    #[inline]
    pub fn sender_kind(&self) -> SenderKind {
        (&self.sender_kind).into()
    }

    /// The four string lengths, in text order.
    #[inline]
    fn lengths(&self) -> [usize; 4] {
        [
            self.dest_name_len.to_native().into(),
            self.dest_addr_len.to_native().into(),
            self.sender_name_len.to_native().into(),
            self.sender_addr_len.to_native().into(),
        ]
    }

    /// The `index`th string of the text, or "" if the lengths do not fit it
    /// (impossible once the header is validated).
    #[inline]
    fn string(&self, index: usize) -> &str {
        let lengths = self.lengths();
        let start: usize = lengths[..index].iter().sum();
        self.text
            .get()
            .get(start..start + lengths[index])
            .unwrap_or("")
    }

    /// The destination proc name, borrowed from the frame.
    #[inline]
    pub fn dest_name(&self) -> &str {
        self.string(0)
    }

    /// The destination host address; empty means the receiving host.
    #[inline]
    pub fn dest_addr(&self) -> &str {
        self.string(1)
    }

    /// The sender's name; empty for anonymous senders.
    #[inline]
    pub fn sender_name(&self) -> &str {
        self.string(2)
    }

    /// The sender's host address; empty unless the sender is a remote proc.
    #[inline]
    pub fn sender_addr(&self) -> &str {
        self.string(3)
    }

    /// Who sent the frame.
    #[inline]
    pub fn sender(&self) -> Sender<'_> {
        match self.sender_kind() {
            SenderKind::Anonymous => Sender::Anonymous,
            SenderKind::Client => Sender::Client {
                name: self.sender_name(),
            },
            SenderKind::Proc => Sender::Proc {
                addr: self.sender_addr(),
                name: self.sender_name(),
            },
        }
    }

    /// All fields, borrowed.
    #[inline]
    pub fn fields(&self) -> FrameHeader<'_> {
        FrameHeader {
            kind: self.kind(),
            flags: self.flags(),
            message_id: self.message_id(),
            dest_name: self.dest_name(),
            dest_port: self.dest_port(),
            dest_addr: self.dest_addr(),
            sender: self.sender(),
        }
    }
}

/// Resolver for the hand-written `Archive` impl of [`FrameHeader`].
#[doc(hidden)]
pub struct FrameHeaderResolver {
    kind: FrameKindResolver,
    sender_kind: SenderKindResolver,
    text: BoxResolver,
}

impl Archive for FrameHeader<'_> {
    type Archived = ArchivedRoutingHeader;
    type Resolver = FrameHeaderResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        munge!(let ArchivedRoutingHeader {
            message_id, dest_port, flags, kind, sender_kind,
            dest_name_len, dest_addr_len, sender_name_len, sender_addr_len, text,
        } = out);
        let len = |s: &str| s.len() as u16; // validate() bounds every length
        self.message_id.resolve((), message_id);
        self.dest_port.resolve((), dest_port);
        self.flags.bits().resolve((), flags);
        self.kind.resolve(resolver.kind, kind);
        self.sender
            .kind()
            .resolve(resolver.sender_kind, sender_kind);
        len(self.dest_name).resolve((), dest_name_len);
        len(self.dest_addr).resolve((), dest_addr_len);
        len(self.sender.name()).resolve((), sender_name_len);
        len(self.sender.addr()).resolve((), sender_addr_len);
        let text_len = ArchivedUsize::from_native(self.string_bytes() as FixedUsize);
        ArchivedBox::resolve_from_raw_parts(resolver.text, text_len, text);
    }
}

impl<S> Serialize<S> for FrameHeader<'_>
where
    S: Fallible + Writer + Positional + ?Sized,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        let kind = self.kind.serialize(serializer)?;
        let sender_kind = self.sender.kind().serialize(serializer)?;
        let text_pos = serializer.pos();
        for part in [
            self.dest_name,
            self.dest_addr,
            self.sender.name(),
            self.sender.addr(),
        ] {
            serializer.write(part.as_bytes())?;
        }
        Ok(FrameHeaderResolver {
            kind,
            sender_kind,
            text: BoxResolver::from_pos(text_pos),
        })
    }
}

/// Archived header length for the given text length: the text, zero padding
/// to 8, then the 32-byte root.
#[inline]
pub(crate) fn archived_len_for(text_len: usize) -> usize {
    text_len.next_multiple_of(HEADER_ALIGN) + HEADER_ROOT_LEN
}

pub(crate) fn invalid_header(reason: impl Into<String>) -> WireError {
    WireError::InvalidHeader {
        reason: reason.into(),
    }
}

/// The reference validator: rkyv's `access` with bytecheck, then the
/// canonical layout and field checks. The hot path uses the hand-written
/// `layout::check_header`, which must accept exactly what this accepts
/// (for regions at an 8-byte aligned address) and read the same fields;
/// tests and the `wire_header` fuzz target compare the two.
///
/// Order: bytecheck (bounds, UTF-8, enum tags), then the canonical layout
/// (text at offset 0, lengths that add up to it, zero padding, exact length),
/// then the semantic rules of [`FrameHeader::validate`].
pub(crate) fn check_header_bytecheck<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<FrameHeader<'a>, WireError> {
    if bytes.len() < HEADER_ROOT_LEN {
        return Err(invalid_header(format!(
            "header is {} bytes, shorter than its {HEADER_ROOT_LEN}-byte root",
            bytes.len()
        )));
    }
    let Ok(header) = rkyv::api::low::access::<ArchivedRoutingHeader, Failure>(bytes) else {
        return Err(bytecheck_failure(bytes));
    };
    let text = header.text.get();
    if text.as_ptr() != bytes.as_ptr() {
        return Err(invalid_header("header text does not start at offset 0"));
    }
    if header.lengths().iter().sum::<usize>() != text.len() {
        return Err(invalid_header(
            "string lengths do not add up to the text length",
        ));
    }
    let expected = archived_len_for(text.len());
    if bytes.len() != expected {
        return Err(WireError::HeaderTrailingBytes {
            len: bytes.len(),
            expected,
        });
    }
    if bytes[text.len()..expected - HEADER_ROOT_LEN]
        .iter()
        .any(|&b| b != 0)
    {
        return Err(invalid_header("padding before the root is not zero"));
    }
    // Split the text once; a length that splits a UTF-8 character fails here.
    let mut strings = [""; 4];
    let mut start = 0;
    for (string, len) in strings.iter_mut().zip(header.lengths()) {
        *string = text
            .get(start..start + len)
            .ok_or_else(|| invalid_header("a string length splits a UTF-8 character"))?;
        start += len;
    }
    let [dest_name, dest_addr, sender_name, sender_addr] = strings;
    check_fields(
        header.kind(),
        header.flags.to_native(),
        dest_name,
        dest_addr,
        header.sender_kind(),
        sender_name,
        sender_addr,
        limits,
    )?;
    Ok(header.fields())
}

/// Validates again with an error type that says why. Cold: the stream is
/// poisoned anyway.
#[cold]
fn bytecheck_failure(bytes: &[u8]) -> WireError {
    let reason = rkyv::api::low::access::<ArchivedRoutingHeader, rkyv::rancor::Error>(bytes)
        .err()
        .map_or_else(|| "bytecheck failed".to_owned(), |e| e.to_string());
    invalid_header(reason)
}

#[allow(clippy::too_many_arguments)] // one argument per header field
#[inline]
pub(crate) fn check_fields(
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
    if dest_name.len().max(sender_name.len()) > usize::from(u16::MAX) {
        return Err(invalid_header("a name is longer than 65535 bytes"));
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
