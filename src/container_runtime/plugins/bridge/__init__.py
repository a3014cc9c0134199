"""`container-network-bridge`: the built-in bridge plugin, a driver (driver.py) served by
the plugin SDK host (container_runtime.plugin.host). Its data plane (dataplane.py), nft
firewall (firewall.py, tables.py, antispoof.py) and published-port records (ports.py) live
here; the generic helpers it builds on (rtnl, nsutil, names) are container_runtime.dataplane,
and everything it makes in the kernel is named after this plugin (`bridge`)."""

from __future__ import annotations


def main() -> None:
    from ...plugin.host import serve
    from .driver import BridgeDriver

    serve(BridgeDriver)
