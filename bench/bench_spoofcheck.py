"""Per-packet cost of anti-spoofing: throughput between two members of a network with
`spoofcheck=on` (the default) and of one with `spoofcheck=off`, in the same run.

    .venv/bin/python bench/bench_spoofcheck.py [-r 8] [-s 2.0]

A throwaway container system (tests/support Instance) with two networks, two bare
attachments in namespaces on each. Each round blasts TCP for S seconds between the two
members of one network, then of the other (order alternating), with one iperf3 per side
(iperf3, Debian package: scripts/setup-bench.sh). Prints each network's median
Gbit/s, and the median of the per-round ratios; also a UDP round of small (64-byte)
datagrams, whose rate depends more on the per-packet path. (A third configuration
with no `bridge container-bridge` table at all is no longer measured: the helper now restores a
deleted table within 0.5 s, and the watchdog replaces a helper held with SIGSTOP.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.instance import Instance, NetnsPool  # noqa: E402


def blast(src: str, dst_ip: str, proto: str, secs: int) -> float:
    """iperf3 from namespace src to the server at dst_ip: Gbit/s received (tcp) or
    thousands of 64-byte datagrams/s received (udp, unlimited rate)."""
    argv = ["iperf3", "-c", dst_ip, "-p", "5201", "-t", str(secs), "-J"]
    if proto == "udp":
        argv += ["-u", "-b", "0", "-l", "64"]
    for _ in range(50):  # until the server listens
        out = subprocess.run(["ip", "netns", "exec", src, *argv], capture_output=True, text=True)
        if out.returncode == 0:
            break
        time.sleep(0.1)
    else:
        raise RuntimeError(f"iperf3 failed: {out.stdout[-300:]}{out.stderr[-300:]}")
    end = json.loads(out.stdout)["end"]
    if proto == "tcp":
        return float(end["sum_received"]["bits_per_second"]) / 1e9
    total = end["sum"]
    received = total["packets"] - total["lost_packets"]
    return received / float(total["seconds"]) / 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-r", "--rounds", type=int, default=8)
    ap.add_argument("-s", "--seconds", type=int, default=2)
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
        servers: list[subprocess.Popen[bytes]] = []
        for net in ("guarded", "free"):
            members = []
            for name in ("a", "b"):
                ns = pool.create(name)
                att = inst.cli("network", "attach", net, "--name", f"{net}-{name}", "--netns", ns)
                members.append((ns, att.json()["address"].split("/")[0]))
            pairs[net] = members
            servers.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", members[1][0], "iperf3", "-s", "-p", "5201"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        results: dict[tuple[str, str], list[float]] = {}
        ratios: dict[tuple[str, str], list[float]] = {}
        configs = ("on", "off")
        for i in range(args.rounds):
            for proto in ("tcp", "udp"):
                order = configs if i % 2 == 0 else configs[::-1]
                got = {}
                for config in order:
                    (a, _), (_b, b_ip) = pairs["guarded" if config == "on" else "free"]
                    got[config] = blast(a, b_ip, proto, args.seconds)
                    results.setdefault((config, proto), []).append(got[config])
                ratios.setdefault(("off", proto), []).append(got["on"] / got["off"])
        for proto, unit in (("tcp", "Gbit/s"), ("udp", "k datagrams/s (64 B)")):
            med = {c: statistics.median(results[(c, proto)]) for c in configs}
            r_off = statistics.median(ratios[("off", proto)])
            print(
                f"{proto}: spoofcheck=on {med['on']:.2f}, spoofcheck=off {med['off']:.2f}"
                f" {unit}; median per-round ratio on/off {r_off:.3f}"
                f" ({(r_off - 1) * 100:+.1f}%); {args.rounds} rounds of {args.seconds:.0f} s"
            )
        for server in servers:
            server.kill()
            server.wait()
    finally:
        inst.cleanup()
        pool.cleanup()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
