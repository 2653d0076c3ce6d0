"""The client against a scripted fake host on a Unix socket: the hello's
outcomes and request/reply matching, without a real host."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import unittest
from typing import Callable

from hostmux_client import Client, HelloRefused, ReceiveTimeout, Undelivered
from hostmux_client.wire import (
    HELLO_PORT,
    Flags,
    FrameDecoder,
    FrameKind,
    Header,
    SenderKind,
    Undeliverable,
    UndeliverableReason,
    encode_frame,
)

DEADLINE = 10.0


def from_service(kind: FrameKind, message_id: int, to: str, port: int, payload: bytes) -> bytes:
    return encode_frame(
        Header(
            kind=kind,
            message_id=message_id,
            dest_name=to,
            dest_port=port,
            sender_kind=SenderKind.PROC,
            sender_name="service",
            flags=Flags.TO_CLIENT,
        ),
        payload,
    )


def ack(to: str) -> bytes:
    return from_service(FrameKind.DATA, 0, to, HELLO_PORT, b"")


def reply(to: str, message_id: int, sender: str, payload: bytes) -> bytes:
    return encode_frame(
        Header(
            kind=FrameKind.DATA,
            message_id=message_id,
            dest_name=to,
            sender_kind=SenderKind.PROC,
            sender_name=sender,
            flags=Flags.TO_CLIENT,
        ),
        payload,
    )


class FakeHost:
    """Accepts one connection, reads the hello, and calls ``script`` with
    the connection and the frames decoded so far."""

    def __init__(self, script: Callable[[socket.socket, FakeHost], None]) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "host.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.decoder = FrameDecoder()
        self.failure: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self.thread.start()

    def read_frame(self, conn: socket.socket) -> Header:
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                return frame.header
            data = conn.recv(65536)
            if not data:
                raise EOFError("client closed")
            self.decoder.feed(data)

    def _serve(self, script: Callable[[socket.socket, FakeHost], None]) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(DEADLINE)
                hello = self.read_frame(conn)
                assert hello.dest_port == HELLO_PORT and hello.dest_name == "service", hello
                script(conn, self)
        except BaseException as e:  # reported by close()
            self.failure.append(e)

    @property
    def address(self) -> str:
        return f"unix:{self.path}"

    def close(self) -> None:
        self.thread.join(DEADLINE)
        self.listener.close()
        self.dir.cleanup()
        if self.failure:
            raise self.failure[0]


class Hello(unittest.TestCase):
    def connect_to(self, script: Callable[[socket.socket, FakeHost], None]) -> Client | None:
        host = FakeHost(script)
        try:
            return Client.connect(host.address, name="c1", hello_timeout=DEADLINE)
        finally:
            host.close()

    def test_an_ack_connects(self) -> None:
        client = self.connect_to(lambda conn, host: conn.sendall(ack("c1")))
        assert client is not None
        client.close()

    def test_a_refusal_names_its_reason(self) -> None:
        refusal = from_service(
            FrameKind.UNDELIVERABLE,
            0,
            "c1",
            HELLO_PORT,
            Undeliverable(0, UndeliverableReason.PEER_REFUSED).to_bytes(),
        )
        with self.assertRaises(HelloRefused) as caught:
            self.connect_to(lambda conn, host: conn.sendall(refusal))
        self.assertEqual(caught.exception.reason, UndeliverableReason.PEER_REFUSED)

    def test_a_close_without_an_answer(self) -> None:
        with self.assertRaises(HelloRefused) as caught:
            self.connect_to(lambda conn, host: None)
        self.assertIsNone(caught.exception.reason)

    def test_a_control_socket_refusal_shows_the_hosts_words(self) -> None:
        words = b"\x00\x05uid 65534 is not allowed to control this host\x00"
        refusal = from_service(FrameKind.CONTROL_RESPONSE, 0, "c1", HELLO_PORT, words)
        with self.assertRaises(HelloRefused) as caught:
            self.connect_to(lambda conn, host: conn.sendall(refusal))
        self.assertIn("uid 65534 is not allowed", str(caught.exception))


class RequestReply(unittest.TestCase):
    def test_request_takes_its_own_answer_and_leaves_the_rest(self) -> None:
        def script(conn: socket.socket, host: FakeHost) -> None:
            conn.sendall(ack("c1"))
            request = host.read_frame(conn)
            # Another party's frame with the same id, an unrelated frame,
            # then the answer from the proc the request went to.
            conn.sendall(
                reply("c1", request.message_id, "other", b"not it")
                + reply("c1", 999, "echo", b"later")
                + reply("c1", request.message_id, "echo", b"it")
            )
            second = host.read_frame(conn)
            conn.sendall(
                from_service(
                    FrameKind.UNDELIVERABLE,
                    second.message_id,
                    "c1",
                    0,
                    Undeliverable(second.message_id, UndeliverableReason.LINK_FAILED).to_bytes(),
                )
            )
            host.read_frame(conn)  # the third request: never answered
            while conn.recv(65536):  # until the client closes
                pass

        host = FakeHost(script)
        try:
            with Client.connect(host.address, name="c1", hello_timeout=DEADLINE) as client:
                self.assertEqual(client.request("echo", b"q", timeout=DEADLINE).payload, b"it")
                with self.assertRaises(Undelivered) as caught:
                    client.request("echo", b"q2", dest_addr="tcp:10.0.0.2:7000", timeout=DEADLINE)
                self.assertEqual(caught.exception.reason, UndeliverableReason.LINK_FAILED)
                with self.assertRaises(ReceiveTimeout):
                    client.request("echo", b"q3", timeout=0.05)
                # The frames request() passed over, in arrival order.
                self.assertEqual(client.recv(timeout=DEADLINE).payload, b"not it")
                self.assertEqual(client.recv(timeout=DEADLINE).payload, b"later")
        finally:
            host.close()


if __name__ == "__main__":
    unittest.main()
