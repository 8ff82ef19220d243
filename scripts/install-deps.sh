#!/usr/bin/env bash
# Installs what building and testing Sonde needs on Debian/Ubuntu (skips what is there).
# Build: clang + libbpf headers (the C probes), llvm (llvm-strip drops their DWARF),
# libclang (bindgen derives the Rust mirror of the probes' shared layouts). Tests: bpftool
# (kernel object checks), iproute2 and nftables (network namespaces, loss injection),
# dnsmasq (DNS tests' own resolvers), prometheus-node-exporter (an independent reader for
# fallback metrics), e2fsprogs and
# util-linux (loop-device file systems), fuse3, tmux (`sonde top` driven as a person would),
# prometheus (a real Prometheus scrapes the endpoint in tests; promtool lints what it serves
# and checks deploy/prometheus), docker-compose (parses docker-compose.yml without a daemon),
# systemd (systemd-analyze verify), PyPI's kubernetes-validate (the Kubernetes manifests).
# Bench: bpftrace (the comparison tracer).
set -euo pipefail

packages=(
  clang llvm libbpf-dev libclang-dev libc6-dev pkg-config
  bpftool iproute2 nftables iptables dnsmasq-base prometheus-node-exporter
  e2fsprogs util-linux fuse3 procps python3 bpftrace tmux prometheus
  docker-compose systemd python3-pip
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: every Debian package is installed"
else
echo "install-deps: installing ${missing[*]}"
as_root apt-get update -qq
if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
  # Ubuntu ships bpftool in linux-tools rather than its own package.
  rest=()
  for p in "${missing[@]}"; do [ "$p" = bpftool ] || rest+=("$p"); done
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${rest[@]}" linux-tools-common "linux-tools-$(uname -r)" || \
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${rest[@]}"
fi
fi

# kubernetes-validate (offline Kubernetes schemas) comes from PyPI.
if ! command -v kubernetes-validate >/dev/null; then
  echo "install-deps: installing kubernetes-validate (PyPI)"
  as_root python3 -m pip install --quiet kubernetes-validate ||
    as_root python3 -m pip install --quiet --break-system-packages kubernetes-validate
fi

# dnsmasq-base ships the binary without starting a system resolver; tests start their own.
echo "install-deps: done"
