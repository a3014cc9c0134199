"""`container network` (alias `n`): create, list, inspect, delete, prune, attach, detach, reload."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ContainerError
from .api import api, for_each, inspect_each, quote
from .output import dumps, table


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    network = commands.add_parser("network", aliases=["n"], help="manage networks")
    sub = network.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    sub.required = True

    create = sub.add_parser("create", help="create a network")
    create.add_argument("name")
    create.add_argument(
        "--subnet", help="IPv4 subnet in CIDR form (default: next free from the pool)"
    )
    create.add_argument("--gateway", help="IPv4 gateway (default: first host of the subnet)")
    create.add_argument("--subnet-v6", dest="subnet_v6", help="IPv6 subnet, /64 to /120")
    create.add_argument(
        "--internal", action="store_true", help="no egress: members and gateway only"
    )
    create.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--plugin", help="network plugin (default: bridge)")
    create.set_defaults(handler=create_network)

    for name, aliases in (("list", ["ls"]),):
        lister = sub.add_parser(name, aliases=aliases, help="list networks")
        lister.add_argument("--format", choices=["table", "json"], default="table")
        lister.add_argument("-q", "--quiet", action="store_true", help="only names")
        lister.set_defaults(handler=list_networks)

    inspect = sub.add_parser("inspect", help="show networks as JSON")
    inspect.add_argument("names", nargs="+", metavar="NAME")
    inspect.set_defaults(handler=inspect_networks)

    delete = sub.add_parser("delete", aliases=["rm"], help="delete networks")
    delete.add_argument("names", nargs="*", metavar="NAME")
    delete.add_argument("-a", "--all", action="store_true", help="every network but default")
    delete.set_defaults(handler=delete_networks)

    prune = sub.add_parser("prune", help="delete every unused network")
    prune.set_defaults(handler=prune_networks)

    attach = sub.add_parser("attach", help="allocate (and, with --netns, build) a bare attachment")
    attach.add_argument("network")
    attach.add_argument("--name", required=True, help="owner of the attachment")
    attach.add_argument("--mac")
    attach.add_argument("--mtu", type=int)
    attach.add_argument("--netns", help="network namespace (name or path) to put the interface in")
    attach.add_argument("--strategy", choices=["veth", "tap"])
    attach.add_argument("--interface", default="eth0")
    attach.add_argument("--secondary", action="store_true", help="no default route via this one")
    attach.set_defaults(handler=attach_network)

    detach = sub.add_parser("detach", help="release a bare attachment")
    detach.add_argument("network")
    detach.add_argument("--name", required=True)
    detach.set_defaults(handler=detach_network)

    reload = sub.add_parser("reload", help="re-apply every network's kernel state and rules")
    reload.set_defaults(handler=reload_networks)


def create_network(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "subnet": args.subnet,
        "gateway": args.gateway,
        "subnetV6": args.subnet_v6,
        "internal": args.internal,
        "labels": args.label,
        "options": args.option,
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
