#!/usr/bin/env python3
"""Opens hostile connections to a running `hostmux serve` and reports its RSS.

Usage: hostile-conns.py HOST_PID PORT TOKEN_FILE [COUNT]

COUNT (default 40) connections send a prefix announcing a 16 MiB hello
without saying a valid hello; COUNT more say a valid hello (with the token)
and then send 64 bytes of a frame announcing 16 MiB. The host's VmRSS is
printed before, while they are open, and after they are closed. The valid
hello bytes are captured from `hostmux send` pointed at a local listener,
so nothing here depends on the header's layout.
"""
import os, socket, struct, subprocess, sys, threading, time

pid, port, token_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
count = int(sys.argv[4]) if len(sys.argv) > 4 else 40
hostmux = os.path.join(os.path.dirname(__file__), "..", "target", "release", "hostmux")


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def prefix(frame_len, header_len=64):
    payload_len = frame_len - 16 - header_len
    return struct.pack("<III", frame_len, header_len, payload_len) + b"hm\x01\x00"


def captured_hello(name):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    got = {}

    def accept():
        conn, _ = listener.accept()
        conn.settimeout(5)
        data = b""
        while len(data) < 16 or len(data) < struct.unpack("<I", data[:4])[0]:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        got["hello"] = data[: struct.unpack("<I", data[:4])[0]]
        conn.close()

    t = threading.Thread(target=accept)
    t.start()
    subprocess.run(
        [hostmux, "send", "--frontend", f"tcp:127.0.0.1:{listener.getsockname()[1]}",
         "--token-file", token_file, "--client-name", name, "--timeout", "0", "x", "x"],
        capture_output=True, timeout=10)
    t.join(10)
    listener.close()
    return got["hello"]


template = captured_hello("member00")
version = template[14:15]
before = rss_kib()
conns = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(struct.pack("<III", 16 << 20, 64, (16 << 20) - 80) + b"hm" + version + b"\x00" + bytes(48))
    conns.append(s)
for i in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(template.replace(b"member00", b"member%02d" % i))
    s.settimeout(5)
    ack = s.recv(4096)
    assert ack, f"member{i:02d}: hello not acknowledged"
    s.sendall(struct.pack("<III", 16 << 20, 64, (16 << 20) - 80) + b"hm" + version + b"\x00" + bytes(48))
    conns.append(s)
peak = before
deadline = time.time() + 2
while time.time() < deadline:
    peak = max(peak, rss_kib())
    time.sleep(0.05)
during = rss_kib()
for s in conns:
    s.close()
time.sleep(1)
after = rss_kib()
print(f"RSS before {before / 1024:.1f} MiB, with {count}+{count} hostile connections "
      f"{during / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB), after close {after / 1024:.1f} MiB; "
      f"growth {(peak - before) / 1024:.1f} MiB")
