"""The OpenAPI document in the repo matches the server: every route, and real responses."""

from __future__ import annotations

from typing import Any

import jsonschema
from support.instance import Instance

from container_runtime.apiserver.server import build_router, openapi_document
from container_runtime.client import UnixClient
from container_runtime.errors import ContainerError


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    # "#/components/..." references resolve against the root, so carry the components along.
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def response_schema(doc: dict[str, Any], method: str, template: str, status: int) -> dict[str, Any]:
    responses = doc["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} has no {status} response in the doc"
    return responses[str(status)]["content"]["application/json"]["schema"]


def test_every_route_is_documented_and_nothing_else() -> None:
    doc = openapi_document()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = set(build_router(_FakeApi()).templates())  # type: ignore[arg-type]
    assert served == documented


class _FakeApi:
    """Only to enumerate routes: handlers are not called."""

    networks = None


def test_live_responses_match_schemas(instance: Instance) -> None:
    doc = openapi_document()
    api = UnixClient(instance.run_dir / "apiserver.sock")

    def check(method: str, template: str, path: str, status: int, body: Any = None) -> Any:
        try:
            reply = api.request(method, path, body)
            got = 201 if method == "POST" and template in CREATED else 200
        except ContainerError as exc:
            reply, got = exc.to_json(), exc.status
        assert got == status, (method, path, reply)
        validator(doc, response_schema(doc, method, template, status)).validate(reply)
        return reply

    check("GET", "/v1/ping", "/v1/ping", 200)
    check("GET", "/v1/openapi.json", "/v1/openapi.json", 200)
    check("GET", "/v1/system/status", "/v1/system/status", 200)
    check("POST", "/v1/networks", "/v1/networks", 201, {"name": "foo", "subnet": "10.80.0.0/24"})
    check("POST", "/v1/networks", "/v1/networks", 409, {"name": "foo"})
    check("POST", "/v1/networks", "/v1/networks", 400, {"name": "Bad!"})
    check("GET", "/v1/networks", "/v1/networks", 200)
    check("GET", "/v1/networks/{name}", "/v1/networks/foo", 200)
    check("GET", "/v1/networks/{name}", "/v1/networks/nope", 404)
    att = "/v1/networks/{name}/attachments"
    check("POST", att, "/v1/networks/foo/attachments", 201, {"name": "a", "mtu": 1400})
    check("POST", att, "/v1/networks/foo/attachments", 400, {"name": "b", "mtu": 10})
    check("GET", att, "/v1/networks/foo/attachments", 200)
    check("DELETE", "/v1/networks/{name}", "/v1/networks/foo", 409)
    check("DELETE", att + "/{owner}", "/v1/networks/foo/attachments/a", 200)
    check("DELETE", att + "/{owner}", "/v1/networks/foo/attachments/a", 404)
    check("POST", "/v1/networks/reload", "/v1/networks/reload", 200, {})
    check("DELETE", "/v1/networks/{name}", "/v1/networks/default", 400)
    check("DELETE", "/v1/networks/{name}", "/v1/networks/foo", 200)
    check("POST", "/v1/networks/prune", "/v1/networks/prune", 200, {})


CREATED = {"/v1/networks", "/v1/networks/{name}/attachments"}
