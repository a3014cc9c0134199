"""The cni plugin's attach and release vs calling the same CNI plugins directly, one run.

    python bench/bench_cni.py [--members 30]

In a throwaway container system (its own network namespace, bench/harness.py) a cni
network `--option type=bridge` is created (the reference bridge + host-local plugins). Per
member, alternately: ours = POST (attach) and DELETE (release) on the cni helper's socket
(pending record committed, CNI ADD, result committed; DEL with the cached result), and
direct = the network's own configuration handed to the same `bridge` binary with the CNI
environment (ADD, then DEL with the result), as a minimal runtime would, from this
process inside the same namespace. Which goes first alternates per member (the first ADD
after a pair of DELs is the slower one). Medians; our overhead is ours minus direct.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BenchSystem  # noqa: E402

from container_runtime.client import UnixClient  # noqa: E402
from container_runtime.dataplane import nsutil  # noqa: E402

CNI_DIR = Path("/usr/lib/cni")


def direct(conf: dict[str, object], command: str, cid: str, netns: str) -> dict[str, object]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(CNI_DIR),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    proc = subprocess.run(
        [str(CNI_DIR / str(conf["type"]))],
        input=json.dumps(conf).encode(),
        env=env,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"direct CNI {command} failed: {proc.stdout!r} {proc.stderr!r}")
    return dict(json.loads(proc.stdout)) if proc.stdout.strip() else {}


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:6.2f} ms"


def compare(system: BenchSystem, network: str, names: list[str]) -> dict[str, list[float]]:
    """Per member, alternately ours and direct: ADD, then DEL (which goes first alternates:
    the first call after a pair of DELs is the slower one)."""
    conflist = json.loads((system.base / f"root/cni/networks/{network}.conflist").read_text())
    plugin = conflist["plugins"][0]
    conf = {**plugin, "name": conflist["name"], "cniVersion": conflist["cniVersion"]}
    client = UnixClient(system.run_dir / "network-cni.sock")
    times: dict[str, list[float]] = {"ours ADD": [], "ours DEL": [], "ADD": [], "DEL": []}
    attach = f"/networks/{network}/attachments"

    def timed(what: str, call: Callable[[], object]) -> object:
        start = time.perf_counter()
        out = call()
        times[what].append(time.perf_counter() - start)
        return out

    try:
        for i in range(len(names) // 2):
            mine, theirs = names[2 * i], names[2 * i + 1]
            body = {"owner": mine, "hostname": mine, "netns": f"/run/netns/{mine}"}
            body["strategy"] = "veth"
            ns = f"/run/netns/{theirs}"
            order = (True, False) if i % 2 == 0 else (False, True)
            for ours in order:
                if ours:
                    timed("ours ADD", lambda b=body: client.request("POST", attach, b))
                else:
                    result = timed("ADD", lambda t=theirs, n=ns: direct(conf, "ADD", t, n))
            for ours in order:
                if ours:
                    timed("ours DEL", lambda m=mine: client.request("DELETE", f"{attach}/{m}"))
                else:
                    prev = {**conf, "prevResult": result}
                    timed("DEL", lambda c=prev, t=theirs, n=ns: direct(c, "DEL", t, n))
    finally:
        client.close()
    return times


def report(what: str, times: dict[str, list[float]]) -> None:
    print(what)
    for step, call in (("attach ", "ADD"), ("release", "DEL")):
        over = (statistics.median(times["ours " + call]) - statistics.median(times[call])) * 1000
        print(
            f"  {step}  ours {ms(times['ours ' + call])}   direct CNI {call}"
            f" {ms(times[call])}   overhead {over:+.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    if not (CNI_DIR / "bridge").exists():
        raise SystemExit(f"the CNI reference plugins are not in {CNI_DIR} (scripts/setup.sh)")
    with BenchSystem() as system:
        system.cli("network", "create", "cbench", "--plugin", "cni", "--option", "type=bridge")
        null = system.base / "null.conflist"
        address = {"address": "10.250.0.2/24", "gateway": "10.250.0.1"}
        static = {"type": "static", "ipam": {"type": "static", "addresses": [address]}}
        null.write_text(json.dumps({"cniVersion": "1.0.0", "name": "cnull", "plugins": [static]}))
        system.cli(
            "network", "create", "cnull", "--plugin", "cni", "--subnet", "10.250.0.0/24",
            "--option", f"config={null}",
        )  # fmt: skip
        home = nsutil.current_netns_fd()
        fd = os.open(f"/run/netns/{system.netns}", os.O_RDONLY)
        nsutil.setns(fd)  # the direct calls act where the helper does
        os.close(fd)
        names = [f"cb{os.getpid() % 1000}x{i}" for i in range(2 * args.members)]
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
        try:
            bridge = compare(system, "cbench", names)
            floor = compare(system, "cnull", names)
        finally:
            for name in names:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
            nsutil.setns(home)
        print(f"{args.members} members each, medians; target: overhead <= 2 ms")
        report("type=bridge (bridge + host-local: veth, IPAM, iptables masquerade)", bridge)
        report("`static` alone (no kernel work: our cost stands out of the noise)", floor)


if __name__ == "__main__":
    main()
