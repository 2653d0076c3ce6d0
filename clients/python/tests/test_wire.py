"""The codec alone: docs/wire.md's examples, round trips, hostile input."""

from __future__ import annotations

import os
import random
import tempfile
import unittest
from pathlib import Path

from hostmux_client import read_token_file
from hostmux_client.wire import (
    HELLO_PORT,
    Flags,
    Frame,
    FrameDecoder,
    FrameKind,
    FrameTooLong,
    Header,
    HeaderTooLong,
    HeaderTrailingBytes,
    InvalidAddress,
    InvalidHeader,
    InvalidName,
    InvalidPayload,
    Limits,
    MalformedPrefix,
    Misaligned,
    SenderKind,
    TrailingBytes,
    Truncated,
    Undeliverable,
    UndeliverableReason,
    WireError,
    decode_frame,
    encode_frame,
    encode_hello,
    hello_refusal,
    is_hello_ack,
    validate_address,
)

DEFAULT_LIMITS = Limits()
REPO = Path(__file__).resolve().parents[3]
WIRE_MD = REPO / "docs" / "wire.md"


def documented_frames() -> list[bytes]:
    """The hex dumps of docs/wire.md's Examples section, one per block
    (the same rule as crates/wire/tests/wire_md.rs)."""
    if not WIRE_MD.is_file():
        raise AssertionError(
            f"docs/wire.md not found at {WIRE_MD}: run the tests from the repository"
        )
    examples = WIRE_MD.read_text(encoding="utf-8").split("\n## Examples\n", 1)[1]
    frames: list[bytes] = []
    current = None
    for line in examples.splitlines():
        if line.startswith("```"):
            if current is None:
                current = bytearray()
            else:
                if current:
                    frames.append(bytes(current))
                current = None
            continue
        if current is None or ": " not in line:
            continue
        offset, rest = line.split(": ", 1)
        if len(offset) != 2 or any(c not in "0123456789abcdefABCDEF" for c in offset):
            continue
        assert int(offset, 16) == len(current), line
        current += bytes(int(b, 16) for b in rest.split()[:16])
    return frames


def client_header(**fields: object) -> Header:
    base = dict(
        kind=FrameKind.DATA,
        message_id=42,
        dest_name="echo",
        sender_kind=SenderKind.CLIENT,
        sender_name="cli",
    )
    base.update(fields)
    return Header(**base)  # type: ignore[arg-type]


class DocumentedExamples(unittest.TestCase):
    def setUp(self) -> None:
        self.frames = documented_frames()
        self.assertEqual(len(self.frames), 5, "docs/wire.md shows five example frames")

    def test_the_data_frame_example(self) -> None:
        header = client_header(dest_port=7, flags=Flags.RETURN_UNDELIVERABLE)
        self.assertEqual(encode_frame(header, b"hello"), self.frames[0])
        frame = decode_frame(self.frames[0])
        self.assertEqual(frame.header, header)
        self.assertEqual(frame.payload, b"hello")

    def test_the_hello_and_its_ack(self) -> None:
        self.assertEqual(encode_hello("cli", b"s3cret"), self.frames[1])
        hello = decode_frame(self.frames[1])
        self.assertEqual(hello.header.dest_name, "service")
        self.assertEqual(hello.header.dest_port, HELLO_PORT)
        self.assertEqual(hello.header.message_id, 0)
        self.assertEqual(hello.payload, b"s3cret")
        self.assertFalse(is_hello_ack(hello))
        ack = decode_frame(self.frames[2])
        self.assertTrue(is_hello_ack(ack))
        self.assertIsNone(hello_refusal(ack))
        self.assertEqual(ack.header.dest_name, "cli")
        self.assertEqual(ack.header.sender_name, "service")
        self.assertEqual(ack.header.flags, Flags.TO_CLIENT)

    def test_the_request_and_its_notice(self) -> None:
        request = client_header(dest_name="nope")
        self.assertEqual(encode_frame(request, b"hi"), self.frames[3])
        notice = decode_frame(self.frames[4])
        self.assertEqual(notice.kind, FrameKind.UNDELIVERABLE)
        self.assertEqual(notice.message_id, 42)
        self.assertEqual(notice.header.dest_name, "cli")
        self.assertTrue(notice.header.to_client)
        self.assertEqual(notice.header.dest_port, 0)
        self.assertEqual(notice.header.sender_kind, SenderKind.PROC)
        self.assertEqual((notice.header.sender_name, notice.header.sender_addr), ("service", ""))
        self.assertEqual(
            notice.undeliverable(), Undeliverable(42, UndeliverableReason.NO_SUCH_PROC)
        )
        # Re-encoding the decoded notice gives its bytes back (canonical).
        self.assertEqual(encode_frame(notice.header, notice.payload), self.frames[4])


