"""`container network` (alias `n`): create, list, inspect, delete, prune, connect, disconnect,
attach, detach, reload, check, plugins."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..errors import ContainerError
from .api import api, for_each, inspect_each, quote
from .output import dumps, show_help, table


class _PluginsHelp(argparse.Action):
    """`--help` that also lists what each plugin accepts (`epilog`: a function of the
    manifests), read from the plugin manifests only when help is asked for (the TOML
    costs start-up time)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        self.text = kwargs.pop("epilog")
        super().__init__(option_strings, dest, nargs=0, help="show this help and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        parser.epilog = self.text()
        parser.print_help()
        parser.exit()


def _manifests() -> list[Any]:
    from ..config import load_config
    from ..network.plugins import list_plugins
    from ..paths import Paths

    try:
        extra = load_config(Paths.from_env().config_file).plugin_path
    except ContainerError:
        extra = ()
    return list_plugins(extra)


def plugin_options_text() -> str:
    lines = ["options by plugin (--option KEY=VALUE; the first value is the default):"]
    from ..models import RUNTIME_OPTIONS
    from ..netoptions import specs_from_table

    every = " ".join(spec.describe() for spec in specs_from_table(RUNTIME_OPTIONS))
    lines.append(f"  every plugin: {every}")
    for plugin in _manifests():
        accepted = " ".join(spec.describe() for spec in plugin.options)
        lines.append(f"  {plugin.name}: {accepted or '(none)'}")
    return "\n".join(lines)


def plugin_strategies_text() -> str:
    lines = ["interface strategies by plugin (--strategy; none: allocation only):"]
    for plugin in _manifests():
        lines.append(f"  {plugin.name}: {', '.join(plugin.strategies) or '(none)'}")
    return "\n".join(lines)


def _with_plugins_help(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    text: str,
    epilog: Callable[[], str],
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name, help=text, add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-h", "--help", action=_PluginsHelp, epilog=epilog)
    return parser


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    network = commands.add_parser("network", aliases=["n"], help="manage networks")
    network.set_defaults(handler=show_help(network))
    sub = network.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")

    create = _with_plugins_help(sub, "create", "create a network", plugin_options_text)
    create.add_argument("name", metavar="NAME", help="network name (a-z, 0-9, . _ -)")
    create.add_argument(
        "--subnet", metavar="CIDR", help="IPv4 subnet (default: next free /24 from the pool)"
    )
    create.add_argument(
        "--gateway", metavar="IP", help="IPv4 gateway (default: first host of the subnet)"
    )
    create.add_argument(
        "--subnet-v6", dest="subnet_v6", metavar="CIDR", help="IPv6 subnet, /64 to /120"
    )
    create.add_argument(
        "--internal", action="store_true", help="no egress: members and gateway only"
    )
    create.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="label (repeatable)"
    )
    create.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="plugin option (repeatable; see the list below)",
    )
    create.add_argument(
        "--dns-server",
        action="append",
        default=[],
        metavar="IP",
        help="upstream the embedded DNS forwards to for this network (repeatable;"
        " the same as --option dns-server=IP)",
    )
    create.add_argument("--plugin", metavar="NAME", help="network plugin (default: bridge)")
    create.set_defaults(handler=create_network)

    for name, aliases in (("list", ["ls"]),):
        lister = sub.add_parser(name, aliases=aliases, help="list networks")
        lister.add_argument(
            "--format", choices=["table", "json"], default="table", help="output format"
        )
        lister.add_argument("-q", "--quiet", action="store_true", help="only names")
        lister.set_defaults(handler=list_networks)

    inspect = sub.add_parser("inspect", help="show networks as JSON, one object per line")
    inspect.add_argument("names", nargs="+", metavar="NAME", help="network names")
    inspect.set_defaults(handler=inspect_networks)

    delete = sub.add_parser("delete", aliases=["rm"], help="delete networks")
    delete.add_argument("names", nargs="*", metavar="NAME", help="network names")
    delete.add_argument("-a", "--all", action="store_true", help="every network but default")
    delete.set_defaults(handler=delete_networks)

    prune = sub.add_parser("prune", help="delete every unused network")
    prune.set_defaults(handler=prune_networks)

    connect = sub.add_parser("connect", help="connect a container to a network (live if running)")
    connect.add_argument("network", metavar="NETWORK", help="network name")
    connect.add_argument("container", metavar="CONTAINER", help="container name or id")
    connect.add_argument("--mac", help="MAC address (default: generated)")
    connect.add_argument("--mtu", type=int, help="MTU (default: the network's)")
    connect.add_argument("--ip", help="static IPv4 address (reserved while the container exists)")
    connect.add_argument("--ip6", help="static IPv6 address (with --ip)")
    connect.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="NAME",
        help="DNS alias on this network (repeatable)",
    )
    connect.set_defaults(handler=connect_container)

    disconnect = sub.add_parser("disconnect", help="disconnect a container from a network")
    disconnect.add_argument("network", metavar="NETWORK", help="network name")
    disconnect.add_argument("container", metavar="CONTAINER", help="container name or id")
    disconnect.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="also the primary network while others remain (the next one becomes primary)",
    )
    disconnect.set_defaults(handler=disconnect_container)

    attach = _with_plugins_help(
        sub,
        "attach",
        "allocate (and, with --netns, build) a bare attachment",
        plugin_strategies_text,
    )
    attach.add_argument("network", metavar="NETWORK", help="network name")
    attach.add_argument("--name", required=True, help="owner of the attachment")
    attach.add_argument("--mac", help="MAC address (default: generated)")
    attach.add_argument("--mtu", type=int, help="MTU (default: the network's)")
    attach.add_argument("--netns", help="network namespace (name or path) to put the interface in")
    attach.add_argument(
        "--strategy",
        help="how the interface is built: one the network's plugin offers (see the list below)",
    )
    attach.add_argument("--interface", default="eth0", help="interface name (default: eth0)")
    attach.add_argument("--secondary", action="store_true", help="no default route via this one")
    attach.set_defaults(handler=attach_network)

    detach = sub.add_parser("detach", help="release a bare attachment")
    detach.add_argument("network", metavar="NETWORK", help="network name")
    detach.add_argument("--name", required=True, help="owner of the attachment")
    detach.set_defaults(handler=detach_network)

    reload = sub.add_parser("reload", help="re-apply every network's kernel state and rules")
    reload.set_defaults(handler=reload_networks)

    check = sub.add_parser(
        "check", help="verify a network's attachments against the kernel (exit 1: problems)"
    )
    check.add_argument("name", metavar="NAME", help="network name")
    check.set_defaults(handler=check_network)

    plugins = sub.add_parser("plugins", help="list the network plugins")
    plugins.add_argument(
        "--format", choices=["table", "json"], default="table", help="output format"
    )
    plugins.set_defaults(handler=list_plugins)


