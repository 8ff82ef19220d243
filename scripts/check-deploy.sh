#!/usr/bin/env bash
# Checks the demo and packaging files with the real tools that run on these machines:
# promtool (Prometheus config), docker-compose 1.29 (parses and validates the compose file
# without a Docker daemon), kubernetes-validate --strict (offline Kubernetes schemas),
# systemd-analyze verify (the unit). The Collector config and the dashboards are checked
# by `cargo test --test deploy` and `--test prometheus`. Fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml

echo "== docker-compose config (docker-compose.yml)"
docker-compose -f docker-compose.yml config -q

echo "== kubernetes-validate --strict deploy/kubernetes"
kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml

echo "== systemd-analyze verify examples/sonde.service"
bin=${SONDE_BIN:-target/debug/sonde}
[ -x "$bin" ] || cargo build --locked --bin sonde
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# verify checks that ExecStart's binary exists: point it at the one just built.
sed "s#^ExecStart=/usr/local/bin/sonde #ExecStart=$(realpath "$bin") #" examples/sonde.service >"$tmp/sonde.service"
# systemd-analyze exits 0 on unknown keys and bad values, so any line it prints fails the
# check, except that a container without systemd as init has no sysinit.target to pull in.
out=$(systemd-analyze verify "$tmp/sonde.service" 2>&1 | grep -v 'Unit sysinit.target not found' || true)
if [ -n "$out" ]; then
  echo "$out"
  exit 1
fi
echo "deploy checks: all passed"
