"""What a failed pull tells the user: the cause (skopeo's innermost error) and what to do."""

from __future__ import annotations

import subprocess
import sys
import time

from support.instance import assert_refused

from .conftest import System

OFFLINE = "load the image with `container image load -i FILE` when offline"


def test_a_missing_local_image_says_so(system: System) -> None:
    inst = system.inst
    result = inst.cli("run", "-d", "--name", "nolocal", "localhost/web:latest", check=False)
    assert_refused(
        result,
        "image localhost/web:latest not found locally and registry localhost is unreachable "
        "(dial tcp 127.0.0.1:80: connect: connection refused); check the network, or " + OFFLINE,
    )
    assert "nolocal" not in inst.cli("ls", "-a").stdout
    missing = f"{system.registry.host}/no/such:1"
    assert_refused(
        inst.cli("image", "pull", missing, check=False),
        f"image {missing} not found locally nor in registry {system.registry.host}",
    )


def test_a_plain_http_registry_suggests_insecure(system: System) -> None:
    inst = system.inst
    # A plain HTTP server on a non-loopback address of the test namespace's own lo.
    inst.sh("ip", "addr", "add", "10.99.0.1/32", "dev", "lo")
    server = subprocess.Popen(
        inst.in_ns([sys.executable, "-m", "http.server", "--bind", "10.99.0.1", "8099"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        probe = ["python3", "-c", "import socket; socket.create_connection(('10.99.0.1', 8099))"]
        while inst.sh(*probe, check=False).returncode != 0:
            assert time.monotonic() < deadline, "http server did not start"
            time.sleep(0.05)
        result = inst.cli("image", "pull", "10.99.0.1:8099/x/y:1", check=False)
        assert_refused(
            result,
            "image 10.99.0.1:8099/x/y:1 not found locally and registry 10.99.0.1:8099 speaks "
            "plain HTTP, not HTTPS (tls: first record does not look like a TLS handshake); "
            "pull with --insecure if you trust it",
        )
    finally:
        server.kill()
        server.wait()
        inst.sh("ip", "addr", "del", "10.99.0.1/32", "dev", "lo", check=False)
