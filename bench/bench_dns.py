#!/usr/bin/env python3
"""DNS benchmark: container-dns vs aardvark-dns vs dnsmasq, side by side in one run.

Each server answers the same N container names (NAME and NAME.test, A records) on a
bridge gateway (10.88.0.1:53) inside a throwaway namespace, pinned to one core with
taskset; dnsperf runs in a client namespace (10.88.0.2, itself a "container" on the
network) pinned to another core.  Per server:
  1. throughput run: dnsperf -l DURATION (default 100 outstanding queries), no -v;
  2. latency run: dnsperf -v at a fixed rate (default 20k q/s, below every server's
     capacity) for --latency-duration seconds: p50/p99 from per-query latencies, without
     the first --warmup seconds of queries (dnsperf's own start; the same for every
     server).
Rounds are interleaved and the server order is reversed every other round, so neither
time-correlated noise on the VM nor "runs right after another server" favours anyone.

Run as root:  PYTHONPATH=src python bench/bench_dns.py [--names 100] [--duration 8]
Cleans up namespaces and processes on exit (also on failure / Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from container_runtime import state  # noqa: E402
from container_runtime.apiserver import endpoints  # noqa: E402
from container_runtime.daemon import terminate  # noqa: E402

SRV_NS = f"dnsbench-srv-{os.getpid()}"
CLI_NS = f"dnsbench-cli-{os.getpid()}"
GATEWAY = "10.88.0.1"
CLIENT = "10.88.0.2"
AARDVARK_CANDIDATES = ("/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def in_ns(ns: str, cpu: int | None, *argv: str) -> list[str]:
    cmd = ["ip", "netns", "exec", ns]
    if cpu is not None and cpu >= 0:
        cmd += ["taskset", "-c", str(cpu)]
    return cmd + list(argv)


def cpu_times() -> list[int]:
    """The aggregate `cpu` line of /proc/stat (user nice system idle iowait irq softirq
    steal ...), in ticks."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def steal_percent(before: list[int], after: list[int]) -> float:
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta[:8])
    return 100.0 * delta[7] / total if total > 0 and len(delta) > 7 else 0.0


def address(index: int) -> str:
    return f"10.88.{(index + 10) // 256}.{(index + 10) % 256}"


@dataclass
class Result:
    server: str
    qps: float = 0.0
    avg_ms: float = 0.0
    lost: str = ""
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p99_quiet_ms: float | None = None  # median p99 of the rounds with little steal
    lat_qps: float = 0.0
    steal_pct: float = 0.0  # hypervisor steal time during the latency run
    note: str = ""


