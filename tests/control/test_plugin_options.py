"""A network's `--option`s and `--strategy` are its plugin's (manifest, GET /status), not
constants of the runtime: checked per plugin, refused with nothing made."""

from __future__ import annotations

from pathlib import Path

from support.instance import Instance, assert_refused, attachments

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin-example"


def test_options_come_from_each_plugins_manifest(
    stopped_instance: Instance, tmp_path: Path
) -> None:
    inst = stopped_instance
    manifest = (
        (EXAMPLE / "example.toml")
        .read_text()
        .replace('"container-network-example"', f'"{EXAMPLE / "container-network-example"}"')
    )
    (tmp_path / "example.toml").write_text(manifest + '\n[options]\ncolour = ["red", "blue"]\n')
    (tmp_path / "example.toml").chmod(0o644)
    tmp_path.chmod(0o755)
    inst.env["CONTAINER_PLUGIN_PATH"] = str(tmp_path)
    inst.start()
    networks = sorted(n["id"] for n in inst.cli("network", "ls", "--format", "json").json())

    def create(name: str, plugin: str, option: str) -> object:
        return inst.cli(
            "network", "create", name, "--plugin", plugin, "--option", option, check=False
        )

    assert_refused(create("e1", "example", "colour=green"), "invalid value 'green'")
    assert_refused(create("e2", "example", "variant=isolated"), "unknown network option")
    assert_refused(create("b1", "bridge", "colour=red"), "unknown network option 'colour'")
    assert sorted(n["id"] for n in inst.cli("network", "ls", "--format", "json").json()) == (
        networks
    )
    inst.cli("network", "create", "e3", "--plugin", "example", "--option", "colour=blue")
    inst.cli("network", "create", "e4", "--plugin", "example", "--option", "dns-forward=on")
    inst.cli("network", "create", "b2", "--option", "spoofcheck=off")

    # a strategy the bridge does not offer: refused by its helper before allocating
    result = inst.cli(
        "network", "attach", "b2", "--name", "s1", "--strategy", "macvtap", check=False
    )
    assert_refused(result, "unknown interface strategy 'macvtap' (valid: veth, tap)")
    assert attachments(inst, "b2") == []
    # the CLI's help lists what each installed plugin offers, from the manifests
    helped = inst.cli("network", "attach", "--help").stdout
    assert "  bridge: veth, tap\n" in helped and "  example: (none)\n" in helped
    helped = inst.cli("network", "create", "--help").stdout
    assert "  example: colour=red|blue\n" in helped
