"""The CLI's manners without a running system: help, version, argument errors."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.instance import VENV_BIN, Result, assert_refused, run

import container_runtime
from container_runtime.cli.main import build_parser


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = run([str(VENV_BIN / "container"), *args], check=False, env=env)
    return result.returncode, result.stdout, result.stderr


def test_bare_command_prints_help_and_version_prints_version() -> None:
    code, out, err = cli()
    assert code == 0 and err == ""
    assert out.startswith("usage: container") and "network (n)" in out and "run" in out
    for flag in ("--version", "-v"):
        code, out, err = cli(flag)
        assert (code, out, err) == (0, f"container version {container_runtime.__version__}\n", "")


@pytest.mark.parametrize("group", [["network"], ["n"], ["image"], ["system"], ["system", "dns"]])
def test_a_group_alone_prints_its_help(group: list[str]) -> None:
    code, out, err = cli(*group)
    assert code == 0 and err == ""
    assert out.startswith(f"usage: container {group[0]}") and "SUBCOMMAND" in out


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from _parsers(child)


@pytest.mark.parametrize("group", ["network", "image", "system", "run", "create", "exec", "logs"])
def test_every_option_has_a_one_line_help(group: str) -> None:
    top = build_parser([group])
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for parser in [top, *_parsers(commands.choices[group])]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            text = action.help
            if not text or text == argparse.SUPPRESS or "\n" in text:
                missing.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_network_create_help_lists_each_plugins_options(tmp_path: Path) -> None:
    (tmp_path / "extra.toml").write_text(
        'name = "extra"\nexecutable = "/bin/true"\n[options]\nmode = ["l2", "l3"]\n'
    )
    env = {**os.environ, "CONTAINER_PLUGIN_PATH": str(tmp_path), "HOME": str(tmp_path)}
    code, out, err = cli("network", "create", "--help", env=env)
    assert code == 0 and err == ""
    assert "  bridge: variant=shared|isolated spoofcheck=on|off\n" in out
    assert "  extra: mode=l2|l3\n" in out


@pytest.mark.parametrize(
    "argv, missing",
    [(["run"], "IMAGE"), (["run", "-d", "--name", "x"], "IMAGE"), (["create"], "IMAGE")],
)
def test_missing_image_names_only_image(argv: list[str], missing: str) -> None:
    code, out, err = cli(*argv)
    assert code == 2 and out == ""
    assert_refused(Result(code, out, err), f"the following arguments are required: {missing}")
    assert err.rstrip().endswith(f"required: {missing}")
