"""Network `--option KEY=VALUE`s: the kinds of value a plugin may declare for a key, and
the one check of a network's options against them (the API server's, before anything is
made; a plugin's driver adds its own checks of meaning, e.g. that an interface exists).

A plugin declares each key in its manifest's `[options]` (and its driver's `options`):

- a list of values, the default first: `variant = ["shared", "isolated"]`;
- a type name: `parent = "interface"`, `ip-range = "cidr"`, `mtu = "int"`; one of
  `string`, `int`, `bool` (`true`/`false`), `ip`, `cidr`, `interface`, `path` (absolute);
- a type name ending in `[]`: the key may be given several times (`aux = "ip[]"`); its
  values are kept in order, comma-joined, in the network's options;
- the key `"*"` with a type: any other key is accepted with a value of that type (a plugin
  such as `cni` that passes options through to a configuration).

Values never hold control characters or more than 512 characters (checked when parsed).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InvalidArgument

TYPES = ("string", "int", "bool", "ip", "cidr", "interface", "path")
ANY_KEY = "*"
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.@:-]{1,15}$")  # as the kernel's dev_valid_name


@dataclass(frozen=True)
class OptionSpec:
    """What one option key accepts: enumerated `values` (default first), or a `kind`."""

    key: str
    values: tuple[str, ...] = ()
    kind: str = ""
    repeated: bool = False

    @classmethod
    def parse(cls, key: str, raw: object) -> OptionSpec:
        """From a manifest's `[options]` entry (a list of values or a type name)."""
        if isinstance(raw, list | tuple):
            values = tuple(str(v) for v in raw)
            if not values:
                raise ValueError(f"option {key}: no values")
            return cls(key, values=values)
        if isinstance(raw, str):
            kind = raw.removesuffix("[]")
            if kind not in TYPES:
                raise ValueError(f"option {key}: unknown type {raw!r} (types: {', '.join(TYPES)})")
            return cls(key, kind=kind, repeated=raw.endswith("[]"))
        raise ValueError(f"option {key}: expected a list of values or a type name")

    def describe(self) -> str:
        """For help texts: `variant=shared|isolated`, `parent=<interface>`, `aux=<ip>...`."""
        if self.values:
            return f"{self.key}={'|'.join(self.values)}"
        return f"{self.key}=<{self.kind}>{'...' if self.repeated else ''}"

    def check(self, key: str, value: str) -> str:
        """The value, normalised, or InvalidArgument naming the key."""
        if self.values:
            if value not in self.values:
                raise InvalidArgument(
                    f"invalid value {value!r} for option {key!r} (valid: {', '.join(self.values)})"
                )
            return value
        if value == "":
            raise InvalidArgument(f"option {key!r} needs a value ({self.kind})")
        try:
            return _check_kind(self.kind, value)
        except ValueError as exc:
            raise InvalidArgument(f"invalid value {value!r} for option {key!r}: {exc}") from None


def _check_kind(kind: str, value: str) -> str:
    if kind == "int":
        if not re.fullmatch(r"-?[0-9]{1,10}", value):
            raise ValueError("expected an integer")
        return str(int(value))
    if kind == "bool":
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise ValueError("expected true or false")
        return lowered
    if kind == "ip":
        return str(ipaddress.ip_address(value))
    if kind == "cidr":
        return str(ipaddress.ip_network(value, strict=False))
    if kind == "interface":
        if not IFNAME_RE.match(value) or value in (".", ".."):
            raise ValueError("expected a network interface name")
        return value
    if kind == "path":
        if not value.startswith("/"):
            raise ValueError("expected an absolute path")
        return value
    return value  # string


def specs_from_table(table: Mapping[str, object]) -> tuple[OptionSpec, ...]:
    """A manifest's (or a driver's) `[options]` table as specs; ValueError if malformed."""
    return tuple(OptionSpec.parse(str(key), raw) for key, raw in table.items())


def validate_options(
    pairs: list[str] | tuple[str, ...], specs: tuple[OptionSpec, ...] | list[OptionSpec]
) -> dict[str, str]:
    """`KEY=VALUE` strings checked against `specs` (the plugin's and the runtime's):
    unknown keys, bad values and a non-repeatable key given twice are refused."""
    by_key = {spec.key: spec for spec in specs if spec.key != ANY_KEY}
    wildcard = next((spec for spec in specs if spec.key == ANY_KEY), None)
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid option {pair!r}: expected KEY=VALUE")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}", key):
            raise InvalidArgument(f"invalid option key {key!r}")
        if len(value) > 512 or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise InvalidArgument(f"invalid option value for {key!r}")
        spec = by_key.get(key) or wildcard
        if spec is None:
            valid = ", ".join(sorted(by_key)) or "none"
            raise InvalidArgument(f"unknown network option {key!r} (valid options: {valid})")
        if spec.repeated:
            checked = [spec.check(key, part) for part in value.split(",")]
            out[key] = ",".join([*filter(None, out.get(key, "").split(",")), *checked])
            continue
        if key in out:
            raise InvalidArgument(f"option {key!r} given twice")
        out[key] = spec.check(key, value)
    return out


def option_list(options: dict[str, str], key: str) -> list[str]:
    """The values of a repeatable option (comma-joined in a network's options)."""
    return [v for v in options.get(key, "").split(",") if v]
