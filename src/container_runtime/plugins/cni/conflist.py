"""The CNI network configuration list of a `cni` network: read from the user's file
(`--option config=FILE`, a .conflist or a single-plugin .conf) or made from
`--option type=PLUGIN` and the options mapped into that plugin's object
(docs/PLUGINS.md), then validated: JSON, cniVersion 1.0.0 or later, every plugin's
binary on the CNI path and supporting that version (VERSION).

The list is made once, when the network is created, and kept in the plugin's state
directory (the network is immutable; a later edit of the user's file changes nothing).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any

from ...errors import InvalidArgument
from ...models import NetworkConfiguration, NetworkMode
from .invoke import Invoker, version_tuple

CNI_VERSION = "1.0.0"  # what lists made from `type=` declare
MIN_VERSION = (1, 0, 0)
# Options of ours; every other key is mapped into the plugin's object (type= only).
OWN_OPTIONS = ("config", "type", "cni-path", "portmap", "dns-forward")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # the CNI spec's network name
MAX_FILE = 1 << 20


def link_name(network: str) -> str:
    """The bridge a `type=bridge` network gets: `cni-` + 10 hex digits of its name's hash."""
    return "cni-" + hashlib.sha256(f"cni\0{network}".encode()).hexdigest()[:10]


def load_file(path: str) -> dict[str, Any]:
    """A .conflist, or a .conf (one plugin) as a list of one; refused if unreadable."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE + 1)
    except OSError as exc:
        raise InvalidArgument(f"cannot read CNI configuration {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE:
        raise InvalidArgument(f"CNI configuration {path} is larger than 1 MiB")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"CNI configuration {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"CNI configuration {path} is not a JSON object")
    if "plugins" not in data and "type" in data:  # a .conf: one plugin
        plugin = {k: v for k, v in data.items() if k not in ("cniVersion", "name")}
        data = {"cniVersion": data.get("cniVersion"), "name": data.get("name"), "plugins": [plugin]}
    return data


def _value(text: str) -> Any:
    """An option's value in the plugin's JSON: true/false, integers, JSON objects and
    arrays as such, anything else a string."""
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?[0-9]{1,10}", text):
        return int(text)
    if text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            raise InvalidArgument(f"invalid JSON in option value {text!r}") from None
    return text


def from_type(config: NetworkConfiguration, data_dir: Path) -> dict[str, Any]:
    """The list for `--option type=PLUGIN`: the plugin with our defaults (host-local
    IPAM on the network's subnet and gateway, a default route; a bridge named after the
    network that is its gateway; masquerading unless --internal), the options mapped in
    (`KEY=VALUE` sets KEY, `a.b=VALUE` sets b inside a), and portmap if `portmap=on`."""
    kind = config.options["type"]
    nat = config.mode == NetworkMode.NAT
    ipam: dict[str, Any] = {
        "type": "host-local",
        "ranges": [[{"subnet": str(config.ipv4_subnet), "gateway": str(config.ipv4_gateway)}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": str(data_dir),
    }
    if config.ipv6_subnet is not None:
        ipam["ranges"].append([{"subnet": str(config.ipv6_subnet)}])
    plugin: dict[str, Any] = {"type": kind}
    if kind == "bridge":
        plugin.update(bridge=link_name(config.name), isGateway=True, ipMasq=nat, hairpinMode=True)
    elif kind == "ptp":
        plugin.update(ipMasq=nat)
    if kind != "host-device":
        plugin["ipam"] = ipam
    mapped = {k: v for k, v in config.options.items() if k not in OWN_OPTIONS}
    if str(mapped.get("ipam.type", "host-local")) != "host-local":
        plugin["ipam"] = {}  # another IPAM: only what the user gave
    for key, text in sorted(mapped.items()):
        target = plugin
        *parents, leaf = key.split(".")
        for part in parents:
            child = target.get(part)
            if not isinstance(child, dict):
                child = target[part] = {}
            target = child
        target[leaf] = _value(text)
    plugins = [plugin]
    if config.options.get("portmap") == "on":
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    return {"cniVersion": CNI_VERSION, "name": config.name, "plugins": plugins}


def build(config: NetworkConfiguration, data_dir: Path) -> dict[str, Any]:
    """The network's list (not yet validated against the plugins: see check)."""
    options = config.options
    if ("config" in options) == ("type" in options):
        raise InvalidArgument("plugin cni: give exactly one of --option config=FILE or type=PLUGIN")
    if "config" in options:
        extra = sorted(k for k in options if k not in OWN_OPTIONS)
        if extra:
            raise InvalidArgument(
                f"plugin cni: option {extra[0]!r} is only for type= networks (put it in"
                f" {options['config']})"
            )
        if "portmap" in options:
            raise InvalidArgument("plugin cni: portmap= is only for type= networks")
        conflist = load_file(options["config"])
        # host-local keeps its leases under our state root, not the host's /var/lib/cni
        for plugin in conflist.get("plugins") or []:
            ipam = plugin.get("ipam") if isinstance(plugin, dict) else None
            if isinstance(ipam, dict) and ipam.get("type") == "host-local":
                ipam.setdefault("dataDir", str(data_dir))
        return conflist
    return from_type(config, data_dir)


