"""`container run|create|start|stop|kill|delete|rm|list|ls|ps|inspect|logs|exec`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ..client import UnixClient
from ..errors import ContainerError, NotFound, Unavailable
from .api import api, for_each, quote
from .image import pull_image
from .output import dumps, table

POLL = 0.1


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for name, help_text, handler in (
        ("run", "create and start a container", run_container),
        ("create", "create a container (not started)", create_container),
    ):
        p = commands.add_parser(name, help=help_text)
        _create_flags(p, run=name == "run")
        p.set_defaults(handler=handler)

    start = commands.add_parser("start", help="start containers")
    start.add_argument("names", nargs="+", metavar="NAME", help="container names or ids")
    start.set_defaults(handler=start_containers)

    stop = commands.add_parser("stop", help="stop containers (SIGTERM, then SIGKILL)")
    stop.add_argument("names", nargs="+", metavar="NAME", help="container names or ids")
    stop.add_argument("-t", "--time", type=float, default=10.0, help="seconds before SIGKILL")
    stop.add_argument("-s", "--signal", default="TERM", help="signal to send first (default TERM)")
    stop.set_defaults(handler=stop_containers)

    kill = commands.add_parser("kill", help="send a signal to containers")
    kill.add_argument("names", nargs="+", metavar="NAME", help="container names or ids")
    kill.add_argument("-s", "--signal", default="KILL", help="signal name or number (KILL)")
    kill.set_defaults(handler=kill_containers)

    delete = commands.add_parser("delete", aliases=["rm"], help="remove containers")
    delete.add_argument("names", nargs="+", metavar="NAME", help="container names or ids")
    delete.add_argument("-f", "--force", action="store_true", help="kill a running one first")
    delete.set_defaults(handler=delete_containers)

    lister = commands.add_parser("list", aliases=["ls", "ps"], help="list containers")
    lister.add_argument("-a", "--all", action="store_true", help="stopped ones too")
    lister.add_argument("--format", choices=["table", "json"], default="table", help="output")
    lister.add_argument("-q", "--quiet", action="store_true", help="only ids")
    lister.set_defaults(handler=list_containers)

    inspect = commands.add_parser("inspect", help="show containers as JSON")
    inspect.add_argument("names", nargs="+", metavar="NAME", help="container names or ids")
    inspect.add_argument(
        "--format", choices=["json"], default="json", help="one JSON object per container per line"
    )
    inspect.set_defaults(handler=inspect_containers)

    logs = commands.add_parser("logs", help="print a container's output")
    logs.add_argument("name", metavar="NAME", help="container name or id")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until it exits")
    logs.set_defaults(handler=container_logs)

    ex = commands.add_parser("exec", help="run a command in a running container")
    ex.add_argument(
        "-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="set a variable"
    )
    ex.add_argument("-w", "--workdir", help="working directory in the container")
    ex.add_argument("-t", "--tty", action="store_true", help="allocate a TTY")
    ex.add_argument("-i", "--interactive", action="store_true", help="(stdin is always passed)")
    ex.add_argument("name", metavar="NAME", help="container name or id")
    ex.add_argument("args", nargs=argparse.REMAINDER, metavar="CMD", help="command and arguments")
    ex.set_defaults(handler=exec_container)


def _create_flags(p: argparse.ArgumentParser, run: bool) -> None:
    if run:
        p.add_argument("-d", "--detach", action="store_true", help="do not wait for the exit")
    p.add_argument(
        "-i", "--interactive", action="store_true", help="keep stdin open and pass it on"
    )
    p.add_argument("-t", "--tty", action="store_true", help="allocate a TTY for the process")
    p.add_argument("--name", help="container name (default: c-XXXXXXXX)")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument(
        "-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="set a variable"
    )
    p.add_argument(
        "--network",
        action="append",
        default=[],
        metavar="NAME[,mac=..][,mtu=..]",
        help="attach to a network (repeatable; none: loopback only; host: the host's"
        " network, no isolation; container:NAME: share NAME's network namespace)",
    )
    p.add_argument("--hostname", metavar="NAME", help="hostname (and DNS name on eth0)")
    p.add_argument("--domainname", metavar="DOMAIN", help="the container's NIS domain name")
    p.add_argument(
        "--add-host",
        action="append",
        default=[],
        metavar="NAME:IP",
        help="add an /etc/hosts entry (repeatable; IP may be host-gateway)",
    )
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]",
        help="publish a container port on the host (repeatable)",
    )
    p.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="HOST:CONTAINER[:ro]",
        help="bind-mount a host path (repeatable)",
    )
    p.add_argument(
        "--init", action="store_true", help="run a tiny init (tini) as PID 1 to pass signals"
    )
    p.add_argument(
        "--dns", action="append", default=[], metavar="IP", help="nameserver (repeatable)"
    )
    p.add_argument("--dns-domain", metavar="DOMAIN", help="`domain` line of /etc/resolv.conf")
    p.add_argument(
        "--dns-search",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="search domain (repeatable; replaces the default)",
    )
    p.add_argument(
        "--dns-option",
        action="append",
        default=[],
        metavar="OPT",
        help="resolver option, e.g. ndots:2 (repeatable)",
    )
    p.add_argument("--no-dns", action="store_true", help="write no /etc/resolv.conf entries")
    p.add_argument("--entrypoint", metavar="CMD", help="override the image's entrypoint")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory in the container")
    p.add_argument("--insecure", action="store_true", help="plain HTTP to the registry")
    p.add_argument("image", metavar="IMAGE", help="image reference, e.g. nginx:latest")
    p.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="CMD", help="command and arguments (optional)"
    )


def _ensure_image(client: UnixClient, ref: str, insecure: bool) -> None:
    try:
        client.request("GET", f"/v1/images/{quote(ref)}")
    except NotFound:
        pull_image(client, ref, insecure)


def _create(args: argparse.Namespace, start: bool) -> dict[str, Any]:
    client = api(timeout=1800)
    _ensure_image(client, args.image, args.insecure)
    body: dict[str, Any] = {
        "name": args.name,
        "image": args.image,
        "cmd": args.cmd or None,
        "entrypoint": [args.entrypoint] if args.entrypoint is not None else None,
        "workdir": args.workdir,
        "env": args.env,
        "networks": args.network,
        "hostname": args.hostname,
        "domainname": args.domainname,
        "addHosts": args.add_host,
        "publish": args.publish,
        "dns": args.dns,
        "dnsDomain": args.dns_domain,
        "dnsSearch": args.dns_search,
        "dnsOption": args.dns_option,
        "noDns": args.no_dns,
        "volumes": [_absolute_volume(v) for v in args.volume],
        "init": args.init,
        "tty": args.tty,
        "interactive": args.interactive,
        "attach": start and not args.detach and (args.tty or args.interactive),
        # `run --rm` in the foreground removes the container itself after reading the
        # exit code and the last output (as the docker client does); detached, the server does.
        "autoRemove": args.rm and (not start or args.detach),
        "start": start,
    }
    result: dict[str, Any] = client.request("POST", "/v1/containers", body)
    return result


def create_container(args: argparse.Namespace) -> int:
    print(_create(args, start=False)["id"])
    return 0


def _absolute_volume(text: str) -> str:
    """A relative host path is relative to where the user is (as in Docker)."""
    if text.startswith((".", "~")) and ":" in text:
        host, _, rest = text.partition(":")
        return f"{os.path.abspath(os.path.expanduser(host))}:{rest}"
    return text


def run_container(args: argparse.Namespace) -> int:
    created = _create(args, start=True)
    if args.detach:
        print(created["id"])
        return 0
    client = api()
    if not args.tty:  # with a TTY, ^C is a byte for the container's terminal
        _proxy_signals(created["id"])
    try:
        if "attach" in created:
            from .attach import run_attached

            code = run_attached(client, created, args.interactive, args.tty)
        else:
            code = _follow(client, created["id"], until_exit=True)
    except Unavailable:
        # The container was started: say so, rather than only that the server is gone.
        name = created.get("name") or created["id"][:12]
        raise ContainerError(
            f"the API server went away while container {name} ran in the foreground; the"
            f" container keeps running: check it with `container ls -a` and `container logs"
            f" {name}` once the server is back (`container system start`)"
        ) from None
    if args.rm:
        try:
            client.request("DELETE", f"/v1/containers/{created['id']}?force=1")
        except NotFound:
            pass
    return code


PROXIED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")


def _proxy_signals(cid: str) -> None:
    """As Docker's sig-proxy: a signal to a foreground `run` goes to the container's
    process (whose exit then ends the run, and `--rm` removes it); the third ^C gives up
    waiting (the container keeps running)."""
    import signal

    interrupts = [0]

    def forward(number: int, _: object) -> None:
        name = signal.Signals(number).name
        if number == signal.SIGINT:
            interrupts[0] += 1
            if interrupts[0] >= 3:
                raise KeyboardInterrupt
        try:
            api(timeout=10).request("POST", f"/v1/containers/{cid}/kill", {"signal": name})
        except ContainerError:
            pass  # it has just exited: the run ends by itself

    for name in PROXIED:
        signal.signal(getattr(signal, name), forward)


def _follow(client: UnixClient, ref: str, until_exit: bool) -> int:
    """Print the log from the start; with until_exit, poll until the container stops and
    return its exit code (125 if it is removed before the code is known)."""
    offset = 0
    cid = quote(ref)
    while True:
        try:
            chunk = client.request("GET", f"/v1/containers/{cid}/logs?offset={offset}")
        except NotFound:
            if offset == 0:
                raise  # no such container: an Error line, not silence
            return 0 if not until_exit else 125
        for entry in chunk["entries"]:
            out = sys.stdout if entry["stream"] == "stdout" else sys.stderr
            out.write(entry["text"] + ("" if entry["partial"] else "\n"))
        sys.stdout.flush()
        sys.stderr.flush()
        progressed = chunk["offset"] != offset
        offset = chunk["offset"]
        if chunk["more"] or progressed:
            continue
        if not until_exit:
            return 0
        if chunk["state"] != "running":
            code = chunk.get("exitCode")
            if code is None and chunk["state"] == "stopped":
                raise ContainerError(f"the exit status of container {ref} is unknown")
            return int(code) if code is not None else 0
        time.sleep(POLL)


def start_containers(args: argparse.Namespace) -> int:
    client = api()

    def start(name: str) -> None:
        client.request("POST", f"/v1/containers/{quote(name)}/start", {})
        print(name)

    return for_each(args.names, start)


def stop_containers(args: argparse.Namespace) -> int:
    client = api(timeout=args.time + 60)

    def stop(name: str) -> None:
        body = {"timeout": args.time, "signal": args.signal}
        client.request("POST", f"/v1/containers/{quote(name)}/stop", body)
        print(name)

    return for_each(args.names, stop)


def kill_containers(args: argparse.Namespace) -> int:
    client = api()

    def kill(name: str) -> None:
        client.request("POST", f"/v1/containers/{quote(name)}/kill", {"signal": args.signal})
        print(name)

    return for_each(args.names, kill)


def delete_containers(args: argparse.Namespace) -> int:
    client = api()
    query = "?force=1" if args.force else ""

    def delete(name: str) -> None:
        client.request("DELETE", f"/v1/containers/{quote(name)}{query}")
        print(name)

    return for_each(args.names, delete)


def _addresses(c: dict[str, Any]) -> str:
    return ",".join(n["address"] for n in c["networks"] if n.get("address")) or "-"


def list_containers(args: argparse.Namespace) -> int:
    containers = api().request("GET", "/v1/containers" + ("?all=1" if args.all else ""))
    if args.quiet:
        for c in containers:
            print(c["id"])
    elif args.format == "json":
        print(dumps(containers))
    else:
        rows = [
            [c["id"][:12], c["name"], c["image"], c["state"], _addresses(c)] for c in containers
        ]
        print(table(["ID", "NAME", "IMAGE", "STATE", "ADDRESSES"], rows))
    return 0


def inspect_containers(args: argparse.Namespace) -> int:
    client = api()

    def inspect(name: str) -> None:
        print(dumps(client.request("GET", f"/v1/containers/{quote(name)}")))

    return for_each(args.names, inspect)


def container_logs(args: argparse.Namespace) -> int:
    client = api()
    if not args.follow:
        _follow(client, args.name, until_exit=False)
        return 0
    _follow(client, args.name, until_exit=True)
    return 0


def exec_container(args: argparse.Namespace) -> int:
    import subprocess

    if not args.args:
        raise ContainerError("exec needs a command")
    body = {"args": args.args, "tty": args.tty, "env": args.env, "cwd": args.workdir}
    argv = api().request("POST", f"/v1/containers/{quote(args.name)}/exec", body)["argv"]
    return subprocess.call(argv)
