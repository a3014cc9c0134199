"""Where state, sockets, logs and the config live (overridable per instance)."""

from __future__ import annotations

import os
from pathlib import Path


class Paths:
    """Plain class, not a dataclass: the CLI imports it and dataclasses cost ~10 ms."""

    __slots__ = ("root", "run_dir", "config_file")

    def __init__(self, root: Path, run_dir: Path, config_file: Path) -> None:
        self.root = root  # persistent state: database, images, containers
        self.run_dir = run_dir  # sockets, pid files, logs
        self.config_file = config_file

    @classmethod
    def from_env(cls) -> Paths:
        root = Path(os.environ.get("CONTAINER_ROOT", "/var/lib/container"))
        run_dir = Path(os.environ.get("CONTAINER_RUN_DIR", "/run/container"))
        config = os.environ.get("CONTAINER_CONFIG")
        if config:
            config_file = Path(config)
        else:
            home = Path(os.environ.get("HOME", "/root"))
            xdg = os.environ.get("XDG_CONFIG_HOME")
            base = Path(xdg) if xdg else home / ".config"
            config_file = base / "container" / "config.toml"
        return cls(root=root, run_dir=run_dir, config_file=config_file)

    @property
    def database(self) -> Path:
        return self.root / "state.db"

    @property
    def api_socket(self) -> Path:
        return self.run_dir / "apiserver.sock"

    @property
    def api_pidfile(self) -> Path:
        return self.run_dir / "apiserver.pid"

    @property
    def api_lockfile(self) -> Path:
        return self.run_dir / "apiserver.lock"

    @property
    def api_log(self) -> Path:
        return self.run_dir / "apiserver.log"

    def plugin_dir(self, plugin: str) -> Path:
        """A plugin's own persistent state (nothing else reads it)."""
        return self.root / "plugins" / plugin

    def plugin_database(self, plugin: str) -> Path:
        """The SDK host's database of one plugin (plugin/store.py)."""
        return self.plugin_dir(plugin) / "state.db"

    def helper_socket(self, plugin: str) -> Path:
        return self.run_dir / f"network-{plugin}.sock"

    def helper_pidfile(self, plugin: str) -> Path:
        return self.run_dir / f"network-{plugin}.pid"

    def helper_log(self, plugin: str) -> Path:
        return self.run_dir / f"network-{plugin}.log"

    @property
    def dns_socket_dir(self) -> Path:
        return self.run_dir / "dns"

    @property
    def containers_dir(self) -> Path:
        return self.root / "containers"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def netns_dir(self) -> Path:
        return self.run_dir / "netns"
