"""The per-VM monitor (what conmon is for a namespace container): `python -m
container_runtime.runtime.vm.shim VMDIR RUNDIR`, started by runtime/vm/machine.py in its
own session, so a VM outlives the API server.

It runs QEMU (PDEATHSIG: QEMU never outlives it), copies the guest's stdout/stderr ports
into VMDIR/ctr.log in conmon's k8s-file format (`container logs` reads it unchanged),
records the init's timing marks (VMDIR/marks) and the process's exit status
(VMDIR/exit), and serves RUNDIR/shim.sock, one request per connection:

    signal N        forwarded to the guest's init (it signals the process)
    exec B64SCRIPT  run a script in the guest; the reply is `RC B64OUT B64ERR`
    kill            SIGKILL QEMU

When QEMU ends without the guest having reported a status (it was killed), the status is
128 + QEMU's signal. Then it removes RUNDIR (sockets) and exits.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

PR_SET_PDEATHSIG = 1
CONNECT_TIMEOUT = 10.0


def _pdeathsig() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


class Shim:
    def __init__(self, vmdir: Path, rundir: Path) -> None:
        self.vmdir = vmdir
        self.rundir = rundir
        self.spec = json.loads((vmdir / "vm.json").read_text())
        self.log = open(vmdir / "ctr.log", "ab", buffering=0)
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.ctl_buf = b""
        self.sel = selectors.DefaultSelector()
        self.status: int | None = None
        self.execs: dict[str, socket.socket] = {}
        self.next_exec = 0
        self.marks: dict[str, float] = {"shim": time.time()}

    # -- output -----------------------------------------------------------------------

    def _log(self, stream: str, data: bytes) -> None:
        buf = self.partial[stream] + data
        *lines, rest = buf.split(b"\n")
        out = b"".join(f"{_now()} {stream} F ".encode() + line + b"\n" for line in lines)
        if len(rest) > 8192:  # a long line without a newline: flush it as a partial one
            out += f"{_now()} {stream} P ".encode() + rest + b"\n"
            rest = b""
        self.partial[stream] = rest
        if out:
            self.log.write(out)

    def _flush_partial(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self.log.write(f"{_now()} {stream} F ".encode() + rest + b"\n")
                self.partial[stream] = b""

    def _ctl_line(self, line: str) -> None:
        parts = line.split(" ")
        if parts[0] == "mark" and len(parts) == 3:
            self.marks[parts[1]] = time.time()
            self.marks[f"{parts[1]}Uptime"] = float(parts[2])
            _write_atomic(self.vmdir / "marks", json.dumps(self.marks))
        elif parts[0] == "exit" and len(parts) >= 2 and parts[1].isdigit():
            self.status = int(parts[1])
        elif parts[0] == "exec-result" and len(parts) == 5:
            client = self.execs.pop(parts[1], None)
            if client is not None:
                try:
                    client.sendall(f"{parts[2]} {parts[3]} {parts[4]}\n".encode())
                except OSError:
                    pass
                client.close()

    # -- requests ---------------------------------------------------------------------

    def _request(self, client: socket.socket) -> None:
        client.settimeout(5)
        data = b""
        try:
            while not data.endswith(b"\n") and len(data) < (1 << 22):
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            client.close()
            return
        words = data.decode(errors="replace").split()
        if words[:1] == ["signal"] and len(words) == 2 and words[1].isdigit():
            self.ctl.sendall(f"signal {int(words[1])}\n".encode())
            client.sendall(b"ok\n")
            client.close()
        elif words[:1] == ["exec"] and len(words) == 2:
            self.next_exec += 1
            ident = str(self.next_exec)
            self.execs[ident] = client
            self.ctl.sendall(f"exec {ident} {words[1]}\n".encode())
        elif words[:1] == ["kill"]:
            self.qemu.kill()
            client.sendall(b"ok\n")
            client.close()
        else:
            client.sendall(b"error unknown request\n")
            client.close()

    # -- main loop --------------------------------------------------------------------

    def _connect(self, name: str) -> socket.socket:
        path = str(self.rundir / f"{name}.sock")
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return s
            except OSError:
                s.close()
                if self.qemu.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def run(self) -> int:
        qemu_log = open(self.vmdir / "qemu.log", "ab")
        self.qemu = subprocess.Popen(
            self.spec["argv"],
            stdin=subprocess.DEVNULL,
            stdout=qemu_log,
            stderr=qemu_log,
            preexec_fn=_pdeathsig,
        )
        _write_atomic(self.vmdir / "qemu.pid", f"{self.qemu.pid}\n")
        try:
            self.ctl = self._connect("ctl")
            self.marks["qemu"] = time.time()  # QEMU is up: its chardevs listen
            streams = {self._connect(n): n for n in ("stdout", "stderr")}
        except OSError:
            return self._finish()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.rundir / "shim.sock"))
        os.chmod(self.rundir / "shim.sock", 0o600)
        server.listen(16)
        self.sel.register(server, selectors.EVENT_READ, "server")
        self.sel.register(self.ctl, selectors.EVENT_READ, "ctl")
        for s, name in streams.items():
            self.sel.register(s, selectors.EVENT_READ, name)
        open_streams = 3
        while open_streams and self.qemu.poll() is None:
            for key, _ in self.sel.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data == "server":
                    client, _ = sock.accept()
                    self._request(client)
                    continue
                data = sock.recv(65536)
                if not data:
                    self.sel.unregister(sock)
                    open_streams -= 1
                elif key.data == "ctl":
                    self.ctl_buf += data
                    *lines, self.ctl_buf = self.ctl_buf.split(b"\n")
                    for line in lines:
                        self._ctl_line(line.decode(errors="replace"))
                else:
                    self._log(str(key.data), data)
        return self._finish()

    def _finish(self) -> int:
        try:
            code = self.qemu.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.qemu.kill()
            code = self.qemu.wait()
        self._flush_partial()
        status = self.status
        if status is None:
            status = 128 - code if code < 0 else 255  # QEMU killed: 128 + its signal
        _write_atomic(self.vmdir / "exit", f"{status}\n")
        for client in self.execs.values():
            client.close()
        for p in self.rundir.glob("*.sock"):
            p.unlink(missing_ok=True)
        try:
            self.rundir.rmdir()
        except OSError:
            pass
        return 0


def main() -> int:
    if os.fork() > 0:  # daemonise: the caller reaps this parent at once, init the shim
        os._exit(0)
    os.setsid()
    vmdir, rundir = Path(sys.argv[1]), Path(sys.argv[2])
    _write_atomic(vmdir / "shim.pid", f"{os.getpid()}\n")
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only `kill` (or SIGKILL) ends a VM
    return Shim(vmdir, rundir).run()


if __name__ == "__main__":
    sys.exit(main())
