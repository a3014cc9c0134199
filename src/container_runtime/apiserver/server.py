"""`container-apiserver`: the REST API (openapi.json), state, and helper supervision.

One instance per CONTAINER_RUN_DIR (an flock guards it).  It owns the networks and
containers tables and supervises the network helper of every plugin in use.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from .. import __version__
from ..client import UnixClient
from ..config import Config, load_config
from ..daemon import InstanceLock, read_pidfile, setup_logging, write_pidfile
from ..dns import notify_dns
from ..errors import ConfigError, ContainerError, InvalidArgument
from ..http import Request, Router, SelectorHTTPServer
from ..network.plugins import find_plugin, list_plugins
from ..paths import Paths
from ..peercred import access_group
from ..plugin.protocol import ProtocolError, StatusReply, check_protocol, check_status
from ..state import Database
from . import endpoints
from .containers import ContainerService, register_routes
from .dns import register_routes as register_dns_routes
from .helpers import HelperClient
from .networks import NetworkService
from .supervisor import SupervisedProcess, Supervisor

API_WORKERS = 64  # handlers running at once; further requests wait for one


class ApiServer:
    def __init__(self, paths: Paths, config: Config) -> None:
        self.paths = paths
        self.config = config
        self.db = Database(paths.database)
        self.supervisor = Supervisor(database=paths.database)
        self.helpers: dict[str, HelperClient] = {}
        self.helpers_lock = threading.Lock()
        self.networks = NetworkService(
            self.db,
            config,
            self.helper_for,
            on_change=lambda wait: notify_dns(paths.run_dir, timeout=0.2 if wait else 0),
        )
        self.containers = ContainerService(self.db, config, paths, self.networks, self.helper_for)

    def helper_for(self, plugin: str) -> HelperClient:
        with self.helpers_lock:
            client = self.helpers.get(plugin)
            if client is not None:
                return client
            manifest = find_plugin(plugin, self.config.plugin_path)
            socket = self.paths.helper_socket(plugin)
            self.supervisor.start(
                SupervisedProcess(
                    name=f"network-{plugin}",
                    argv=[manifest.executable],
                    socket=socket,
                    pidfile=self.paths.helper_pidfile(plugin),
                    logfile=self.paths.helper_log(plugin),
                    marker=f"container-network-{plugin}",
                    on_restart=lambda: self._helper_restarted(plugin),
                    databases=(self.paths.plugin_database(plugin),),  # an SDK plugin's
                )
            )
            client = HelperClient(plugin, socket, self.supervisor.processes[f"network-{plugin}"])
            try:  # the handshake: a helper speaking another protocol version is refused
                status = StatusReply.from_json(client.request("GET", "/status"))
                check_protocol(plugin, status.protocol, "its GET /status")
                check_status(manifest, status)
            except ProtocolError:
                self.supervisor.stop(f"network-{plugin}")
                raise
            self.networks.sync(plugin, client.request)
            self.helpers[plugin] = client
            return client

    def _helper_restarted(self, plugin: str) -> None:
        """Before callers use a restarted helper: sync its networks, forget what its
        reconciliation released (a plain client: the HelperClient waits for the readiness
        this precedes)."""
        client = UnixClient(  # bounded: readiness (and the watchdog) waits for this
            self.paths.helper_socket(plugin), timeout=5.0, what=f"container-network-{plugin}"
        )
        try:
            self.networks.sync(plugin, client.request)
            networks = [n.id for n in self.networks.list() if n.configuration.plugin == plugin]
            endpoints.forget_released(
                self.db,
                plugin,
                networks,
                lambda name: list(client.request("GET", f"/networks/{name}/attachments")),
            )
        finally:
            client.close()
        notify_dns(self.paths.run_dir)

    def start_dns(self) -> None:
        """The embedded DNS server: its own process, fed from the state database."""
        self.supervisor.start(
            SupervisedProcess(
                name="dns",
                argv=[sys.executable, "-m", "container_runtime.dns.server", "container-dns"],
                socket=None,
                pidfile=self.paths.run_dir / "dns.pid",
                logfile=self.paths.run_dir / "dns.log",
                marker="container-dns",
                # ready = it acknowledged a reload: listeners bound, names loaded, so
                # `system start` returns with names already resolving
                probe=lambda timeout: notify_dns(self.paths.run_dir, timeout=timeout),
            )
        )

    def start(self) -> None:
        self.networks.ensure_default()
        self.networks.realise_pending()
        self.start_dns()
        self.containers.reconcile()
        self.containers.start_watcher()

    def stop(self) -> None:
        self.containers.shutdown()  # every container stops before the helpers go
        self.supervisor.stop_all()

    def status(self) -> dict[str, Any]:
        return {
            "apiserver": {
                "pid": os.getpid(),
                "socket": str(self.paths.api_socket),
                "version": __version__,
                "root": str(self.paths.root),
                "runDir": str(self.paths.run_dir),
                "config": self.config.source,
            },
            "helpers": self.supervisor.status(),
        }

    def plugins(self) -> list[dict[str, Any]]:
        """`container network plugins`: every plugin on the plugin path, from its manifest,
        with its helper's GET /status when the helper is running."""
        out = []
        for manifest in list_plugins(self.config.plugin_path):
            entry: dict[str, Any] = {
                "name": manifest.name,
                "version": manifest.version,
                "protocol": manifest.protocol,
                "strategies": list(manifest.strategies),
                "options": [spec.describe() for spec in manifest.options],
                "manifest": manifest.manifest,
                "executable": manifest.executable,
                "running": None,
            }
            with self.helpers_lock:
                client = self.helpers.get(manifest.name)
            if client is not None:
                try:
                    status = StatusReply.from_json(client.request("GET", "/status"))
                    entry["running"] = {"pid": status.pid, "networks": list(status.networks)}
                except ContainerError:
                    pass
            out.append(entry)
        return out


