"""`container`: the command-line client. Parses, calls the API server, prints.

argparse rather than click: click's import alone costs ~50 ms and `container
network list` must finish in under 80 ms as a process.  One module per command
group registers its subcommands here.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from .. import __version__
from ..errors import ContainerError
from .output import show_help


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line on stderr, as every other refusal.
        print(f"Error: {self.prog}: {message}", file=sys.stderr)
        sys.exit(2)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        # argparse counts a trailing `CMD...` (REMAINDER) as required, so a missing IMAGE
        # was reported as "required: IMAGE, CMD"; it may be empty.
        if action.nargs == argparse.REMAINDER:
            action.required = False
        return action


# Which module registers each top-level word. Building every subparser costs ~50 ms
# (argparse is slow to construct), so a command builds only its own group.
GROUPS: dict[str, str] = {
    **dict.fromkeys(("system", "s"), "system"),
    **dict.fromkeys(("network", "n"), "network"),
    **dict.fromkeys(("image", "i", "images"), "image"),
    **dict.fromkeys(
        (
            "run",
            "create",
            "start",
            "stop",
            "kill",
            "delete",
            "rm",
            "list",
            "ls",
            "ps",
            "inspect",
            "logs",
            "exec",
        ),
        "container",
    ),
}


def _command_word(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: list[str] | None = None) -> ArgumentParser:
    """The parser; with argv, only the group its command word needs (all when unknown)."""
    import importlib

    parser = ArgumentParser(prog="container", description="Run containers on Linux.")
    parser.add_argument(
        "-v",
        "--version",
        action="version",
        version=f"container version {__version__}",
        help="print the version and exit",
    )
    parser.set_defaults(handler=show_help(parser))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    word = _command_word(argv) if argv is not None else None
    wanted = [GROUPS[word]] if word in GROUPS else ["system", "network", "container", "image"]
    for module in wanted:
        importlib.import_module(f"{__package__}.{module}").register(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except ContainerError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        sys.exit(1)
    except PermissionError as exc:
        # Whatever a command touches without the privilege it needs: one line, no traceback.
        where = f" on {exc.filename}" if exc.filename else ""
        print(f"Error: permission denied{where}: run it as root", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
