"""Helpers for tests that look at containers from inside: inspect one, resolve a name with
busybox nslookup in it, talk TCP from it with nc; a stand-in upstream DNS server."""

from __future__ import annotations

import json
import re
import socket
import threading
from typing import Any

from .instance import Instance
from .probes import socket_in


def inspect(inst: Instance, name: str) -> dict[str, Any]:
    out = inst.cli("inspect", name, "--format", "json").stdout.splitlines()
    assert len(out) == 1, out
    return dict(json.loads(out[0]))


def address(inst: Instance, name: str, index: int = 0) -> str:
    return str(inspect(inst, name)["networks"][index]["address"]).split("/")[0]


def resolve_in(inst: Instance, container: str, name: str, qtype: str = "a") -> list[str]:
    """The addresses `name` gets from inside `container` (busybox nslookup, a real DNS
    query to the server in its /etc/resolv.conf); [] for NXDOMAIN or no answer."""
    out = inst.cli("exec", container, "nslookup", f"-type={qtype}", name, check=False).stdout
    _, _, answer = out.partition("\n\n")  # after the "Server:/Address:" block
    return sorted(re.findall(r"^Address:?\s+([0-9a-f.:]+)$", answer, re.M))


def tcp_from(inst: Instance, container: str, host: str, port: int, timeout: int = 2) -> str:
    """What a TCP server at host:port says to `container` (busybox nc), "" if nothing."""
    script = f"nc -w {timeout} {host} {port} </dev/null"
    return inst.cli("exec", container, "sh", "-c", script, check=False, timeout=30).stdout


class FakeUpstream:
    """A stand-in upstream DNS server at address:port in a namespace: every A query is
    answered with `answer` (a TTL of 5 s), anything else with an empty NOERROR."""

    def __init__(self, ns: str, address: str, port: int, answer: str) -> None:
        self.answer = answer
        self.asked: list[str] = []  # the names it was asked, in order
        self.sock = socket_in(ns, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        from dnslib import QTYPE, RR, A, DNSRecord

        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
                query = DNSRecord.parse(data)
                self.asked.append(str(query.q.qname).rstrip("."))
                reply = query.reply()
                if query.q.qtype == QTYPE.A:
                    reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(self.answer), ttl=5))
                self.sock.sendto(reply.pack(), peer)
            except OSError:
                return
            except Exception:  # noqa: BLE001 - a garbled query gets no answer
                continue

    def close(self) -> None:
        self.sock.close()
