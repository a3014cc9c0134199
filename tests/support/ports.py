"""Published ports as tests drive them: a TCP server in a namespace that answers with the
peer's address, a client that returns what the server saw, and a publish request sent
straight to the network helper (as the API server does for a container)."""

from __future__ import annotations

import socket
import threading
from typing import Any

from container_runtime.client import UnixClient

from . import frames
from .instance import Instance


def peer_server(ns: str, port: int = 80) -> socket.socket:
    """A dual-stack TCP server in ns answering each connection with the peer's address."""
    sock = frames.ns_socket(ns, socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    sock.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, peer = sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(peer[0].removeprefix("::ffff:").encode())

    threading.Thread(target=serve, daemon=True).start()
    return sock


def seen_by_server(ns: str | None, addr: str, port: int) -> str | None:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    for _ in range(3):
        sock = frames.ns_socket(ns, family, socket.SOCK_STREAM)
        sock.settimeout(0.7)
        try:
            sock.connect((addr, port))
            return sock.recv(100).decode()
        except OSError:
            continue
        finally:
            sock.close()
    return None


def publish(inst: Instance, owner: str, forwards: list[dict[str, Any]]) -> None:
    client = UnixClient(inst.run_dir / "network-bridge.sock")
    try:
        client.request("PUT", f"/portforwards/{owner}", {"forwards": forwards})
    finally:
        client.close()


def fwd(host_ip: str | None, host_port: int, container_ip: str, port: int = 80) -> dict[str, Any]:
    return {
        "hostIP": host_ip,
        "hostPort": host_port,
        "containerPort": port,
        "protocol": "tcp",
        "containerIP": container_ip,
    }
