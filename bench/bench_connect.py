"""`network connect` / `disconnect` of a running container through the API, beside a
plain bare attach / detach of a namespace on the same network, in one run.

    .venv/bin/python bench/bench_connect.py [-n 30]

A throwaway container system in its own network namespace (tests/support), a registry on
its loopback holding the busybox test image. One container runs on network `a`; then N
times, alternating:
  connect    : POST /v1/networks/b/connect {container} (the next interface built in the
               running container's sandbox, endpoint + configuration committed, DNS
               notified, /etc/hosts rewritten), then POST .../disconnect
  attach     : POST /v1/networks/b/attachments {name, netns} of a bare namespace (the
               helper's allocation + veth, endpoint, DNS acknowledged), then DELETE
Target: connect <= 10 ms (as an attach).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.instance import Instance, NetnsPool  # noqa: E402
from support.registry import build_busybox_image, running_registry  # noqa: E402

from container_runtime.client import UnixClient  # noqa: E402


def ms(values: list[float]) -> str:
    vals = sorted(v * 1000 for v in values)
    p90 = vals[min(len(vals) - 1, int(len(vals) * 0.9))]
    return f"median {statistics.median(vals):6.2f} ms  p90 {p90:6.2f} ms  (n={len(vals)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30, help="rounds")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-connect-"))
    base.chmod(0o755)
    pool = NetnsPool()
    inst = Instance(base / "inst", pool)
    try:
        inst.start()
        layout = build_busybox_image(base / "oci")
        with running_registry(base / "registry", netns=inst.netns) as reg:
            ref = reg.push(layout, "latest", "test/busybox", "1")
            inst.cli("image", "pull", ref)
        inst.cli("network", "create", "a", "--subnet", "10.210.0.0/24")
        inst.cli("network", "create", "b", "--subnet", "10.211.0.0/16")
        inst.cli("run", "-d", "--name", "web", "--network", "a", ref)
        bare = pool.create("bare")
        api = UnixClient(inst.run_dir / "apiserver.sock", timeout=120)
        connect, disconnect, attach, detach = [], [], [], []
        for _ in range(args.n):
            t = time.perf_counter()
            api.request("POST", "/v1/networks/b/connect", {"container": "web"})
            connect.append(time.perf_counter() - t)
            t = time.perf_counter()
            api.request("POST", "/v1/networks/b/disconnect", {"container": "web"})
            disconnect.append(time.perf_counter() - t)
            t = time.perf_counter()
            body = {"name": "bare", "netns": f"/run/netns/{bare}", "primary": False}
            api.request("POST", "/v1/networks/b/attachments", body)
            attach.append(time.perf_counter() - t)
            t = time.perf_counter()
            api.request("DELETE", "/v1/networks/b/attachments/bare")
            detach.append(time.perf_counter() - t)
            time.sleep(0.05)  # let the background veth deletion finish (not on either path)
        api.close()
        print(f"network connect (running container, API): {ms(connect)}  target <= 10 ms")
        print(f"plain bare attach into a namespace (API): {ms(attach)}")
        print(f"network disconnect (running container):   {ms(disconnect)}")
        print(f"plain bare detach (API):                   {ms(detach)}")
    finally:
        inst.cleanup()
        pool.cleanup()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
