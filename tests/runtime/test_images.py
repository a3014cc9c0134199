"""Images: references, pull from a real registry on loopback, inspect, load, delete."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.registry import Registry, build_busybox_image, closed_port

from container_runtime import errors
from container_runtime.runtime.images import (
    ImageStore,
    decode_tag,
    encode_tag,
    normalize_reference,
    parse_reference,
)

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("ref", "want"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:latest", "docker.io/library/nginx:latest"),
        ("nginx:1.25-alpine", "docker.io/library/nginx:1.25-alpine"),
        ("user/app:v1", "docker.io/user/app:v1"),
        ("docker.io/nginx", "docker.io/library/nginx:latest"),
        ("index.docker.io/library/nginx:1", "docker.io/library/nginx:1"),
        ("127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1"),
        ("localhost/x", "localhost/x:latest"),
        ("localhost:5000/a/b/c", "localhost:5000/a/b/c:latest"),
        ("ghcr.io/org/my_app__x:tag.1", "ghcr.io/org/my_app__x:tag.1"),
        (f"nginx@{D}", f"docker.io/library/nginx@{D}"),
        (f"nginx:1@{D}", f"docker.io/library/nginx:1@{D}"),
        (f"quay.io/a/b@{D}", f"quay.io/a/b@{D}"),
    ],
)
def test_normalize_reference(ref: str, want: str) -> None:
    assert normalize_reference(ref) == want
    parsed = parse_reference(want)
    assert decode_tag(encode_tag(parsed)) == want


@pytest.mark.parametrize(
    "ref",
    [
        "",
        " nginx",
        "nginx ",
        "Nginx",
        "nginx:",
        "nginx:-bad",
        ":tag",
        "a//b",
        "-rf",
        "--help",
        "nginx;rm -rf /",
        "nginx$(id)",
        "docker://nginx",
        "nginx@sha256:abc",
        "nginx@md5:" + "a" * 32,
        "a/" * 200 + "b",
        "host:99999/x",
        "x:a:b",
        "x\n",
        "ü",
        "_x",
        "x_",
        "x..y",
        "127.0.0.1:5000/X",
    ],
)
def test_bad_reference_is_refused(ref: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="invalid image reference"):
        normalize_reference(ref)


def test_pull_inspect_list_delete(registry_image: tuple[Registry, str], tmp_path: Path) -> None:
    reg, ref = registry_image
    store = ImageStore(tmp_path / "images")
    assert store.list() == []
    lines: list[str] = []
    info = store.pull(ref, progress=lines.append)
    assert any("Copying" in line for line in lines)
    assert info.reference == ref
    assert info.cmd == ["httpd", "-f", "-v", "-p", "80", "-h", "/www"]
    assert "GREETING=hello from the image" in info.env
    assert info.working_dir == "/www"
    assert info.digest.startswith("sha256:") and info.size > 500_000
    assert store.inspect(ref) == info
    j = info.to_json()
    assert j["config"]["Cmd"] == info.cmd and j["config"]["Env"] == info.env
    assert [i.reference for i in store.list()] == [ref]
    # pulling again is idempotent
    assert store.pull(ref).digest == info.digest
    assert len(store.list()) == 1

    rootfs = store.rootfs(info)
    assert (rootfs / "bin" / "busybox").is_file()
    dest = tmp_path / "unpacked"
    store.unpack(ref, dest)
    assert (dest / "www" / "index.html").read_text().startswith("hello")

    store.delete(ref)
    assert store.list() == []
    assert not rootfs.exists()
    with pytest.raises(errors.NotFound):
        store.inspect(ref)
    with pytest.raises(errors.NotFound):
        store.delete(ref)
    blobs = list((store.layout / "blobs" / "sha256").iterdir())
    assert blobs == []


def test_unknown_image_is_not_found(registry_image: tuple[Registry, str], tmp_path: Path) -> None:
    reg, ref = registry_image
    store = ImageStore(tmp_path / "images")
    with pytest.raises(errors.NotFound, match="not found in registry"):
        store.pull(f"{reg.host}/no/such-image:1")
    with pytest.raises(errors.NotFound, match="not found in registry"):
        store.pull(ref.rsplit(":", 1)[0] + ":no-such-tag")
    assert store.list() == []


def test_unreachable_registry(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    hint = r"is unreachable \(dial tcp .*connection refused\); check the network, or load the image"
    with pytest.raises(errors.Unavailable, match=hint):
        store.pull(f"127.0.0.1:{closed_port()}/x/y:1")
    assert store.list() == []


def test_bad_reference_on_pull(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    with pytest.raises(errors.InvalidArgument):
        store.pull("--src-creds=x:y")
    with pytest.raises(errors.InvalidArgument):
        store.inspect("BAD REF")


def test_load_oci_and_docker_archives(tmp_path: Path) -> None:
    layout = build_busybox_image(tmp_path / "oci", cmd=["sh"], env=["A=1"], workdir="/tmp")
    oci_tar = tmp_path / "img-oci.tar"
    docker_tar = tmp_path / "img-docker.tar"
    for dest in (
        f"oci-archive:{oci_tar}:example.com/team/bb:2",
        f"docker-archive:{docker_tar}:example.com/team/bb:3",
    ):
        subprocess.run(
            ["skopeo", "--insecure-policy", "copy", f"oci:{layout}:latest", dest],
            check=True,
            capture_output=True,
        )
    store = ImageStore(tmp_path / "images")
    a = store.load(oci_tar)
    b = store.load(docker_tar)
    assert [i.reference for i in a] == ["example.com/team/bb:2"]
    assert [i.reference for i in b] == ["example.com/team/bb:3"]
    assert a[0].cmd == ["sh"] and a[0].env == ["A=1"] and a[0].working_dir == "/tmp"
    assert b[0].cmd == ["sh"]
    assert {i.reference for i in store.list()} == {"example.com/team/bb:2", "example.com/team/bb:3"}
    bogus = tmp_path / "bogus.tar"
    bogus.write_bytes(b"not a tar")
    with pytest.raises(errors.InvalidArgument):
        store.load(bogus)
    with pytest.raises(errors.NotFound):
        store.load(tmp_path / "missing.tar")
