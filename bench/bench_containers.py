"""`container run -d` until the process runs, and `rm -f`, vs plain `runc run -d`; memory.

    /tmp/venv/bin/python bench/bench_containers.py [-n 20] [-m 200]

A throwaway container system in its own network namespace (tests/support), a registry
on that namespace's loopback holding the busybox test image, pulled once.  Then N times
each, alternating:
  cli  : `container run -d IMAGE` (CLI process + API + sandbox + veth attach + bundle +
         conmon/runc) until it returns (the process runs), then `container rm -f`
  api  : the same through the API socket (no CLI process start-up)
  runc : `runc run -d` of a prepared bundle (plain rootfs copy, same config, new netns),
         then `runc delete -f` — the floor
Then memory: RSS sum of the API server, the network helper(s) and the conmon of each
container, with 0 and with M running containers.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.instance import Instance, NetnsPool  # noqa: E402
from support.registry import build_busybox_image, running_registry  # noqa: E402

from container_runtime.client import UnixClient  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import runc_round  # noqa: E402

RUNC = shutil.which("runc") or "/usr/sbin/runc"


def ms(values: list[float]) -> str:
    vals = sorted(v * 1000 for v in values)
    p90 = vals[min(len(vals) - 1, int(len(vals) * 0.9))]
    return f"median {statistics.median(vals):7.1f} ms  p90 {p90:7.1f} ms"


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def control_plane_pids(inst: Instance) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"apiserver": [], "helpers": [], "conmon": []}
    run_dir = str(inst.run_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"container-apiserver" in cmd and inst.pid("apiserver") == int(entry.name):
            out["apiserver"].append(int(entry.name))
        elif b"container-network-" in cmd and int(entry.name) in inst.our_processes():
            out["helpers"].append(int(entry.name))
        elif cmd.startswith(b"/usr/bin/conmon") and run_dir in cmd:
            out["conmon"].append(int(entry.name))
    return out


def memory(inst: Instance) -> str:
    pids = control_plane_pids(inst)
    parts = {k: sum(rss_kb(p) for p in v) for k, v in pids.items()}
    total = sum(parts.values())
    return (
        f"total {total / 1024:7.1f} MiB  (apiserver {parts['apiserver'] / 1024:.1f}, "
        f"helpers {parts['helpers'] / 1024:.1f}, {len(pids['conmon'])} conmon "
        f"{parts['conmon'] / 1024:.1f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20, help="start/remove rounds")
    ap.add_argument("-m", type=int, default=200, help="running containers for the memory figure")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-ctr-"))
    base.chmod(0o755)
    pool = NetnsPool()
    inst = Instance(base / "inst", pool)
    try:
        inst.start()
        layout = build_busybox_image(base / "oci")
        with running_registry(base / "registry", netns=inst.netns) as reg:
            ref = reg.push(layout, "latest", "test/busybox", "1")
            inst.cli("image", "pull", ref)
        api = UnixClient(inst.run_dir / "apiserver.sock", timeout=120)
        print(f"control plane, 0 containers:  {memory(inst)}")

        # the floor: a plain bundle made from one of ours
        cid = inst.cli("run", "-d", "--name", "template", ref, "sleep", "1000").stdout.strip()
        spec = json.loads((inst.root / "containers" / cid / "config.json").read_text())
        rootfs = Path((inst.root / "containers" / cid / "lowerdir").read_text())
        inst.cli("rm", "-f", "template")
        plain = base / "plain"
        plain.mkdir()
        shutil.copytree(rootfs, plain / "rootfs", symlinks=True)
        spec["root"]["path"] = str(plain / "rootfs")
        spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "bind"]
        spec["linux"]["cgroupsPath"] = "/container-runtime/bench-plain"
        for ns in spec["linux"]["namespaces"]:
            ns.pop("path", None)  # a fresh network namespace, as runc alone would
        (plain / "config.json").write_text(json.dumps(spec))
        runc_root = str(base / "runc-plain")

        cli_run, cli_rm, api_run, api_rm, runc_run, runc_rm = [], [], [], [], [], []
        for i in range(args.n):
            t = time.perf_counter()
            inst.cli("run", "-d", "--name", f"c{i}", ref, "sleep", "1000")
            cli_run.append(time.perf_counter() - t)
            t = time.perf_counter()
            inst.cli("rm", "-f", f"c{i}")
            cli_rm.append(time.perf_counter() - t)

            t = time.perf_counter()
            api.request(
                "POST",
                "/v1/containers",
                {
                    "name": f"a{i}",
                    "image": ref,
                    "cmd": ["sleep", "1000"],
                    "start": True,
                },
            )
            api_run.append(time.perf_counter() - t)
            t = time.perf_counter()
            api.request("DELETE", f"/v1/containers/a{i}?force=1")
            api_rm.append(time.perf_counter() - t)

            started, removed = runc_round(RUNC, runc_root, plain, f"p{i}")
            runc_run.append(started)
            runc_rm.append(removed)
        print(f"n={args.n}")
        print(f"container run -d (CLI)   {ms(cli_run)}")
        print(f"POST /v1/containers      {ms(api_run)}")
        print(f"runc run -d              {ms(runc_run)}")
        print(f"container rm -f (CLI)    {ms(cli_rm)}")
        print(f"DELETE /v1/containers    {ms(api_rm)}")
        print(f"runc delete -f           {ms(runc_rm)}")
        # The API server logs each start's networking share (sandbox, attachments, ports,
        # DNS update): what networking adds to a container start.
        log = (inst.run_dir / "apiserver.log").read_text()
        shares = [float(m) / 1000 for m in re.findall(r"networking ([0-9.]+) ms", log)]
        print(f"networking part of a start {ms(shares)}   (target <= 15 ms)")

        t = time.perf_counter()
        started = 0
        for i in range(args.m):
            try:
                api.request(
                    "POST",
                    "/v1/containers",
                    {
                        "name": f"m{i}",
                        "image": ref,
                        "cmd": ["sleep", "1000"],
                        "start": True,
                    },
                )
                started += 1
            except Exception as exc:
                print(f"stopped at {started} containers: {exc}")
                break
        print(f"started {started} containers in {time.perf_counter() - t:.1f} s")
        print(f"control plane, {started} containers: {memory(inst)}")
        t = time.perf_counter()
        inst.cli("system", "stop", timeout=600)
        print(f"system stop with {started} running: {time.perf_counter() - t:.1f} s")
    finally:
        inst.cleanup()
        pool.cleanup()
        subprocess.run(["umount", "-R", "-l", str(base)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
