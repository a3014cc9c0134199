"""The conformance suite's one system: every subject's plugin installed and a network of
each created side by side, plus a registry with a busybox image when a subject runs real
containers.  Any test taking `subject` runs once per plugin in subjects/."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.instance import Instance, NetnsPool
from support.registry import build_busybox_image, running_registry

from .subjects import Subject, discover

SUBJECTS = discover()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "subject" in metafunc.fixturenames:
        metafunc.parametrize("subject", SUBJECTS, ids=[s.plugin for s in SUBJECTS])


@dataclass
class World:
    inst: Instance
    image: str | None  # a pulled busybox reference, when a subject runs containers

    def other(self, subject: Subject) -> list[Subject]:
        return [s for s in SUBJECTS if s.plugin != subject.plugin]


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    pool = NetnsPool()
    base = Path(tempfile.mkdtemp(prefix="ctr-test-"))
    base.chmod(0o755)
    inst = Instance(base, pool)
    try:
        paths = [os.fspath(s.plugin_path) for s in SUBJECTS if s.plugin_path is not None]
        inst.env["CONTAINER_PLUGIN_PATH"] = ":".join(paths)
        inst.start()
        for subject in SUBJECTS:
            if subject.setup is not None:
                subject.setup(inst)
            inst.cli(
                "network",
                "create",
                subject.network,
                "--plugin",
                subject.plugin,
                "--subnet",
                subject.subnet,
                *subject.create_args,
            )
        if not any(s.containers for s in SUBJECTS):
            yield World(inst, None)
            return
        layout = build_busybox_image(base / "oci")
        with running_registry(base / "registry", netns=inst.netns) as reg:
            ref = reg.push(layout, "latest", "test/busybox", "1")
            inst.cli("image", "pull", ref)
            yield World(inst, ref)
    finally:
        inst.cleanup()
        pool.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def subject_world(world: World, subject: Subject) -> Iterator[World]:
    """The world, checked to hold nothing of the subject's after the test."""
    yield world
    left = world.inst.cli("ls", "-a", "-q").stdout.split()
    if left:
        world.inst.cli("rm", "-f", *left, check=False)
