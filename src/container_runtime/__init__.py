"""container_runtime: a Linux container runtime built around its networking system."""

__version__ = "0.1.0"
