"""What a container system holds, read from the API server's database, each plugin's
helper (its attachments, through the protocol: a plugin's own state is private), the
kernel and /proc.

`snapshot` is the before/after picture for "a refusal changes nothing"; `consistency`
counts the crash-safety invariants (all must be zero) for the chaos test and bench.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from .instance import Instance

# The API server's tables whose rows are the system's state (not dns_changes, a change
# log). The plugins' part is what their helpers list (published ports show in the nft
# ruleset): by the round-robin policy (docs/NETWORKING.md) an allocation refused after it
# was made counts as a release, so the allocator's cursor is not compared.
STATE_TABLES = ("networks", "endpoints", "dns_domains", "containers")


def plugin_attachments(inst: Instance) -> list[tuple[str, str, str, str, str | None]]:
    """(network, owner, address, mac, netns) of every attachment each network's helper
    holds, asked over its socket (GET /networks/{name}/attachments)."""
    from container_runtime.client import UnixClient

    db = sqlite3.connect(f"file:{inst.root / 'state.db'}?mode=ro", uri=True, timeout=10)
    try:
        nets = [
            (n, json.loads(c).get("plugin", "bridge"))
            for n, c in db.execute("SELECT name, config FROM networks")
        ]
    finally:
        db.close()
    found = []
    for name, plugin in nets:
        client = UnixClient(inst.run_dir / f"network-{plugin}.sock", timeout=30)
        try:
            for a in client.request("GET", f"/networks/{name}/attachments"):
                address = str(ipaddress.ip_interface(a["address"]).ip)
                found.append((name, a["owner"], address, a["macAddress"], a.get("netns")))
        finally:
            client.close()
    return sorted(found, key=repr)


def state_rows(inst: Instance) -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(f"file:{inst.root / 'state.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = {
            t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in STATE_TABLES
        }
    finally:
        db.close()
    return {**rows, "attachments": list(plugin_attachments(inst))}


def link_details(inst: Instance) -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    """Every link of the system's namespace: name, MAC, master, kind and addresses."""
    out = inst.sh("ip", "-j", "-d", "addr").json()
    return sorted(
        (
            link["ifname"],
            link.get("address", ""),
            str(link.get("master", "")),
            link.get("linkinfo", {}).get("info_kind", ""),
            tuple(sorted(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []))),
        )
        for link in out
    )


def mounts_under(base: Path) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    return sorted(p for p in points if p.startswith(str(base) + "/"))


def snapshot(inst: Instance) -> dict[str, Any]:
    """Networks, links, nft ruleset, state rows, mounts and netns files of one system."""
    netns_dir = inst.run_dir / "netns"
    return {
        "rows": state_rows(inst),
        "links": link_details(inst),
        "nft": inst.sh("nft", "list", "ruleset").stdout,
        "mounts": mounts_under(inst.base),
        "netns": sorted(os.listdir(netns_dir)) if netns_dir.exists() else [],
    }


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [key for key in before if before[key] != after.get(key)]


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def conmon_pids(inst: Instance) -> list[int]:
    """conmon processes started for this instance (their command line names its run dir
    or root)."""
    found = []
    marks = (str(inst.run_dir).encode(), str(inst.root).encode())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmd.split(b"\0", 1)[0].endswith(b"conmon") and any(m in cmd for m in marks):
            found.append(int(entry.name))
    return found


def consistency(inst: Instance) -> dict[str, int]:
    """The chaos invariants, each a count that must be zero."""
    db = sqlite3.connect(f"file:{inst.root / 'state.db'}?mode=ro", uri=True, timeout=10)
    try:
        nets = {
            n: (b, json.loads(c))
            for n, b, c in db.execute("SELECT name, link, config FROM networks")
        }
        containers = db.execute("SELECT id, name, state, pid FROM containers").fetchall()
    finally:
        db.close()
    atts = plugin_attachments(inst)
    ids = {cid for cid, _, _, _ in containers}
    names = {name for _, name, _, _ in containers}
    running = {cid for cid, _, state, pid in containers if state == "running" and _alive(pid)}

    addresses = Counter((n, a) for n, _, a, _, _ in atts)
    macs = Counter((n, m) for n, _, _, m, _ in atts)
    # Owners: a running container (a stopped one releases its addresses), a bare
    # attachment whose namespace still exists, or a bare allocation without a namespace.
    no_owner = 0
    for _, owner, _, _, netns in atts:
        if owner in ids or owner in names:
            by_name = {name: cid for cid, name, _, _ in containers}
            if by_name.get(owner, owner) not in running:
                no_owner += 1
            continue
        if netns and not Path(netns if netns.startswith("/") else f"/run/netns/{netns}").exists():
            no_owner += 1
    stale_running = sum(
        1 for _, _, state, pid in containers if state == "running" and not _alive(pid)
    )

    links = inst.sh("ip", "-j", "-d", "link").json()
    bridges = {b for b, _ in nets.values() if b}
    ours = [
        link for link in links if link["ifname"].startswith("ctr-") or link.get("master") in bridges
    ]
    # A bridge must belong to a network; a port of ours must belong to an attachment (its
    # peer is in the attachment's namespace: count ports beyond the attachments instead).
    orphan_bridges = sum(
        1
        for link in ours
        if link.get("linkinfo", {}).get("info_kind") == "bridge" and link["ifname"] not in bridges
    )
    ports = [link for link in ours if link.get("master") in bridges]
    with_iface = sum(1 for _, owner, _, _, netns in atts if netns or owner in running)
    orphan_ports = max(0, len(ports) - with_iface)

    nft = inst.sh("nft", "-j", "list", "ruleset").json()
    live_subnets = {str(ipaddress.ip_network(c["ipv4Subnet"])) for _, c in nets.values()}
    stale_elements = 0
    for item in nft.get("nftables", []):
        s = item.get("set") or item.get("map")
        if not s or s.get("table") != "container-bridge":
            continue
        for elem in s.get("elem", []):
            text = json.dumps(elem)
            if any(b in text for b in ("ctr-",)) and not any(b in text for b in bridges):
                stale_elements += 1
            elif "prefix" in text and not any(sub.split("/")[0] in text for sub in live_subnets):
                stale_elements += 1

    # The run dir's netns directory is itself a mount point while the system runs.
    mounts = [m for m in mounts_under(inst.base) if m != str(inst.run_dir / "netns")]
    live_mounts = [m for m in mounts if any(cid in m for cid in running)]
    leftover_mounts = len(mounts) - len(live_mounts)
    conmons = conmon_pids(inst)
    running_count = sum(1 for _, _, state, pid in containers if state == "running" and _alive(pid))
    return {
        "duplicate_addresses": sum(c - 1 for c in addresses.values() if c > 1),
        "duplicate_macs": sum(c - 1 for c in macs.values() if c > 1),
        "addresses_without_owner": no_owner,
        "orphan_links": orphan_bridges + orphan_ports,
        "stale_nft_elements": stale_elements,
        "running_without_process": stale_running,
        "leftover_mounts": leftover_mounts,
        "leftover_conmon": max(0, len(conmons) - running_count),
    }
