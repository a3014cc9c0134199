"""Per-attachment setup/teardown time of LinuxDataPlane vs the CNI bridge + host-local plugins.

Runs in a throwaway network + mount namespace (re-executes itself under `unshare`), so the
host is untouched and everything vanishes when it exits. Usage (root):

    python bench/bench_attach.py [--members 500]

Figures are medians over windows of 10 members (1-10, 91-100, 491-500), measured in the
same run for both, since noise between runs is large. Ours is the library call alone (no
allocation or state); CNI is the whole plugin process, ipMasq true, as a runtime calls it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SANDBOX_ENV = "BENCH_ATTACH_SANDBOXED"
CNI_DIR = Path("/usr/lib/cni")


def windows(n: int) -> list[tuple[int, int]]:
    marks = [m for m in (10, 100, 500) if m <= n] or [n]
    if n not in marks and n > 10:
        marks.append(n)
    return [(max(0, m - 10), m) for m in marks]


def medians(times: list[float]) -> str:
    parts = []
    for lo, hi in windows(len(times)):
        parts.append(f"{lo + 1}-{hi}: {statistics.median(times[lo:hi]) * 1000:6.2f} ms")
    return "   ".join(parts)


def bench_ours(work: Path, members: int) -> dict[str, list[float]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from container_runtime.models import Attachment, NetworkConfiguration
    from container_runtime.plugins.bridge.dataplane import LinuxDataPlane

    dp = LinuxDataPlane(work / "netns")
    dp.ensure_forwarding()
    creates: list[float] = []
    nets = []
    for k in range(20):
        subnet = ipaddress.IPv4Network(f"10.{100 + k}.0.0/24")
        cfg = NetworkConfiguration(f"n{k}", subnet, subnet.network_address + 1)
        t = time.perf_counter()
        nets.append((cfg, dp.setup_network(cfg)))
        dp.sync_firewall(nets, [])
        creates.append(time.perf_counter() - t)
    subnet = ipaddress.IPv4Network("10.88.0.0/16")
    cfg = NetworkConfiguration("bench", subnet, subnet.network_address + 1)
    bridge = dp.setup_network(cfg)
    nets.append((cfg, bridge))
    dp.sync_firewall(nets, [])
    paths = [dp.create_netns(f"o{i}") for i in range(members)]
    setup: list[float] = []
    hosts: list[str] = []
    for i, path in enumerate(paths):
        addr = subnet.network_address + 2 + i
        att = Attachment(
            network="bench",
            owner=f"c{i}",
            hostname=f"c{i}",
            address=ipaddress.IPv4Interface(f"{addr}/{subnet.prefixlen}"),
            gateway=cfg.ipv4_gateway,
            mac_address="02:42:" + ":".join(f"{b:02x}" for b in addr.packed),
            mtu=1500,
        )
        t = time.perf_counter()
        hosts.append(dp.attach(att, bridge, path, "veth", True, False))
        setup.append(time.perf_counter() - t)
    # Sanity: the last member reaches the first over the bridge.
    ping = subprocess.run(
        ["nsenter", f"--net={paths[-1]}", "ping", "-c1", "-W1", "-q", str(subnet[2])],
        capture_output=True,
        check=False,
    )
    if ping.returncode != 0:
        raise SystemExit("sanity ping between members failed")
    detach: list[float] = []
    start = time.perf_counter()
    for host in reversed(hosts):
        t = time.perf_counter()
        dp.detach(host)
        detach.append(time.perf_counter() - t)
    dp.wait_pending()
    background = (time.perf_counter() - start) / members
    detach.reverse()
    for i in range(members):
        dp.delete_netns(f"o{i}")
    for _, br in nets:
        dp.teardown_network(br)
    dp.sync_firewall([], [])
    dp.close()
    return {"setup": setup, "detach": detach, "bg": [background], "create": creates}


def bench_cni(work: Path, members: int) -> dict[str, list[float]] | None:
    if not (CNI_DIR / "bridge").exists():
        print("CNI plugins not found in /usr/lib/cni: skipping the peer")
        return None
    conf = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "cnibench",
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": True,
            "ipMasq": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.89.0.0/16"}]],
                "dataDir": str(work / "cni-ipam"),
            },
        }
    )
    nsdir = work / "cni-netns"
    nsdir.mkdir()
    paths = []
    for i in range(members):
        path = nsdir / f"c{i}"
        path.touch()
        subprocess.run(["unshare", f"--net={path}", "true"], check=True)
        paths.append(path)

    def call(command: str, i: int) -> float:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": f"bench{i}",
            "CNI_NETNS": str(paths[i]),
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(CNI_DIR),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        t = time.perf_counter()
        proc = subprocess.run(
            [str(CNI_DIR / "bridge")], input=conf, env=env, capture_output=True, text=True
        )
        elapsed = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"CNI {command} failed: {proc.stdout} {proc.stderr}")
        return elapsed

    setup = [call("ADD", i) for i in range(members)]
    teardown = [call("DEL", i) for i in range(members)]
    for path in paths:
        subprocess.run(["umount", str(path)], check=False)
    return {"setup": setup, "teardown": teardown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--no-cni", action="store_true", help="skip the CNI peer")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    if os.environ.get(SANDBOX_ENV) != "1":
        env = {**os.environ, SANDBOX_ENV: "1"}
        cmd = ["unshare", "--net", "--mount", "--propagation", "private", sys.executable]
        os.execvpe("unshare", [*cmd, *sys.argv], env)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = Path(tempfile.mkdtemp(prefix="bench-attach-"))
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(work)], check=True)
    try:
        n = args.members
        print(f"{n} members on one network, throwaway namespace, medians")
        ours = bench_ours(work, n)
        print(
            f"network create (bridge + firewall sync), 20 networks: "
            f"{statistics.median(ours['create']) * 1000:.2f} ms"
        )
        print(f"ours  setup    {medians(ours['setup'])}")
        print(f"ours  detach   {medians(ours['detach'])}   (caller-visible)")
        print(f"ours  deletion {ours['bg'][0] * 1000:6.2f} ms per link in the background")
        cni = None if args.no_cni else bench_cni(work, n)
        if cni is not None:
            print(f"CNI   ADD      {medians(cni['setup'])}")
            print(f"CNI   DEL      {medians(cni['teardown'])}")
    finally:
        subprocess.run(["umount", "-l", str(work)], check=False)
        os.rmdir(work)


if __name__ == "__main__":
    main()
