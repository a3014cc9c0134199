#!/usr/bin/env bash
# Extra Debian packages the benchmarks compare against (peers and load tools):
# dnsperf, aardvark-dns, dnsmasq, iperf3 (bench_spoofcheck.py). Run after ./scripts/setup.sh, as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends dnsperf aardvark-dns dnsmasq-base iperf3