class RoundTrips(unittest.TestCase):
    def test_every_kind_sender_and_flag_round_trips(self) -> None:
        senders = [
            (SenderKind.ANONYMOUS, "", ""),
            (SenderKind.CLIENT, "c", ""),
            (SenderKind.PROC, "p", ""),
            (SenderKind.PROC, "p.2", "tcp:[::1]:7000"),
        ]
        for kind in FrameKind:
            for sender_kind, name, addr in senders:
                for flags in (
                    Flags.NONE,
                    Flags.RETURN_UNDELIVERABLE | Flags.TO_CLIENT,
                    Flags.FROM_CLIENT,
                ):
                    for payload in (b"", b"x", bytes(range(256)) * 3):
                        header = Header(
                            kind=kind,
                            message_id=(1 << 64) - 1,
                            dest_name="dest_1",
                            dest_port=(1 << 32) - 1,
                            dest_addr="unix:/run/h.sock",
                            sender_kind=sender_kind,
                            sender_name=name,
                            sender_addr=addr,
                            flags=flags,
                            hops=255,
                        )
                        encoded = encode_frame(header, payload)
                        self.assertEqual(len(encoded) % 16, 0)
                        frame = decode_frame(encoded)
                        self.assertEqual(frame, Frame(header, payload))

    def test_replies_may_have_an_empty_destination_data_may_not(self) -> None:
        notice = Header(kind=FrameKind.UNDELIVERABLE, message_id=1, dest_name="")
        self.assertEqual(decode_frame(encode_frame(notice, b"")).header, notice)
        with self.assertRaises(InvalidHeader):
            encode_frame(Header(kind=FrameKind.DATA, message_id=1, dest_name=""))

    def test_every_reason_decodes_including_the_link_reasons(self) -> None:
        self.assertEqual(
            [(r.name, int(r)) for r in UndeliverableReason][8:],
            [("HOST_UNREACHABLE", 8), ("LINK_FAILED", 9), ("PEER_REFUSED", 10)],
        )
        for reason in UndeliverableReason:
            notice = Undeliverable(7, reason)
            raw = notice.to_bytes()
            self.assertEqual(raw, (7).to_bytes(8, "little") + bytes([int(reason)]) + bytes(7))
            self.assertEqual(Undeliverable.decode(raw), notice)
            self.assertTrue(reason.description)
        with self.assertRaises(InvalidPayload):
            Undeliverable.decode(bytes(8) + bytes([11]) + bytes(7))
        with self.assertRaises(InvalidPayload):
            Undeliverable.decode(bytes(8) + bytes([0, 0, 0, 1]) + bytes(4))
        with self.assertRaises(InvalidPayload):
            Undeliverable.decode(bytes(15))

    def test_the_stream_decoder_takes_bytes_in_any_pieces(self) -> None:
        frames = [encode_frame(client_header(message_id=i), bytes([i]) * i) for i in range(40)]
        stream = b"".join(frames)
        rng = random.Random(7)
        decoder = FrameDecoder()
        got = []
        at = 0
        while at < len(stream):
            step = rng.randint(1, 97)
            decoder.feed(stream[at : at + step])
            at += step
            while True:
                frame = decoder.next_frame()
                if frame is None:
                    break
                got.append(frame)
        decoder.finish()
        self.assertEqual([f.message_id for f in got], list(range(40)))
        self.assertEqual([f.payload for f in got], [bytes([i]) * i for i in range(40)])


def mutated(frame: bytes, at: int, value: int) -> bytes:
    out = bytearray(frame)
    out[at] = value
    return bytes(out)


