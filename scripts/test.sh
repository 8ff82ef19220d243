#!/usr/bin/env bash
# Runs every check and test: format, lints, unit tests, privileged integration and
# end-to-end tests (real probes in the kernel, real OTLP receivers on loopback).
# The privileged tests need root; run this as root or it re-runs itself with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME,CARGO_TARGET_DIR "$0" "$@"
fi

scripts/install-deps.sh

# tracefs is where classic tracepoints publish their ids; some machines leave it unmounted.
if [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ]; then
  mount -t tracefs tracefs /sys/kernel/tracing
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== deploy files (promtool, docker-compose, kubernetes-validate, systemd-analyze)"
scripts/check-deploy.sh
echo "== cargo test (unit, integration, end-to-end)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked -- --test-threads="${SONDE_TEST_THREADS:-4}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# cargo prints one result line per test binary (the last is often the empty doc-test
# run); sum them into one closing line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
