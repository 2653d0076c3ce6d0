"""A blocking hostmux client over TCP or a Unix socket.

::

    with Client.connect("tcp:127.0.0.1:7000", token_file="/etc/hostmux/token") as c:
        reply = c.request("echo", b"hello")        # bytes, or raises Undelivered

One thread may send while another receives (sending and receiving hold
separate locks); two threads must not receive at once.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .wire import (
    DEFAULT_LIMITS,
    DEFAULT_SERVICE_NAME,
    HELLO_PORT,
    Flags,
    Frame,
    FrameDecoder,
    FrameKind,
    Header,
    Limits,
    SenderKind,
    Undeliverable,
    UndeliverableReason,
    WireError,
    encode_frame,
    encode_hello,
    hello_refusal,
    is_hello_ack,
    validate_address,
    validate_name,
)

__all__ = [
    "Client",
    "ConnectFailed",
    "ConnectionClosed",
    "HelloRefused",
    "HostmuxError",
    "ProtocolError",
    "ReceiveTimeout",
    "Undelivered",
    "read_token_file",
]

_READ_CHUNK = 256 * 1024
DEFAULT_HELLO_TIMEOUT = 10.0
"""How long :meth:`Client.connect` waits for the ack (the host itself
closes a connection whose hello does not arrive within 10 s)."""


class HostmuxError(Exception):
    """Base of every error this package raises (wire errors aside)."""


class ConnectFailed(HostmuxError):
    """The host's address could not be reached (no listener, refused)."""


