"""Container runtime library: images (skopeo/umoci) and OCI containers (runc under conmon).

- ``images``: :func:`normalize_reference`, :class:`ImageStore` (pull, list, inspect, delete,
  load, rootfs/unpack), :class:`ImageInfo`.
- ``oci``: :class:`OciRuntime` (create_bundle, start, state, wait, kill, stop, delete,
  exec/exec_argv, logs_path/read_logs, update_etc), :class:`ProcessSpec`,
  :class:`ContainerRuntimeState`.

Only the API server imports this package (never the CLI).  No long-lived Python
process exists per container: conmon is each container's parent and writes its exit
status to a file.
"""

from .images import ImageInfo, ImageStore, normalize_reference
from .oci import ContainerRuntimeState, LogLine, OciRuntime, ProcessSpec

__all__ = [
    "ContainerRuntimeState",
    "ImageInfo",
    "ImageStore",
    "LogLine",
    "OciRuntime",
    "ProcessSpec",
    "normalize_reference",
]
