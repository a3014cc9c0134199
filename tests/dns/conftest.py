"""Fixtures for the DNS tests: a throwaway namespace lab and the real `container-dns`.

Layout (all names carry a per-run prefix; everything is removed at the end, even on
failure):

    ns SRV: bridges bra 10.77.1.1/24 + fd77:1::1/64 (network "neta"),
            brb 10.77.2.1/24 (network "netb"), bru 10.77.9.1/24 (upstream side);
            the DNS server under test runs here (gateways port 53, 127.0.0.1:2053)
    ns A1  10.77.1.2 on neta        ns B1 10.77.2.2 on netb
    ns AB  10.77.1.3 on neta + 10.77.2.3 on netb
    ns ST  10.77.1.50 on neta's bridge, no attachment (a stranger)
    ns UP  10.77.9.2: stand-in upstream DNS; 10.77.9.3 is a dead upstream (no host)
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from container_runtime import state
from container_runtime.apiserver import endpoints
from container_runtime.daemon import terminate  # noqa: E402
from container_runtime.dns.control import notify_dns
from container_runtime.models import NetworkConfiguration

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
AGENT = HERE / "ns_agent.py"
DOMAIN = "test"
GW_A = "10.77.1.1"
GW_B = "10.77.2.1"
UPSTREAM_LIVE = "10.77.9.2"
UPSTREAM_DEAD = "10.77.9.3"
RATE = 2000
BURST = 1000


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def now() -> str:
    return datetime.now(UTC).isoformat()


class Agent:
    """A long-lived ns_agent.py inside one namespace."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-u", str(AGENT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=test_env(),
        )

    def call(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"agent in {self.ns} died")
        result: dict[str, Any] = json.loads(line)
        return result

    def query(
        self, name: str, rdtype: str = "A", server: str = GW_A, port: int = 53, **kw: Any
    ) -> dict[str, Any]:
        return self.call(op="query", name=name, rdtype=rdtype, server=server, port=port, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class Lab:
    def __init__(self, prefix: str, tmp: Path) -> None:
        self.prefix = prefix
        self.tmp = tmp
        self.root = tmp / "root"
        self.run_dir = tmp / "run"
        self.config = tmp / "config.toml"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.agents: dict[str, Agent] = {}
        self.server: subprocess.Popen[bytes] | None = None
        self.db = self.root / "state.db"
        self.mac_counter = 0

    def ns(self, short: str) -> str:
        return f"{self.prefix}{short}"

    # -- namespaces ------------------------------------------------------------------

    def add_ns(self, short: str) -> str:
        name = self.ns(short)
        ip("netns", "del", name, check=False)
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def member(self, short: str, links: list[tuple[str, str]]) -> str:
        """A namespace with one veth per (bridge, address/prefix)."""
        name = self.add_ns(short)
        srv = self.ns("srv")
        for index, (bridge, address) in enumerate(links):
            host_if = f"v{short}{index}"
            veth = ("type", "veth", "peer", "name", f"e{index}", "netns", name)
            ip("-n", srv, "link", "add", host_if, *veth)
            ip("-n", srv, "link", "set", host_if, "master", bridge, "up")
            ip("-n", name, "addr", "add", address, "dev", f"e{index}")
            ip("-n", name, "link", "set", f"e{index}", "up")
        gateway = ipaddress.IPv4Interface(links[0][1]).network.network_address + 1
        ip("-n", name, "route", "add", "default", "via", str(gateway))
        return name

    def build(self) -> None:
        srv = self.add_ns("srv")
        for bridge, address in (
            ("bra", "10.77.1.1/24"),
            ("brb", "10.77.2.1/24"),
            ("bru", "10.77.9.1/24"),
        ):
            ip("-n", srv, "link", "add", bridge, "type", "bridge")
            ip("-n", srv, "addr", "add", address, "dev", bridge)
            ip("-n", srv, "link", "set", bridge, "up")
        ip("-n", srv, "-6", "addr", "add", "fd77:1::1/64", "dev", "bra", "nodad")
        self.member("a1", [("bra", "10.77.1.2/24")])
        self.member("b1", [("brb", "10.77.2.2/24")])
        self.member("ab", [("bra", "10.77.1.3/24"), ("brb", "10.77.2.3/24")])
        self.member("st", [("bra", "10.77.1.50/24")])
        self.member("up", [("bru", "10.77.9.2/24")])

    # -- state database --------------------------------------------------------------

    def write_config(self) -> None:
        self.config.write_text(
            f'[dns]\ndomain = "{DOMAIN}"\nupstreams = ["{UPSTREAM_DEAD}", "{UPSTREAM_LIVE}"]\n'
        )

    def add_network(self, name: str, subnet: str, v6: str | None = None) -> None:
        net = ipaddress.IPv4Network(subnet)
        cfg = NetworkConfiguration(
            name=name,
            ipv4_subnet=net,
            ipv4_gateway=net.network_address + 1,
            ipv6_subnet=ipaddress.IPv6Network(v6) if v6 else None,
        )
        conn = state.connect(self.db)
        try:
            with state.transaction(conn):
                conn.execute(
                    "INSERT INTO networks(name, config, state, link, created_at) "
                    "VALUES (?, ?, 'running', NULL, ?)",
                    (name, json.dumps(cfg.to_json()), now()),
                )
        finally:
            conn.close()

    def remove_network(self, name: str) -> None:
        conn = state.connect(self.db)
        try:
            with state.transaction(conn):
                conn.execute("DELETE FROM networks WHERE name = ?", (name,))
        finally:
            conn.close()

    def attach(self, network: str, owner: str, address: str, ipv6: str | None = None) -> None:
        """Record an attachment as the API server does: an endpoints row (the DNS server
        reads that record, never a plugin's tables)."""
        iface = ipaddress.IPv4Interface(address)
        self.mac_counter += 1
        hi, lo = divmod(self.mac_counter, 256)
        reply = {
            "network": network,
            "owner": owner,
            "hostname": f"{owner.lower()}.{DOMAIN}.",
            "address": str(iface),
            "gateway": str(iface.network.network_address + 1),
            "macAddress": f"02:42:00:00:{hi:02x}:{lo:02x}",
            "mtu": 1500,
            "interface": "eth0",
        }
        if ipv6:
            reply["ipv6Address"] = ipv6
        conn = state.connect(self.db)
        try:
            with state.transaction(conn):
                endpoints.record(conn, "bridge", reply, owner)
        finally:
            conn.close()

    def detach(self, network: str, owner: str) -> None:
        conn = state.connect(self.db)
        try:
            with state.transaction(conn):
                endpoints.forget(conn, owner, [network])
        finally:
            conn.close()

    # -- processes -------------------------------------------------------------------

    def start_dns(self, run_dir: Path, **env: str) -> subprocess.Popen[bytes]:
        run_dir.mkdir(parents=True, exist_ok=True)
        log = open(run_dir / "dns.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns("srv"),
                sys.executable,
                "-m",
                "container_runtime.dns.server",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=test_env(
                CONTAINER_ROOT=str(self.root),
                CONTAINER_RUN_DIR=str(run_dir),
                CONTAINER_CONFIG=str(self.config),
                CONTAINER_DNS_RATE=str(RATE),
                CONTAINER_DNS_BURST=str(BURST),
                **env,
            ),
        )
        log.close()
        self.procs.append(proc)
        deadline = time.monotonic() + 10
        while not notify_dns(run_dir):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "container-dns did not start:\n" + (run_dir / "dns.log").read_text()
                )
            time.sleep(0.05)
        return proc

    def start_upstream(self) -> None:
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns("up"),
                sys.executable,
                "-u",
                str(AGENT),
                "upstream",
                UPSTREAM_LIVE,
            ],
            stdout=subprocess.PIPE,
            env=test_env(),
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("stand-in upstream did not start")

    def agent(self, short: str) -> Agent:
        if short not in self.agents:
            self.agents[short] = Agent(self.ns(short))
        return self.agents[short]

    def notify(self) -> None:
        assert notify_dns(self.run_dir), "container-dns did not acknowledge the reload"

    def server_log(self) -> str:
        try:
            return (self.run_dir / "dns.log").read_text()
        except OSError:
            return ""

    def cleanup(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        for proc in self.procs:
            if proc.poll() is None:  # not yet reaped: its pid is still its own
                terminate(proc.pid, timeout=3)  # SIGTERM, then SIGKILL
            proc.wait()
        for name in reversed(self.namespaces):
            ip("netns", "del", name, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    tmp = Path(tempfile.mkdtemp(prefix="dnstest-"))
    lab = Lab(f"dt{os.getpid() % 100000}", tmp)
    try:
        lab.build()
        lab.write_config()
        state.initialise(lab.db)
        lab.add_network("neta", "10.77.1.0/24", "fd77:1::/64")
        lab.add_network("netb", "10.77.2.0/24")
        lab.attach("neta", "a1", "10.77.1.2/24")
        lab.attach("netb", "b1", "10.77.2.2/24")
        lab.attach("neta", "ab", "10.77.1.3/24")
        lab.attach("netb", "ab", "10.77.2.3/24")
        lab.attach("neta", "Web", "10.77.1.10/24", "fd77:1::10")
        lab.attach("netb", "dbonly", "10.77.2.10/24")
        lab.start_upstream()
        lab.server = lab.start_dns(lab.run_dir)
        yield lab
    except BaseException:
        sys.stderr.write(lab.server_log())
        raise
    finally:
        lab.cleanup()
