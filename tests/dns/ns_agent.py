"""Test helper run inside a network namespace (`ip netns exec NS python ns_agent.py`).

Mode `agent` (default): reads one JSON request per line on stdin, answers one JSON
line on stdout: real DNS queries with dnspython, raw packets, paced floods.
Mode `upstream ADDR`: a stand-in upstream DNS server (UDP + TCP, dnslib) for the
forwarding tests: NAME.example.com A -> 203.0.113.7; big.example.com is truncated
over UDP and has 20 A records over TCP.
"""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading
import time
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


def do_query(req: dict[str, Any]) -> dict[str, Any]:
    msg = dns.message.make_query(req["name"], req.get("rdtype", "A"))
    start = time.monotonic()
    timeout = float(req.get("timeout", 3.0))
    try:
        if req.get("tcp"):
            resp = dns.query.tcp(msg, req["server"], port=int(req.get("port", 53)), timeout=timeout)
        else:
            resp = dns.query.udp(
                msg,
                req["server"],
                port=int(req.get("port", 53)),
                timeout=timeout,
                ignore_trailing=False,
            )
    except dns.exception.Timeout:
        return {"error": "timeout", "elapsed": time.monotonic() - start}
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}", "elapsed": time.monotonic() - start}
    answers: list[str] = []
    for rrset in resp.answer:
        for rd in rrset:
            answers.append(rd.to_text())
    return {
        "rcode": dns.rcode.to_text(resp.rcode()),
        "answers": answers,
        "ttl": [rrset.ttl for rrset in resp.answer],
        "aa": bool(resp.flags & dns.flags.AA),
        "tc": bool(resp.flags & dns.flags.TC),
        "question": [q.to_text() for q in resp.question],
        "elapsed": time.monotonic() - start,
    }


def do_raw(req: dict[str, Any]) -> dict[str, Any]:
    target = (req["server"], int(req.get("port", 53)))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    replies: list[str] = []
    for packet in req["packets"]:
        try:
            sock.sendto(bytes.fromhex(packet), target)
        except OSError:
            pass
    deadline = time.monotonic() + float(req.get("wait", 0.2))
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65535)
            replies.append(data.hex())
        except BlockingIOError:
            time.sleep(0.005)
    sock.close()
    return {"replies": replies}


def do_flood(req: dict[str, Any]) -> dict[str, Any]:
    """Send `rate` queries/s for `duration` s; count answers."""
    target = (req["server"], int(req.get("port", 53)))
    wire = dns.message.make_query(req["name"], "A").to_wire()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setblocking(False)
    rate = float(req["rate"])
    duration = float(req["duration"])
    sent = received = 0
    start = time.monotonic()
    while True:
        now = time.monotonic()
        if now - start >= duration:
            break
        due = int((now - start) * rate)
        while sent < due:
            try:
                sock.sendto(wire, target)
            except OSError:
                pass
            sent += 1
        while True:
            try:
                sock.recv(4096)
                received += 1
            except BlockingIOError:
                break
        time.sleep(0.001)
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        try:
            sock.recv(4096)
            received += 1
        except BlockingIOError:
            time.sleep(0.005)
    sock.close()
    return {"sent": sent, "received": received}


def agent() -> None:
    for line in sys.stdin:
        req = json.loads(line)
        op = req.get("op")
        try:
            if op == "query":
                out = do_query(req)
            elif op == "raw":
                out = do_raw(req)
            elif op == "flood":
                out = do_flood(req)
            else:
                out = {"error": f"unknown op {op}"}
        except Exception as exc:  # noqa: BLE001
            out = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


def upstream(address: str) -> None:
    from dnslib import QTYPE, RCODE, RR, A, DNSRecord  # type: ignore[import-untyped]

    counts = {"udp": 0, "tcp": 0}

    def reply(data: bytes, tcp: bool) -> bytes:
        request = DNSRecord.parse(data)
        counts["tcp" if tcp else "udp"] += 1
        answer = request.reply()
        qname = str(request.q.qname).lower()
        if not qname.endswith("example.com."):
            answer.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            if qname == "big.example.com.":
                if not tcp:
                    answer.header.tc = 1
                    return answer.pack()
                for i in range(20):
                    answer.add_answer(RR(qname, QTYPE.A, rdata=A(f"198.51.100.{i + 1}"), ttl=60))
            else:
                answer.add_answer(RR(qname, QTYPE.A, rdata=A("203.0.113.7"), ttl=60))
        return answer.pack()

    class UDPHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            sock.sendto(reply(data, False), self.client_address)

    class TCPHandler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            data = self.rfile.read(int.from_bytes(head, "big"))
            out = reply(data, True)
            self.wfile.write(len(out).to_bytes(2, "big") + out)

    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer((address, 53), UDPHandler)
    tcp = socketserver.ThreadingTCPServer((address, 53), TCPHandler)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    print("ready", flush=True)
    udp.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "upstream":
        upstream(sys.argv[2])
    else:
        agent()
