"""Helpers for the DNS integration tests: real queries from inside namespaces."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support.instance import Instance, NetnsPool, run

UPSTREAM_AGENT = Path(__file__).resolve().parents[1] / "dns" / "ns_agent.py"

# One process per batch of questions (python + dnspython start once, not per query).
_QUERY = r"""
import json, sys
import dns.exception, dns.flags, dns.message, dns.query, dns.rcode
out = []
for name, rdtype, server, port, tcp in json.loads(sys.argv[1]):
    msg = dns.message.make_query(name, rdtype)
    try:
        fn = dns.query.tcp if tcp else dns.query.udp
        r = fn(msg, server, port=port, timeout=4)
    except (dns.exception.Timeout, OSError) as exc:
        out.append({"rcode": "TIMEOUT", "answers": [], "error": str(exc)})
        continue
    out.append({
        "rcode": dns.rcode.to_text(r.rcode()),
        "answers": sorted(rd.to_text() for rr in r.answer for rd in rr),
        "aa": bool(r.flags & dns.flags.AA),
    })
print(json.dumps(out))
"""

Question = tuple[str, str, str, int, bool]


def ask_many(ns: str | None, questions: list[Question]) -> list[dict[str, Any]]:
    """dnspython queries from namespace `ns` (None: the current one)."""
    argv = [sys.executable, "-c", _QUERY, json.dumps(questions)]
    if ns is not None:
        argv = ["ip", "netns", "exec", ns, *argv]
    result = run(argv, timeout=60)
    return list(json.loads(result.stdout))


def ask(
    ns: str | None,
    name: str,
    rdtype: str = "A",
    server: str = "",
    port: int = 53,
    tcp: bool = False,
) -> dict[str, Any]:
    return ask_many(ns, [(name, rdtype, server, port, tcp)])[0]


def busybox_nslookup(pool: NetnsPool, ns: str, name: str, server: str) -> tuple[bool, str]:
    """(found, output) of `busybox nslookup NAME SERVER` inside `ns`."""
    result = pool.exec(ns, ["busybox", "nslookup", name, server], check=False, timeout=30)
    return result.returncode == 0, result.stdout + result.stderr


def dig(
    inst: Instance, name: str, *extra: str, server: str = "127.0.0.1", port: int = 2053
) -> tuple[str, list[str]]:
    """`dig` from the daemons' namespace (the host's view): (status, answer values)."""
    out = inst.sh("dig", f"@{server}", "-p", str(port), "+tries=1", "+time=4", name, *extra).stdout
    status = ""
    for line in out.splitlines():
        if "status:" in line:
            status = line.split("status:")[1].split(",")[0].strip()
    answers = []
    section = False
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            section = True
            continue
        if section:
            if not line.strip():
                break
            answers.append(line.split()[-1])
    return status, sorted(answers)


def attach(
    inst: Instance, pool: NetnsPool, network: str, name: str, ns: str | None = None, *extra: str
) -> tuple[str, str]:
    """Attach a (new, unless given) namespace to `network`; (namespace, address)."""
    ns = ns or pool.create("m")
    att = inst.cli("network", "attach", network, "--name", name, "--netns", ns, *extra).json()
    return ns, str(att["address"]).split("/")[0]


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout} s (last: {last!r})")


class Upstream:
    """The stand-in upstream DNS server (tests/dns/ns_agent.py upstream) in its own
    namespace, reachable from the daemons' namespace over a veth: 10.93.0.2 answers,
    10.93.0.3 is a dead address on the same link."""

    LIVE = "10.93.0.2"
    DEAD = "10.93.0.3"

    def __init__(self, inst: Instance, pool: NetnsPool) -> None:
        self.ns = pool.create("up")
        host_if, peer_if = f"u{self.ns[-8:]}", "eth0"
        peer = ["peer", "name", peer_if, "netns", self.ns]
        run(["ip", "-n", inst.netns, "link", "add", host_if, "type", "veth", *peer])
        run(["ip", "-n", inst.netns, "addr", "add", "10.93.0.1/24", "dev", host_if])
        run(["ip", "-n", inst.netns, "link", "set", host_if, "up"])
        run(["ip", "-n", self.ns, "addr", "add", f"{self.LIVE}/24", "dev", peer_if])
        run(["ip", "-n", self.ns, "link", "set", peer_if, "up"])
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                sys.executable,
                str(UPSTREAM_AGENT),
                "upstream",
                self.LIVE,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
