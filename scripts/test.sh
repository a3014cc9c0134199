#!/usr/bin/env bash
# Lint, type-check and run the whole test suite (as root: tests make network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/need-setup.sh
need_setup nft runc conmon skopeo umoci busybox docker-registry .venv/bin/pytest .venv/bin/ruff
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy src
exec .venv/bin/python -m pytest -q "$@"