def openapi_document() -> dict[str, Any]:
    text = resources.files("container_runtime").joinpath("openapi.json").read_text()
    return dict(json.loads(text))


def build_router(api: ApiServer) -> Router:
    router = Router()
    nets = api.networks

    @router.route("GET", "/v1/ping")
    def ping(_: Request) -> tuple[int, Any]:
        return 200, {"status": "ok", "pid": os.getpid()}

    @router.route("GET", "/v1/openapi.json")
    def openapi(_: Request) -> tuple[int, Any]:
        return 200, openapi_document()

    @router.route("GET", "/v1/system/status")
    def status(_: Request) -> tuple[int, Any]:
        return 200, api.status()

    @router.route("GET", "/v1/networks")
    def list_networks(_: Request) -> tuple[int, Any]:
        return 200, [n.to_json() for n in nets.list()]

    @router.route("POST", "/v1/networks")
    def create_network(req: Request) -> tuple[int, Any]:
        return 201, nets.create(_body(req)).to_json()

    @router.route("POST", "/v1/networks/prune")
    def prune(_: Request) -> tuple[int, Any]:
        return 200, {"deleted": nets.prune()}

    @router.route("POST", "/v1/networks/reload")
    def reload(_: Request) -> tuple[int, Any]:
        nets.reload()
        return 200, {}

    @router.route("GET", "/v1/networks/{name}")
    def inspect_network(req: Request) -> tuple[int, Any]:
        return 200, nets.get(req.params["name"]).to_json()

    @router.route("DELETE", "/v1/networks/{name}")
    def delete_network(req: Request) -> tuple[int, Any]:
        nets.delete(req.params["name"])
        return 200, {"deleted": req.params["name"]}

    @router.route("POST", "/v1/networks/{name}/check")
    def check_network(req: Request) -> tuple[int, Any]:
        return 200, nets.check(req.params["name"]).to_json()

    @router.route("GET", "/v1/plugins")
    def list_plugins(_: Request) -> tuple[int, Any]:
        return 200, api.plugins()

    @router.route("GET", "/v1/networks/{name}/attachments")
    def list_attachments(req: Request) -> tuple[int, Any]:
        return 200, [a.to_json() for a in nets.attachments(req.params["name"])]

    @router.route("POST", "/v1/networks/{name}/attachments")
    def attach(req: Request) -> tuple[int, Any]:
        return 201, nets.attach(req.params["name"], _body(req)).to_json()

    @router.route("DELETE", "/v1/networks/{name}/attachments/{owner}")
    def detach(req: Request) -> tuple[int, Any]:
        return 200, nets.detach(req.params["name"], req.params["owner"]).to_json()

    # getattr: route enumeration (tests) builds the router on a stand-in without services
    register_routes(router, getattr(api, "containers", None))  # type: ignore[arg-type]
    register_dns_routes(router, api)
    return router


def _body(req: Request) -> dict[str, Any]:
    if not isinstance(req.body, dict):
        raise InvalidArgument("expected a JSON object")
    return req.body


def main() -> None:
    logger = setup_logging("container-apiserver")
    paths = Paths.from_env()
    paths.run_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = InstanceLock(paths.api_lockfile)
    if not lock.try_acquire():
        pid = read_pidfile(paths.api_pidfile)
        print(f"Error: container-apiserver is already running (pid {pid})", file=sys.stderr)
        sys.exit(3)
    try:
        config = load_config(paths.config_file)
    except ConfigError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        sys.exit(2)
    api = ApiServer(paths, config)
    try:
        api.start()
    except ContainerError as exc:
        logger.error(f"Error: {exc.message}")
        api.stop()
        sys.exit(1)
    # A selector thread owns the connections (idle, slow and non-reading clients are
    # timed out, at most Limits.max_connections are held); handlers, which may block
    # for long (a run, a pull), run on a bounded pool of workers.
    server = SelectorHTTPServer(
        paths.api_socket,
        build_router(api),
        mode=0o660,
        allowed_gid=access_group(),
        on_error=lambda exc: logger.exception("internal error", exc_info=exc),
        workers=API_WORKERS,
    )
    write_pidfile(paths.api_pidfile)
    stopping = threading.Event()

    def on_signal(*_: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logger.info(f"container-apiserver: serving on {paths.api_socket} (pid {os.getpid()})")
    try:
        server.serve_forever()
    finally:
        logger.info("container-apiserver: stopping")
        server.server_close()
        api.stop()
        Path(paths.api_socket).unlink(missing_ok=True)
        paths.api_pidfile.unlink(missing_ok=True)
        logger.info("container-apiserver: stopped")


if __name__ == "__main__":
    main()
