"""`container-network-cni`: the cni plugin, any CNI plugin (or list of them) as a network.
A driver (driver.py) served by the plugin SDK host, which allocates itself (the CNI IPAM
plugin picks addresses): the network's configuration list (conflist.py), the CNI
binaries run per the spec (invoke.py) and `-p` through the list's portmap (ports.py)."""

from __future__ import annotations


def main() -> None:
    from ...plugin.host import serve
    from .driver import CniDriver

    serve(CniDriver)