class Bench:
    def __init__(
        self,
        names: int,
        duration: float,
        lat_rate: int,
        srv_cpu: int,
        cli_cpu: int,
        lat_duration: float = 6.0,
        warmup: float = 0.5,
    ) -> None:
        self.n = names
        self.duration = duration
        self.lat_rate = lat_rate
        self.lat_duration = lat_duration
        self.warmup = warmup
        self.srv_cpu = srv_cpu
        self.cli_cpu = cli_cpu
        self.tmp = Path(tempfile.mkdtemp(prefix="dnsbench-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    # -- setup -------------------------------------------------------------------------

    def setup(self) -> None:
        for ns in (SRV_NS, CLI_NS):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", SRV_NS, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", SRV_NS, "addr", "add", f"{GATEWAY}/16", "dev", "br0")
        sh("ip", "-n", SRV_NS, "link", "set", "br0", "up")
        sh(
            "ip",
            "-n",
            SRV_NS,
            "link",
            "add",
            "vcli",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            CLI_NS,
        )
        sh("ip", "-n", SRV_NS, "link", "set", "vcli", "master", "br0", "up")
        sh("ip", "-n", CLI_NS, "addr", "add", f"{CLIENT}/16", "dev", "eth0")
        sh("ip", "-n", CLI_NS, "link", "set", "eth0", "up")
        lines = []
        for i in range(self.n):
            name = f"c{i:03d}"
            lines.append(f"{name}.test A" if i % 2 else f"{name} A")
        (self.tmp / "queries.txt").write_text("\n".join(lines) + "\n")

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:  # not yet reaped: its pid is still its own
                terminate(proc.pid, timeout=3)  # SIGTERM, then SIGKILL
            proc.wait()
        for ns in (CLI_NS, SRV_NS):
            self.kill_ns_pids(ns)
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- servers -----------------------------------------------------------------------

    def start(
        self, argv: list[str], env: dict[str, str] | None = None, log: str = "server.log"
    ) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            in_ns(SRV_NS, self.srv_cpu, *argv), stdout=out, stderr=subprocess.STDOUT, env=env
        )
        out.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            terminate(proc.pid, timeout=5)
        proc.wait()
        # aardvark-dns forks into the background: end whatever we left in the namespace
        self.kill_ns_pids(SRV_NS)

    @staticmethod
    def kill_ns_pids(ns: str) -> None:
        for _ in range(50):
            pids = [int(p) for p in sh("ip", "netns", "pids", ns, check=False).stdout.split()]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM if _ < 10 else signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def wait_answer(self, name: str = "c001.test") -> bool:
        """Probe from the client namespace until the server answers a name."""
        probe = (
            "import socket,sys,time\n"
            "import dns.message,dns.query\n"
            "end=time.time()+10\n"
            "while time.time()<end:\n"
            "  try:\n"
            f"    r=dns.query.udp(dns.message.make_query('{name}','A'),'{GATEWAY}',timeout=0.3)\n"
            "    if r.answer: sys.exit(0)\n"
            "  except Exception: pass\n"
            "  time.sleep(0.1)\n"
            "sys.exit(1)\n"
        )
        return subprocess.run(in_ns(CLI_NS, None, sys.executable, "-c", probe)).returncode == 0

    def container_dns(self, rate: int | None) -> Callable[[], subprocess.Popen[bytes]]:
        def start() -> subprocess.Popen[bytes]:
            root = self.tmp / "cdns-root"
            db = root / "state.db"
            if not db.exists():
                state.initialise(db)
                conn = state.connect(db)
                created = datetime.now(UTC).isoformat()
                cfg = {
                    "name": "bench",
                    "ipv4Subnet": "10.88.0.0/16",
                    "ipv4Gateway": GATEWAY,
                    "ipv6Subnet": None,
                    "mode": "nat",
                    "plugin": "bridge",
                }
                with state.transaction(conn):
                    conn.execute(
                        "INSERT INTO networks(name, config, state, link, created_at)"
                        " VALUES ('bench', ?, 'running', 'br0', ?)",
                        (json.dumps(cfg), created),
                    )
                    rows = [("client", CLIENT)] + [(f"c{i:03d}", address(i)) for i in range(self.n)]
                    for k, (owner, addr) in enumerate(rows):
                        # what the API server records from the helper's reply (endpoints.py)
                        reply = {
                            "network": "bench",
                            "owner": owner,
                            "hostname": f"{owner}.test.",
                            "address": f"{addr}/16",
                            "gateway": GATEWAY,
                            "macAddress": f"02:42:00:00:{(k + 1) // 256:02x}:{(k + 1) % 256:02x}",
                            "mtu": 1500,
                            "interface": "eth0",
                        }
                        endpoints.record(conn, "bridge", reply, owner)
                conn.close()
            env = dict(os.environ)
            env.update(
                PYTHONPATH=str(SRC),
                CONTAINER_ROOT=str(root),
                CONTAINER_RUN_DIR=str(self.tmp / "cdns-run"),
                CONTAINER_CONFIG=str(self.tmp / "none.toml"),
                CONTAINER_DNS_HOST_PORT="0",
                CONTAINER_DNS_UPSTREAMS="",
            )
            if rate is not None:
                env["CONTAINER_DNS_RATE"] = str(rate)
            else:
                env.pop("CONTAINER_DNS_RATE", None)
            return self.start([sys.executable, "-m", "container_runtime.dns.server"], env=env)

        return start

    def aardvark(self, binary: str) -> Callable[[], subprocess.Popen[bytes]]:
        def start() -> subprocess.Popen[bytes]:
            conf = self.tmp / "aardvark"
            conf.mkdir(exist_ok=True)
            lines = [GATEWAY, f"{'f' * 64} {CLIENT}  client"]
            for i in range(self.n):
                cid = f"{i:064x}"
                lines.append(f"{cid} {address(i)}  c{i:03d},c{i:03d}.test")
            (conf / "bench").write_text("\n".join(lines) + "\n")
            return self.start([binary, "--config", str(conf), "-p", "53", "run"])

        return start

    def dnsmasq(self) -> subprocess.Popen[bytes]:
        hosts = self.tmp / "hosts"
        hosts.write_text("".join(f"{address(i)} c{i:03d} c{i:03d}.test\n" for i in range(self.n)))
        return self.start(
            [
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                f"--addn-hosts={hosts}",
                f"--listen-address={GATEWAY}",
                "--bind-interfaces",
                "--port=53",
                "--user=root",
                "--pid-file=",
                "--local-ttl=5",
            ]
        )

    # -- measurement -------------------------------------------------------------------

    def dnsperf(self, verbose: bool) -> tuple[str, list[float]]:
        argv = ["dnsperf", "-s", GATEWAY, "-d", str(self.tmp / "queries.txt"), "-t", "2"]
        if verbose:
            argv += ["-v", "-l", str(self.lat_duration + self.warmup), "-Q", str(self.lat_rate)]
        else:
            argv += ["-l", str(self.duration)]
        # Into a file, not a pipe: a reader in this process would wake on the measured
        # CPUs and, when late, block dnsperf's writes and so inflate its latencies.
        log = self.tmp / "dnsperf.out"
        with log.open("w") as sink:
            subprocess.run(
                in_ns(CLI_NS, self.cli_cpu, *argv),
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=self.duration + self.lat_duration * 2 + 30,
            )
        text = log.read_text()
        latencies: list[float] = []
        if verbose:
            for line in text.splitlines():
                m = re.match(r"^> \S+ .* ([0-9.]+)$", line)
                if m:
                    latencies.append(float(m.group(1)) * 1000.0)
            del latencies[: int(self.warmup * self.lat_rate)]  # in completion order
        return text, latencies

    def measure(self, label: str, start: Callable[[], subprocess.Popen[bytes]]) -> Result:
        result = Result(label)
        proc = start()
        try:
            if not self.wait_answer():
                result.note = "did not answer: " + (self.tmp / "server.log").read_text()[-300:]
                return result
            text, _ = self.dnsperf(verbose=False)
            qps = re.search(r"Queries per second:\s+([0-9.]+)", text)
            avg = re.search(r"Average Latency \(s\):\s+([0-9.]+)", text)
            lost = re.search(r"Queries lost:\s+(\d+ \([0-9.]+%\))", text)
            if not qps:
                result.note = "dnsperf failed: " + text[-300:]
                return result
            result.qps = float(qps.group(1))
            result.avg_ms = float(avg.group(1)) * 1000 if avg else 0.0
            result.lost = lost.group(1) if lost else "?"
            before = cpu_times()
            text, lat = self.dnsperf(verbose=True)
            result.steal_pct = steal_percent(before, cpu_times())
            if lat:
                lat.sort()
                result.p50_ms = statistics.median(lat)
                result.p99_ms = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            q2 = re.search(r"Queries per second:\s+([0-9.]+)", text)
            result.lat_qps = float(q2.group(1)) if q2 else 0.0
            if not sh("ip", "netns", "pids", SRV_NS, check=False).stdout.split():
                result.note = "server exited during the run"
        finally:
            self.stop(proc)
            time.sleep(0.3)
        return result


