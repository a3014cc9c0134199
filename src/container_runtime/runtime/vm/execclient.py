"""`container exec` into a VM container: what the CLI runs (the argv VmRuntime.exec_argv
returns). Sends the quoted command to the VM's shim (shim.sock), which runs it in the guest
through the init's control port, and copies its stdout/stderr here; exits with its status.
"""

from __future__ import annotations

import base64
import socket
import sys


def shim_call(path: str, line: str, timeout: float | None = None) -> str:
    """One request to a VM's shim (shim.py) and its one-line reply; OSError if it is gone."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace").rstrip("\n")


def main() -> int:
    path, script = sys.argv[1], sys.argv[2]
    try:
        reply = shim_call(path, f"exec {script}")
    except OSError as exc:
        print(f"Error: the VM is not running ({exc.strerror or exc})", file=sys.stderr)
        return 126
    parts = reply.split(" ")
    if len(parts) != 3 or not parts[0].isdigit():
        print("Error: the VM stopped during the exec", file=sys.stderr)
        return 126
    sys.stdout.buffer.write(base64.b64decode(parts[1]))
    sys.stdout.flush()
    sys.stderr.buffer.write(base64.b64decode(parts[2]))
    return int(parts[0])


if __name__ == "__main__":
    sys.exit(main())
