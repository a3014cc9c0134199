"""Containers: real runc under conmon, real network namespaces, no mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from container_runtime import errors
from container_runtime.runtime.images import ImageInfo, ImageStore
from container_runtime.runtime.oci import RUNC, OciRuntime, ProcessSpec

HOSTS = "127.0.0.1\tlocalhost\n10.99.0.2\tweb.test web\n"
RESOLV = "nameserver 10.99.0.1\nsearch test\n"


def _runc_ids(rt: OciRuntime) -> list[str]:
    out = subprocess.run(
        [RUNC, "--root", str(rt.runc_root), "list", "-q"], capture_output=True, text=True
    )
    return out.stdout.split()


def _mounted_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(str(path))]


def _assert_gone(rt: OciRuntime, cid: str) -> None:
    assert cid not in _runc_ids(rt)
    assert not rt.bundle_path(cid).exists()
    assert _mounted_under(rt.bundle_path(cid)) == []
    assert cid not in rt.list_ids()


def _run(rt: OciRuntime, image: ImageInfo, cid: str, *cmd: str, netns: str | None = None) -> int:
    proc = ProcessSpec.from_image(image, command=list(cmd) or None, env={"EXTRA": "x y"})
    rt.create_bundle(cid, image, proc, f"{cid}.test.", netns, HOSTS, RESOLV)
    return rt.start(cid)


def test_httpd_in_netns_via_veth(
    runtime: OciRuntime, pulled: tuple[ImageStore, ImageInfo], netns: str
) -> None:
    _, image = pulled
    host_if = f"vh{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", netns],
        check=True,
    )
    try:
        subprocess.run(["ip", "addr", "add", "10.99.0.1/30", "dev", host_if], check=True)
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
        subprocess.run(
            ["ip", "-n", netns, "addr", "add", "10.99.0.2/30", "dev", "eth0"], check=True
        )
        subprocess.run(["ip", "-n", netns, "link", "set", "eth0", "up"], check=True)

        pid = _run(runtime, image, "web", netns=f"/run/netns/{netns}")
        st = runtime.state("web")
        assert st.status == "running" and st.pid == pid
        # the container's network namespace is the one we made
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino

        body = ""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen("http://10.99.0.2/", timeout=1) as resp:
                    body = resp.read().decode()
                break
            except OSError:
                time.sleep(0.05)
        assert body == "hello from busybox\n"

        r = runtime.exec("web", ["sh", "-c", "hostname; cat /etc/hosts /etc/resolv.conf; pwd"])
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode() == "web\n" + HOSTS + RESOLV + "/www\n"
        env = runtime.exec("web", ["env"]).stdout.decode().splitlines()
        assert "GREETING=hello from the image" in env
        assert "EXTRA=x y" in env and "HOSTNAME=web" in env
        assert runtime.exec("web", ["sh", "-c", "exit 7"]).returncode == 7
        ip = runtime.exec("web", ["ip", "-4", "addr", "show", "eth0"]).stdout.decode()
        assert "10.99.0.2/30" in ip

        # update /etc/hosts in place: the container sees it
        runtime.update_etc("web", hosts=HOSTS + "10.99.0.3\tother\n")
        assert "other" in runtime.exec("web", ["cat", "/etc/hosts"]).stdout.decode()

        # httpd -v logs the request on stderr, captured by conmon
        deadline = time.monotonic() + 3
        logs: list[str] = []
        while time.monotonic() < deadline:
            logs = [line.text for line in runtime.read_logs("web")]
            if any("10.99.0.1" in text for text in logs):
                break
            time.sleep(0.05)
        assert any("10.99.0.1" in text for text in logs), logs
        assert runtime.logs_path("web").is_file()

        # httpd as pid 1 ignores SIGTERM: stop escalates to SIGKILL
        t = time.monotonic()
        assert runtime.stop("web", timeout=0.5) == 128 + signal.SIGKILL
        assert time.monotonic() - t < 5
        assert runtime.state("web").status == "stopped"
        runtime.delete("web")
        _assert_gone(runtime, "web")
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)


def test_exit_status_and_logs(runtime: OciRuntime, pulled: tuple[ImageStore, ImageInfo]) -> None:
    _, image = pulled
    _run(runtime, image, "ex3", "sh", "-c", "echo out; echo err >&2; exit 3")
    st = runtime.wait("ex3", timeout=10)
    assert st.status == "stopped" and st.exit_code == 3 and st.finished_at
    lines = [(line.stream, line.text) for line in runtime.read_logs("ex3")]
    assert ("stdout", "out") in lines and ("stderr", "err") in lines
    assert runtime.stop("ex3") == 3  # stopping a stopped container reports its status
    runtime.delete("ex3")
    _assert_gone(runtime, "ex3")


def test_survives_death_of_starter(
    runtime: OciRuntime, pulled: tuple[ImageStore, ImageInfo]
) -> None:
    """Start from a short-lived process; a fresh OciRuntime later sees it run and exit."""
    store, image = pulled
    proc = ProcessSpec.from_image(
        image, command=["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 3"]
    )
    runtime.create_bundle("surv", image, proc, "surv", None, HOSTS, RESOLV)
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from container_runtime.runtime.images import ImageStore
        from container_runtime.runtime.oci import OciRuntime
        rt = OciRuntime(Path({str(runtime.containers_dir)!r}), Path({str(runtime.run_dir)!r}),
                        ImageStore(Path({str(store.root)!r})))
        print(rt.start("surv"))
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.strip())

    fresh = OciRuntime(runtime.containers_dir, runtime.run_dir, store)
    st = fresh.state("surv")
    assert st.status == "running" and st.pid == pid
    # conmon is the container's parent, and it is not a child of this test process
    ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert "conmon" in Path(f"/proc/{ppid}/cmdline").read_text()
    conmon_parent = int(Path(f"/proc/{ppid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert conmon_parent != os.getpid()

    assert fresh.exec("surv", ["touch", "/tmp/go"]).returncode == 0
    st = fresh.wait("surv", timeout=10)
    assert (st.status, st.exit_code) == ("stopped", 3)
    # and a third view, after the fact, still knows the exit status
    assert OciRuntime(runtime.containers_dir, runtime.run_dir, store).state("surv").exit_code == 3
    fresh.delete("surv")
    _assert_gone(runtime, "surv")


def test_kill_delete_force_and_restart(
    runtime: OciRuntime, pulled: tuple[ImageStore, ImageInfo]
) -> None:
    _, image = pulled
    _run(runtime, image, "k1", "sleep", "1000")
    assert runtime.state("k1").status == "running"
    with pytest.raises(errors.Conflict, match="running"):
        runtime.start("k1")
    with pytest.raises(errors.Conflict, match="running"):
        runtime.delete("k1")
    runtime.kill("k1", signal.SIGKILL)
    st = runtime.wait("k1", timeout=5)
    assert (st.status, st.exit_code) == ("stopped", 137)
    with pytest.raises(errors.Conflict, match="not running"):
        runtime.kill("k1", signal.SIGTERM)

    # a stopped container can be started again (same bundle and writable layer)
    pid = runtime.start("k1")
    assert runtime.state("k1").status == "running" and runtime.state("k1").pid == pid

    runtime.delete("k1", force=True)
    _assert_gone(runtime, "k1")
    with pytest.raises(errors.NotFound):
        runtime.state("k1")
    with pytest.raises(errors.NotFound):
        runtime.delete("k1")


def test_sigterm_stop(runtime: OciRuntime, pulled: tuple[ImageStore, ImageInfo]) -> None:
    _, image = pulled
    _run(runtime, image, "t1", "sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.05; done")
    time.sleep(0.1)
    assert runtime.stop("t1", timeout=5) == 42
    runtime.delete("t1")
    _assert_gone(runtime, "t1")


def test_writable_layer_is_private(
    runtime: OciRuntime, pulled: tuple[ImageStore, ImageInfo]
) -> None:
    store, image = pulled
    _run(runtime, image, "w1", "sh", "-c", "echo changed > /www/index.html; rm /bin/wget")
    assert runtime.wait("w1", 5).exit_code == 0
    _run(runtime, image, "w2", "cat", "/www/index.html")
    assert runtime.wait("w2", 5).exit_code == 0
    assert [line.text for line in runtime.read_logs("w2")] == ["hello from busybox"]
    assert (store.rootfs(image) / "bin" / "wget").exists()
    for cid in ("w1", "w2"):
        runtime.delete(cid)
        _assert_gone(runtime, cid)


def test_bad_input(runtime: OciRuntime, pulled: tuple[ImageStore, ImageInfo]) -> None:
    _, image = pulled
    with pytest.raises(errors.InvalidArgument):
        ProcessSpec(args=())
    with pytest.raises(errors.InvalidArgument):
        ProcessSpec(args=("sh",), env=("NOEQUALS",))
    with pytest.raises(errors.InvalidArgument):
        ProcessSpec(args=("sh",), cwd="relative")
    proc = ProcessSpec.from_image(image)
    for bad_id in ("", "../x", "-rf", "a/b", "x" * 200):
        with pytest.raises(errors.InvalidArgument):
            runtime.create_bundle(bad_id, image, proc, "h", None, "", "")
    with pytest.raises(errors.InvalidArgument):
        runtime.create_bundle("ok", image, proc, "bad host!", None, "", "")
    with pytest.raises(errors.InvalidArgument):
        runtime.create_bundle("ok", image, proc, "h", "relative/ns", "", "")
    assert runtime.list_ids() == []
    with pytest.raises(errors.NotFound):
        runtime.start("nope")

    # a command that does not exist: a clear error, no runc state, cleanable
    proc = ProcessSpec(args=("/no/such/binary",), env=(), cwd="/")
    runtime.create_bundle("bad", image, proc, "bad", None, "", "")
    want = r"^starting container bad failed: runc create failed: .*no such file"
    with pytest.raises(errors.ContainerError, match=want):
        runtime.start("bad")
    assert "bad" not in _runc_ids(runtime)
    assert runtime.state("bad").status != "running"
    runtime.delete("bad")
    _assert_gone(runtime, "bad")

    # duplicate id
    runtime.create_bundle("dup", image, ProcessSpec.from_image(image), "dup", None, "", "")
    with pytest.raises(errors.Conflict):
        runtime.create_bundle("dup", image, ProcessSpec.from_image(image), "dup", None, "", "")
    runtime.delete("dup")
    _assert_gone(runtime, "dup")


def test_exec_argv_is_plain_argv(runtime: OciRuntime) -> None:
    argv = runtime.exec_argv("c1", ["sh", "-c", "echo $HOME; id"], tty=True, env=["A=b c"])
    assert argv[:3] == [RUNC, "--root", str(runtime.runc_root)]
    assert argv[-4:] == ["c1", "sh", "-c", "echo $HOME; id"]
    assert "--tty" in argv and "A=b c" in argv
    json.dumps(argv)
