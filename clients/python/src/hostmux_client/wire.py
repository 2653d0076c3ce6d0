"""The hostmux wire format (docs/wire.md, version 1), without I/O.

A frame is a 16-byte prefix, a routing header (the fixed rkyv layout the
document gives: the four strings back to back, zero padding to 8, a 32-byte
root) padded to 16, and a payload padded to 16. Everything is little-endian.

:func:`encode_frame` writes one frame, :func:`decode_frame` reads exactly
one, and :class:`FrameDecoder` splits a byte stream into frames. Decoding
checks everything docs/wire.md says a receiver checks and raises a
:class:`WireError` subclass naming what is wrong; it never reads past the
bytes it was given and never trusts a length before checking it against
:class:`Limits`.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass, field

__all__ = [
    "AGENT_PORT",
    "DEFAULT_LIMITS",
    "DEFAULT_SERVICE_NAME",
    "HELLO_PORT",
    "LINK_PORT",
    "MAX_ADDR_LEN",
    "MAX_HELLO_LEN",
    "PREFIX_LEN",
    "UNDELIVERABLE_LEN",
    "Flags",
    "Frame",
    "FrameDecoder",
    "FrameKind",
    "FrameTooLong",
    "Header",
    "HeaderTooLong",
    "HeaderTrailingBytes",
    "InvalidAddress",
    "InvalidHeader",
    "InvalidName",
    "InvalidPayload",
    "Limits",
    "MalformedPrefix",
    "Misaligned",
    "SenderKind",
    "TrailingBytes",
    "Truncated",
    "Undeliverable",
    "UndeliverableReason",
    "WireError",
    "decode_frame",
    "encode_frame",
    "encode_hello",
    "hello_refusal",
    "is_hello_ack",
    "validate_address",
    "validate_name",
]

PREFIX_LEN = 16
"""Bytes in a frame's prefix."""
FRAME_ALIGN = 16
"""Every frame, header and payload starts at a multiple of this."""
ROOT_LEN = 32
"""Bytes in the routing header's root (the header's last 32 bytes)."""
MAGIC = b"hm"
VERSION = 1
HELLO_PORT = 0xFFFF_FFFF
"""The reserved port of hellos, hello acks and hello refusals."""
AGENT_PORT = 0xFFFF_FFFE
"""The reserved port every proc's agent listens on (the host's only)."""
LINK_PORT = 0xFFFF_FFFD
"""The reserved port of link status frames between hosts."""
MAX_HELLO_LEN = 4096
"""The largest hello a host reads (prefix, header, token, padding)."""
UNDELIVERABLE_LEN = 16
"""Bytes in an ``Undeliverable`` payload."""
MAX_ADDR_LEN = 255
MAX_UNIX_PATH_LEN = 107
DEFAULT_SERVICE_NAME = "service"
"""The name of the service proc of a host run by ``hostmux serve``."""

_PREFIX = struct.Struct("<IIIBBBB")
# message_id, dest_port, flags, kind, sender_kind, 4 lengths, text offset, text len
_ROOT = struct.Struct("<QIHBBHHHHiI")
_UNDELIVERABLE = struct.Struct("<QB7x")


class WireError(ValueError):
    """Bytes that are not a valid frame, or a frame that cannot be encoded."""


class Truncated(WireError):
    """The bytes end inside a frame."""


class FrameTooLong(WireError):
    """``frame_len`` is over the limit."""


class HeaderTooLong(WireError):
    """``header_len`` is over the limit."""


class MalformedPrefix(WireError):
    """Wrong magic or version, reserved byte set, or lengths that disagree."""


class Misaligned(WireError):
    """``frame_len`` not a multiple of 16 or ``header_len`` not of 8."""


class InvalidHeader(WireError):
    """The routing header breaks the layout or a field rule."""


class HeaderTrailingBytes(WireError):
    """``header_len`` is larger than the header's contents need."""


