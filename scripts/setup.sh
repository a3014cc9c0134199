#!/usr/bin/env bash
# Install everything the project needs on a Debian machine (run as root): the kernel
# tools and container tools from Debian, and the project into a venv at .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  python3 python3-venv python3-pip
  nftables libnftables1 iproute2 iputils-ping util-linux procps
  busybox-static runc conmon skopeo umoci docker-registry
  containernetworking-plugins dnsutils jq
)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "setup: done (.venv/bin/container)"
