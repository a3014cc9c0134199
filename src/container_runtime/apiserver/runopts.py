"""How a container's process runs, beyond container_config.ContainerConfig: bind mounts
(`-v HOST:CONTAINER[:ro|rw]`), `--init`, `-t` (a TTY) and `-i` (stdin kept open).
Validated here, stored in the container's row with the rest of its config."""

from __future__ import annotations

import os
import posixpath
from typing import Any

from ..container_config import str_list
from ..errors import InvalidArgument

MAX_VOLUMES = 64


def parse_volume(text: str) -> dict[str, Any]:
    bad = f"invalid volume {text!r}: expected HOST:CONTAINER[:ro|rw] with absolute paths"
    if "\x00" in text or "\n" in text:
        raise InvalidArgument(bad)
    parts = text.split(":")
    mode = "rw"
    if len(parts) == 3:
        mode = parts.pop()
        if mode not in ("ro", "rw"):
            raise InvalidArgument(f"invalid volume {text!r}: mode {mode!r} is not ro or rw")
    if len(parts) != 2:
        raise InvalidArgument(bad)
    source, dest = parts
    if not source.startswith("/") or not dest.startswith("/"):
        raise InvalidArgument(bad + " (named volumes are not supported)")
    if ".." in dest.split("/"):
        raise InvalidArgument(f"invalid volume {text!r}: '..' in the container path")
    dest = posixpath.normpath(dest)
    if dest == "/":
        raise InvalidArgument(f"invalid volume {text!r}: cannot mount over /")
    source = os.path.normpath(source)
    if not os.path.exists(source):
        raise InvalidArgument(f"invalid volume {text!r}: host path {source} does not exist")
    return {"source": source, "destination": dest, "readonly": mode == "ro"}


def parse_run_options(body: dict[str, Any]) -> dict[str, Any]:
    volumes = [parse_volume(v) for v in str_list(body.get("volumes"), "volumes")]
    if len(volumes) > MAX_VOLUMES:
        raise InvalidArgument(f"at most {MAX_VOLUMES} volumes")
    seen: set[str] = set()
    for v in volumes:
        if v["destination"] in seen:
            raise InvalidArgument(f"container path {v['destination']} is mounted twice")
        seen.add(v["destination"])
    for key in ("init", "tty", "interactive"):
        if not isinstance(body.get(key, False), bool):
            raise InvalidArgument(f"{key} must be true or false")
    return {
        "volumes": volumes,
        "init": bool(body.get("init")),
        "tty": bool(body.get("tty")),
        "interactive": bool(body.get("interactive")),
    }
