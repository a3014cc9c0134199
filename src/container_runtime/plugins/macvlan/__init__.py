"""`container-network-macvlan`: the built-in macvlan plugin (containers on the host's LAN),
a driver (driver.py) served by the plugin SDK host (container_runtime.plugin.host); its
kernel work (members' macvlans, the host shim, the host's routes to members) is
dataplane.py's, and everything it makes in the kernel is named after this plugin."""

from __future__ import annotations


def main() -> None:
    from ...plugin.host import serve
    from .driver import MacvlanDriver

    serve(MacvlanDriver)
