"""``python -m hostmux_client``: send a frame to a proc, or ping one."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from .client import (
    Client,
    ConnectFailed,
    ConnectionClosed,
    HelloRefused,
    HostmuxError,
    ReceiveTimeout,
    Undelivered,
)
from .wire import WireError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4

_EPILOG = """\
The host's address is --addr, else $HOSTMUX_FRONTEND, else tcp:127.0.0.1:7000
(`hostmux serve`'s default frontend). Over a host's control socket
(unix:/run/hostmux/control.sock) no token is needed: the host checks your uid.

exit codes (as the hostmux CLI's):
  0  success
  1  runtime failure (no reply in time, connection lost)
  2  usage error
  3  host unreachable (nothing listens at that address)
  4  refused by the host (wrong token, name in use, frame undeliverable)
"""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, metavar="NAME", help="the destination proc")
    parser.add_argument(
        "--addr",
        default=os.environ.get("HOSTMUX_FRONTEND", "tcp:127.0.0.1:7000"),
        metavar="ADDR",
        help="the host to connect to: tcp:HOST:PORT, unix:/path or unix:@name",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the host's token (trailing whitespace ignored); "
        "none for a host without one or over a control socket",
    )
    parser.add_argument("--port", type=int, default=0, help="port on the proc (default 0)")
    parser.add_argument(
        "--dest-addr",
        default="",
        metavar="ADDR",
        help="another host the proc lives on (the host forwards only to its configured peers)",
    )
    parser.add_argument(
        "--name",
        metavar="NAME",
        help="the client name to say hello with (default py-PID-N)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hostmux_client",
        description="Talk to a hostmux host's procs through its frontend, with the "
        "hostmux_client package (docs/wire.md's protocol).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    send = commands.add_parser(
        "send",
        help="send one payload to a proc and print its reply",
        description="Send PAYLOAD to proc --to and write its reply's payload to stdout. "
        "An Undeliverable notice is printed on stderr with its reason (exit 4).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(send)
    send.add_argument(
        "payload", metavar="PAYLOAD", help="the payload (UTF-8 text; '-' reads stdin)"
    )
    send.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for the reply; 0 sends without waiting (default 5)",
    )
    ping = commands.add_parser(
        "ping",
        help="measure round trips to a proc that echoes",
        description="Send COUNT frames of SIZE bytes to proc --to one at a time and print "
        "each round trip and a summary. The proc must reply to data frames (an echo proc).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(ping)
    ping.add_argument("--count", type=int, default=5, help="round trips (default 5)")
    ping.add_argument("--size", type=int, default=64, help="payload bytes (default 64)")
    ping.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for each reply (default 5)",
    )
    return parser


def _connect(args: argparse.Namespace) -> Client:
    return Client.connect(args.addr, name=args.name, token_file=args.token_file)


def _send(args: argparse.Namespace) -> int:
    payload = sys.stdin.buffer.read() if args.payload == "-" else args.payload.encode("utf-8")
    with _connect(args) as client:
        if args.timeout == 0:
            client.send(args.to, payload, port=args.port, dest_addr=args.dest_addr)
            return EXIT_OK
        reply = client.request(
            args.to, payload, timeout=args.timeout, port=args.port, dest_addr=args.dest_addr
        )
    sys.stdout.buffer.write(reply.payload)
    if sys.stdout.isatty() and not reply.payload.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    return EXIT_OK


def _ping(args: argparse.Namespace) -> int:
    if args.count < 1 or args.size < 0:
        print("error: --count must be at least 1 and --size not negative", file=sys.stderr)
        return EXIT_USAGE
    payload = bytes(args.size)
    times: list[float] = []
    with _connect(args) as client:
        for seq in range(args.count):
            start = time.perf_counter()
            reply = client.request(
                args.to, payload, timeout=args.timeout, port=args.port, dest_addr=args.dest_addr
            )
            elapsed = time.perf_counter() - start
            times.append(elapsed)
            print(
                f"{len(reply.payload)} bytes from {args.to}: seq={seq} time={elapsed * 1e6:.0f} us"
            )
    print(
        f"--- {args.to}: {len(times)} round trips, min/median/max = "
        f"{min(times) * 1e6:.0f}/{statistics.median(times) * 1e6:.0f}/{max(times) * 1e6:.0f} us"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit code."""
    args = _parser().parse_args(argv)
    run = _send if args.command == "send" else _ping
    try:
        return run(args)
    except ConnectFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except HelloRefused as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except Undelivered as e:
        print(
            f"error: the host could not deliver the frame to {args.to}: {e.reason.description} "
            f"({e.reason.name})",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    except (ReceiveTimeout, ConnectionClosed) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except (WireError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, (WireError, ValueError)) else EXIT_FAILURE
    except HostmuxError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
