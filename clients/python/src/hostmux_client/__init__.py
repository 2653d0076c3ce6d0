"""A Python client for hostmux hosts (standard library only).

Connect to a host's frontend (``tcp:HOST:PORT`` or ``unix:/path``) or its
control socket, say hello, send frames to procs and receive their replies
and the host's ``Undeliverable`` notices::

    from hostmux_client import Client, Undelivered

    with Client.connect("tcp:127.0.0.1:7000", token_file="token") as client:
        try:
            reply = client.request("echo", b"hello", timeout=5)
            print(reply.payload)
        except Undelivered as e:
            print("not delivered:", e.reason.name)

The byte format is docs/wire.md of the hostmux repository; ``wire`` holds
the codec, ``client`` the connection.
"""

from .client import (
    Client,
    ConnectFailed,
    ConnectionClosed,
    HelloRefused,
    HostmuxError,
    ProtocolError,
    ReceiveTimeout,
    Undelivered,
    read_token_file,
)
from .wire import (
    AGENT_PORT,
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
    decode_frame,
    encode_frame,
)

__version__ = "0.1.0"

__all__ = [
    "AGENT_PORT",
    "DEFAULT_SERVICE_NAME",
    "HELLO_PORT",
    "Client",
    "ConnectFailed",
    "ConnectionClosed",
    "Flags",
    "Frame",
    "FrameDecoder",
    "FrameKind",
    "Header",
    "HelloRefused",
    "HostmuxError",
    "Limits",
    "ProtocolError",
    "ReceiveTimeout",
    "SenderKind",
    "Undeliverable",
    "UndeliverableReason",
    "Undelivered",
    "WireError",
    "decode_frame",
    "encode_frame",
    "read_token_file",
]
