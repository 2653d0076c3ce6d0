"""The client against a real ``hostmux serve`` with an echo proc.

The ``hostmux`` binary comes from ``$HOSTMUX_BIN``, else the repository's
``target/debug/hostmux`` (``.ci/run`` builds it before). Without one these
tests fail: they do not skip. Every wait is on a real event with a deadline.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
from pathlib import Path

from test_wire import documented_frames

from hostmux_client import (
    Client,
    ConnectionClosed,
    Flags,
    FrameKind,
    HelloRefused,
    SenderKind,
    UndeliverableReason,
    Undelivered,
)
from hostmux_client.wire import PREFIX_LEN

REPO = Path(__file__).resolve().parents[3]
DEADLINE = 20.0
TOKEN = "s3cret"


def hostmux_bin() -> str:
    path = os.environ.get("HOSTMUX_BIN") or str(REPO / "target" / "debug" / "hostmux")
    if not os.access(path, os.X_OK):
        raise AssertionError(
            f"no hostmux binary at {path}: build it (cargo build --bin hostmux) or set HOSTMUX_BIN"
        )
    return path


def die_with_parent() -> None:
    """In the serve child before exec: SIGTERM it when the test process
    dies, so that a killed test run leaves no host (and its procs) behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Host:
    """A ``hostmux serve`` child with a token and an echo proc."""

    def __init__(self, frontend: str | None = None) -> None:
        self.bin = hostmux_bin()
        self.dir = tempfile.mkdtemp(prefix="hmpy-")
        self.control = os.path.join(self.dir, "control.sock")
        self.token_file = os.path.join(self.dir, "token")
        Path(self.token_file).write_text(TOKEN + "\n")
        self.frontend = frontend or f"tcp:127.0.0.1:{free_port()}"
        self.frontend = self.frontend.replace("DIR", self.dir)
        env = dict(os.environ, HOSTMUX_LOG="error")
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [
                self.bin,
                "serve",
                "--frontend",
                self.frontend,
                "--control-socket",
                self.control,
                "--token-file",
                self.token_file,
                "--shutdown-grace",
                "2s",
            ],
            stdout=subprocess.PIPE,
            env=env,
            preexec_fn=die_with_parent,
        )
        serving = threading.Event()

        def watch() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if b"hostmux serving on" in line:
                    serving.set()

        threading.Thread(target=watch, daemon=True).start()
        if not serving.wait(DEADLINE):
            self.stop()
            raise AssertionError(f"hostmux serve did not report serving within {DEADLINE} s")
        self.spawn("echo")

    def spawn(self, name: str) -> None:
        out = subprocess.run(
            [self.bin, "spawn", name, "--", self.bin, "__proc", "echo"],
            env=dict(os.environ, HOSTMUX_CONTROL_SOCKET=self.control),
            capture_output=True,
            timeout=DEADLINE,
        )
        if out.returncode != 0:
            raise AssertionError(f"spawn {name} failed ({out.returncode}): {out.stderr.decode()}")

    def connect(self, **options: object) -> Client:
        options.setdefault("token", TOKEN)
        options.setdefault("hello_timeout", DEADLINE)
        return Client.connect(self.frontend, **options)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class AgainstAHost(unittest.TestCase):
    host: Host

    @classmethod
    def setUpClass(cls) -> None:
        cls.host = Host()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.host.stop()

    def test_round_trip_over_tcp_with_the_token(self) -> None:
        with self.host.connect(name="rt-tcp") as client:
            reply = client.request("echo", b"hello hostmux", port=9, timeout=DEADLINE)
        self.assertEqual(reply.payload, b"hello hostmux")
        self.assertEqual(reply.kind, FrameKind.DATA)
        self.assertEqual(reply.header.dest_name, "rt-tcp")
        self.assertTrue(reply.header.to_client)
        self.assertEqual(reply.header.dest_port, 9)
        self.assertEqual(
            (reply.header.sender_kind, reply.header.sender_name, reply.header.sender_addr),
            (SenderKind.PROC, "echo", ""),
        )

    def test_round_trip_over_the_control_socket_without_a_token(self) -> None:
        with Client.connect(
            f"unix:{self.host.control}", name="rt-unix", hello_timeout=DEADLINE
        ) as client:
            self.assertEqual(
                client.request("echo", b"x" * 1000, timeout=DEADLINE).payload, b"x" * 1000
            )

    def test_ten_thousand_pipelined_frames_are_each_answered_once(self) -> None:
        count = 10_000
        with self.host.connect(name="pipeline") as client:
            failure: list[BaseException] = []

            def send_all() -> None:
                try:
                    for batch in range(0, count, 500):
                        for i in range(batch, batch + 500):
                            client.queue("echo", i.to_bytes(4, "little"), message_id=i + 1)
                        client.flush()
                except BaseException as e:  # reported by the receiving side
                    failure.append(e)

            sender = threading.Thread(target=send_all)
            sender.start()
            answers: dict[int, int] = {}
            for _ in range(count):
                frame = client.recv(timeout=DEADLINE)
                self.assertEqual(frame.kind, FrameKind.DATA, frame.undeliverable())
                self.assertEqual(frame.payload, (frame.message_id - 1).to_bytes(4, "little"))
                answers[frame.message_id] = answers.get(frame.message_id, 0) + 1
            sender.join(DEADLINE)
            self.assertEqual(failure, [])
            self.assertEqual(sorted(answers), list(range(1, count + 1)))
            self.assertEqual(set(answers.values()), {1})
            # Nothing more is on its way: the next frame answers a new request.
            barrier = client.send("echo", b"barrier")
            self.assertEqual(client.recv(timeout=DEADLINE).message_id, barrier)

    def test_a_missing_proc_is_undeliverable_no_such_proc_with_the_id(self) -> None:
        with self.host.connect(name="missing") as client:
            # Without RETURN_UNDELIVERABLE: the notice comes all the same.
            sent = client.send("nope", b"hi", message_id=4242, flags=Flags.NONE)
            frame = client.recv(timeout=DEADLINE)
        self.assertEqual(sent, 4242)
        self.assertEqual(frame.kind, FrameKind.UNDELIVERABLE)
        self.assertEqual(frame.message_id, 4242)
        notice = frame.undeliverable()
        assert notice is not None
        self.assertEqual(
            (notice.original_message_id, notice.reason), (4242, UndeliverableReason.NO_SUCH_PROC)
        )
        self.assertEqual((frame.header.dest_name, frame.header.flags), ("missing", Flags.TO_CLIENT))
        self.assertEqual(
            (frame.header.sender_kind, frame.header.sender_name, frame.header.sender_addr),
            (SenderKind.PROC, "service", ""),
        )

    def test_request_raises_undelivered(self) -> None:
        with self.host.connect(name="req-missing") as client:
            with self.assertRaises(Undelivered) as caught:
                client.request("nope", b"", timeout=DEADLINE)
        self.assertEqual(caught.exception.reason, UndeliverableReason.NO_SUCH_PROC)

    def test_a_wrong_token_is_refused(self) -> None:
        with self.assertRaises(HelloRefused) as caught:
            self.host.connect(name="wrong", token="guess")
        self.assertEqual(caught.exception.reason, UndeliverableReason.PEER_REFUSED)
        with self.assertRaises(HelloRefused) as caught:
            self.host.connect(name="none", token=None)
        self.assertEqual(caught.exception.reason, UndeliverableReason.PEER_REFUSED)
        # The control socket takes no token: one presented there is wrong.
        with self.assertRaises(HelloRefused) as caught:
            Client.connect(
                f"unix:{self.host.control}", name="ctl-token", token=TOKEN, hello_timeout=DEADLINE
            )
        self.assertEqual(caught.exception.reason, UndeliverableReason.PEER_REFUSED)

    def test_the_token_file_newline_is_not_part_of_the_token(self) -> None:
        with self.host.connect(
            name="from-file", token=None, token_file=self.host.token_file
        ) as client:
            self.assertEqual(client.request("echo", b"ok", timeout=DEADLINE).payload, b"ok")

    def test_a_name_in_use_is_closed_without_an_ack(self) -> None:
        with self.host.connect(name="taken") as first:
            with self.assertRaises(HelloRefused) as caught:
                self.host.connect(name="taken")
            self.assertIsNone(caught.exception.reason)
            self.assertEqual(
                first.request("echo", b"still here", timeout=DEADLINE).payload, b"still here"
            )

    def test_a_frame_larger_than_the_ring_is_oversized_and_the_connection_stays(self) -> None:
        # The default inbound ring is 1 MiB: a record holds 1 MiB - 16 bytes.
        with self.host.connect(name="oversized") as client:
            with self.assertRaises(Undelivered) as caught:
                client.request("echo", bytes(1 << 20), timeout=DEADLINE)
            self.assertEqual(caught.exception.reason, UndeliverableReason.OVERSIZED)
            self.assertEqual(client.request("echo", b"after", timeout=DEADLINE).payload, b"after")

    def test_a_broken_stream_gets_malformed_with_id_0_then_a_close(self) -> None:
        frames = documented_frames()
        # A prefix announcing 32 MiB, over the host's 16 MiB limit.
        too_long = (32 << 20).to_bytes(4, "little") + frames[0][4:PREFIX_LEN]
        with self.host.connect(name="broken") as client:
            client.send_raw(too_long)
            notice_frame = client.recv(timeout=DEADLINE)
            with self.assertRaises(ConnectionClosed) as caught:
                client.recv(timeout=DEADLINE)
        self.assertEqual(notice_frame.message_id, 0)
        notice = notice_frame.undeliverable()
        assert notice is not None
        self.assertEqual(
            (notice.original_message_id, notice.reason), (0, UndeliverableReason.MALFORMED)
        )
        self.assertEqual(caught.exception.last_notice, notice)

    def test_half_close_keeps_the_replies_in_flight(self) -> None:
        with self.host.connect(name="half") as client:
            ids = [client.queue("echo", b"in flight %d" % i) for i in range(200)]
            client.shutdown_write()
            got = []
            with self.assertRaises(ConnectionClosed):  # once all are answered
                while True:
                    got.append(client.recv(timeout=DEADLINE).message_id)
        self.assertEqual(sorted(got), ids)

    def test_anonymous_frames(self) -> None:
        with self.host.connect(name="anon") as client:
            # Refused on arrival: the notice comes back on this connection.
            client.send("nope", b"", message_id=5, anonymous=True)
            frame = client.recv(timeout=DEADLINE)
            self.assertEqual(
                (frame.kind, frame.message_id, frame.header.dest_name),
                (FrameKind.UNDELIVERABLE, 5, ""),
            )
            # Delivered: no reply can come back. The named frame behind it
            # is answered first, and nothing is answered for the first.
            client.send("echo", b"a", message_id=6, anonymous=True)
            client.send("echo", b"b", message_id=7)
            self.assertEqual(client.recv(timeout=DEADLINE).message_id, 7)
            self.assertEqual(
                client.request("echo", b"c", message_id=8, timeout=DEADLINE).message_id, 8
            )

    def test_another_hosts_address_is_not_a_peer(self) -> None:
        with self.host.connect(name="remote") as client:
            with self.assertRaises(Undelivered) as caught:
                client.request("echo", b"", dest_addr="tcp:127.0.0.1:1", timeout=DEADLINE)
        self.assertEqual(caught.exception.reason, UndeliverableReason.NOT_A_PEER)

    def test_the_hosts_bytes_are_the_documented_ack_and_notice(self) -> None:
        frames = documented_frames()
        port = int(self.host.frontend.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as raw:
            raw.sendall(frames[1] + frames[3])  # the hello of "cli" and its frame to "nope"
            want = len(frames[2]) + len(frames[4])
            got = b""
            while len(got) < want:
                chunk = raw.recv(want - len(got))
                self.assertTrue(chunk, "the host closed early")
                got += chunk
        self.assertEqual(got, frames[2] + frames[4])


class OverAUnixFrontend(unittest.TestCase):
    """A host whose frontend is a Unix socket, and the command line."""

    host: Host

    @classmethod
    def setUpClass(cls) -> None:
        cls.host = Host(frontend="unix:DIR/front.sock")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.host.stop()

    def cli(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "hostmux_client", *args],
            capture_output=True,
            timeout=DEADLINE,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
        )

    def test_round_trip_with_a_token_file(self) -> None:
        with self.host.connect(
            name="unix-front", token=None, token_file=self.host.token_file
        ) as client:
            self.assertEqual(
                client.request("echo", b"over unix", timeout=DEADLINE).payload, b"over unix"
            )

    def test_cli_send_prints_the_reply(self) -> None:
        out = self.cli(
            "send",
            "--to",
            "echo",
            "--addr",
            self.host.frontend,
            "--token-file",
            self.host.token_file,
            "hello",
        )
        self.assertEqual((out.returncode, out.stdout), (0, b"hello"), out.stderr)

    def test_cli_exit_codes(self) -> None:
        missing = self.cli(
            "send",
            "--to",
            "nope",
            "--addr",
            self.host.frontend,
            "--token-file",
            self.host.token_file,
            "x",
        )
        self.assertEqual(missing.returncode, 4, missing.stderr)
        self.assertIn(b"no such proc", missing.stderr)
        no_token = self.cli("send", "--to", "echo", "--addr", self.host.frontend, "x")
        self.assertEqual(no_token.returncode, 4, no_token.stderr)
        self.assertIn(b"token", no_token.stderr)
        unreachable = self.cli(
            "send", "--to", "echo", "--addr", f"unix:{self.host.dir}/nothing.sock", "x"
        )
        self.assertEqual(unreachable.returncode, 3, unreachable.stderr)
        usage = self.cli("send", "--addr", self.host.frontend, "x")
        self.assertEqual(usage.returncode, 2, usage.stderr)

    def test_cli_ping(self) -> None:
        out = self.cli(
            "ping",
            "--to",
            "echo",
            "--addr",
            self.host.frontend,
            "--token-file",
            self.host.token_file,
            "--count",
            "3",
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.count(b"bytes from echo"), 3, out.stdout)

    def test_cli_help_explains(self) -> None:
        out = self.cli("send", "--help")
        self.assertEqual(out.returncode, 0)
        for needle in (b"--to", b"--addr", b"--token-file", b"exit codes", b"Undeliverable"):
            self.assertIn(needle, out.stdout)


if __name__ == "__main__":
    unittest.main()