class HostileInput(unittest.TestCase):
    frame = encode_frame(client_header(dest_port=7, flags=Flags.RETURN_UNDELIVERABLE), b"hello")

    def assert_refused(self, data: bytes, error: type, limits: Limits = DEFAULT_LIMITS) -> None:
        with self.assertRaises(error):
            decode_frame(data, limits)
        decoder = FrameDecoder(limits)
        decoder.feed(data)
        with self.assertRaises(error):
            decoder.next_frame()
        # Poisoned: the same error again, whatever comes next.
        decoder.feed(self.frame)
        with self.assertRaises(error):
            decoder.next_frame()

    def test_every_truncation_is_truncated(self) -> None:
        for cut in range(len(self.frame)):
            with self.assertRaises(Truncated):
                decode_frame(self.frame[:cut])
            decoder = FrameDecoder()
            decoder.feed(self.frame[:cut])
            self.assertIsNone(decoder.next_frame())
            if cut:
                with self.assertRaises(Truncated):
                    decoder.finish()

    def test_prefix_errors(self) -> None:
        self.assert_refused(mutated(self.frame, 12, ord("x")), MalformedPrefix)
        self.assert_refused(mutated(self.frame, 14, 2), MalformedPrefix)
        self.assert_refused(mutated(self.frame, 15, 1), MalformedPrefix)
        self.assert_refused(mutated(self.frame, 8, 40), MalformedPrefix)  # payload_len disagrees
        self.assert_refused(mutated(self.frame, 0, 0x51), Misaligned)
        self.assert_refused(mutated(self.frame, 4, 0x29), Misaligned)
        self.assert_refused(self.frame, FrameTooLong, Limits(max_frame_len=64))
        self.assert_refused(self.frame, HeaderTooLong, Limits(max_header_len=32))
        huge = (32 << 20).to_bytes(4, "little") + self.frame[4:16]
        self.assert_refused(huge, FrameTooLong)

    def test_header_errors(self) -> None:
        root = 0x18  # the root's offset in this frame
        self.assert_refused(mutated(self.frame, root + 14, 4), InvalidHeader)  # kind
        self.assert_refused(mutated(self.frame, root + 15, 3), InvalidHeader)  # sender kind
        self.assert_refused(mutated(self.frame, root + 12, 0x09), InvalidHeader)  # flag bit 3
        self.assert_refused(mutated(self.frame, root + 16, 5), InvalidHeader)  # lengths
        self.assert_refused(mutated(self.frame, root + 24, 0xE8), InvalidHeader)  # text offset
        self.assert_refused(mutated(self.frame, 0x10, 0xFF), InvalidHeader)  # not UTF-8
        self.assert_refused(mutated(self.frame, 0x10, ord("!")), InvalidHeader)  # name rule
        self.assert_refused(mutated(self.frame, 0x17, 1), InvalidHeader)  # header padding
        self.assert_refused(mutated(self.frame, 0x38, 1), InvalidHeader)  # frame padding
        self.assert_refused(mutated(self.frame, 0x4F, 1), InvalidHeader)  # payload padding

    def test_a_header_longer_than_its_contents(self) -> None:
        # 8 more header bytes (zero) before the root: the header_len no
        # longer matches the text.
        head = self.frame[16:56]
        longer_head = head[:8] + bytes(8) + head[8:]
        root = bytearray(longer_head[-32:])
        root[24:28] = (-(16 + 24)).to_bytes(4, "little", signed=True)
        longer_head = longer_head[:-32] + bytes(root)
        prefix = (
            (16 + 48 + 16).to_bytes(4, "little") + (48).to_bytes(4, "little") + self.frame[8:16]
        )
        data = prefix + longer_head + self.frame[64:]
        self.assert_refused(data, HeaderTrailingBytes)

    def test_trailing_bytes_after_one_frame(self) -> None:
        with self.assertRaises(TrailingBytes):
            decode_frame(self.frame + bytes(16))

    def test_random_mutations_fail_only_with_wire_errors(self) -> None:
        rng = random.Random(14)
        samples = [self.frame, encode_hello("cli", b"s3cret")] + documented_frames()
        for _ in range(3000):
            data = bytearray(rng.choice(samples))
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.2:
                del data[rng.randrange(len(data)) :]
            try:
                frame = decode_frame(bytes(data))
            except WireError:
                continue
            # Whatever is accepted re-encodes to the same bytes (canonical).
            self.assertEqual(encode_frame(frame.header, frame.payload), bytes(data))


class NamesTokensAddresses(unittest.TestCase):
    def test_encoding_refuses_what_a_host_would_refuse(self) -> None:
        for bad in ("", ".hidden", "a/b", "x" * 65, "é"):
            with self.assertRaises(InvalidHeader, msg=bad):
                encode_frame(client_header(dest_name=bad))
            with self.assertRaises((InvalidName, InvalidHeader), msg=bad):
                encode_hello(bad)
        with self.assertRaises(FrameTooLong):
            encode_hello("cli", bytes(4096))

    def test_addresses(self) -> None:
        for good in (
            "tcp:127.0.0.1:7000",
            "tcp:[::1]:0",
            "tcp:host-1.example:65535",
            "unix:/run/x.sock",
            "unix:@abs",
        ):
            validate_address(good)
        for bad in (
            "tcp:1.2.3.4",
            "tcp::7000",
            "tcp:h:07000",
            "tcp:h:65536",
            "tcp:[::1:7",
            "unix:rel",
            "udp:h:1",
            "unix:/" + "a" * 107,
        ):
            with self.assertRaises(InvalidAddress, msg=bad):
                validate_address(bad)

    def test_a_token_file_loses_its_trailing_whitespace_only(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "token")
            Path(path).write_bytes(b" s3cret \r\n\t\n")
            self.assertEqual(read_token_file(path), b" s3cret")


if __name__ == "__main__":
    unittest.main()
