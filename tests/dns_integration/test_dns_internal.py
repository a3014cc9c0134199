"""An --internal network's members resolve the names of their network only: the embedded
DNS server does not forward their other questions (that would be a way out), unless the
network was created with `--option dns-forward=on`."""

from __future__ import annotations

from support.instance import Instance, NetnsPool

from .helpers import Upstream, ask_many, attach, dig


def test_internal_networks_get_no_forwarding(
    stopped_instance: Instance, netns_pool: NetnsPool
) -> None:
    inst, pool = stopped_instance, netns_pool
    upstream = Upstream(inst, pool)
    try:
        inst.env["CONTAINER_DNS_UPSTREAMS"] = Upstream.LIVE
        inst.start()
        inst.cli("network", "create", "open", "--subnet", "10.92.1.0/24")
        inst.cli("network", "create", "sealed", "--subnet", "10.92.2.0/24", "--internal")
        inst.cli(
            "network",
            "create",
            "leaky",
            "--subnet",
            "10.92.3.0/24",
            "--internal",
            "--option",
            "dns-forward=on",
        )
        o_ns, _ = attach(inst, pool, "open", "opener")
        s_ns, s_ip = attach(inst, pool, "sealed", "sealer")
        _, peer_ip = attach(inst, pool, "sealed", "peer")
        l_ns, _ = attach(inst, pool, "leaky", "leaker")
        outside = ("www.example.com", "A")
        got = ask_many(
            s_ns,
            [
                (*outside, "10.92.2.1", 53, False),
                (*outside, "10.92.2.1", 53, True),
                ("peer", "A", "10.92.2.1", 53, False),
                ("1.7.0.203.in-addr.arpa", "PTR", "10.92.2.1", 53, False),
            ],
        )
        assert got[0]["rcode"] == "REFUSED" and got[0]["answers"] == [], got[0]
        assert got[1]["rcode"] == "REFUSED", got[1]
        assert got[2]["answers"] == [peer_ip]  # its own network's names still resolve
        assert got[3]["rcode"] == "REFUSED"
        for ns, gateway in ((o_ns, "10.92.1.1"), (l_ns, "10.92.3.1")):
            answer = ask_many(ns, [(*outside, gateway, 53, False)])[0]
            assert answer["answers"] == ["203.0.113.7"], (gateway, answer)
        # The host's listener forwards as before.
        assert dig(inst, "www.example.com") == ("NOERROR", ["203.0.113.7"])
        del s_ip
    finally:
        upstream.stop()
