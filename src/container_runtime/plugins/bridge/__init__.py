"""`container-network-bridge`: the built-in bridge plugin, a driver (driver.py) served by
the plugin SDK host (container_runtime.plugin.host). Its data plane and firewall are the
shared kernel library container_runtime.dataplane, which names everything it makes after
this plugin (`bridge`)."""

from __future__ import annotations


def main() -> None:
    from ...plugin.host import serve
    from .driver import BridgeDriver

    serve(BridgeDriver)