class TrailingBytes(WireError):
    """A single-frame buffer holds bytes after the frame."""


class InvalidPayload(WireError):
    """A payload the protocol defines (an ``Undeliverable``) is invalid."""


class InvalidName(WireError):
    """A proc or client name breaks the name rules."""


class InvalidAddress(WireError):
    """An address breaks the address rules."""


class FrameKind(enum.IntEnum):
    """The ``kind`` byte of the routing header."""

    DATA = 0
    UNDELIVERABLE = 1
    CONTROL_REQUEST = 2
    CONTROL_RESPONSE = 3


class SenderKind(enum.IntEnum):
    """The ``sender_kind`` byte of the routing header."""

    ANONYMOUS = 0
    CLIENT = 1
    PROC = 2


class Flags(enum.IntFlag):
    """The flag bits (bits 0-7 of ``flags``; the hop count is separate)."""

    NONE = 0
    RETURN_UNDELIVERABLE = 1
    TO_CLIENT = 2
    FROM_CLIENT = 4


_KNOWN_FLAGS = 0b111


class UndeliverableReason(enum.IntEnum):
    """Why a host did not deliver a frame (an ``Undeliverable`` payload)."""

    NO_SUCH_PROC = 0
    NOT_READY = 1
    PROC_EXITED = 2
    OVERLOADED = 3
    OVERSIZED = 4
    MALFORMED = 5
    HOP_LIMIT = 6
    NOT_A_PEER = 7
    HOST_UNREACHABLE = 8
    LINK_FAILED = 9
    PEER_REFUSED = 10

    @property
    def description(self) -> str:
        """A few lowercase words, as the host's own logs say it."""
        return _REASON_TEXT[self]


_REASON_TEXT = {
    UndeliverableReason.NO_SUCH_PROC: "no such proc",
    UndeliverableReason.NOT_READY: "proc not ready",
    UndeliverableReason.PROC_EXITED: "proc exited",
    UndeliverableReason.OVERLOADED: "overloaded",
    UndeliverableReason.OVERSIZED: "oversized",
    UndeliverableReason.MALFORMED: "malformed",
    UndeliverableReason.HOP_LIMIT: "hop limit reached",
    UndeliverableReason.NOT_A_PEER: "not a peer of the host",
    UndeliverableReason.HOST_UNREACHABLE: "host unreachable",
    UndeliverableReason.LINK_FAILED: "link to the host failed",
    UndeliverableReason.PEER_REFUSED: "refused by the peer host",
}


@dataclass(frozen=True)
class Limits:
    """What a receiver accepts; the defaults are a host's defaults."""

    max_frame_len: int = 16 << 20
    max_header_len: int = 512
    max_name_len: int = 64


DEFAULT_LIMITS = Limits()
"""A host's default limits."""


@dataclass(frozen=True)
class Header:
    """A routing header's fields.

    ``flags`` holds the flag bits only; the hop count (the high byte of the
    wire's ``flags`` field) is ``hops``. ``sender_name``/``sender_addr``
    must be empty for an anonymous sender; a client's address is empty.
    """

    kind: FrameKind
    message_id: int
    dest_name: str
    dest_port: int = 0
    dest_addr: str = ""
    sender_kind: SenderKind = SenderKind.ANONYMOUS
    sender_name: str = ""
    sender_addr: str = ""
    flags: Flags = Flags.NONE
    hops: int = 0

    @property
    def to_client(self) -> bool:
        """``TO_CLIENT``: ``dest_name`` names a client connection."""
        return bool(self.flags & Flags.TO_CLIENT)


