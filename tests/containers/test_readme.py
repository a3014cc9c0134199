"""The README's "Using it" block, run exactly as written: on a fresh system, and again
after scripts/demo.sh has run (the situation of a user who follows the README)."""

from __future__ import annotations

import re
from pathlib import Path

from support.instance import Instance, Result, run

REPO = Path(__file__).resolve().parents[2]


def readme_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Using it") :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "no sh block under 'Using it'"
    return match.group(1)


def bash(inst: Instance, script: str) -> Result:
    # In the instance's namespace and environment, from the clone's root as the README says.
    argv = inst.in_ns(["bash", "-euo", "pipefail", "-c", script])
    return run(argv, env=inst.env, cwd=REPO, timeout=180)


def test_using_it_block_works_fresh_and_after_the_demo(stopped_instance: Instance) -> None:
    inst = stopped_instance
    block = readme_block()
    for when in ("fresh", "after the demo"):
        if when == "after the demo":
            demo = run(inst.in_ns([str(REPO / "scripts" / "demo.sh")]), env=inst.env, timeout=180)
            assert "fetching http://192.168.100.2/ :" in demo.stdout
        result = bash(inst, block)
        assert '"address": "192.168.110.2/24"' in result.stdout, (when, result.stdout)
        assert '"macAddress": "02:42:ac:11:00:12"' in result.stdout, when
        assert result.stdout.rstrip().endswith("container system stopped"), when
