"""Per-packet cost of anti-spoofing: TCP throughput between two members of a network with
`spoofcheck=on` (the default) and of one with `spoofcheck=off`, in the same run.

    .venv/bin/python bench/bench_spoofcheck.py [-r 8] [-s 2.0]

A throwaway container system (tests/support Instance) with two networks, two bare
attachments in namespaces on each. Each round blasts TCP for S seconds between the two
members of one network, then of the other (order alternating), with one process per side
(`sendall` of 256 KiB buffers, so the kernel's path dominates). Prints each network's median
Gbit/s, and the median of the per-round ratios guarded/unguarded; also a UDP round of
small (64-byte) datagrams, whose rate depends more on the per-packet path.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.instance import Instance, NetnsPool  # noqa: E402

SERVER = r"""
import socket, sys, time
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5201))
total = 0
if kind == socket.SOCK_STREAM:
    s.listen(1)
    print("ready", flush=True)
    c, _ = s.accept()
    buf = bytearray(1 << 20)
    t0 = None
    while True:
        n = c.recv_into(buf)
        if not n:
            break
        if t0 is None:
            t0 = time.perf_counter()
        total += n
else:
    print("ready", flush=True)
    s.settimeout(1.0)
    t0 = None
    try:
        while True:
            n = len(s.recv(2048))
            if n == 3:
                break
            if t0 is None:
                t0 = time.perf_counter()
            total += 1
    except TimeoutError:
        pass
print(total, time.perf_counter() - (t0 or time.perf_counter()), flush=True)
"""

CLIENT = r"""
import socket, sys, time
proto, addr, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.perf_counter() + secs
if proto == "tcp":
    c = socket.create_connection((addr, 5201))
    data = b"x" * (256 << 10)
    while time.perf_counter() < end:
        for _ in range(16):
            c.sendall(data)
    c.close()
else:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.connect((addr, 5201))
    data = b"x" * 64
    while time.perf_counter() < end:
        for _ in range(256):
            try:
                c.send(data)
            except OSError:
                pass
    for _ in range(20):
        c.send(b"end")
        time.sleep(0.01)
"""


def blast(pool: NetnsPool, src: str, dst: str, dst_ip: str, proto: str, secs: float) -> float:
    """Gbit/s (tcp) or thousands of datagrams/s received (udp)."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", dst, sys.executable, "-c", SERVER, proto],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
    subprocess.run(
        ["ip", "netns", "exec", src, sys.executable, "-c", CLIENT, proto, dst_ip, str(secs)],
        check=True,
    )
    total, elapsed = server.stdout.readline().split()
    server.wait(timeout=10)
    if proto == "tcp":
        return int(total) * 8 / float(elapsed) / 1e9
    return int(total) / float(elapsed) / 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-r", "--rounds", type=int, default=8)
    ap.add_argument("-s", "--seconds", type=float, default=2.0)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-spoof-"))
    base.chmod(0o755)
    pool = NetnsPool()
    inst = Instance(base / "inst", pool)
    try:
        inst.start()
        inst.cli("network", "create", "guarded", "--subnet", "10.120.1.0/24")
        inst.cli(
            "network", "create", "free", "--subnet", "10.120.2.0/24", "--option", "spoofcheck=off"
        )
        pairs = {}
        for net in ("guarded", "free"):
            members = []
            for name in ("a", "b"):
                ns = pool.create(name)
                att = inst.cli("network", "attach", net, "--name", f"{net}-{name}", "--netns", ns)
                members.append((ns, att.json()["address"].split("/")[0]))
            pairs[net] = members
        results: dict[tuple[str, str], list[float]] = {}
        ratios: dict[str, list[float]] = {"tcp": [], "udp": []}
        for i in range(args.rounds):
            for proto in ("tcp", "udp"):
                order = ("guarded", "free") if i % 2 == 0 else ("free", "guarded")
                got = {}
                for net in order:
                    (a, _), (b, b_ip) = pairs[net]
                    got[net] = blast(pool, a, b, b_ip, proto, args.seconds)
                    results.setdefault((net, proto), []).append(got[net])
                ratios[proto].append(got["guarded"] / got["free"])
        for proto, unit in (("tcp", "Gbit/s"), ("udp", "k datagrams/s (64 B)")):
            g = statistics.median(results[("guarded", proto)])
            f = statistics.median(results[("free", proto)])
            r = statistics.median(ratios[proto])
            print(
                f"{proto}: spoofcheck=on {g:7.2f} {unit}, spoofcheck=off {f:7.2f} {unit}; "
                f"median per-round ratio on/off {r:.3f} ({(1 - r) * 100:+.1f}% slower), "
                f"{args.rounds} rounds of {args.seconds:.0f} s"
            )
    finally:
        inst.cleanup()
        pool.cleanup()


if __name__ == "__main__":
    time.sleep(0)
    main()
