#!/usr/bin/env bash
# Makes sure `prometheus` and `promtool` are on PATH for the tests that use them
# (tests/unit/test_deploy.py, tests/integration/test_prometheus.py): Debian's `prometheus`
# package ships both. Installs it when run as root with apt-get; otherwise says what to do and
# exits 0, so the tests skip locally (and fail under CI=true or REQUIRE_KAFKA=1).
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's prometheus package (prometheus, promtool) for the tests"
  apt-get update -q
  # Without recommends: the node exporter is not needed. No service is started: the tests run
  # their own server on a free port.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
  exit 0
fi
echo "prometheus/promtool not found: install them (Debian/Ubuntu: sudo apt-get install prometheus," \
     "or set PROMETHEUS_BIN); the tests that need them skip" >&2
