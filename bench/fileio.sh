#!/usr/bin/env bash
# Cost of the fileio probe per read, against no probe and against a bpftrace script that
# builds the same latency histogram from the same tracepoints.
#
#   sudo bench/fileio.sh [SECONDS_PER_RUN] [PAIRS]     (defaults 3 s, 5 pairs)
#
# For each read size (1 B and 4 KiB): alternating runs bare / with the tracer, pinned to
# one CPU, and the medians of: calls per second, and the loop's own CPU time per call.
# BPF programs run in the calling task's context, so CPU ns per call with minus without
# is the tracer's cost per event, and it holds up when other work shares the machine
# (calls per second does not). Needs root, a C compiler, bpftrace, and
# `cargo build --release` (uses target/release/sonde, or $SONDE).
set -euo pipefail
SECS=${1:-3}
PAIRS=${2:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
SONDE=${SONDE:-$ROOT/target/release/sonde}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
[ "$(id -u)" = 0 ] || { echo "run as root (loads eBPF probes)"; exit 1; }
[ -x "$SONDE" ] || { echo "build first: cargo build --release ($SONDE missing)"; exit 1; }
command -v bpftrace >/dev/null || { echo "bpftrace is needed: apt-get install bpftrace"; exit 1; }

cc -O2 -o "$WORK/loop" "$HERE/fileio_read_loop.c"
head -c 4096 /dev/urandom > "$WORK/file"
CPU=$(( $(nproc) - 1 ))
loop() { taskset -c "$CPU" "$WORK/loop" "$WORK/file" "$1" "$SECS"; }

# Sonde with only the fileio family and no per-program run-time statistics (they add
# ~75 ns per program run and are off in this comparison for both sides).
cat > "$WORK/sonde.yaml" <<YAML
probes:
  process:
    enabled: false
exporters:
  console:
    enabled: false
self_telemetry:
  probe_run_stats: false
YAML
start_sonde() {
    "$SONDE" run --config "$WORK/sonde.yaml" 2>"$WORK/sonde.log" &
    SPID=$!
    for _ in $(seq 100); do grep -q started "$WORK/sonde.log" && return; sleep 0.1; done
    echo "sonde did not start:"; cat "$WORK/sonde.log"; exit 1
}
stop_sonde() { kill -TERM "$SPID"; wait "$SPID" || true; }

cat > "$WORK/hist.bt" <<'BT'
tracepoint:syscalls:sys_enter_pread64 { @start[tid] = nsecs; }
tracepoint:syscalls:sys_exit_pread64 /@start[tid]/ {
    @lat = hist(nsecs - @start[tid]);
    delete(@start[tid]);
}
BT
start_bpftrace() {
    bpftrace "$WORK/hist.bt" >"$WORK/bt.log" 2>&1 &
    SPID=$!
    for _ in $(seq 200); do grep -q Attaching "$WORK/bt.log" && { sleep 0.5; return; }; sleep 0.1; done
    echo "bpftrace did not start:"; cat "$WORK/bt.log"; exit 1
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# One run: "calls/s cpu_ns_per_call".
sample() { loop "$1" | awk '{ printf "%d %.1f\n", $3, $2 / $1 }'; }

printf '%-6s %-9s %12s %12s %7s %12s %12s %9s\n' size tracer ops/s_bare ops/s_with ratio \
    cpu_ns_bare cpu_ns_with ns/event
for SIZE in 1 4096; do
    for WITH in sonde bpftrace; do
        : > "$WORK/bare" ; : > "$WORK/with"
        for _ in $(seq "$PAIRS"); do
            sample "$SIZE" >> "$WORK/bare"
            "start_$WITH"
            sample "$SIZE" >> "$WORK/with"
            stop_sonde
        done
        BO=$(cut -d' ' -f1 "$WORK/bare" | median); WO=$(cut -d' ' -f1 "$WORK/with" | median)
        BC=$(cut -d' ' -f2 "$WORK/bare" | median); WC=$(cut -d' ' -f2 "$WORK/with" | median)
        awk -v s="$SIZE" -v w="$WITH" -v bo="$BO" -v wo="$WO" -v bc="$BC" -v wc="$WC" 'BEGIN {
            printf "%-6s %-9s %12d %12d %7.3f %12.1f %12.1f %9.1f\n", s, w, bo, wo, wo / bo, bc, wc, wc - bc }'
    done
done
