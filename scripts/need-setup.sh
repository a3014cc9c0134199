# Sourced by demo.sh and test.sh: refuse in one line, pointing at setup.sh, when the
# project is not set up yet (no .venv, or a tool from setup's Debian packages missing).
need_setup() {
  local missing=()
  [ -x .venv/bin/container ] || missing+=(.venv)
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "Error: not set up (missing: ${missing[*]}): run ./scripts/setup.sh first, as root" >&2
    exit 1
  fi
}
