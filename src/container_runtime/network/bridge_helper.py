"""Compatibility entry point: `container-network-bridge` used to live here. The bridge
plugin is now a driver in container_runtime.plugins.bridge, served by the plugin SDK host
(container_runtime.plugin.host); installs whose console script still names this module
keep working."""

from __future__ import annotations

from ..plugins.bridge import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
