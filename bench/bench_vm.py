"""VM container start and memory, beside a namespace container on the same network.

    python bench/bench_vm.py [-n 2]

In a throwaway container system (own netns, registry with the busybox image), N rounds,
each: `container run -d --vm` of the busybox image (httpd on port 80) on one network,
timed until the guest answers a TCP connect on its address from the host (the
namespace), with the parts the guest's init and the shim marked (inspect's vm.bootMs:
QEMU until the kernel runs, kernel + modules, interfaces, /etc files + mounts until the
process runs) and the networking share the API server logs for the start (attachments,
published ports, DNS: the same measure as for namespace containers); then the same for a
namespace container (`run -d`, no --vm). After the last round, the resident memory of an
idle VM container (QEMU + its shim) and of an idle namespace container (conmon + its
process). The machine's load average is printed with the figures: under TCG a loaded
host stretches the guest's boot.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BenchSystem  # noqa: E402
from support import probes  # noqa: E402
from support.registry import registry_with_busybox  # noqa: E402


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages (the mapped vmlinux) split among their users."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                out.append(int(entry.name))
    return out


def connects(ns: str, addr: str, port: int) -> bool:
    """A TCP handshake completes (httpd sends nothing before a request)."""
    sock = probes.socket_in(ns)
    sock.settimeout(0.2)
    try:
        sock.connect((addr, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def start_until_tcp(bs: BenchSystem, name: str, ref: str, vm: bool) -> tuple[float, float]:
    """Seconds until `run -d` returned and until the container answered TCP on :80."""
    flags = ["--vm"] if vm else []
    began = time.perf_counter()
    bs.cli("run", "-d", *flags, "--name", name, "--network", "benchnet", ref)
    returned = time.perf_counter() - began
    info = json.loads(bs.cli("inspect", name, "--format", "json"))
    addr = info["networks"][0]["address"].split("/")[0]
    while not connects(bs.netns, addr, 80):
        if time.perf_counter() - began > 120:
            raise RuntimeError(f"{name} never answered on {addr}:80")
        time.sleep(0.005)
    return returned, time.perf_counter() - began


def med(values: list[float]) -> str:
    return f"median {statistics.median(values):8.1f} ms (n={len(values)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=2)
    args = ap.parse_args()
    with BenchSystem() as bs, registry_with_busybox(netns=bs.netns) as (_, ref):
        bs.cli("image", "pull", ref)
        bs.cli("network", "create", "benchnet", "--subnet", "10.77.0.0/24")
        vm_ret, vm_tcp, ns_ret, ns_tcp = [], [], [], []
        parts: dict[str, list[float]] = {}
        accel = "?"
        for i in range(args.n):
            r, t = start_until_tcp(bs, f"vm{i}", ref, vm=True)
            vm_ret.append(r * 1000)
            vm_tcp.append(t * 1000)
            info = json.loads(bs.cli("inspect", f"vm{i}", "--format", "json"))
            accel = info["accelerator"]
            for key, value in info["vm"]["bootMs"].items():
                parts.setdefault(key, []).append(value)
            r, t = start_until_tcp(bs, f"ns{i}", ref, vm=False)
            ns_ret.append(r * 1000)
            ns_tcp.append(t * 1000)
            if i < args.n - 2:  # the last two VMs stay: idle memory, with a neighbour
                bs.cli("rm", "-f", f"vm{i}", f"ns{i}")
        time.sleep(2)  # idle
        vm_info = json.loads(bs.cli("inspect", f"vm{args.n - 1}", "--format", "json"))
        vm_dir = bs.base / "root" / "vms" / vm_info["id"]
        qemu = int((vm_dir / "qemu.pid").read_text())
        shim = int((vm_dir / "shim.pid").read_text())
        ns_info = json.loads(bs.cli("inspect", f"ns{args.n - 1}", "--format", "json"))
        conmon = int((bs.base / "root" / "containers" / ns_info["id"] / "conmon.pid").read_text())
        ns_rss = rss_kb(conmon) + sum(rss_kb(p) for p in children(conmon))
        qemu_rss, shim_rss, qemu_pss = rss_kb(qemu), rss_kb(shim), pss_kb(qemu)
        log = (bs.run_dir / "apiserver.log").read_text()
        shares = [
            float(m.group(2))
            for m in re.finditer(r"started container (\S+) .* networking ([0-9.]+) ms", log)
        ]
        names = re.findall(r"started container (\S+) ", log)
        vm_net = [s for n, s in zip(names, shares, strict=True) if n.startswith("vm")]
        ns_net = [s for n, s in zip(names, shares, strict=True) if n.startswith("ns")]
        kept = range(max(0, args.n - 2), args.n)  # the ones not removed in the loop
        bs.cli("rm", "-f", *(f"{k}{i}" for k in ("vm", "ns") for i in kept))
    load = os.getloadavg()
    print(f"accelerator {accel}; load average {load[0]:.1f} {load[1]:.1f} (2 CPUs)")
    print(f"VM run -d until it answers TCP      {med(vm_tcp)}   (target <= 3000 ms, TCG)")
    print(f"VM run -d returned (process runs)   {med(vm_ret)}")
    for key in ("vm", "qemu", "kernel", "rootfs", "network", "process", "total"):
        if key in parts:
            print(f"  part {key:<9}                     {med(parts[key])}")
    print(f"VM networking part of the start     {med(vm_net)}   (target <= 15 ms)")
    print(f"namespace run -d until TCP answers  {med(ns_tcp)}")
    print(f"namespace networking part           {med(ns_net)}")
    print(f"idle RSS: VM container QEMU {qemu_rss // 1024} MiB + shim {shim_rss // 1024} MiB")
    print(f"idle PSS: VM container QEMU {qemu_pss // 1024} MiB (kernel file shared with a 2nd VM)")
    print(f"idle RSS: namespace container (conmon + httpd) {ns_rss // 1024} MiB")


if __name__ == "__main__":
    main()
