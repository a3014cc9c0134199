"""Schemathesis against openapi.json over the real API socket.

Positive and negative requests generated from the document, a bounded number per
operation. Invariants: every response conforms to the document (status documented,
content type, body schema); no 5xx but documented ones, and a 500 only as the documented
`internal` error; no daemon dies; a refused request (4xx) changes no state row and no
link. Image pulls are left out: with no internet each one waits for a resolver, and
they have their own tests against a local registry.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import audit
from support.instance import Instance, started_system
from support.unixhttp import BASE_URL, unix_session

import container_runtime

OPENAPI = Path(container_runtime.__file__).parent / "openapi.json"
EXAMPLES = 30 * int(os.environ.get("FUZZ_SCALE", "1"))  # per operation; more in the bench
SKIPPED = {("POST", "/v1/images/pull")}
DAEMONS = ("apiserver", "network-bridge", "dns")
FIGURES = {"examples": 0, "failures": 0}
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]

SCHEMA = schemathesis.openapi.from_path(str(OPENAPI))
OPERATIONS = [
    op
    for op in (result.ok() for result in SCHEMA.get_all_operations())
    if (op.method.upper(), op.path) not in SKIPPED
]


@pytest.fixture(scope="module")
def api() -> Iterator[Instance]:
    with started_system() as inst:
        # Something for the generated names to hit now and then.
        inst.cli("network", "create", "fuzz", "--subnet", "10.67.0.0/24")
        inst.cli("network", "attach", "fuzz", "--name", "held")
        yield inst


def _pids(inst: Instance) -> dict[str, int | None]:
    return {name: inst.pid(name) for name in DAEMONS}


def _alive(pids: dict[str, int | None]) -> bool:
    return all(pid is not None and Path(f"/proc/{pid}").exists() for pid in pids.values())


def _world(inst: Instance) -> tuple[Any, ...]:
    rows = audit.state_rows(inst)
    return rows["networks"], rows["attachments"], rows["containers"], audit.link_details(inst)


# Path parameters that name things that exist, so generated requests also reach past
# the lookups (random names are almost always 404).
KNOWN = {"name": "fuzz", "owner": "held", "domain": "test", "id": "nosuch", "ref": "nosuch"}


def _strategy(op: Any) -> st.SearchStrategy[Any]:
    def known(case: Any, use: bool) -> Any:
        if use and case.path_parameters:
            case.path_parameters = {k: KNOWN.get(k, v) for k, v in case.path_parameters.items()}
        return case

    return st.builds(
        known,
        st.one_of(
            op.as_strategy(generation_mode=GenerationMode.POSITIVE),
            op.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        ),
        st.booleans(),
    )


@pytest.mark.parametrize("op", OPERATIONS, ids=[f"{o.method.upper()} {o.path}" for o in OPERATIONS])
def test_api_fuzz(api: Instance, op: Any) -> None:
    session = unix_session(str(api.run_dir / "apiserver.sock"))
    pids = _pids(api)
    assert _alive(pids)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(op))
    def check(case: Any) -> None:
        FIGURES["examples"] += 1
        before = _world(api)
        try:
            response = case.call(base_url=BASE_URL, session=session, timeout=30)
            case.validate_response(
                response,
                checks=[
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )
            status = response.status_code
            if status >= 500:
                body = response.json()
                assert status != 500 or body.get("error") == "internal", (status, body)
            assert _pids(api) == pids and _alive(pids), f"a daemon died: {_pids(api)} (was {pids})"
            if 400 <= status < 500:
                assert _world(api) == before, f"refused with {status} but changed state"
        except BaseException:
            FIGURES["failures"] += 1
            raise

    try:
        check()
    finally:
        session.close()
        print(f"api fuzz figures so far: {FIGURES}")


HOSTILE = [
    b"GET /v1/ping HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/networks HTTP/1.1\r\nContent-Length: -1\r\n\r\n{}",
    b"POST /v1/networks HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
    b"GET /v1/ping\r\n\r\n",
    b"\x00\xff\xfe\r\n\r\n",
    b"GET /v1/networks/a\r\nX: y HTTP/1.1\r\n\r\n",
    b"POST /v1/networks HTTP/1.1\r\nContent-Length: 5\r\n\r\n{bad}",
    b"GET /v1/ping HTTP/1.1\r\n" + b"X: y\r\n" * 3000 + b"\r\n",
]


def test_hostile_bytes_on_the_real_sockets_stop_no_daemon(api: Instance) -> None:
    """Both daemons that speak HTTP, the API server and the network helper, get malformed
    requests on their own sockets; none of them dies and both still answer."""
    from container_runtime.client import UnixClient

    pids = _pids(api)
    unreachable: list[str] = []
    for name in ("apiserver.sock", "network-bridge.sock"):
        for data in HOSTILE:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(2)
            try:
                sock.connect(str(api.run_dir / name))
                sock.sendall(data)
                reply = sock.recv(4096)
                assert not reply.startswith(b"HTTP/1.1 5"), (name, data[:60], reply[:80])
            except (TimeoutError, ConnectionResetError, BrokenPipeError):
                pass
            except (FileNotFoundError, ConnectionRefusedError):
                unreachable.append(f"{name} after {data[:40]!r}")
            finally:
                sock.close()
    time.sleep(0.5)
    assert not unreachable, f"socket gone (its daemon died): {unreachable[:3]}"
    assert _pids(api) == pids and _alive(pids), f"a daemon died: {_pids(api)} (was {pids})"
    assert UnixClient(api.run_dir / "network-bridge.sock").request("GET", "/status") is not None
    assert api.cli("network", "attach", "fuzz", "--name", "after-hostile").returncode == 0
