"""Who may use the sockets: root, and members (primary or supplementary) of the
configured group for the API; root only for the network helper.  Refusals are one
`Error:` line."""

from __future__ import annotations

import grp
import os
import stat

from support.instance import Instance, Result, assert_refused

PROBE = (
    "import sys\n"
    "from container_runtime.client import UnixClient\n"
    "from container_runtime.errors import ContainerError\n"
    "try:\n"
    "    print(UnixClient(sys.argv[1]).request('GET', sys.argv[2]))\n"
    "except ContainerError as exc:\n"
    "    print('Error: ' + exc.message, file=sys.stderr)\n"
    "    sys.exit(1)\n"
)


def unused_gid() -> int:
    """A throwaway group: no entry in /etc/group is needed (nor made) for a gid."""
    used = {g.gr_gid for g in grp.getgrall()}
    return next(gid for gid in range(42000, 60000) if gid not in used)


CLI = ["-m", "container_runtime.cli.main"]


def as_nobody(inst: Instance, groups: int | None, *python_args: str) -> Result:
    return inst.as_user(list(python_args), groups=groups, check=False)


def test_supplementary_group_members_may_use_the_api_and_others_are_refused(
    stopped_instance: Instance,
) -> None:
    inst = stopped_instance
    gid = unused_gid()
    inst.env["CONTAINER_GROUP"] = str(gid)
    inst.start()
    api = inst.run_dir / "apiserver.sock"
    info = api.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, gid, 0o660)

    # uid 65534 with the group only as a supplementary one (its primary gid is 65534)
    member = as_nobody(inst, gid, *CLI, "network", "list")
    assert member.returncode == 0, member.stderr
    assert "default" in member.stdout

    # the same user without the group: the socket's mode refuses the connection
    assert_refused(as_nobody(inst, None, *CLI, "network", "list"), "permission denied")

    # and the server refuses by itself too, when the file mode would let anyone in
    os.chmod(api, 0o666)
    try:
        outsider = as_nobody(inst, None, *CLI, "network", "list")
    finally:
        os.chmod(api, 0o660)
    assert_refused(outsider, "permission denied", "container group")


def test_helper_socket_is_root_only(stopped_instance: Instance) -> None:
    inst = stopped_instance
    gid = unused_gid()
    inst.env["CONTAINER_GROUP"] = str(gid)
    inst.start()
    helper = inst.run_dir / "network-bridge.sock"
    info = helper.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
    for groups in (None, gid):  # not even members of the API's group
        probe = as_nobody(inst, groups, "-c", PROBE, str(helper), "/status")
        assert_refused(probe, "permission denied")
    os.chmod(helper, 0o666)  # the helper checks the peer itself as well
    try:
        probe = as_nobody(inst, gid, "-c", PROBE, str(helper), "/status")
    finally:
        os.chmod(helper, 0o600)
    assert_refused(probe, "permission denied")
    assert inst.cli("network", "list").returncode == 0
