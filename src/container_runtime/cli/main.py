"""`container`: the command-line client. Parses, calls the API server, prints.

argparse rather than click: click's import alone costs ~50 ms and `container
network list` must finish in under 80 ms as a process.  One module per command
group registers its subcommands here.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from ..errors import ContainerError


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line on stderr, as every other refusal.
        print(f"Error: {self.prog}: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> ArgumentParser:
    from . import network, system

    parser = ArgumentParser(prog="container", description="Run containers on Linux.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    commands.required = True
    system.register(commands)
    network.register(commands)
    try:
        from . import container, image
    except ImportError:  # pragma: no cover - present once the container runtime lands
        pass
    else:
        container.register(commands)
        image.register(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except ContainerError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