@dataclass(frozen=True)
class Undeliverable:
    """The payload of an ``Undeliverable`` notice: which frame, and why."""

    original_message_id: int
    reason: UndeliverableReason

    def to_bytes(self) -> bytes:
        """The 16 payload bytes."""
        return _UNDELIVERABLE.pack(self.original_message_id, int(self.reason))

    @classmethod
    def decode(cls, payload: bytes) -> Undeliverable:
        """Reads a notice's payload; raises :class:`InvalidPayload`."""
        if len(payload) != UNDELIVERABLE_LEN:
            raise InvalidPayload(
                f"undeliverable payload is {len(payload)} bytes, not {UNDELIVERABLE_LEN}"
            )
        message_id, reason = _UNDELIVERABLE.unpack(payload)
        if any(payload[9:]):
            raise InvalidPayload("undeliverable payload padding is not zero")
        try:
            return cls(message_id, UndeliverableReason(reason))
        except ValueError:
            raise InvalidPayload(f"unknown undeliverable reason {reason}") from None

    def __str__(self) -> str:
        return f"message {self.original_message_id} undeliverable: {self.reason.description}"


@dataclass(frozen=True)
class Frame:
    """A decoded frame: its header and payload (padding removed)."""

    header: Header
    payload: bytes = field(repr=False)

    @property
    def kind(self) -> FrameKind:
        return self.header.kind

    @property
    def message_id(self) -> int:
        return self.header.message_id

    def undeliverable(self) -> Undeliverable | None:
        """The notice this frame carries, if it is an ``Undeliverable``
        frame (raises :class:`InvalidPayload` if its payload is invalid)."""
        if self.header.kind != FrameKind.UNDELIVERABLE:
            return None
        return Undeliverable.decode(self.payload)


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


_NAME_BYTES = re.compile(rb"[A-Za-z0-9._-]*")


def validate_name(name: str, max_len: int = Limits.max_name_len) -> None:
    """Raises :class:`InvalidName` unless ``name`` is 1 to ``max_len``
    bytes of ``[A-Za-z0-9._-]`` not starting with ``.``."""
    raw = name.encode("utf-8")
    if not raw:
        raise InvalidName("name is empty")
    if len(raw) > max_len:
        raise InvalidName(f"name {name!r} is longer than {max_len} bytes")
    if not _NAME_BYTES.fullmatch(raw):
        raise InvalidName(f"name {name!r} has a byte outside [A-Za-z0-9._-]")
    if raw[0] == ord("."):
        raise InvalidName(f"name {name!r} starts with '.'")


def _valid_port(text: str) -> bool:
    return (
        text.isdigit() and text.isascii() and (text == "0" or text[0] != "0") and int(text) <= 65535
    )


def validate_address(addr: str) -> None:
    """Raises :class:`InvalidAddress` unless ``addr`` is ``tcp:HOST:PORT``,
    ``unix:/absolute/path`` or ``unix:@abstract-name`` (docs/wire.md)."""
    if len(addr.encode("utf-8")) > MAX_ADDR_LEN:
        raise InvalidAddress(f"address is longer than {MAX_ADDR_LEN} bytes")
    if "\0" in addr:
        raise InvalidAddress("address contains a NUL byte")
    if addr.startswith("tcp:"):
        host, sep, port = addr[4:].rpartition(":")
        if not sep or not _valid_port(port):
            raise InvalidAddress(f"{addr!r}: tcp address needs :PORT (decimal, no leading zeros)")
        if host.startswith("["):
            import ipaddress

            if not host.endswith("]"):
                raise InvalidAddress(f"{addr!r}: IPv6 host lacks a closing ']'")
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                raise InvalidAddress(f"{addr!r}: bracketed host is not an IPv6 address") from None
        elif not host or not all(c.isascii() and (c.isalnum() or c in ".-") for c in host):
            raise InvalidAddress(f"{addr!r}: tcp host must be [A-Za-z0-9.-] or [IPv6]")
        return
    if addr.startswith("unix:"):
        path = addr[5:]
        if not (path.startswith("/") or path.startswith("@")) or len(path) < 2:
            raise InvalidAddress(
                f"{addr!r}: unix address must be unix:/absolute/path or unix:@name"
            )
        body = path[1:] if path.startswith("@") else path
        if len(body.encode("utf-8")) > MAX_UNIX_PATH_LEN:
            raise InvalidAddress(f"{addr!r}: unix path is longer than {MAX_UNIX_PATH_LEN} bytes")
        return
    raise InvalidAddress(f"{addr!r}: an address starts with tcp: or unix:")


