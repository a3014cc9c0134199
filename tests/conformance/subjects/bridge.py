"""The built-in bridge plugin: containers through veth (and VMs through tap), published
ports, names served on the gateway."""

from . import Subject

SUBJECT = Subject(
    plugin="bridge",
    subnet="10.76.0.0/24",
    strategies=("veth", "tap"),
    container_strategy="veth",
    ports=True,
)
