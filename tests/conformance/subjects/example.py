"""The out-of-tree example plugin (examples/plugin-example): allocation only, installed
through CONTAINER_PLUGIN_PATH, no kernel objects."""

from pathlib import Path

from . import Subject

SUBJECT = Subject(
    plugin="example",
    subnet="10.77.0.0/24",
    plugin_path=Path(__file__).resolve().parents[3] / "examples" / "plugin-example",
)