def median_result(label: str, rs: list[Result], quiet_steal: float = 3.0) -> Result:
    ok = [r for r in rs if r.qps > 0]
    if not ok:
        return Result(label, note="; ".join(sorted({r.note for r in rs})))
    out = Result(
        label,
        qps=statistics.median(r.qps for r in ok),
        avg_ms=statistics.median(r.avg_ms for r in ok),
        lost=ok[0].lost,
        p50_ms=statistics.median(r.p50_ms for r in ok),
        p99_ms=statistics.median(r.p99_ms for r in ok),
        lat_qps=statistics.median(r.lat_qps for r in ok),
    )
    qs = sorted(r.qps for r in ok)
    quiet = [r.p99_ms for r in ok if r.steal_pct <= quiet_steal]
    out.p99_quiet_ms = statistics.median(quiet) if quiet else None
    p99s = "/".join(f"{r.p99_ms:.1f}({r.steal_pct:.0f}%)" for r in ok)
    out.note = f"q/s {qs[0]:.0f}-{qs[-1]:.0f}; p99 {p99s}" + "".join(
        f"; {r.note}" for r in rs if r.note
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=100)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument(
        "--latency-rate", type=int, default=20000, help="q/s of the latency run (dnsperf -Q)"
    )
    parser.add_argument(
        "--latency-duration",
        type=float,
        default=6.0,
        help="seconds of the latency run, after the warm-up",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=0.5,
        help="seconds of queries left out at the start of the latency run",
    )
    parser.add_argument(
        "--quiet-steal",
        type=float,
        default=3.0,
        help="steal %% up to which a round counts as quiet (p99 quiet column)",
    )
    parser.add_argument("--server-cpu", type=int, default=1, help="-1: not pinned")
    parser.add_argument("--client-cpu", type=int, default=0, help="-1: not pinned")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma list: container,aardvark,dnsmasq")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (network namespaces)", file=sys.stderr)
        return 2
    if not shutil.which("dnsperf"):
        print("dnsperf is not installed (apt-get install dnsperf)", file=sys.stderr)
        return 2
    bench = Bench(
        args.names,
        args.duration,
        args.latency_rate,
        args.server_cpu,
        args.client_cpu,
        args.latency_duration,
        args.warmup,
    )
    wanted = set(filter(None, args.only.split(","))) or {"container", "aardvark", "dnsmasq"}
    servers: list[tuple[str, Callable[[], subprocess.Popen[bytes]] | None]] = []
    if "container" in wanted:
        servers.append(("container-dns (rate limit off)", bench.container_dns(0)))
        servers.append(("container-dns (default limit)", bench.container_dns(None)))
    if "aardvark" in wanted:
        binary = next((b for b in AARDVARK_CANDIDATES if os.path.exists(b)), None)
        binary = binary or shutil.which("aardvark-dns")
        servers.append(("aardvark-dns", bench.aardvark(binary) if binary else None))
    if "dnsmasq" in wanted:
        servers.append(("dnsmasq", bench.dnsmasq if shutil.which("dnsmasq") else None))
    rounds: dict[str, list[Result]] = {label: [] for label, _ in servers}
    try:
        bench.setup()
        # interleaved rounds: noise on this VM (steal time) is time-correlated
        for round_no in range(args.rounds):
            for label, start in servers if round_no % 2 == 0 else servers[::-1]:
                if start is None:
                    rounds[label].append(Result(label, note="not installed"))
                else:
                    rounds[label].append(bench.measure(label, start))
    finally:
        bench.cleanup()
    results = [median_result(label, rs, args.quiet_steal) for label, rs in rounds.items()]
    print(
        f"\n{args.names} names, server on CPU {args.server_cpu}, dnsperf on CPU "
        f"{args.client_cpu}; throughput run {args.duration:g} s (100 outstanding); "
        f"latency run at {args.latency_rate} q/s with dnsperf -v for {args.latency_duration:g} s "
        f"after {args.warmup:g} s warm-up; median of {args.rounds} interleaved rounds "
        "(note: q/s range; each round's p99 with the VM's steal time during it); p99 quiet: "
        f"median p99 of the rounds with steal <= {args.quiet_steal:g}% (n: how many)"
    )
    header = (
        f"{'server':32} {'q/s':>9} {'avg ms':>7} {'lost':>14} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'p99 quiet':>12} {'lat-run q/s':>11}  note"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        n_quiet = sum(1 for x in rounds[r.server] if x.qps > 0 and x.steal_pct <= args.quiet_steal)
        quiet = f"{r.p99_quiet_ms:.3f} (n={n_quiet})" if r.p99_quiet_ms is not None else "- (n=0)"
        print(
            f"{r.server:32} {r.qps:9.0f} {r.avg_ms:7.3f} {r.lost:>14} "
            f"{r.p50_ms:7.3f} {r.p99_ms:7.3f} {quiet:>12} {r.lat_qps:11.0f}  {r.note}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
