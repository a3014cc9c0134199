"""The embedded DNS server through the real daemons (issue 5): names from `network
attach`, real queries (dnspython, busybox nslookup, dig) from member namespaces and
from the host, isolation, forwarding, `system dns` (with a stand-in resolvectl, and
through a real systemd-resolved), and supervision."""

from __future__ import annotations

import ipaddress
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.instance import Instance, NetnsPool
from support.resolved import RESOLVECTL, Resolved

from .helpers import Upstream, ask, ask_many, attach, busybox_nslookup, dig, wait_for

GW_A = "10.91.1.1"
GW_B = "10.91.2.1"


def _ptr(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer + "."


def _networks(inst: Instance) -> None:
    inst.cli("network", "create", "neta", "--subnet", "10.91.1.0/24")
    inst.cli("network", "create", "netb", "--subnet", "10.91.2.0/24")


def test_names_isolation_and_release(instance: Instance, netns_pool: NetnsPool) -> None:
    inst, pool = instance, netns_pool
    _networks(inst)
    a1, a1_ip = attach(inst, pool, "neta", "alpha")
    b1, b1_ip = attach(inst, pool, "netb", "bravo")
    ab, ab_ip_a = attach(inst, pool, "neta", "both")
    _, ab_ip_b = attach(inst, pool, "netb", "both", ab, "--interface", "eth1", "--secondary")

    # From A's member: names on A (plain and .test, any case), PTR, empty AAAA; B is hidden.
    got = ask_many(
        a1,
        [
            ("alpha", "A", GW_A, 53, False),
            ("both.test", "A", GW_A, 53, False),
            ("BOTH.Test", "A", GW_A, 53, True),
            (_ptr(ab_ip_a), "PTR", GW_A, 53, False),
            ("alpha.test", "AAAA", GW_A, 53, False),
            ("bravo", "A", GW_A, 53, False),
            ("bravo.test", "A", GW_A, 53, False),
            (_ptr(b1_ip), "PTR", GW_A, 53, False),
        ],
    )
    assert got[0] == {"rcode": "NOERROR", "answers": [a1_ip], "aa": True}
    assert got[1]["answers"] == [ab_ip_a]  # only the address on the asker's network
    assert got[2]["answers"] == [ab_ip_a]  # TCP, mixed case
    assert got[3]["answers"] == ["both.test."]
    assert got[4] == {"rcode": "NOERROR", "answers": [], "aa": True}
    assert [g["rcode"] for g in got[5:]] == ["NXDOMAIN"] * 3

    # busybox nslookup (the libc-less client containers use) inside the namespaces.
    found, out = busybox_nslookup(pool, a1, "both.test", GW_A)
    assert found and ab_ip_a in out, out
    found, out = busybox_nslookup(pool, a1, "bravo", GW_A)
    assert not found and "NXDOMAIN" in out, out

    # A member of both networks sees both, through either gateway.
    got = ask_many(
        ab,
        [
            ("bravo", "A", GW_A, 53, False),
            ("alpha.test", "A", GW_B, 53, False),
            ("bravo.test", "A", GW_B, 53, False),
        ],
    )
    assert [g["answers"] for g in got] == [[b1_ip], [a1_ip], [b1_ip]]
    found, out = busybox_nslookup(pool, ab, "bravo.test", GW_A)
    assert found and b1_ip in out, out
    # B's member sees only B.
    assert ask(b1, "alpha", server=GW_B)["rcode"] == "NXDOMAIN"
    assert ask(b1, "both", server=GW_B)["answers"] == [ab_ip_b]

    # The host (127.0.0.1:2053) sees every name.
    assert dig(inst, "alpha.test") == ("NOERROR", [a1_ip])
    assert dig(inst, "bravo") == ("NOERROR", [b1_ip])
    assert dig(inst, "both.test") == ("NOERROR", sorted([ab_ip_a, ab_ip_b]))
    assert dig(inst, "-x", b1_ip) == ("NOERROR", ["bravo.test."])
    assert dig(inst, "alpha.test", "+tcp") == ("NOERROR", [a1_ip])
    assert dig(inst, "nobody.test")[0] == "NXDOMAIN"

    # Gone the moment the attachment is released (no waiting for a poll).
    inst.cli("network", "detach", "netb", "--name", "bravo")
    assert ask(ab, "bravo", server=GW_B)["rcode"] == "NXDOMAIN"
    assert dig(inst, "bravo.test")[0] == "NXDOMAIN"
    assert ask(ab, "alpha", server=GW_B)["answers"] == [a1_ip]
    # ... and a new attachment answers at once.
    c1, c1_ip = attach(inst, pool, "netb", "charlie")
    assert ask(ab, "charlie.test", server=GW_B)["answers"] == [c1_ip]
    assert ask(c1, "alpha", server=GW_B)["rcode"] == "NXDOMAIN"


def test_forwarding_with_a_dead_upstream_first(
    stopped_instance: Instance, netns_pool: NetnsPool
) -> None:
    inst, pool = stopped_instance, netns_pool
    upstream = Upstream(inst, pool)
    try:
        inst.env["CONTAINER_DNS_UPSTREAMS"] = f"{Upstream.DEAD} {Upstream.LIVE}"
        inst.start()
        _networks(inst)
        a1, _ = attach(inst, pool, "neta", "alpha")
        got = ask_many(
            a1,
            [
                ("www.example.com", "A", GW_A, 53, False),  # dead one times out (1 s), then live
                ("www.example.com", "A", GW_A, 53, True),
                ("big.example.com", "A", GW_A, 53, False),  # truncated upstream: retried on TCP
                ("nothing.invalid", "A", GW_A, 53, False),
            ],
        )
        assert got[0]["rcode"] == "NOERROR" and got[0]["answers"] == ["203.0.113.7"]
        assert got[1]["answers"] == ["203.0.113.7"]
        # 20 records do not fit a 512-byte answer: the client gets TC and may retry on TCP.
        assert got[2]["rcode"] == "NOERROR"
        assert ask(a1, "big.example.com", server=GW_A, tcp=True)["answers"] == sorted(
            f"198.51.100.{i + 1}" for i in range(20)
        )
        assert got[3]["rcode"] == "NXDOMAIN"
        assert dig(inst, "mail.example.com") == ("NOERROR", ["203.0.113.7"])
        found, out = busybox_nslookup(pool, a1, "www.example.com", GW_A)
        assert found and "203.0.113.7" in out, out
    finally:
        upstream.stop()
    # Every upstream gone: SERVFAIL, never silence.
    assert dig(inst, "gone.example.com")[0] == "SERVFAIL"


def _stub_resolvectl(directory: Path) -> Path:
    """A stand-in `resolvectl`: logs each call; `status` fails while OFF exists, and every
    command but status fails while FAIL exists."""
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "calls.log"
    script = directory / "resolvectl"
    script.write_text(
        "#!/bin/sh\n"
        f'D="{directory}"\n'
        'if [ "$1" = status ]; then [ -e "$D/OFF" ] && exit 1; exit 0; fi\n'
        '[ -e "$D/FAIL" ] && { echo "Failed to set DNS configuration: boom" >&2; exit 1; }\n'
        'echo "$*" >> "$D/calls.log"\n'
    )
    script.chmod(0o755)
    (directory / "OFF").touch()
    log.touch()
    return log


def test_system_dns(stopped_instance: Instance, netns_pool: NetnsPool) -> None:
    inst, pool = stopped_instance, netns_pool
    stub = inst.base / "stub"
    calls = _stub_resolvectl(stub)
    resolv = inst.base / "resolv.conf"
    resolv.write_text("nameserver 10.255.255.1\n")
    inst.env["PATH"] = f"{stub}:{inst.env['PATH']}"
    inst.env["CONTAINER_DNS_RESOLV_CONF"] = str(resolv)
    inst.env["CONTAINER_DNS_UPSTREAMS"] = "10.93.0.3"  # dead: other names SERVFAIL, fast
    inst.start()
    _networks(inst)
    _, a1_ip = attach(inst, pool, "neta", "alpha")

    def refused(*args: str) -> str:
        result = inst.cli("system", "dns", *args, check=False)
        assert result.returncode != 0 and result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        return lines[0]

    def listed() -> list[str]:
        return [d["domain"] for d in inst.cli("system", "dns", "list", "--format", "json").json()]

    # Neither systemd-resolved nor a resolv.conf pointing at us: refused, nothing recorded.
    message = refused("create", "corp.example")
    assert "systemd-resolved is not running" in message and "nameserver 192.168.64.1" in message
    assert "Error: invalid DNS domain" in refused("create", "bad_domain!")
    assert "reserved" in refused("create", "in-addr.arpa")
    assert "not found" in refused("delete", "corp.example")
    assert "invalid DNS domain" in refused("delete", "a/b")
    assert listed() == []
    assert dig(inst, "alpha.corp.example")[0] == "SERVFAIL"  # not ours: forwarded

    # The host's resolver is the default gateway (where container-dns listens).
    resolv.write_text("# managed by hand\nnameserver 192.168.64.1\nnameserver 10.255.255.1\n")
    out = inst.cli("system", "dns", "create", "Corp.Example.").stdout
    assert out.strip() == (
        "dns domain corp.example created (the host's resolver 192.168.64.1 is the container"
        " DNS server)"
    )
    assert "already exists" in refused("create", "corp.example")
    assert listed() == ["corp.example"]
    table = inst.cli("system", "dns", "list").stdout.splitlines()
    assert table[0].split() == ["DOMAIN", "MECHANISM", "LINK", "SERVER"]
    assert table[1].split() == ["corp.example", "resolv.conf", "-", "192.168.64.1"]
    # Answered at once, on the host listener and, for the host, on a gateway (every network:
    # alpha is on neta, the query goes to default's gateway from the host itself).
    assert dig(inst, "alpha.corp.example") == ("NOERROR", [a1_ip])
    assert dig(inst, "ALPHA.corp.example", server="192.168.64.1", port=53) == ("NOERROR", [a1_ip])
    assert dig(inst, "alpha.test", server=GW_A, port=53) == ("NOERROR", [a1_ip])
    # Other names under a host domain are not ours: forwarded (dead upstream: SERVFAIL).
    assert dig(inst, "www.corp.example")[0] == "SERVFAIL"

    # systemd-resolved present: a route-only domain on the default bridge, gateway port 53.
    (stub / "OFF").unlink()
    bridge = inst.cli("network", "inspect", "default").json()["status"]["link"]
    assert bridge
    made = inst.cli("system", "dns", "create", "lab.internal").stdout
    assert f"systemd-resolved: ~lab.internal on {bridge} via 192.168.64.1" in made
    assert calls.read_text().splitlines() == [
        f"dns {bridge} 192.168.64.1",
        f"domain {bridge} ~lab.internal",
        f"default-route {bridge} no",
    ]
    calls.write_text("")
    inst.cli("system", "dns", "create", "dev.internal")
    assert f"domain {bridge} ~dev.internal ~lab.internal" in calls.read_text().splitlines()
    assert dig(inst, "alpha.dev.internal") == ("NOERROR", [a1_ip])

    # resolvectl fails: the refusal changes nothing (the row committed first is removed).
    (stub / "FAIL").touch()
    assert "resolvectl failed" in refused("create", "third.internal")
    assert "resolvectl" in refused("delete", "dev.internal")
    (stub / "FAIL").unlink()
    assert listed() == ["corp.example", "dev.internal", "lab.internal"]
    assert dig(inst, "alpha.third.internal")[0] == "SERVFAIL"
    assert dig(inst, "alpha.dev.internal") == ("NOERROR", [a1_ip])

    calls.write_text("")
    assert inst.cli("system", "dns", "delete", "dev.internal").stdout.strip() == (
        "dns domain dev.internal deleted"
    )
    inst.cli("system", "dns", "rm", "lab.internal")
    assert calls.read_text().splitlines()[-1] == f"revert {bridge}"
    inst.cli("system", "dns", "delete", "corp.example")
    assert listed() == []
    assert dig(inst, "alpha.dev.internal")[0] == "SERVFAIL"
    assert dig(inst, "alpha.corp.example")[0] == "SERVFAIL"


@pytest.fixture
def resolved(stopped_instance: Instance) -> Iterator[Resolved]:
    """A real systemd-resolved in the instance's namespace (support/resolved.py); the
    instance's daemons see it: the extracted resolvectl first on PATH, the private bus."""
    inst = stopped_instance
    daemon = Resolved(inst.netns, inst.base / "resolved")
    try:
        daemon.start()
        inst.env["PATH"] = f"{RESOLVECTL.parent}:{inst.env['PATH']}"
        inst.env["DBUS_SYSTEM_BUS_ADDRESS"] = daemon.address
        yield daemon
    finally:
        daemon.stop()


def _link_setting(resolved: Resolved, verb: str, link: str) -> str:
    """`resolvectl dns|domain|default-route LINK` without the `Link N (LINK):` prefix."""
    out = resolved.resolvectl(verb, link).stdout.strip()
    head, _, value = out.partition(":")
    assert head.endswith(f"({link})"), out
    return value.strip()


def test_system_dns_through_systemd_resolved(
    stopped_instance: Instance, netns_pool: NetnsPool, resolved: Resolved
) -> None:
    inst, pool = stopped_instance, netns_pool
    inst.env["CONTAINER_DNS_UPSTREAMS"] = "10.93.0.3"  # dead: names not ours SERVFAIL, fast
    inst.start()
    _, web_ip = attach(inst, pool, "default", "web")  # also gives the bridge a carrier
    bridge = inst.cli("network", "inspect", "default").json()["status"]["link"]
    gateway = "192.168.64.1"
    assert bridge
    assert _link_setting(resolved, "dns", bridge) == ""

    def stub(name: str) -> tuple[str, list[str]]:
        """Asked the way the host asks: resolved's stub listener."""
        return dig(inst, name, server="127.0.0.53", port=53)

    def server_up() -> None:
        """`system start` returns only once container-dns serves: asked at once, with no
        retry, our server answers on the gateway (else resolved would get a refusal)."""
        assert dig(inst, "web", server=gateway, port=53) == ("NOERROR", [web_ip])

    server_up()

    def status() -> str:
        return resolved.resolvectl("status", bridge).stdout

    # Before: resolved has nowhere to send the name.
    assert web_ip not in stub("web.lab.example")[1]

    made = inst.cli("system", "dns", "create", "lab.example").stdout.strip()
    how = f"systemd-resolved: ~lab.example on {bridge} via {gateway}"
    assert made == f"dns domain lab.example created ({how})"
    inst.cli("system", "dns", "create", "dev.example")
    listed = inst.cli("system", "dns", "list", "--format", "json").json()
    assert [(d["domain"], d["mechanism"], d["link"], d["address"]) for d in listed] == [
        ("dev.example", "resolved", bridge, gateway),
        ("lab.example", "resolved", bridge, gateway),
    ]
    # What resolved itself now holds for the bridge.
    assert _link_setting(resolved, "dns", bridge) == gateway
    assert _link_setting(resolved, "domain", bridge).split() == ["~dev.example", "~lab.example"]
    assert _link_setting(resolved, "default-route", bridge) == "no"
    # ... set explicitly (this resolved would also infer it from the route-only domains).
    assert f"{bridge}: Bus client set default route setting: no" in resolved.log.read_text()
    assert f"DNS Servers: {gateway}" in status()

    # The host resolves NAME.DOMAIN through resolved, which asks our server on the bridge.
    assert stub("web.lab.example") == ("NOERROR", [web_ip])
    assert stub("WEB.dev.example") == ("NOERROR", [web_ip])
    query = resolved.resolvectl("query", "web.lab.example").stdout
    assert f"web.lab.example: {web_ip}" in query and f"link: {bridge}" in query, query
    # Only the host domains go there: our config domain `test` does not (no default route).
    assert web_ip not in stub("web.test")[1]

    # Deleting one domain leaves the other on the link.
    inst.cli("system", "dns", "delete", "dev.example")
    assert _link_setting(resolved, "domain", bridge) == "~lab.example"
    assert web_ip not in stub("web.dev.example")[1]
    assert stub("web.lab.example") == ("NOERROR", [web_ip])

    # Deleting the last one reverts the link: no server, no domain, no answer.
    inst.cli("system", "dns", "delete", "lab.example")
    assert _link_setting(resolved, "dns", bridge) == ""
    assert _link_setting(resolved, "domain", bridge) == ""
    assert "DNS Servers" not in status() and "lab.example" not in status()
    gone = stub("web.lab.example")
    assert gone[0] != "NOERROR" and web_ip not in gone[1], gone

    # The settings live on the link: a link that lost them (as a recreated bridge does) gets
    # them back when the API server starts.
    inst.cli("system", "dns", "create", "lab.example")
    assert stub("web.lab.example") == ("NOERROR", [web_ip])
    inst.cli("system", "stop")
    resolved.resolvectl("revert", bridge)
    assert _link_setting(resolved, "domain", bridge) == ""
    inst.start()
    server_up()
    assert _link_setting(resolved, "dns", bridge) == gateway
    assert _link_setting(resolved, "domain", bridge) == "~lab.example"
    assert _link_setting(resolved, "default-route", bridge) == "no"
    assert stub("web.lab.example") == ("NOERROR", [web_ip])


def test_dns_server_restarted_after_sigkill(instance: Instance, netns_pool: NetnsPool) -> None:
    inst, pool = instance, netns_pool
    _networks(inst)
    a1, a1_ip = attach(inst, pool, "neta", "alpha")
    assert ask(a1, "alpha.test", server=GW_A)["answers"] == [a1_ip]
    old = inst.pid("dns")
    assert old is not None
    os.kill(old, signal.SIGKILL)
    new = inst.wait_pid_change("dns", old)
    assert new != old
    wait_for(lambda: ask(a1, "alpha.test", server=GW_A)["answers"] == [a1_ip], timeout=20)
    wait_for(lambda: dig(inst, "alpha") == ("NOERROR", [a1_ip]), timeout=10)
    # Names made after the restart are there too.
    _, b1_ip = attach(inst, pool, "netb", "bravo")
    assert dig(inst, "bravo.test") == ("NOERROR", [b1_ip])


def test_api_responses_match_the_openapi_schemas(stopped_instance: Instance) -> None:
    import jsonschema

    from container_runtime.apiserver.server import openapi_document
    from container_runtime.client import UnixClient
    from container_runtime.errors import ContainerError

    inst = stopped_instance
    resolv = inst.base / "resolv.conf"
    resolv.write_text("nameserver 10.255.255.1\n")
    inst.env["CONTAINER_DNS_RESOLV_CONF"] = str(resolv)
    inst.start()
    doc = openapi_document()
    client = UnixClient(inst.run_dir / "apiserver.sock")

    def check(method: str, template: str, path: str, status: int, body: object = None) -> None:
        try:
            reply = client.request(method, path, body)
            got = 201 if method == "POST" else 200
        except ContainerError as exc:
            reply, got = exc.to_json(), exc.status
        assert got == status, (method, path, reply)
        responses = doc["paths"][template][method.lower()]["responses"]
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(reply)

    one = "/v1/system/dns/{domain}"
    check("POST", "/v1/system/dns", "/v1/system/dns", 503, {"domain": "corp.example"})
    resolv.write_text("nameserver 192.168.64.1\n")
    check("POST", "/v1/system/dns", "/v1/system/dns", 201, {"domain": "corp.example"})
    check("POST", "/v1/system/dns", "/v1/system/dns", 409, {"domain": "corp.example"})
    check("POST", "/v1/system/dns", "/v1/system/dns", 400, {"domain": "no_way"})
    check("POST", "/v1/system/dns", "/v1/system/dns", 400, {})
    check("GET", "/v1/system/dns", "/v1/system/dns", 200)
    check("DELETE", one, "/v1/system/dns/corp.example", 200)
    check("DELETE", one, "/v1/system/dns/corp.example", 404)
    check("DELETE", one, "/v1/system/dns/no_way", 400)
