"""Container start/remove latency: our runtime (runc under conmon) vs `runc run -d` alone.

    PYTHONPATH=src python bench/bench_run.py [-n 30]

Builds the busybox test image, pushes it to a registry on 127.0.0.1, pulls it, then
N times each, alternating:
  ours : create_bundle (overlay mount + config.json) + start (conmon, runc create,
         runc start) until the process runs; then delete(force=True)
  runc : `runc run -d` of a prepared bundle (plain rootfs dir, same config); then
         `runc delete -f`
Prints medians and p90 in milliseconds.  No networking is involved on either side.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import runc_round  # noqa: E402
from support.registry import registry_with_busybox  # noqa: E402

from container_runtime.runtime.images import ImageStore  # noqa: E402
from container_runtime.runtime.oci import RUNC, OciRuntime, ProcessSpec  # noqa: E402


def ms(values: list[float]) -> str:
    vals = sorted(v * 1000 for v in values)
    p90 = vals[min(len(vals) - 1, int(len(vals) * 0.9))]
    return f"median {statistics.median(vals):6.1f} ms  p90 {p90:6.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-run-"))
    try:
        with registry_with_busybox() as (_, ref):
            store = ImageStore(base / "root" / "images")
            t = time.perf_counter()
            image = store.pull(ref)
            pull = time.perf_counter() - t
            t = time.perf_counter()
            rootfs = store.rootfs(image)
            unpack = time.perf_counter() - t
        print(f"pull (local registry) {pull * 1000:.1f} ms, first unpack {unpack * 1000:.1f} ms")
        rt = OciRuntime(base / "root" / "containers", base / "run", store)
        proc = ProcessSpec.from_image(image, command=["sleep", "1000"])

        # the floor: a bundle with a plain rootfs copy, same config.json as ours
        rt.create_bundle("template", image, proc, "bench", None, "", "")
        spec = json.loads((rt.bundle_path("template") / "config.json").read_text())
        rt.delete("template")
        plain = base / "plain"
        plain.mkdir()
        shutil.copytree(rootfs, plain / "rootfs", symlinks=True)
        spec["root"]["path"] = str(plain / "rootfs")
        spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "bind"]
        spec["linux"]["cgroupsPath"] = "/container-runtime/bench-plain"
        (plain / "config.json").write_text(json.dumps(spec))
        runc_root = str(base / "run" / "runc-plain")

        ours_start, ours_bundle, ours_total, ours_rm, runc_start, runc_rm = ([], [], [], [], [], [])
        for i in range(args.n):
            cid = f"b{i}"
            t0 = time.perf_counter()
            rt.create_bundle(cid, image, proc, "bench", None, "127.0.0.1 localhost\n", "")
            t1 = time.perf_counter()
            rt.start(cid)
            t2 = time.perf_counter()
            assert rt.state(cid).status == "running"
            ours_bundle.append(t1 - t0)
            ours_start.append(t2 - t1)
            ours_total.append(t2 - t0)
            t = time.perf_counter()
            rt.delete(cid, force=True)
            ours_rm.append(time.perf_counter() - t)

            started, removed = runc_round(RUNC, runc_root, plain, f"p{i}")
            runc_start.append(started)
            runc_rm.append(removed)

        print(f"n={args.n}")
        print(f"ours  create_bundle      {ms(ours_bundle)}")
        print(f"ours  start (conmon)     {ms(ours_start)}")
        print(f"ours  bundle+start       {ms(ours_total)}")
        print(f"runc  run -d             {ms(runc_start)}")
        print(f"ours  delete(force)      {ms(ours_rm)}")
        print(f"runc  delete -f          {ms(runc_rm)}")
    finally:
        subprocess.run(["umount", "-R", "-l", str(base)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
