"""Kernel data plane of the bridge plugin: links, addresses, routes, namespaces, nft rules.

Called only by the network helper; nothing else in the project touches the kernel's
network, except that the runtime makes its containers' sandboxes with the shared
namespace utilities (nsutil.py).  The helper's classes are imported on first use, so
importing nsutil does not load the netlink and nft libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .firewall import PortForward
    from .linux import LinuxDataPlane

__all__ = ["LinuxDataPlane", "PortForward"]


def __getattr__(name: str) -> Any:
    if name == "LinuxDataPlane":
        from .linux import LinuxDataPlane

        return LinuxDataPlane
    if name == "PortForward":
        from .firewall import PortForward

        return PortForward
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