def create_network(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "subnet": args.subnet,
        "gateway": args.gateway,
        "subnetV6": args.subnet_v6,
        "internal": args.internal,
        "labels": args.label,
        "options": [*args.option, *(f"dns-server={ip}" for ip in args.dns_server)],
        "plugin": args.plugin,
    }
    created = api().request("POST", "/v1/networks", body)
    print(created["id"])
    return 0


def list_networks(args: argparse.Namespace) -> int:
    networks = api().request("GET", "/v1/networks")
    if args.quiet:
        for n in networks:
            print(n["id"])
    elif args.format == "json":
        print(dumps(networks))
    else:
        rows = [
            [
                n["id"],
                n["configuration"]["mode"],
                n["configuration"]["ipv4Subnet"],
                n["configuration"]["ipv4Gateway"],
                n["configuration"]["plugin"],
                n["containers"],
            ]
            for n in networks
        ]
        print(table(["NETWORK", "MODE", "SUBNET", "GATEWAY", "PLUGIN", "CONTAINERS"], rows))
    return 0


def inspect_networks(args: argparse.Namespace) -> int:
    return inspect_each(args.names, "networks")


def delete_networks(args: argparse.Namespace) -> int:
    client = api()
    names = list(args.names)
    if args.all:
        if names:
            raise ContainerError("give either --all or network names, not both")
        names = [
            n["id"]
            for n in client.request("GET", "/v1/networks")
            if n["configuration"]["labels"].get("builtin") != "true"
        ]
    elif not names:
        raise ContainerError("give at least one network name (or --all)")

    def delete(name: str) -> None:
        client.request("DELETE", f"/v1/networks/{quote(name)}")
        print(name)

    return for_each(names, delete)


def prune_networks(_: argparse.Namespace) -> int:
    for name in api().request("POST", "/v1/networks/prune", {})["deleted"]:
        print(name)
    return 0


def connect_container(args: argparse.Namespace) -> int:
    body = {
        "container": args.container,
        "mac": args.mac,
        "mtu": args.mtu,
        "ip": args.ip,
        "ip6": args.ip6,
        "aliases": args.alias,
    }
    api().request("POST", f"/v1/networks/{quote(args.network)}/connect", body)
    return 0


def disconnect_container(args: argparse.Namespace) -> int:
    body = {"container": args.container, "force": args.force}
    api().request("POST", f"/v1/networks/{quote(args.network)}/disconnect", body)
    return 0


def attach_network(args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        "mac": args.mac,
        "mtu": args.mtu,
        "netns": args.netns,
        "strategy": args.strategy,
        "interface": args.interface,
        "primary": not args.secondary,
    }
    print(dumps(api().request("POST", f"/v1/networks/{quote(args.network)}/attachments", body)))
    return 0


def detach_network(args: argparse.Namespace) -> int:
    path = f"/v1/networks/{quote(args.network)}/attachments/{quote(args.name)}"
    print(dumps(api().request("DELETE", path)))
    return 0


def reload_networks(_: argparse.Namespace) -> int:
    api().request("POST", "/v1/networks/reload", {})
    print("reloaded")
    return 0


def check_network(args: argparse.Namespace) -> int:
    """One line per problem (and exit 1), or one line saying the network is healthy."""
    reply = api().request("POST", f"/v1/networks/{quote(args.name)}/check", {})
    for problem in reply["problems"]:
        print(f"{args.name}: {problem}")
    if reply["problems"]:
        return 1
    print(f"{args.name}: ok")
    return 0


def list_plugins(args: argparse.Namespace) -> int:
    plugins = api().request("GET", "/v1/plugins")
    if args.format == "json":
        print(dumps(plugins))
        return 0
    rows = [
        [
            p["name"],
            p["version"],
            ",".join(p["strategies"]),
            " ".join(p["options"]) or "-",
            f"pid {p['running']['pid']}" if p["running"] else "-",
            p["manifest"],
        ]
        for p in plugins
    ]
    print(table(["PLUGIN", "VERSION", "STRATEGIES", "OPTIONS", "HELPER", "MANIFEST"], rows))
    return 0
