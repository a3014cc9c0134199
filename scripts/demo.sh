#!/usr/bin/env bash
# The main job, end to end (as root): start the system, create a network, run a web
# container on it with a fixed MAC, show its attachment and fetch its page.
# No internet is needed: the image is built locally from busybox-static and loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/need-setup.sh
need_setup jq nft runc conmon skopeo umoci busybox
export PATH="$PWD/.venv/bin:$PATH"

image_dir=$(mktemp -d)
trap 'rm -rf "$image_dir"' EXIT
.venv/bin/python scripts/build_demo_image.py "$image_dir/web.tar"

container system start
container image load -i "$image_dir/web.tar"
container network list
container rm -f web >/dev/null 2>&1 || true
container network inspect foo >/dev/null 2>&1 || container network create foo --subnet 192.168.100.0/24
container run -d --name web --network foo,mac=02:42:ac:11:00:02 localhost/web:latest
container inspect web --format json | jq '.networks[0]'
address=$(container inspect web --format json | jq -r '.networks[0].address | split("/")[0]')
echo "fetching http://$address/ :"
.venv/bin/python -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")' "http://$address/"