class HelloRefused(HostmuxError):
    """The host did not take the hello.

    ``reason`` is the refusal's ``UndeliverableReason`` when the host sent
    one (``PEER_REFUSED`` for a wrong token), else ``None`` (the host
    closed the connection: the name is in use or invalid, or a control
    socket refused the caller's uid: see ``detail``).
    """

    def __init__(self, message: str, reason: UndeliverableReason | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class ConnectionClosed(HostmuxError):
    """The host closed the connection (or it broke).

    ``last_notice`` is the connection-level ``Undeliverable`` (message id
    0, normally ``MALFORMED``) the host sent just before closing, if any.
    """

    def __init__(self, message: str, last_notice: Undeliverable | None = None) -> None:
        super().__init__(message)
        self.last_notice = last_notice


class ProtocolError(HostmuxError):
    """The host sent bytes that are not valid frames."""


class ReceiveTimeout(HostmuxError, TimeoutError):
    """Nothing (or not the awaited answer) arrived in time."""


class Undelivered(HostmuxError):
    """A request was answered with an ``Undeliverable`` notice."""

    def __init__(self, notice: Undeliverable, frame: Frame) -> None:
        super().__init__(str(notice))
        self.notice = notice
        self.frame = frame

    @property
    def reason(self) -> UndeliverableReason:
        return self.notice.reason


def read_token_file(path: str | os.PathLike[str]) -> bytes:
    """A token file's contents without trailing ASCII whitespace (the
    newline an editor or ``echo`` adds), as ``hostmux serve --token-file``
    reads it. Leading bytes are kept."""
    data = Path(path).read_bytes()
    return data.rstrip(b" \t\n\r\x0b\x0c")


def _open_socket(address: str, timeout: float | None) -> socket.socket:
    validate_address(address)
    try:
        if address.startswith("tcp:"):
            host, _, port = address[4:].rpartition(":")
            if host.startswith("["):
                host = host[1:-1]
            sock = socket.create_connection((host, int(port)), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        path = address[5:]
        target = "\0" + path[1:] if path.startswith("@") else path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(target)
        except BaseException:
            sock.close()
            raise
        return sock
    except OSError as e:
        raise ConnectFailed(
            f"cannot connect to {address}: {e}; is `hostmux serve` running there?"
        ) from e


class Client:
    """One connection to a host, after its hello was acknowledged.

    Use :meth:`connect`. Frames the client sends carry ``Client(name)`` as
    sender, so replies and notices come back to it by name.
    """

    def __init__(self, sock: socket.socket, name: str, address: str, limits: Limits) -> None:
        self._sock = sock
        self.name = name
        self.address = address
        self.limits = limits
        self._decoder = FrameDecoder(limits)
        self._pending: collections.deque[Frame] = collections.deque()
        self._out: list[bytes] = []
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._next_id = 1
        self._closed = False
        self._eof = False
        self._last_notice: Undeliverable | None = None
        sock.settimeout(None)
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)

    @classmethod
    def connect(
        cls: type[Client],
        address: str,
        *,
        name: str | None = None,
        token: bytes | str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        service_name: str = DEFAULT_SERVICE_NAME,
        hello_timeout: float = DEFAULT_HELLO_TIMEOUT,
        limits: Limits = DEFAULT_LIMITS,
    ) -> Client:
        """Connects to ``address`` (``tcp:HOST:PORT``, ``unix:/path`` or
        ``unix:@name``), says hello as ``name`` (default
        ``py-<pid>-<n>``) with the token (bytes or text, or read from
        ``token_file``; none for a host without a token or over its control
        socket) and waits for the ack.

        Raises :class:`ConnectFailed`, :class:`HelloRefused`, or
        :class:`ReceiveTimeout` if no answer came within ``hello_timeout``.
        """
        if token is not None and token_file is not None:
            raise ValueError("give token or token_file, not both")
        if token_file is not None:
            secret = read_token_file(token_file)
        elif isinstance(token, str):
            secret = token.encode("utf-8")
        else:
            secret = token or b""
        if name is None:
            name = _default_name()
        validate_name(name, limits.max_name_len)
        hello = encode_hello(name, secret, service_name, limits)
        sock = _open_socket(address, hello_timeout)
        client = cls(sock, name, address, limits)
        try:
            client._hello(hello, hello_timeout)
        except BaseException:
            client.close()
            raise
        return client

    def _hello(self, hello: bytes, timeout: float) -> None:
        self._write(hello)
        try:
            frame = self._read_frame(timeout)
        except ConnectionClosed as e:
            raise HelloRefused(
                f"{self.address} closed the connection without acknowledging the hello of "
                f"{self.name!r}: the name may be in use by another connection, or the host "
                f"refused it (see its log)"
            ) from e
        except ReceiveTimeout:
            raise ReceiveTimeout(
                f"no hello acknowledgement from {self.address} within {timeout} s"
            ) from None
        if is_hello_ack(frame):
            return
        refusal = hello_refusal(frame)
        if refusal is not None:
            raise HelloRefused(
                f"{self.address} refused the hello of {self.name!r}: wrong or missing token "
                f"(the host answered {refusal.name}; over a control socket, give no token)",
                refusal,
            )
        if frame.kind == FrameKind.CONTROL_RESPONSE and frame.header.dest_port == HELLO_PORT:
            text = frame.payload.decode("utf-8", "replace")
            words = "".join(c if c.isprintable() else " " for c in text).split()
            raise HelloRefused(f"{self.address} refused the connection: {' '.join(words)}")
        raise ProtocolError(f"expected a hello ack from {self.address}, got {frame.header}")

    # Sending -------------------------------------------------------------

    def next_message_id(self) -> int:
        """A fresh message id (1, 2, ...; 0 is what the host's
        connection-level notices carry)."""
        with self._send_lock:
            message_id = self._next_id
            self._next_id += 1
            return message_id

    def queue(
        self,
        to: str,
        payload: bytes = b"",
        *,
        port: int = 0,
        message_id: int | None = None,
        dest_addr: str = "",
        flags: Flags = Flags.RETURN_UNDELIVERABLE,
        to_client: bool = False,
        anonymous: bool = False,
    ) -> int:
        """Encodes a data frame into the send batch (written by
        :meth:`flush`); returns its message id.

        ``to`` is a proc name (a client's hello name with ``to_client``),
        ``dest_addr`` empty for this host or another host's address (the
        host forwards it only to a configured peer). ``anonymous`` sends
        without a sender name: no reply can come back (see docs/wire.md).
        """
        if message_id is None:
            message_id = self.next_message_id()
        if to_client:
            flags |= Flags.TO_CLIENT
        header = Header(
            kind=FrameKind.DATA,
            message_id=message_id,
            dest_name=to,
            dest_port=port,
            dest_addr=dest_addr,
            sender_kind=SenderKind.ANONYMOUS if anonymous else SenderKind.CLIENT,
            sender_name="" if anonymous else self.name,
            flags=flags,
        )
        frame = encode_frame(header, payload, self.limits)
        with self._send_lock:
            self._out.append(frame)
        return message_id

    def flush(self) -> None:
        """Writes every queued frame in one call."""
        with self._send_lock:
            batch, self._out = b"".join(self._out), []
            if batch:
                self._write(batch)

    def send(
        self,
        to: str,
        payload: bytes = b"",
        *,
        port: int = 0,
        message_id: int | None = None,
        dest_addr: str = "",
        flags: Flags = Flags.RETURN_UNDELIVERABLE,
        to_client: bool = False,
        anonymous: bool = False,
    ) -> int:
        """Queues (see :meth:`queue` for the options) and writes one data
        frame; returns its message id."""
        message_id = self.queue(
            to,
            payload,
            port=port,
            message_id=message_id,
            dest_addr=dest_addr,
            flags=flags,
            to_client=to_client,
            anonymous=anonymous,
        )
        self.flush()
        return message_id

    def send_raw(self, data: bytes) -> None:
        """Writes bytes as they are (prepared frames, or a test's hostile
        bytes), after anything queued."""
        self.flush()
        with self._send_lock:
            self._write(data)

    def _write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as e:
            raise ConnectionClosed(
                f"writing to {self.address} failed: {e}", self._last_notice
            ) from e

    def shutdown_write(self) -> None:
        """Half-closes: ends the stream towards the host. The host still
        sends the answers to frames sent before, then closes (within its
        half-close linger)."""
        self.flush()
        with self._send_lock:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                raise ConnectionClosed(f"half-closing {self.address} failed: {e}") from e

    # Receiving -----------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Frame:
        """The next frame from the host (a reply, a notice, a frame another
        party sent this client). ``timeout`` in seconds; ``None`` waits
        for ever. Raises :class:`ReceiveTimeout` or
        :class:`ConnectionClosed`."""
        with self._recv_lock:
            if self._pending:
                return self._pending.popleft()
            return self._read_frame(timeout)

    def __iter__(self) -> Iterator[Frame]:
        """Every frame until the host closes the connection."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed:
                return

    def request(
        self,
        to: str,
        payload: bytes = b"",
        *,
        timeout: float | None = 10.0,
        port: int = 0,
        message_id: int | None = None,
        dest_addr: str = "",
        flags: Flags = Flags.RETURN_UNDELIVERABLE,
        to_client: bool = False,
        anonymous: bool = False,
    ) -> Frame:
        """Sends a data frame and waits for the frame answering it (same
        message id, from where it went, or the host's notice about it).
        Frames that arrive meanwhile with other ids stay for :meth:`recv`.
        Returns the reply frame; raises :class:`Undelivered` for a notice,
        :class:`ReceiveTimeout`, or :class:`ConnectionClosed`."""
        message_id = self.send(
            to,
            payload,
            port=port,
            message_id=message_id,
            dest_addr=dest_addr,
            flags=flags,
            to_client=to_client,
            anonymous=anonymous,
        )
        return self.wait_for(message_id, answered_by=to, timeout=timeout)

    def wait_for(
        self,
        message_id: int,
        *,
        answered_by: str | None = None,
        timeout: float | None = 10.0,
    ) -> Frame:
        """Waits for the answer to ``message_id`` (see :meth:`request`):
        an ``Undeliverable`` notice with that id, or a data frame with that
        id whose sender is named ``answered_by`` (any sender if ``None``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._recv_lock:
            for index, frame in enumerate(self._pending):
                if _answers(frame, message_id, answered_by):
                    del self._pending[index]
                    return _reply_or_raise(frame)
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    frame = self._read_frame(left)
                except ReceiveTimeout:
                    raise ReceiveTimeout(
                        f"no answer to message {message_id} from {self.address} within {timeout} s"
                    ) from None
                if _answers(frame, message_id, answered_by):
                    return _reply_or_raise(frame)
                self._pending.append(frame)

    def _read_frame(self, timeout: float | None) -> Frame:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                frame = self._decoder.next_frame()
            except WireError as e:
                raise ProtocolError(f"{self.address} sent an invalid frame: {e}") from e
            if frame is not None:
                self._note(frame)
                return frame
            if self._eof:
                raise ConnectionClosed(f"{self.address} closed the connection", self._last_notice)
            # Wait with poll, not a socket timeout: the socket stays
            # blocking, so a sender in another thread is never timed out.
            left = None if deadline is None else deadline - time.monotonic()
            wait_ms = None if left is None else max(0, math.ceil(left * 1000))
            if not self._poll.poll(wait_ms):
                if deadline is not None and time.monotonic() >= deadline:
                    raise ReceiveTimeout(f"nothing from {self.address} within {timeout} s")
                continue
            try:
                data = self._sock.recv(_READ_CHUNK)
            except OSError as e:
                raise ConnectionClosed(
                    f"reading from {self.address} failed: {e}", self._last_notice
                ) from e
            if not data:
                self._eof = True
                try:
                    self._decoder.finish()
                except WireError as e:
                    raise ConnectionClosed(
                        f"{self.address} closed the connection mid-frame: {e}"
                    ) from e
                continue
            self._decoder.feed(data)

    def _note(self, frame: Frame) -> None:
        if frame.kind == FrameKind.UNDELIVERABLE and frame.message_id == 0:
            with contextlib.suppress(WireError):
                self._last_notice = frame.undeliverable()

    # Lifetime ------------------------------------------------------------

    def close(self) -> None:
        """Closes the connection (frames queued and not flushed are lost)."""
        if not self._closed:
            self._closed = True
            self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _answers(frame: Frame, message_id: int, answered_by: str | None) -> bool:
    if frame.message_id != message_id:
        return False
    if frame.kind == FrameKind.UNDELIVERABLE:
        return True
    return frame.kind == FrameKind.DATA and answered_by in (None, frame.header.sender_name)


def _reply_or_raise(frame: Frame) -> Frame:
    notice = frame.undeliverable()
    if notice is not None:
        raise Undelivered(notice, frame)
    return frame


_names_made = 0
_names_lock = threading.Lock()


def _default_name() -> str:
    global _names_made
    with _names_lock:
        _names_made += 1
        return f"py-{os.getpid()}-{_names_made}"
