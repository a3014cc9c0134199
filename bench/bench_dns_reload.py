"""The DNS server's incremental reload at N attachments: time of `update_snapshot` after
one attach or release recorded by the API server (endpoints.py), versus a full reload.

    python bench/bench_dns_reload.py [--names 4000] [--rounds 200]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from container_runtime.apiserver import endpoints  # noqa: E402
from container_runtime.dns.records import load_snapshot, update_snapshot  # noqa: E402
from container_runtime.models import NetworkConfiguration  # noqa: E402
from container_runtime.state import Database  # noqa: E402

SUBNET = ipaddress.IPv4Network("10.88.0.0/16")


def reply(i: int) -> dict[str, object]:
    return {
        "network": "bench",
        "owner": f"c{i:05d}",
        "hostname": f"c{i:05d}.test.",
        "address": f"{SUBNET.network_address + 2 + i}/16",
        "gateway": str(SUBNET.network_address + 1),
        "macAddress": f"02:42:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
        "mtu": 1500,
        "interface": "eth0",
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        db = Database(path)
        config = NetworkConfiguration(
            name="bench", ipv4_subnet=SUBNET, ipv4_gateway=SUBNET.network_address + 1
        )
        with db.write() as conn:
            conn.execute(
                "INSERT INTO networks(name, config, state, created_at) VALUES (?,?,'running','')",
                ("bench", json.dumps(config.to_json())),
            )
            for i in range(args.names):
                endpoints.record(conn, "bridge", reply(i), f"c{i:05d}")
        began = time.perf_counter()
        snapshot = load_snapshot(path, "test", 5)
        full_ms = (time.perf_counter() - began) * 1000
        times = []
        for r in range(args.rounds):
            i = args.names + r
            with db.write() as conn:
                if r % 2:
                    endpoints.forget(conn, f"c{i - 1:05d}", ["bench"])
                else:
                    endpoints.record(conn, "bridge", reply(i), f"c{i:05d}")
            began = time.perf_counter()
            updated = update_snapshot(snapshot, path)
            times.append((time.perf_counter() - began) * 1000)
            assert updated is not None
            snapshot = updated
        db.close()
    times.sort()
    print(
        f"incremental reload at {args.names} attachments: median {statistics.median(times):.2f} ms,"
        f" p90 {times[int(len(times) * 0.9)]:.2f} ms; full reload {full_ms:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
