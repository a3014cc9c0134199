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
  dnsperf  # bench/bench_dns.py, bench/bench_dnsnames.py
)
# Services (named as their packages) that packages above enable and start on install,
# which the project does not use as services (tests start the registry binary themselves, tests/support/registry.py).
UNWANTED_SERVICES=(docker-registry)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run it as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # No service starts during the install (Debian's policy-rc.d convention), unless the
  # machine already has its own policy.
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# made by container setup.sh for the install only\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    made_policy=1
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ -n "$made_policy" ]; then
    rm -f "$policy"
    trap - EXIT
  fi
fi

# Leave no service enabled or running that the user did not ask for: a package this run
# installed gets its service disabled (and stopped, had it started). A rerun leaves a
# service alone, so one the user enabled since stays enabled. `systemctl disable` works
# without a running systemd; stop needs one.
for service in "${UNWANTED_SERVICES[@]}"; do
  [[ " ${missing[*]:-} " == *" $service "* ]] || continue
  if systemctl is-enabled --quiet "$service" 2>/dev/null; then
    echo "setup: disabling $service (installed by its package, not used as a service)"
    systemctl disable --quiet "$service" 2>/dev/null || true
  fi
  if [ -d /run/systemd/system ] && systemctl is-active --quiet "$service"; then
    systemctl stop "$service"
  elif [ -x "/etc/init.d/$service" ] && "/etc/init.d/$service" status >/dev/null 2>&1; then
    "/etc/init.d/$service" stop >/dev/null
  fi
done

# The group whose members may use the API socket (see docs/NETWORKING.md).
if ! getent group container >/dev/null; then
  echo "setup: creating the system group container (members may use the container system)"
  groupadd --system container
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
# Reinstall only when pyproject.toml (or the clone's place) changed: a rerun with
# everything installed needs no network (pip's build isolation would fetch setuptools).
stamp=$( (sha256sum pyproject.toml; pwd) | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.setup-stamp 2>/dev/null)" != "$stamp" ] || [ ! -x .venv/bin/container ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  echo "$stamp" > .venv/.setup-stamp
fi
echo "setup: done (.venv/bin/container)"