def check(conflist: dict[str, Any], config: NetworkConfiguration, invoker: Invoker) -> None:
    """Refuse a list we cannot run: its shape, its version, its plugins, its subnet."""
    version = conflist.get("cniVersion")
    if not isinstance(version, str):
        raise InvalidArgument("CNI configuration: cniVersion missing")
    if version_tuple(version) < MIN_VERSION:
        raise InvalidArgument(
            f"CNI configuration: cniVersion {version} is too old (1.0.0 or later is needed)"
        )
    name = conflist.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgument(f"CNI configuration: invalid network name {name!r}")
    plugins = conflist.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise InvalidArgument("CNI configuration: no plugins")
    for plugin in plugins:
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
            raise InvalidArgument("CNI configuration: every plugin needs a type")
        kind = plugin["type"]
        supported = invoker.versions(kind)  # also: found on the path and runnable
        if version not in supported:
            raise InvalidArgument(
                f"CNI plugin {kind} does not support cniVersion {version}"
                f" (it supports {', '.join(supported)})"
            )
    subnets = ipam_subnets(conflist)
    if subnets and config.ipv4_subnet not in subnets:
        raise InvalidArgument(
            f"the CNI configuration's IPAM subnet {subnets[0]} is not the network's subnet"
            f" {config.ipv4_subnet}: create it with --subnet {subnets[0]}"
        )


def ipam_subnets(conflist: dict[str, Any]) -> list[ipaddress.IPv4Network]:
    """The IPv4 subnets of the list's host-local IPAM (empty: none, or another IPAM)."""
    found: list[ipaddress.IPv4Network] = []
    for plugin in conflist.get("plugins") or []:
        ipam = plugin.get("ipam") if isinstance(plugin, dict) else None
        if not isinstance(ipam, dict) or ipam.get("type") != "host-local":
            continue
        ranges = ipam.get("ranges") or []
        entries = [r for rs in ranges if isinstance(rs, list) for r in rs if isinstance(r, dict)]
        if ipam.get("subnet"):
            entries.append({"subnet": ipam["subnet"]})
        for entry in entries:
            try:
                net = ipaddress.ip_network(str(entry.get("subnet")), strict=False)
            except ValueError:
                raise InvalidArgument(
                    f"CNI configuration: invalid subnet {entry.get('subnet')!r}"
                ) from None
            if isinstance(net, ipaddress.IPv4Network):
                found.append(net)
    return found


def capabilities(conflist: dict[str, Any]) -> set[str]:
    return {
        key
        for plugin in conflist["plugins"]
        for key, on in (plugin.get("capabilities") or {}).items()
        if on
    }


def save(conflist: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(conflist, indent=2))
    os.replace(tmp, path)
