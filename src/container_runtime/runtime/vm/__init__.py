"""VM containers: a container in its own lightweight QEMU VM (docs/VM.md)."""
