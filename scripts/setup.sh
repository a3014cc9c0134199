#!/usr/bin/env bash
# Install everything the project needs on a Debian machine (run as root): the kernel
# tools and container tools from Debian, and the project into a venv at .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  python3 python3-venv python3-pip
  nftables libnftables1 iproute2 iputils-ping util-linux procps
  busybox-static runc conmon skopeo umoci docker-registry
  containernetworking-plugins dnsutils jq systemd dbus-daemon tini
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

# A real systemd-resolved for tests/dns_integration (`system dns` through resolved), extracted
# privately: installing the package would replace the host's /etc/resolv.conf with a link to
# resolved's stub. The binary links the installed systemd's libsystemd-shared, hence the
# same version as the `systemd` package (the candidate when that version is gone).
RESOLVED_DIR=build/systemd-resolved
systemd_version=$(dpkg-query -W -f='${Version}' systemd)
if [ "$(cat "$RESOLVED_DIR/VERSION" 2>/dev/null)" != "$systemd_version" ]; then
  echo "setup: extracting systemd-resolved $systemd_version into $RESOLVED_DIR"
  work=$(mktemp -d)
  chown _apt "$work" 2>/dev/null || true  # else apt warns that it downloads unsandboxed
  download() { (cd "$work" && apt-get download -q "$@"); }
  if ! download "systemd-resolved=$systemd_version"; then
    apt-get update -q
    if ! download "systemd-resolved=$systemd_version"; then
      echo "setup: systemd-resolved=$systemd_version not downloadable; using the candidate"
      download systemd-resolved
    fi
  fi
  rm -rf "$RESOLVED_DIR"
  mkdir -p "$RESOLVED_DIR"
  dpkg-deb -x "$work"/systemd-resolved_*.deb "$RESOLVED_DIR"
  echo "$systemd_version" > "$RESOLVED_DIR/VERSION"
  rm -rf "$work"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "setup: done (.venv/bin/container)"
