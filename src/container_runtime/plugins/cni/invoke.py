"""Running CNI plugin binaries as the CNI spec says: the command and attachment in
CNI_* environment variables, the network configuration on stdin, the result (or the
error object: code, msg, details) on stdout. A configuration list (conflist) runs its
plugins in order for ADD, CHECK, GC and STATUS and in reverse for DEL, each handed the
previous result (`prevResult`) and its `runtimeConfig` for the capabilities it declares.

Nothing here reaches a shell: binaries are found on the CNI path by their `type`, which
is checked to be a plain file name first.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ContainerError, InvalidArgument

TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a file name, never a path
PLUGIN_TIMEOUT = 60.0  # s: a CNI plugin that hangs longer is killed and its call fails
# The plugins run with the spec's variables only, plus a PATH for the tools they run
# (iptables for portmap and firewall).
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


class CniError(ContainerError):
    """A CNI plugin's error object (or its failure to give one), as one line."""

    kind = "invalid_argument"


def version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        raise InvalidArgument(f"invalid cniVersion {text!r}") from None


@dataclass(frozen=True)
class Attachment:
    """Who an invocation is for: CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME (and CNI_ARGS)."""

    container_id: str
    netns: str
    ifname: str
    args: str = ""


class Invoker:
    """Runs one network's conflist on a CNI path (a list of directories)."""

    def __init__(self, path: list[str]) -> None:
        self.path = path

    def find(self, kind: str) -> Path:
        if not TYPE_RE.match(kind):
            raise InvalidArgument(f"invalid CNI plugin type {kind!r}")
        for directory in self.path:
            candidate = Path(directory) / kind
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        raise InvalidArgument(
            f"CNI plugin {kind!r} not found in {':'.join(self.path)} (set the option"
            " cni-path or [plugins] cni_path in config.toml)"
        )

    def run(
        self, command: str, kind: str, conf: dict[str, Any], att: Attachment | None
    ) -> dict[str, Any]:
        """One plugin invocation; its result object ({} when it prints nothing)."""
        env = {**BASE_ENV, "CNI_COMMAND": command, "CNI_PATH": ":".join(self.path)}
        if att is not None:
            env.update(
                CNI_CONTAINERID=att.container_id,
                CNI_NETNS=att.netns,
                CNI_IFNAME=att.ifname,
                CNI_ARGS=att.args,
            )
        binary = self.find(kind)
        try:
            proc = subprocess.run(
                [str(binary)],
                input=json.dumps(conf).encode(),
                env=env,
                capture_output=True,
                timeout=PLUGIN_TIMEOUT,
                # no preexec_fn (PDEATHSIG): it costs a full fork, ~10-20 ms a call here;
                # a plugin a killed helper left running is ended by kill_stragglers
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CniError(
                f"CNI plugin {kind} {command} timed out after {PLUGIN_TIMEOUT:.0f} s"
            ) from None
        except OSError as exc:
            raise CniError(f"CNI plugin {kind} {command} cannot run: {exc.strerror}") from None
        out = proc.stdout.strip()
        try:
            reply = json.loads(out) if out else {}
        except ValueError:
            reply = None
        if proc.returncode != 0:
            raise CniError(_error_line(kind, command, reply, proc.stderr))
        if not isinstance(reply, dict):
            raise CniError(f"CNI plugin {kind} {command} printed no JSON object")
        return reply

    # -- a configuration list --------------------------------------------------------

    def add(
        self,
        conflist: dict[str, Any],
        att: Attachment,
        runtime: dict[str, Any],
        prev: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """ADD of each plugin in order, each given the previous one's result (`prev` for
        the first: a part of a list run after the rest, as portmap for `-p`)."""
        result = prev
        for plugin in conflist["plugins"]:
            conf = _one(conflist, plugin, result, runtime)
            result = self.run("ADD", plugin["type"], conf, att)
        return result or {}

    def delete(
        self,
        conflist: dict[str, Any],
        att: Attachment,
        result: dict[str, Any] | None,
        runtime: dict[str, Any],
    ) -> None:
        """DEL in reverse order; every plugin is asked even if one fails (the first error
        is raised once all were asked, so one broken plugin leaks nothing of the others)."""
        first: CniError | None = None
        for plugin in reversed(conflist["plugins"]):
            try:
                self.run("DEL", plugin["type"], _one(conflist, plugin, result, runtime), att)
            except CniError as exc:
                first = first or exc
        if first is not None:
            raise first

    def check(
        self,
        conflist: dict[str, Any],
        att: Attachment,
        result: dict[str, Any],
        runtime: dict[str, Any],
    ) -> None:
        for plugin in conflist["plugins"]:
            self.run("CHECK", plugin["type"], _one(conflist, plugin, result, runtime), att)

    def gc(self, conflist: dict[str, Any], valid: list[dict[str, str]]) -> None:
        """GC (CNI 1.1): each plugin frees what none of `valid` attachments holds."""
        for plugin in conflist["plugins"]:
            conf = {**_one(conflist, plugin, None, {}), "cni.dev/valid-attachments": valid}
            self.run("GC", plugin["type"], conf, None)

    def status(self, conflist: dict[str, Any]) -> None:
        """STATUS (CNI 1.1): every plugin ready to ADD, else its error."""
        for plugin in conflist["plugins"]:
            self.run("STATUS", plugin["type"], _one(conflist, plugin, None, {}), None)

    def versions(self, kind: str) -> list[str]:
        """VERSION: the spec versions the plugin supports."""
        reply = self.run("VERSION", kind, {"cniVersion": "1.0.0"}, None)
        supported = reply.get("supportedVersions")
        if not isinstance(supported, list):
            raise CniError(f"CNI plugin {kind} VERSION gave no supportedVersions")
        return [str(v) for v in supported]


def _one(
    conflist: dict[str, Any],
    plugin: dict[str, Any],
    prev: dict[str, Any] | None,
    runtime: dict[str, Any],
) -> dict[str, Any]:
    """One plugin's stdin: its object with the list's name and version, the previous
    result and the runtimeConfig entries of the capabilities it declares (as libcni)."""
    conf = {**plugin, "name": conflist["name"], "cniVersion": conflist["cniVersion"]}
    conf.pop("capabilities", None)
    wanted = {k for k, on in (plugin.get("capabilities") or {}).items() if on}
    given = {k: v for k, v in runtime.items() if k in wanted}
    if given:
        conf["runtimeConfig"] = given
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def _error_line(kind: str, command: str, reply: Any, stderr: bytes) -> str:
    """`CNI plugin bridge ADD failed: MSG (DETAILS)`, on one line."""
    if isinstance(reply, dict) and reply.get("msg"):
        text = str(reply["msg"])
        if reply.get("details"):
            text += f" ({reply['details']})"
    else:
        text = stderr.decode(errors="replace").strip() or "no error message"
    text = " ".join(text.split())[:400]
    return f"CNI plugin {kind} {command} failed: {text}"


def kill_stragglers(container_id: str, ifname: str, wait: float = 5.0) -> int:
    """End the CNI plugin processes still working for an attachment (left running by a
    helper that was killed during its ADD), so the DEL that follows is not raced; found by
    their CNI environment. Returns how many there were."""
    wanted = {f"CNI_CONTAINERID={container_id}".encode(), f"CNI_IFNAME={ifname}".encode()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if wanted <= environ:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                found.append(entry)
            except ProcessLookupError:
                continue
    deadline = time.monotonic() + wait
    while any(p.exists() for p in found) and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(found)
