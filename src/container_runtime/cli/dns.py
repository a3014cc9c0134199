"""`container system dns create|delete|list`: make the host resolve `*.DOMAIN` through
the embedded DNS server (see apiserver/dns.py for how)."""

from __future__ import annotations

import argparse
from urllib.parse import quote

from .api import api
from .output import dumps, show_help, table


def register(system_commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dns = system_commands.add_parser("dns", help="host resolution of container names")
    dns.set_defaults(handler=show_help(dns))
    sub = dns.add_subparsers(dest="dns_command", metavar="SUBCOMMAND")
    create = sub.add_parser("create", help="make the host resolve *.DOMAIN through us")
    create.add_argument("domain", metavar="DOMAIN", help="domain, e.g. test")
    create.set_defaults(handler=create_domain)
    delete = sub.add_parser("delete", aliases=["rm"], help="undo `system dns create`")
    delete.add_argument("domain", metavar="DOMAIN", help="domain, e.g. test")
    delete.set_defaults(handler=delete_domain)
    lister = sub.add_parser("list", aliases=["ls"], help="list the host domains")
    lister.add_argument(
        "--format", choices=["table", "json"], default="table", help="output format"
    )
    lister.set_defaults(handler=list_domains)


def create_domain(args: argparse.Namespace) -> int:
    client = api()
    try:
        made = client.request("POST", "/v1/system/dns", {"domain": args.domain})
    finally:
        client.close()
    how = (
        f"systemd-resolved: ~{made['domain']} on {made['link']} via {made['address']}"
        if made["mechanism"] == "resolved"
        else f"the host's resolver {made['address']} is the container DNS server"
    )
    print(f"dns domain {made['domain']} created ({how})")
    return 0


def delete_domain(args: argparse.Namespace) -> int:
    client = api()
    try:
        gone = client.request("DELETE", f"/v1/system/dns/{quote(args.domain, safe='')}")
    finally:
        client.close()
    print(f"dns domain {gone['deleted']} deleted")
    return 0


def list_domains(args: argparse.Namespace) -> int:
    client = api(timeout=10.0)
    try:
        domains = client.request("GET", "/v1/system/dns")
    finally:
        client.close()
    if args.format == "json":
        print(dumps(domains))
        return 0
    rows = [[d["domain"], d["mechanism"], d["link"] or "-", d["address"] or "-"] for d in domains]
    print(table(["DOMAIN", "MECHANISM", "LINK", "SERVER"], rows))
    return 0
