"""Every option of `container run|create|exec|logs|stop` says in one line what it does."""

from __future__ import annotations

import argparse

import pytest

from container_runtime.cli.main import build_parser


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser([command])
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise AssertionError(command)


@pytest.mark.parametrize("command", ["run", "create", "exec", "logs", "stop", "kill", "ps"])
def test_every_option_has_a_one_line_help(command: str) -> None:
    sub = _subparser(command)
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, (command, action.option_strings or action.dest)
        assert "\n" not in action.help


def test_run_flags_users_type_daily() -> None:
    sub = _subparser("run")
    args = sub.parse_args(["-it", "--init", "-v", "/a:/b:ro", "--dns-option", "ndots:2", "img"])
    assert args.interactive and args.tty and args.init
    assert args.volume == ["/a:/b:ro"] and args.dns_option == ["ndots:2"]
