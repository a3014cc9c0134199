"""config.toml: defaults, every key, and errors that name the file, the line and the key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from container_runtime.config import load_config
from container_runtime.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "absent.toml")
    assert config.subnet == ipaddress.IPv4Network("192.168.64.0/24")
    assert config.gateway == ipaddress.IPv4Address("192.168.64.1")
    assert config.dns_domain == "test"


def test_all_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[network]\nsubnet = "10.20.0.1/16"\nsubnetv6 = "fd00:20::/64"\nmtu = 1400\n'
        'pool = "10.128.0.0/12"\npool_prefix = 26\n[dns]\ndomain = "Corp.Example"\n'
        'upstreams = ["10.0.0.53"]\n[plugins]\npath = ["/opt/plugins"]\n'
        'cni_path = ["/opt/cni/bin", "/usr/lib/cni"]\n',
    )
    config = load_config(path)
    assert config.subnet == ipaddress.IPv4Network("10.20.0.0/16")
    assert config.gateway == ipaddress.IPv4Address("10.20.0.1")
    assert config.subnet_v6 == ipaddress.IPv6Network("fd00:20::/64")
    assert (config.mtu, config.pool_prefix, config.dns_domain) == (1400, 26, "corp.example")
    assert config.dns_upstreams == ("10.0.0.53",) and config.plugin_path == ("/opt/plugins",)
    assert config.cni_path == ("/opt/cni/bin", "/usr/lib/cni")
    assert load_config(tmp_path / "absent.toml").cni_path == ("/usr/lib/cni",)


@pytest.mark.parametrize(
    "text,line,key,why",
    [
        ('[network]\n\nsubnet = "banana"\n', 3, "network.subnet", "invalid subnet"),
        ('[network]\nsubnet = "10.0.0.0/30"\n', 2, "network.subnet", "prefix"),
        ("[network]\nmtu = 100\n", 2, "network.mtu", "MTU"),
        ('[network]\nmtu = "big"\n', 2, "network.mtu", "expected a int"),
        ('[network]\nsubnt = "10.0.0.0/24"\n', 2, "network.subnt", "unknown key"),
        ('[dns]\ndomain = "bad domain"\n', 2, "dns.domain", "invalid DNS domain"),
        ('[dns]\nupstreams = ["x"]\n', 2, "dns.upstreams", "invalid upstream"),
        ("[colour]\nred = 1\n", 1, "colour", "unknown section"),
        ('[plugins]\ncni_path = ["cni"]\n', 2, "plugins.cni_path", "absolute directory"),
    ],
)
def test_bad_config_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, why: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = info.value.message
    assert message.startswith(f"{path}:{line}: key {key}: "), message
    assert why in message


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[network]\nsubnet = \n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in info.value.message and "line 2" in info.value.message
