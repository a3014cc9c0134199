"""`container image` (alias `i`): pull, list, inspect, delete, load; `images` = `image ls`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..client import UnixClient
from ..errors import ContainerError, InvalidArgument, NotFound
from .api import api, for_each, inspect_each, quote
from .output import dumps, show_help, table


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    image = commands.add_parser("image", aliases=["i"], help="manage images")
    image.set_defaults(handler=show_help(image))
    sub = image.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")

    pull = sub.add_parser("pull", help="pull an image from a registry")
    pull.add_argument("reference", metavar="REFERENCE", help="image, e.g. nginx:latest")
    pull.add_argument("--insecure", action="store_true", help="plain HTTP / no TLS verification")
    pull.set_defaults(handler=pull_command)

    # `container images` is `container image ls`, as Docker and Podman users type it.
    for lister in (
        sub.add_parser("list", aliases=["ls"], help="list images"),
        commands.add_parser("images", help="list images (`image ls`)"),
    ):
        lister.add_argument(
            "--format", choices=["table", "json"], default="table", help="output format"
        )
        lister.add_argument("-q", "--quiet", action="store_true", help="only references")
        lister.set_defaults(handler=list_images)

    inspect = sub.add_parser("inspect", help="show images as JSON, one object per line")
    inspect.add_argument("references", nargs="+", metavar="REFERENCE", help="image references")
    inspect.set_defaults(handler=inspect_images)

    delete = sub.add_parser("delete", aliases=["rm"], help="delete images")
    delete.add_argument("references", nargs="+", metavar="REFERENCE", help="image references")
    delete.set_defaults(handler=delete_images)

    load = sub.add_parser("load", help="load images from an OCI or Docker archive")
    load.add_argument(
        "-i", "--input", required=True, metavar="FILE", help="a tar archive (OCI or docker save)"
    )
    load.set_defaults(handler=load_images)


def pull_image(client: UnixClient, reference: str, insecure: bool) -> dict[str, Any]:
    # The API answers once the pull is over; its progress lines are printed then, so
    # that a refused pull is still one `Error:` line. On a terminal a status line shows
    # while it runs, and is erased again if the pull is refused.
    live = sys.stderr.isatty()
    if live:
        print(f"Pulling {reference} ...", end="\r", file=sys.stderr, flush=True)
    try:
        info: dict[str, Any] = client.request(
            "POST", "/v1/images/pull", {"reference": reference, "insecure": insecure}
        )
    except ContainerError as exc:
        if live:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        raise _missing_locally(client, reference, exc) from None
    print(f"Pulling {reference} ...", file=sys.stderr)
    for line in info.get("progress") or []:
        print(line, file=sys.stderr)
    print(f"Pulled {info['reference']} ({info['digest']})", file=sys.stderr, flush=True)
    return info


def _missing_locally(client: UnixClient, reference: str, exc: ContainerError) -> ContainerError:
    """A refused pull of an image that is not here either says both (`run` of an image
    never loaded used to blame only the registry)."""
    if isinstance(exc, InvalidArgument):
        return exc
    try:
        client.request("GET", f"/v1/images/{quote(reference)}")
        return exc  # a local copy exists: only the pull failed
    except NotFound:
        pass
    except ContainerError:
        return exc
    if isinstance(exc, NotFound):
        return NotFound(exc.message.replace(" not found in ", " not found locally nor in ", 1))
    return type(exc)(f"image {reference} not found locally and {exc.message}")


def pull_command(args: argparse.Namespace) -> int:
    info = pull_image(api(timeout=1800), args.reference, args.insecure)
    print(info["reference"])
    return 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(n)


def list_images(args: argparse.Namespace) -> int:
    images = api().request("GET", "/v1/images")
    if args.quiet:
        for i in images:
            print(i["reference"])
    elif args.format == "json":
        print(dumps(images))
    else:
        rows = []
        for i in images:
            name, _, tag = i["reference"].rpartition(":")
            if "/" in tag or not name:
                name, tag = i["reference"], ""
            rows.append([name, tag, i["digest"][7:19], _size(i["size"])])
        print(table(["NAME", "TAG", "DIGEST", "SIZE"], rows))
    return 0


def inspect_images(args: argparse.Namespace) -> int:
    return inspect_each(args.references, "images")


def delete_images(args: argparse.Namespace) -> int:
    client = api()
    return for_each(
        args.references,
        lambda ref: print(client.request("DELETE", f"/v1/images/{quote(ref)}")["deleted"]),
    )


def load_images(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.input)
    for info in api(timeout=1800).request("POST", "/v1/images/load", {"path": path}):
        print(info["reference"])
    return 0
