"""Published ports (`-p`) on a cni network: handed to the list's plugins that declare the
`portMappings` capability (the reference `portmap`), as CNI's runtimeConfig.

The container is attached before its ports are known, so those plugins are run on their
own for the mappings (ADD with the attachment's result as prevResult) and again (DEL) when
they are withdrawn; the mappings are committed in the attachment's record first, so the
chain's DEL at release is given them too. A network whose list has no such plugin refuses
`-p` (docs/PLUGINS.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import Conflict, InvalidArgument
from ...plugin.driver import DriverRecord
from ...plugin.protocol import PortForward
from .invoke import Attachment as CniAttachment

if TYPE_CHECKING:
    from .driver import CniDriver

CAPABILITY = "portMappings"


def _mappings(forwards: list[PortForward]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in forwards:
        for i in range(f.count):
            entry: dict[str, Any] = {
                "hostPort": f.host_port + i,
                "containerPort": f.container_port + i,
                "protocol": f.protocol,
            }
            if f.host_ip is not None:
                entry["hostIP"] = str(f.host_ip)
            out.append(entry)
    return out


def _address(record: DriverRecord) -> str | None:
    for ip in ((record.data or {}).get("result") or {}).get("ips") or []:
        address = str(ip.get("address") or "")
        if "." in address:
            return address.split("/")[0]
    return None


def _run(driver: CniDriver, record: DriverRecord, command: str, mappings: list[Any]) -> None:
    """ADD or DEL of the list's portMappings plugins alone, for one attachment."""
    config = driver.host.network_config(record.network)
    conflist = driver.conflist(config)
    chain = [p for p in conflist["plugins"] if (p.get("capabilities") or {}).get(CAPABILITY)]
    sub = {**conflist, "plugins": chain}
    att = CniAttachment(record.owner, record.netns or "", record.interface)
    result = (record.data or {}).get("result")
    runtime = {CAPABILITY: mappings}
    invoker = driver.invoker(config)
    if command == "ADD":
        invoker.add(sub, att, runtime, prev=result)
    else:
        invoker.delete(sub, att, result, runtime)


def publish(driver: CniDriver, owner: str, raw: list[dict[str, Any]]) -> None:
    forwards = [PortForward.from_json(f) for f in raw]
    records = [r for r in driver.host.records.list() if r.owner == owner and r.state == "ready"]
    if not forwards:
        unpublish(driver, owner)
        return
    ip = str(forwards[0].container_ip)
    record = next((r for r in records if _address(r) == ip), None)
    if record is None:
        raise InvalidArgument(f"{owner[:12]} has no cni attachment with address {ip}")
    config = driver.host.network_config(record.network)
    chain = [
        p
        for p in driver.conflist(config)["plugins"]
        if (p.get("capabilities") or {}).get(CAPABILITY)
    ]
    if not chain:
        raise InvalidArgument(
            f"network {config.name} cannot publish ports: its CNI configuration has no plugin"
            f' with the "{CAPABILITY}" capability (add portmap, or create it with'
            " --option portmap=on)"
        )
    mappings = _mappings(forwards)
    wanted = {(m["protocol"], m["hostPort"]) for m in mappings}
    for other in driver.host.records.list():
        if other.owner == owner:
            continue
        for m in driver.runtime(other.data).get(CAPABILITY) or []:
            if (m.get("protocol"), m.get("hostPort")) in wanted:
                raise Conflict(
                    f"port {m['hostPort']}/{m['protocol']} is already published by"
                    f" {other.owner[:12]}"
                )
    unpublish(driver, owner)
    data = dict(record.data or {})
    data["runtimeConfig"] = {**driver.runtime(data), CAPABILITY: mappings}
    driver.host.records.set_data(record.network, owner, data)  # before the kernel work
    fresh = DriverRecord(record.network, owner, record.netns, record.interface, "ready", data)
    try:
        _run(driver, fresh, "ADD", mappings)
    except BaseException:
        unpublish(driver, owner)
        raise


def unpublish(driver: CniDriver, owner: str) -> None:
    for record in driver.host.records.list():
        if record.owner != owner or record.data is None:
            continue
        mappings = driver.runtime(record.data).get(CAPABILITY)
        if not mappings:
            continue
        _run(driver, record, "DEL", mappings)
        data = dict(record.data)
        data["runtimeConfig"] = {k: v for k, v in driver.runtime(data).items() if k != CAPABILITY}
        driver.host.records.set_data(record.network, owner, data)
