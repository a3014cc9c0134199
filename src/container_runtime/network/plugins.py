"""Network plugin discovery: TOML manifests on a plugin path name each helper executable.

A plugin `NAME` is described by `NAME.toml` (name, version, the helper protocol version
it speaks, executable, services, strategies, the `--option` values it accepts) found
in, in order: $CONTAINER_PLUGIN_PATH (colon-separated), the config's `[plugins] path`,
and the built-in manifests shipped with this package.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgument
from ..models import validate_plugin_name
from ..netoptions import OptionSpec, specs_from_table
from ..plugin.protocol import PROTOCOL_VERSION, check_protocol

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "plugins"
SERVICE = "network"  # what a manifest's `services` must name to serve `--plugin`


@dataclass(frozen=True)
class PluginManifest:
    name: str
    version: str
    executable: str  # absolute path, resolved at discovery
    services: tuple[str, ...]
    strategies: tuple[str, ...]
    manifest: str
    # `network create --option KEY=VALUE`s it accepts (netoptions.py).
    options: tuple[OptionSpec, ...] = ()
    protocol: int = PROTOCOL_VERSION  # the helper protocol version it speaks

    def namespace_strategy(self) -> str:
        """The strategy that gives a container's namespace its interface: `veth`, unless
        the plugin builds another kind there (e.g. `macvlan`)."""
        if "veth" in self.strategies:
            return "veth"
        return next((s for s in self.strategies if s != "tap"), "veth")


def plugin_dirs(extra: tuple[str, ...] = ()) -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("CONTAINER_PLUGIN_PATH", "").split(":") if p]
    dirs += [Path(p) for p in extra]
    dirs.append(BUILTIN_DIR)
    return dirs


def _resolve_executable(name: str, manifest_dir: Path) -> str | None:
    candidate = Path(name)
    if candidate.is_absolute():
        return str(candidate) if os.access(candidate, os.X_OK) else None
    local = manifest_dir / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    # Console scripts live next to the interpreter in a venv, which may not be on PATH.
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def load_manifest(path: Path) -> PluginManifest:
    try:
        data = tomllib.loads(path.read_text())
        name = validate_plugin_name(str(data["name"]))
        # Checked first: a plugin for another protocol version is refused as such.
        protocol = check_protocol(name, data.get("protocol", 1), f"manifest {path}")
        executable = str(data.get("executable") or f"container-network-{name}")
        resolved = _resolve_executable(executable, path.parent)
        if resolved is None:
            raise InvalidArgument(f"plugin {name}: executable {executable!r} not found")
        return PluginManifest(
            name=name,
            version=str(data.get("version", "0")),
            executable=resolved,
            services=tuple(str(s) for s in data.get("services", ["network"])),
            strategies=tuple(str(s) for s in data.get("strategies", ["veth"])),
            manifest=str(path),
            protocol=protocol,
            options=specs_from_table(dict(data.get("options") or {})),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(f"invalid plugin manifest {path}: {exc}") from None


_FOUND: dict[tuple[str, tuple[str, ...], str], PluginManifest] = {}


def find_plugin(name: str, extra_dirs: tuple[str, ...] = ()) -> PluginManifest:
    """The plugin's manifest. Found ones are remembered per plugin path (a network create
    should not re-read TOML); an unknown name is looked up afresh every time, so a plugin
    installed later is seen."""
    validate_plugin_name(name)
    key = (name, extra_dirs, os.environ.get("CONTAINER_PLUGIN_PATH", ""))
    if key in _FOUND:
        return _FOUND[key]
    manifest = _find_plugin(name, extra_dirs)
    _FOUND[key] = manifest
    return manifest


def _find_plugin(name: str, extra_dirs: tuple[str, ...]) -> PluginManifest:
    for directory in plugin_dirs(extra_dirs):
        path = directory / f"{name}.toml"
        if path.is_file():
            manifest = load_manifest(path)
            if SERVICE not in manifest.services:
                offered = ", ".join(manifest.services) or "none"
                raise InvalidArgument(
                    f"plugin {name} does not offer the {SERVICE} service (services: {offered};"
                    f" manifest {path})"
                )
            return manifest
    available = ", ".join(p.name for p in list_plugins(extra_dirs)) or "none"
    raise InvalidArgument(f"unknown network plugin {name!r} (available: {available})")


def list_plugins(extra_dirs: tuple[str, ...] = ()) -> list[PluginManifest]:
    seen: dict[str, PluginManifest] = {}
    for directory in plugin_dirs(extra_dirs):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            try:
                manifest = load_manifest(path)
            except InvalidArgument:
                continue
            if SERVICE not in manifest.services:
                continue
            seen.setdefault(manifest.name, manifest)
    return sorted(seen.values(), key=lambda m: m.name)
