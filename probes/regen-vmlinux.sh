#!/usr/bin/env bash
# Regenerates include/vmlinux.h from the running kernel's BTF. Only needed to use
# kernel types that the committed snapshot lacks; CO-RE makes the snapshot portable.
set -euo pipefail
cd "$(dirname "$0")/include"
{
  printf '/* GENERATED FILE: do not edit.\n * bpftool btf dump file /sys/kernel/btf/vmlinux format c  (Linux %s, %s)\n' "$(uname -r | cut -d- -f1)" "$(uname -m)"
  printf ' * Regenerate with probes/regen-vmlinux.sh. CO-RE relocates every field access\n * against the BTF of the kernel Sonde runs on, so this snapshot need not match it.\n */\n'
  bpftool btf dump file /sys/kernel/btf/vmlinux format c
} > vmlinux.h.tmp
mv vmlinux.h.tmp vmlinux.h
