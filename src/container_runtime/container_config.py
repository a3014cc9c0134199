"""The container create request (`container run|create`): ContainerConfig and its parts,
published ports (PortMapping), DNS settings, environment, the network namespace mode and
the VM isolation options; validated, with one (de)serialiser each, as models.py's network
models. Only the standard library is imported here: the CLI imports this module.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidArgument
from .models import DEFAULT_NETWORK, AttachmentSpec, validate_domain
from .netmode import (
    HOST_GATEWAY,
    MAX_ADD_HOSTS,
    NamespaceMode,
    parse_add_host,
    parse_namespace_mode,
    validate_hostname,
)

PROTOCOLS = ("tcp", "udp")
MAX_PORT_RANGE = 65535  # one nft map element per port
MAX_PUBLISH_SPECS = 64


@dataclass(frozen=True)
class PortMapping:
    """One published port: host [ip:]port -> container port, tcp or udp.

    No host IP: every host address, IPv4 and (when the container has one) IPv6.
    """

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None

    def __post_init__(self) -> None:
        for port in (self.host_port, self.container_port):
            if not 1 <= port <= 65535:
                raise InvalidArgument(f"invalid port {port}: must be between 1 and 65535")
        if self.protocol not in PROTOCOLS:
            raise InvalidArgument(f"invalid protocol {self.protocol!r} (valid: tcp, udp)")

    def to_json(self) -> dict[str, Any]:
        return {
            "hostIP": str(self.host_ip) if self.host_ip else None,
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PortMapping:
        ip = data.get("hostIP")
        return cls(
            host_port=int(data["hostPort"]),
            container_port=int(data["containerPort"]),
            protocol=str(data.get("protocol") or "tcp"),
            host_ip=ipaddress.ip_address(ip) if ip else None,
        )

    @staticmethod
    def parse(text: str) -> list[PortMapping]:
        """`[HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|udp]` -> one mapping per port;
        an IPv6 HOSTIP in brackets (`[::]:8080:80`)."""
        bad = (
            f"invalid publish spec {text!r}: expected "
            "[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp] (IPv6 host IP in brackets)"
        )
        spec, slash, proto = text.partition("/")
        proto = proto.lower() if slash else "tcp"  # "8080:80/" names no protocol: refused
        if proto not in PROTOCOLS:
            raise InvalidArgument(f"invalid publish spec {text!r}: protocol must be tcp or udp")
        host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        if spec.startswith("["):
            inside, sep, rest = spec[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise InvalidArgument(bad)
            try:
                host_ip = ipaddress.IPv6Address(inside)
            except ValueError:
                raise InvalidArgument(f"{bad} (bad IPv6 host IP {inside!r})") from None
            if host_ip.is_loopback:
                raise InvalidArgument(
                    f"invalid publish spec {text!r}: cannot publish on [::1], the kernel does"
                    " not forward IPv6 loopback traffic to a container (use [::] or a host"
                    " address)"
                )
            parts = rest[1:].split(":")
        else:
            parts = spec.split(":")
            if len(parts) == 3:
                try:
                    host_ip = ipaddress.IPv4Address(parts[0])
                except ValueError:
                    raise InvalidArgument(f"{bad} (bad host IP {parts[0]!r})") from None
                parts = parts[1:]
        if len(parts) != 2:
            raise InvalidArgument(bad)
        host = _parse_port_range(parts[0], bad)
        cont = _parse_port_range(parts[1], bad)
        if len(host) != len(cont):
            raise InvalidArgument(f"invalid publish spec {text!r}: port ranges differ in size")
        return [PortMapping(h, c, proto, host_ip) for h, c in zip(host, cont, strict=True)]


def _parse_port_range(text: str, bad: str) -> list[int]:
    first, dash, last = text.partition("-")
    if not first.isdigit() or (dash and not last.isdigit()):
        raise InvalidArgument(bad)
    low, high = int(first), int(last) if dash else int(first)
    for port in (low, high):
        if not 1 <= port <= 65535:
            raise InvalidArgument(f"{bad} (port {port} out of range 1-65535)")
    if high < low or high - low >= MAX_PORT_RANGE:
        raise InvalidArgument(f"{bad} (bad port range {text!r})")
    return list(range(low, high + 1))


def str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{what} must be a list of strings")
    return list(value)


DNS_OPTION_RE = re.compile(r"^[a-z][a-z0-9-]*(:[0-9]{1,5})?$")
MAX_DNS_SEARCH = 32


@dataclass(frozen=True)
class DnsSettings:
    """What /etc/resolv.conf says, line for line: `nameserver` (empty: the primary
    network's gateway), `domain` (only from --dns-domain), `search` (exactly --dns-search;
    with neither flag, the configured DNS domain), `options`; nothing with --no-dns."""

    nameservers: tuple[str, ...] = ()
    domain: str | None = None
    search: tuple[str, ...] = ()
    disabled: bool = False
    options: tuple[str, ...] = ()


def parse_env(value: object) -> list[str]:
    """`KEY=VALUE` entries (run, create and exec): a key, an `=`, no NUL."""
    env = str_list(value, "env")
    for item in env:
        env_key, sep, _ = item.partition("=")
        if not sep or not env_key or "\x00" in item:
            raise InvalidArgument(f"invalid environment entry {item!r}: expected KEY=VALUE")
    return env


@dataclass(frozen=True)
class ContainerConfig:
    """What `container run|create` asked for, validated; stored as JSON in its row."""

    networks: tuple[AttachmentSpec, ...]  # empty: --network none
    ports: tuple[PortMapping, ...] = ()
    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    workdir: str | None = None
    dns: DnsSettings = field(default_factory=DnsSettings)
    auto_remove: bool = False
    namespace: NamespaceMode = field(default_factory=NamespaceMode)
    hostname: str | None = None  # --hostname (UTS name, first network's DNS name)
    domainname: str | None = None  # --domainname (UTS domain name, /etc/hosts)
    extra_hosts: tuple[tuple[str, str], ...] = ()  # --add-host (name, ip | host-gateway)
    isolation: str = "namespace"  # "namespace" | "vm" (its own QEMU VM: docs/VM.md)
    cpus: int | None = None  # VM only
    memory_mb: int | None = None  # VM only

    @classmethod
    def parse(
        cls,
        body: dict[str, Any],
        default_domain: str | None,
        default_isolation: str = "namespace",
    ) -> ContainerConfig:
        namespace, texts = parse_namespace_mode(str_list(body.get("networks"), "networks"))
        specs = [AttachmentSpec.parse(s) for s in texts]
        if not specs and namespace.kind == "private":
            specs = [AttachmentSpec(DEFAULT_NETWORK)]
        names = [s.network for s in specs]
        if "none" in names and len(specs) > 1:
            raise InvalidArgument("--network none can not be combined with another network")
        if "none" in names and specs[0] != AttachmentSpec("none"):
            raise InvalidArgument("--network none takes no properties")
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise InvalidArgument(f"network {twice} given twice")
        ports: list[PortMapping] = []
        publish = str_list(body.get("publish"), "publish")
        if len(publish) > MAX_PUBLISH_SPECS:
            raise InvalidArgument(
                f"too many --publish options ({len(publish)}): at most {MAX_PUBLISH_SPECS}"
                " per container (use a port range such as 8000-8999:8000-8999)"
            )
        for text in publish:
            ports.extend(PortMapping.parse(text))
        # (protocol, port, IP version) -> host addresses ("" = all of that version)
        keys: dict[tuple[str, int, int], set[str]] = {}
        for p in ports:
            unspecified = p.host_ip is None or p.host_ip.is_unspecified
            for version in (4, 6) if p.host_ip is None else (p.host_ip.version,):
                held = keys.setdefault((p.protocol, p.host_port, version), set())
                address = "" if unspecified else str(p.host_ip)
                if held and ("" in held or address == "" or address in held):
                    raise InvalidArgument(
                        f"host port {p.host_port}/{p.protocol} is published twice"
                    )
                held.add(address)
        if ports and names == ["none"]:
            raise InvalidArgument("--publish needs a network (not --network none)")
        hostname, domainname, extra_hosts = _parse_names(body, namespace)
        if namespace.kind == "private" and names == ["none"]:
            if any(ip == HOST_GATEWAY for _, ip in extra_hosts):
                raise InvalidArgument("--add-host NAME:host-gateway needs a network (not none)")
        if ports and namespace.kind != "private":
            raise InvalidArgument(
                f"--publish can not be combined with --network {_mode_text(namespace)}"
                + (
                    " (the host's ports are the container's own)"
                    if namespace.kind == "host"
                    else " (publish the ports on the container that owns the namespace)"
                )
            )
        env = parse_env(body.get("env"))
        nameservers = []
        for ip in str_list(body.get("dns"), "dns"):
            try:
                nameservers.append(str(ipaddress.ip_address(ip)))
            except ValueError:
                raise InvalidArgument(f"invalid --dns {ip!r}: not an IP address") from None
        domain = body.get("dnsDomain")
        if domain is not None and not isinstance(domain, str):
            raise InvalidArgument("dnsDomain must be a string")
        search = [validate_domain(d) for d in str_list(body.get("dnsSearch"), "dnsSearch")]
        if len(search) > MAX_DNS_SEARCH:
            raise InvalidArgument(f"at most {MAX_DNS_SEARCH} --dns-search domains")
        options = str_list(body.get("dnsOption"), "dnsOption")
        for opt in options:
            if not DNS_OPTION_RE.match(opt):
                raise InvalidArgument(
                    f"invalid --dns-option {opt!r}: expected a resolver option such as"
                    " ndots:2 or edns0"
                )
        no_dns = bool(body.get("noDns"))
        if no_dns:
            given = [
                flag
                for flag, value in (
                    ("--dns", nameservers),
                    ("--dns-domain", domain),
                    ("--dns-search", search),
                    ("--dns-option", options),
                )
                if value
            ]
            if given:
                raise InvalidArgument(f"--no-dns and {', '.join(given)} can not be combined")
        explicit_domain = validate_domain(domain) if domain else None
        if not search and explicit_domain is None and default_domain and not no_dns:
            search = [default_domain]
        cmd, entrypoint = body.get("cmd"), body.get("entrypoint")
        return cls(
            networks=tuple(s for s in specs if s.network != "none"),
            ports=tuple(ports),
            env=tuple(env),
            cmd=tuple(str_list(cmd, "cmd")) if cmd else None,
            entrypoint=tuple(str_list(entrypoint, "entrypoint"))
            if entrypoint is not None
            else None,
            workdir=str(body["workdir"]) if body.get("workdir") else None,
            dns=DnsSettings(
                nameservers=tuple(nameservers),
                domain=explicit_domain,
                search=tuple(dict.fromkeys(search)),
                disabled=no_dns,
                options=tuple(dict.fromkeys(options)),
            ),
            auto_remove=bool(body.get("autoRemove")),
            namespace=namespace,
            hostname=hostname,
            domainname=domainname,
            extra_hosts=extra_hosts,
            **parse_isolation(body, default_isolation),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "networks": [s.to_json() for s in self.networks],
            "ports": [p.to_json() for p in self.ports],
            "env": list(self.env),
            "cmd": list(self.cmd) if self.cmd is not None else None,
            "entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
            "workdir": self.workdir,
            "dns": {
                "nameservers": list(self.dns.nameservers),
                "domain": self.dns.domain,
                "search": list(self.dns.search),
                "disabled": self.dns.disabled,
                "options": list(self.dns.options),
            },
            "autoRemove": self.auto_remove,
            "namespace": self.namespace.to_json(),
            "hostname": self.hostname,
            "domainname": self.domainname,
            "extraHosts": [list(pair) for pair in self.extra_hosts],
            "isolation": self.isolation,
            "cpus": self.cpus,
            "memoryMB": self.memory_mb,
        }


def _mode_text(mode: NamespaceMode) -> str:
    return "host" if mode.kind == "host" else f"container:{mode.owner}"


def _parse_names(
    body: dict[str, Any], namespace: NamespaceMode
) -> tuple[str | None, str | None, tuple[tuple[str, str], ...]]:
    """--hostname, --domainname and --add-host; in another container's namespace none of
    them (its names are the owner's, as Docker refuses them there)."""
    values: dict[str, str | None] = {}
    for key, flag in (("hostname", "--hostname"), ("domainname", "--domainname")):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"{key} must be a string")
        values[key] = validate_hostname(value, flag) if value is not None else None
    hosts = [parse_add_host(h) for h in str_list(body.get("addHosts"), "addHosts")]
    if len(hosts) > MAX_ADD_HOSTS:
        raise InvalidArgument(
            f"too many --add-host options ({len(hosts)}): at most {MAX_ADD_HOSTS}"
        )
    if namespace.kind == "container":
        given = [
            flag
            for flag, value in (
                ("--hostname", values["hostname"]),
                ("--domainname", values["domainname"]),
                ("--add-host", hosts),
                ("--dns", body.get("dns")),
                ("--dns-domain", body.get("dnsDomain")),
                ("--dns-search", body.get("dnsSearch")),
                ("--dns-option", body.get("dnsOption")),
                ("--no-dns", body.get("noDns")),
            )
            if value
        ]
        if given:
            raise InvalidArgument(
                f"{', '.join(given)} can not be combined with --network {_mode_text(namespace)}"
                " (the container shares that container's names)"
            )
    return values["hostname"], values["domainname"], tuple(hosts)


