"""The REST routes of containers and images (`/v1/containers...`, `/v1/images...`):
decode and check each request, call the ContainerService, shape the reply."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from ..http import Request, Router
from ..runtime.images import ImageInfo, normalize_reference

if TYPE_CHECKING:
    from .containers import ContainerService


def _body(req: Request) -> dict[str, Any]:
    if req.body is None:
        return {}
    if not isinstance(req.body, dict):
        raise InvalidArgument("expected a JSON object")
    return req.body


def _flag(req: Request, name: str) -> bool:
    return (req.arg(name) or "").lower() in ("1", "true", "yes")


def _image_json(info: ImageInfo) -> dict[str, Any]:
    return info.to_json()


def register_routes(router: Router, service: ContainerService) -> None:
    s = service

    @router.route("GET", "/v1/containers")
    def list_containers(req: Request) -> tuple[int, Any]:
        return 200, s.list_containers(all_=_flag(req, "all"))

    @router.route("POST", "/v1/containers")
    def create_container(req: Request) -> tuple[int, Any]:
        return 201, s.create(_body(req))

    @router.route("GET", "/v1/containers/{id}")
    def inspect_container(req: Request) -> tuple[int, Any]:
        return 200, s.get(req.params["id"])

    @router.route("DELETE", "/v1/containers/{id}")
    def delete_container(req: Request) -> tuple[int, Any]:
        return 200, {"deleted": s.delete(req.params["id"], force=_flag(req, "force"))}

    @router.route("POST", "/v1/containers/{id}/start")
    def start_container(req: Request) -> tuple[int, Any]:
        attach = _body(req).get("attach", False)
        if not isinstance(attach, bool):
            raise InvalidArgument("attach must be true or false")
        out = s.start(req.params["id"], attach=attach)
        if attach:
            out["attach"] = s.attach_info(out["id"])
        return 200, out

    @router.route("POST", "/v1/containers/{id}/stop")
    def stop_container(req: Request) -> tuple[int, Any]:
        body = _body(req)
        timeout = body.get("timeout", 10)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0:
            raise InvalidArgument("timeout must be a number of seconds >= 0")
        sig = body.get("signal") or "TERM"
        if not isinstance(sig, str | int):
            raise InvalidArgument("signal must be a name or a number")
        return 200, s.stop(req.params["id"], float(timeout), sig)

    @router.route("POST", "/v1/containers/{id}/kill")
    def kill_container(req: Request) -> tuple[int, Any]:
        return 200, s.kill(req.params["id"], _body(req).get("signal") or "KILL")

    @router.route("GET", "/v1/containers/{id}/logs")
    def container_logs(req: Request) -> tuple[int, Any]:
        text = req.arg("offset") or "0"
        if not (text.isascii() and text.isdigit()) or len(text) > 19:
            raise InvalidArgument(f"offset must be a byte offset >= 0, not {text!r}")
        return 200, s.logs(req.params["id"], int(text))

    @router.route("POST", "/v1/containers/{id}/exec")
    def exec_container(req: Request) -> tuple[int, Any]:
        return 200, s.exec_argv(req.params["id"], _body(req))

    @router.route("POST", "/v1/networks/{name}/connect")
    def connect_container(req: Request) -> tuple[int, Any]:
        return 200, s.connect(req.params["name"], _body(req))

    @router.route("POST", "/v1/networks/{name}/disconnect")
    def disconnect_container(req: Request) -> tuple[int, Any]:
        return 200, s.disconnect(req.params["name"], _body(req))

    @router.route("GET", "/v1/images")
    def list_images(_: Request) -> tuple[int, Any]:
        return 200, [_image_json(i) for i in s.images.list()]

    @router.route("POST", "/v1/images/pull")
    def pull_image(req: Request) -> tuple[int, Any]:
        return 200, s.pull(_body(req))

    @router.route("POST", "/v1/images/load")
    def load_image(req: Request) -> tuple[int, Any]:
        path = str(_body(req).get("path") or "")
        if not path.startswith("/"):
            raise InvalidArgument("load needs an absolute archive path")
        return 200, [_image_json(i) for i in s.images.load(Path(path))]

    @router.route("GET", "/v1/images/{ref}")
    def inspect_image(req: Request) -> tuple[int, Any]:
        return 200, _image_json(s.images.inspect(req.params["ref"]))

    @router.route("DELETE", "/v1/images/{ref}")
    def delete_image(req: Request) -> tuple[int, Any]:
        s.delete_image(req.params["ref"])
        return 200, {"deleted": normalize_reference(req.params["ref"])}
