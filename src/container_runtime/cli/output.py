"""Printing helpers: aligned tables, one-line JSON, a command group's help."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def dumps(value: Any, pretty: bool = False) -> str:
    return json.dumps(value, indent=2 if pretty else None, sort_keys=False)


def show_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A handler printing the parser's help: a command group given alone (`container`,
    `container network`) explains itself, as docker's does, instead of refusing."""

    def handler(_: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return handler