ISOLATIONS = ("namespace", "vm")
MAX_VM_CPUS = 64
MIN_VM_MEMORY_MB = 64
MAX_VM_MEMORY_MB = 1 << 20
_SIZE_RE = re.compile(r"^([0-9]+)([kmgt]?)(i?b)?$")


def parse_isolation_name(value: Any) -> str:
    if value not in ISOLATIONS:
        raise InvalidArgument(f"invalid isolation {value!r} (valid: {', '.join(ISOLATIONS)})")
    return str(value)


def parse_memory(value: Any) -> int:
    """`--memory SIZE`: bytes, or a number with K, M, G or T (binary units); in MiB."""
    m = _SIZE_RE.match(str(value).strip().lower())
    if not m:
        raise InvalidArgument(f"invalid memory size {value!r}: expected e.g. 512M or 1G")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2)]
    mib = int(m.group(1)) * scale // (1 << 20)
    if not MIN_VM_MEMORY_MB <= mib <= MAX_VM_MEMORY_MB:
        raise InvalidArgument(
            f"invalid memory size {value!r}: must be between {MIN_VM_MEMORY_MB} MiB and 1 TiB"
        )
    return mib


def parse_isolation(body: dict[str, Any], default: str = "namespace") -> dict[str, Any]:
    """`isolation` ("vm" for --vm), `cpus` and `memory` of a create request."""
    isolation = parse_isolation_name(body.get("isolation") or default)
    cpus, memory = body.get("cpus"), body.get("memory")
    if isolation != "vm" and (cpus is not None or memory is not None):
        raise InvalidArgument("--cpus and --memory need --vm")
    if cpus is not None:
        if isinstance(cpus, bool) or not str(cpus).isdigit() or not 1 <= int(cpus) <= MAX_VM_CPUS:
            raise InvalidArgument(f"invalid --cpus {cpus!r}: must be 1 to {MAX_VM_CPUS}")
        cpus = int(cpus)
    return {
        "isolation": isolation,
        "cpus": cpus,
        "memory_mb": parse_memory(memory) if memory is not None else None,
    }