def _check_fields(header: Header, limits: Limits) -> None:
    reply = header.kind in (FrameKind.UNDELIVERABLE, FrameKind.CONTROL_RESPONSE)
    try:
        if not (reply and header.dest_name == ""):
            validate_name(header.dest_name, limits.max_name_len)
        if header.dest_addr:
            validate_address(header.dest_addr)
        if header.sender_kind == SenderKind.ANONYMOUS:
            if header.sender_name or header.sender_addr:
                raise InvalidHeader("anonymous sender has a name or address")
        else:
            if header.sender_kind == SenderKind.CLIENT and header.sender_addr:
                raise InvalidHeader("client sender has an address")
            validate_name(header.sender_name, limits.max_name_len)
            if header.sender_addr:
                validate_address(header.sender_addr)
    except (InvalidName, InvalidAddress) as e:
        raise InvalidHeader(str(e)) from None
    if int(header.flags) & ~_KNOWN_FLAGS & 0xFF:
        raise InvalidHeader(f"unknown flag bits {int(header.flags):#04x}")
    if not 0 <= header.hops <= 255:
        raise InvalidHeader(f"hop count {header.hops} is not a byte")
    if not 0 <= header.message_id < 1 << 64:
        raise InvalidHeader(f"message id {header.message_id} is not a u64")
    if not 0 <= header.dest_port < 1 << 32:
        raise InvalidHeader(f"port {header.dest_port} is not a u32")


def _encode_header(header: Header) -> bytes:
    strings = [
        s.encode("utf-8")
        for s in (header.dest_name, header.dest_addr, header.sender_name, header.sender_addr)
    ]
    text = b"".join(strings)
    padded = _align(len(text), 8)
    root = _ROOT.pack(
        header.message_id,
        header.dest_port,
        (int(header.flags) & 0xFF) | (header.hops << 8),
        int(header.kind),
        int(header.sender_kind),
        *(len(s) for s in strings),
        -(padded + 24),
        len(text),
    )
    return text + bytes(padded - len(text)) + root


