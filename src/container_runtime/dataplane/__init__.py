"""Kernel data plane of the bridge plugin: links, addresses, routes, namespaces, nft rules.

Called only by the network helper; nothing else in the project touches the kernel's network.
"""

from .firewall import PortForward
from .linux import LinuxDataPlane

__all__ = ["LinuxDataPlane", "PortForward"]
