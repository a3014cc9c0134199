"""The exit status of a container whose conmon is slow to record it (a loaded machine)."""

from __future__ import annotations

import os
import signal
import threading
import time

from container_runtime.runtime.images import ImageInfo, ImageStore
from container_runtime.runtime.oci import OciRuntime, ProcessSpec

HOSTS = "127.0.0.1\tlocalhost\n"


def test_state_waits_for_a_slow_conmon_to_write_the_exit_status(
    runtime: OciRuntime, pulled: tuple[ImageStore, ImageInfo]
) -> None:
    _, image = pulled
    cid = "slowconmon"
    proc = ProcessSpec.from_image(image, command=["sh", "-c", "sleep 0.5; exit 7"])
    runtime.create_bundle(cid, image, proc, cid, None, HOSTS, "")
    pid = runtime.start(cid)
    conmon = int((runtime.bundle_path(cid) / "conmon.pid").read_text())
    os.kill(conmon, signal.SIGSTOP)  # conmon cannot reap nor write exits/<id>
    try:
        deadline = time.monotonic() + 10
        while _process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        # the process is a zombie now; conmon "comes back" 1.5 s later
        threading.Timer(1.5, os.kill, (conmon, signal.SIGCONT)).start()
        st = runtime.state(cid)
    finally:
        os.kill(conmon, signal.SIGCONT)
    assert (st.status, st.exit_code) == ("stopped", 7)


def _process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
