"""scripts/setup.sh and the scripts that need it: a rerun needs no network, leaves no
service behind that the user did not ask for, and the others point at it when it has not run.

CI runs setup.sh before the tests, so these check what it left on this very machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.instance import Result, assert_refused, run

REPO = Path(__file__).resolve().parents[2]


def test_rerun_needs_no_network_and_enables_no_service() -> None:
    # No network namespace access and a package index that cannot answer: only what is
    # already installed may be used.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple")
    result = run(["unshare", "-n", str(REPO / "scripts" / "setup.sh")], env=env, timeout=30)
    assert result.stdout.splitlines()[-1] == "setup: done (.venv/bin/container)"
    enabled = subprocess.run(
        ["systemctl", "is-enabled", "docker-registry"], capture_output=True, text=True
    )
    assert enabled.stdout.strip() != "enabled"
    active = subprocess.run(
        ["systemctl", "is-active", "docker-registry"], capture_output=True, text=True
    )
    assert active.stdout.strip() != "active"
    assert run(["getent", "group", "container"]).stdout.startswith("container:")


@pytest.mark.parametrize("script", ["demo.sh", "test.sh"])
def test_scripts_before_setup_say_what_to_run_first(tmp_path: Path, script: str) -> None:
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")  # a clone with no .venv yet
    proc = subprocess.run(
        [str(tmp_path / "scripts" / script)], capture_output=True, text=True, timeout=30
    )
    assert proc.stdout == ""
    assert_refused(
        Result(proc.returncode, proc.stdout, proc.stderr), "run ./scripts/setup.sh first"
    )
