#!/usr/bin/env python3
"""Instructions and cache misses per frame a host spends forwarding frames
to another host, under callgrind (user space only; deterministic where
wall-clock benchmarks on a shared 2-core machine are not).

Usage: callgrind-forwarding.py HOSTMUX [HOSTMUX ...]

For each `hostmux` binary given: host B (run by the first binary, plain)
gets a `sink` proc (`hostmux-bench __proc sink`, which answers nothing);
host A (the binary measured) runs under
`valgrind --tool=callgrind --cache-sim=yes --LL=2097152,16,64` (a 2 MiB
last level: this machine's L2, so "LL misses" are misses past L2), both on
the epoll frontend with one I/O thread. The Python client sends N one-way
64 B frames to host A, addressed to the sink on host B, in batches of 512;
once the sink has counted all N, host A is stopped and its totals read.
This runs with N = 100,000 and N = 200,000, and the difference divided by
100,000 is the per-frame cost in steady state (host A's ledger of frames
awaiting answers holds its 65,536 entries from the 66th thousand frame on).

With HOSTMUX_CG_KEEP=DIR, each run's callgrind output is kept in DIR as
BINARY.N.out (for callgrind_annotate).

Needs valgrind, python3, and release builds of hostmux and hostmux-bench
(`cargo build --release -p hostmux -p hostmux-bench`).
"""
import json, os, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "clients", "python", "src"))
from hostmux_client import Client  # noqa: E402

BENCH = os.path.join(ROOT, "target", "release", "hostmux-bench")
EVENTS = ["Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, done, timeout):
    end = time.time() + timeout
    while not done():
        if time.time() > end:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)


def run(measured, plain, frames):
    """Host A's callgrind totals after forwarding `frames` frames."""
    folder = tempfile.mkdtemp(prefix="hostmux-cg-")
    token = os.path.join(folder, "peer-token")
    with open(token, "w") as f:
        f.write("callgrind-forwarding\n")
    a, b = f"tcp:127.0.0.1:{free_port()}", f"tcp:127.0.0.1:{free_port()}"
    out = os.path.join(folder, "callgrind.out")
    env = dict(os.environ, HOSTMUX_LOG="warn")

    def serve(binary, me, peer, name, wrapper=()):
        sock = os.path.join(folder, f"{name}.sock")
        args = [*wrapper, binary, "serve", "--frontend", me, "--control-socket", sock,
                "--peer", peer, "--peer-token-file", token,
                "--frontend-kind", "epoll", "--io-threads", "1"]
        log = open(os.path.join(folder, f"{name}.log"), "w")
        return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log), sock

    host_b, sock_b = serve(plain, b, a, "b")
    valgrind = ("valgrind", "--tool=callgrind", "--cache-sim=yes",
                "--LL=2097152,16,64", f"--callgrind-out-file={out}")
    host_a, sock_a = serve(measured, a, b, "a", valgrind)
    try:
        wait_for("host B", lambda: os.path.exists(sock_b), 60)
        wait_for("host A under valgrind", lambda: os.path.exists(sock_a), 180)
        subprocess.run([plain, "spawn", "--control-socket", sock_b, "sink", "--",
                        BENCH, "__proc", "sink"], check=True, stdout=subprocess.DEVNULL)
        client = None

        def connected():
            nonlocal client
            try:
                client = Client.connect(a)
                return True
            except OSError:
                return False

        wait_for("a client connection to host A", connected, 120)
        for i in range(1, frames + 1):
            client.queue("sink", b"x" * 64, dest_addr=b)
            if i % 512 == 0:
                client.flush()
        client.flush()

        def accepted():
            stats = subprocess.run([plain, "stats", "--control-socket", sock_b, "--json"],
                                   capture_output=True, text=True, check=True)
            procs = json.loads(stats.stdout)
            procs = procs if isinstance(procs, list) else procs.get("procs", [])
            return sum(p.get("counters", p).get("accepted", 0)
                       for p in procs if p.get("name") == "sink")

        wait_for(f"the sink to count {frames} frames", lambda: accepted() >= frames, 900)
        host_a.send_signal(signal.SIGTERM)
        host_a.wait(180)
    finally:
        for host in (host_a, host_b):
            if host.poll() is None:
                host.send_signal(signal.SIGTERM)
                host.wait(60)
    totals = None
    with open(out) as f:
        for line in f:
            if line.startswith("totals:"):
                totals = [int(x) for x in line.split()[1:]]
    keep = os.environ.get("HOSTMUX_CG_KEEP")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(out, os.path.join(keep, f"{os.path.basename(measured)}.{frames}.out"))
    shutil.rmtree(folder)
    if totals is None:
        sys.exit(f"no totals in callgrind's output for {measured}")
    return totals


def main():
    binaries = sys.argv[1:]
    if not binaries:
        sys.exit(__doc__)
    for tool in ("valgrind",):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    if not os.path.exists(BENCH):
        sys.exit(f"{BENCH} is missing: cargo build --release -p hostmux-bench")
    plain = binaries[0]
    print("per frame, host A, steady state (N=200,000 minus N=100,000, / 100,000):")
    print(f"{'binary':40} " + " ".join(f"{e:>8}" for e in EVENTS))
    for binary in binaries:
        small = run(binary, plain, 100_000)
        large = run(binary, plain, 200_000)
        per_frame = [(l - s) / 100_000 for s, l in zip(small, large)]
        print(f"{binary:40} " + " ".join(f"{v:8.2f}" for v in per_frame))


if __name__ == "__main__":
    main()
