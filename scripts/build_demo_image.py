"""Build the demo's web image (busybox httpd) as an OCI archive named localhost/web:latest."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.registry import build_busybox_image  # noqa: E402


def main() -> None:
    archive = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        layout = build_busybox_image(Path(tmp) / "oci", tag="latest")
        subprocess.run(
            ["skopeo", "copy", "--quiet", f"oci:{layout}:latest",
             f"oci-archive:{archive}:localhost/web:latest"],
            check=True,
        )


if __name__ == "__main__":
    main()