def encode_frame(header: Header, payload: bytes = b"", limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The canonical encoding of one frame. Raises :class:`WireError`
    (:class:`InvalidHeader`, :class:`HeaderTooLong`, :class:`FrameTooLong`)
    for a header or size the receiver would refuse."""
    _check_fields(header, limits)
    head = _encode_header(header)
    if len(head) > limits.max_header_len:
        raise HeaderTooLong(
            f"header is {len(head)} bytes, over the limit of {limits.max_header_len}"
        )
    frame_len = PREFIX_LEN + _align(len(head), FRAME_ALIGN) + _align(len(payload), FRAME_ALIGN)
    if frame_len > limits.max_frame_len:
        raise FrameTooLong(f"frame is {frame_len} bytes, over the limit of {limits.max_frame_len}")
    prefix = _PREFIX.pack(frame_len, len(head), len(payload), MAGIC[0], MAGIC[1], VERSION, 0)
    return b"".join(
        (
            prefix,
            head,
            bytes(_align(len(head), FRAME_ALIGN) - len(head)),
            payload,
            bytes(_align(len(payload), FRAME_ALIGN) - len(payload)),
        )
    )


def _parse_prefix(prefix: bytes, limits: Limits) -> tuple[int, int, int]:
    frame_len, header_len, payload_len, m0, m1, version, reserved = _PREFIX.unpack(prefix)
    if bytes((m0, m1)) != MAGIC:
        raise MalformedPrefix('magic bytes are not "hm"')
    if version != VERSION:
        raise MalformedPrefix(f"unsupported protocol version {version}")
    if reserved != 0:
        raise MalformedPrefix("reserved byte is not zero")
    if frame_len > limits.max_frame_len:
        raise FrameTooLong(
            f"frame announces {frame_len} bytes, over the limit of {limits.max_frame_len}"
        )
    if frame_len % FRAME_ALIGN:
        raise Misaligned(f"frame length {frame_len} is not a multiple of 16")
    if header_len > limits.max_header_len:
        raise HeaderTooLong(
            f"header is {header_len} bytes, over the limit of {limits.max_header_len}"
        )
    if header_len % 8:
        raise Misaligned(f"header length {header_len} is not a multiple of 8")
    implied = PREFIX_LEN + _align(header_len, FRAME_ALIGN) + _align(payload_len, FRAME_ALIGN)
    if implied != frame_len:
        raise MalformedPrefix(
            f"frame_len {frame_len} disagrees with header_len {header_len} "
            f"and payload_len {payload_len}"
        )
    return frame_len, header_len, payload_len


def _decode_header(raw: bytes, limits: Limits) -> Header:
    if len(raw) < ROOT_LEN:
        raise InvalidHeader(f"header is {len(raw)} bytes, shorter than its {ROOT_LEN}-byte root")
    (message_id, port, flags, kind, sender_kind, *lengths, text_offset, text_len) = _ROOT.unpack(
        raw[-ROOT_LEN:]
    )
    try:
        frame_kind = FrameKind(kind)
    except ValueError:
        raise InvalidHeader(f"unknown frame kind tag {kind}") from None
    try:
        sender = SenderKind(sender_kind)
    except ValueError:
        raise InvalidHeader(f"unknown sender kind tag {sender_kind}") from None
    if text_offset != -(len(raw) - ROOT_LEN + 24):
        raise InvalidHeader("header text does not start at offset 0")
    if text_len > len(raw) - ROOT_LEN:
        raise InvalidHeader("header text runs into its root")
    if sum(lengths) != text_len:
        raise InvalidHeader("string lengths do not add up to the text length")
    if len(raw) != _align(text_len, 8) + ROOT_LEN:
        raise HeaderTrailingBytes(
            f"header is {len(raw)} bytes where {_align(text_len, 8) + ROOT_LEN} are needed"
        )
    if any(raw[text_len : len(raw) - ROOT_LEN]):
        raise InvalidHeader("padding before the root is not zero")
    strings: list[str] = []
    at = 0
    for length in lengths:
        try:
            strings.append(raw[at : at + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidHeader("header text is not UTF-8 or a length splits a character") from None
        at += length
    if flags & 0xFF & ~_KNOWN_FLAGS:
        raise InvalidHeader(f"unknown flag bits {flags:#06x}")
    header = Header(
        kind=frame_kind,
        message_id=message_id,
        dest_name=strings[0],
        dest_port=port,
        dest_addr=strings[1],
        sender_kind=sender,
        sender_name=strings[2],
        sender_addr=strings[3],
        flags=Flags(flags & 0xFF),
        hops=flags >> 8,
    )
    _check_fields(header, limits)
    return header


def _decode_body(
    buf: bytes, header_len: int, payload_len: int, frame_len: int, limits: Limits
) -> Frame:
    header_end = PREFIX_LEN + header_len
    payload_at = PREFIX_LEN + _align(header_len, FRAME_ALIGN)
    payload_end = payload_at + payload_len
    if any(buf[header_end:payload_at]) or any(buf[payload_end:frame_len]):
        raise InvalidHeader("frame padding is not zero")
    header = _decode_header(bytes(buf[PREFIX_LEN:header_end]), limits)
    return Frame(header, bytes(buf[payload_at:payload_end]))


def decode_frame(buf: bytes, limits: Limits = DEFAULT_LIMITS) -> Frame:
    """Decodes exactly one frame: raises :class:`Truncated` if ``buf`` ends
    inside it, :class:`TrailingBytes` if bytes follow it."""
    if len(buf) < PREFIX_LEN:
        raise Truncated(f"{len(buf)} bytes, a prefix needs {PREFIX_LEN}")
    frame_len, header_len, payload_len = _parse_prefix(bytes(buf[:PREFIX_LEN]), limits)
    if len(buf) < frame_len:
        raise Truncated(f"{len(buf)} bytes, the frame needs {frame_len}")
    if len(buf) > frame_len:
        raise TrailingBytes(f"{len(buf) - frame_len} bytes after the frame")
    return _decode_body(buf, header_len, payload_len, frame_len, limits)


class FrameDecoder:
    """Splits a byte stream into frames.

    :meth:`feed` bytes as they arrive, then call :meth:`next_frame` until it
    returns ``None``. A prefix is checked against the limits as soon as its
    16 bytes are here, before the rest is buffered. After any error the
    stream has no trustworthy frame boundary: the decoder is poisoned and
    raises the same error again.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buf = bytearray()
        self._at = 0
        self._error: WireError | None = None

    def feed(self, data: bytes) -> None:
        """Appends received bytes."""
        if self._at and self._at >= len(self._buf) // 2:
            del self._buf[: self._at]
            self._at = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
        return len(self._buf) - self._at

    def next_frame(self) -> Frame | None:
        """The next whole frame, or ``None`` until more bytes arrive."""
        if self._error is not None:
            raise self._error
        try:
            if len(self._buf) - self._at < PREFIX_LEN:
                return None
            at = self._at
            frame_len, header_len, payload_len = _parse_prefix(
                bytes(self._buf[at : at + PREFIX_LEN]), self.limits
            )
            if len(self._buf) - at < frame_len:
                return None
            view = memoryview(self._buf)[at : at + frame_len]
            try:
                frame = _decode_body(bytes(view), header_len, payload_len, frame_len, self.limits)
            finally:
                view.release()
            self._at = at + frame_len
            return frame
        except WireError as e:
            self._error = e
            raise

    def finish(self) -> None:
        """At end of stream: raises :class:`Truncated` if a partial frame is
        left."""
        if self._error is not None:
            raise self._error
        if self.buffered:
            raise Truncated(f"the stream ended {self.buffered} bytes into a frame")


def encode_hello(
    client_name: str,
    token: bytes = b"",
    service_name: str = DEFAULT_SERVICE_NAME,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """A client's hello: a data frame to the service proc on
    :data:`HELLO_PORT`, message id 0, no flags, from ``Client(client_name)``,
    payload the token. At most :data:`MAX_HELLO_LEN` bytes."""
    header = Header(
        kind=FrameKind.DATA,
        message_id=0,
        dest_name=service_name,
        dest_port=HELLO_PORT,
        sender_kind=SenderKind.CLIENT,
        sender_name=client_name,
    )
    hello_limits = Limits(
        max_frame_len=min(limits.max_frame_len, MAX_HELLO_LEN),
        max_header_len=limits.max_header_len,
        max_name_len=limits.max_name_len,
    )
    return encode_frame(header, token, hello_limits)


def _from_own_host(frame: Frame) -> bool:
    h = frame.header
    return (
        h.dest_port == HELLO_PORT
        and h.to_client
        and h.sender_kind == SenderKind.PROC
        and h.sender_addr == ""
    )


def is_hello_ack(frame: Frame) -> bool:
    """Whether ``frame`` is a host's ack of a hello."""
    return frame.kind == FrameKind.DATA and _from_own_host(frame)


def hello_refusal(frame: Frame) -> UndeliverableReason | None:
    """The reason of a host's hello refusal (an ``Undeliverable`` on the
    hello port), or ``None`` if ``frame`` is not one."""
    if frame.kind != FrameKind.UNDELIVERABLE or not _from_own_host(frame):
        return None
    try:
        return Undeliverable.decode(frame.payload).reason
    except InvalidPayload:
        return None
