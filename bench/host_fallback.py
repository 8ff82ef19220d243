#!/usr/bin/env python3
"""Cost of one host-metrics collection cycle: Sonde in fallback mode vs node-exporter.

Issue 6, item 5. Runs each agent alone for --duration seconds (default 60) at one cycle a
second and reports its CPU time per cycle and its peak RSS:

  sonde          target/release/sonde run, collection.ebpf_enabled: false (the /proc and
                 /sys fallback), 1 s interval, exporting OTLP/HTTP to a local sink
                 (bench.py's OtlpSink; so encoding and sending are counted, as
                 node-exporter's are)
  node-exporter  /usr/bin/prometheus-node-exporter with its default collectors, scraped
                 once a second by this script (its whole cost per scrape)
  node-exporter+ the same plus the tcpstat and processes collectors, which do what Sonde's
                 TCP connection counts and process scan do (like for like)

A benchmark that prints figures, not a test. Root is not needed. Standard library only.

  bench/host_fallback.py                    # about 2 minutes
  bench/host_fallback.py --duration 20 --rounds 3
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as harness  # noqa: E402  (bench/bench.py: CPU readings in ns per thread)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_seconds(pid):
    """A CPU reading of a whole process; subtract two with harness.cpu_seconds_between
    (ns per thread from schedstat; clock ticks only when a thread exited between)."""
    return harness.CpuSnapshot.take(pid)


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited early ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def run_sonde(binary, duration, warmup):
    sink = harness.OtlpSink().start()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as cfg:
        cfg.write(
            "collection:\n  ebpf_enabled: false\n  interval: 1s\n"
            "exporters:\n  otlp:\n"
            f"    endpoint: {sink.endpoint}\n"
            "    protocol: http/protobuf\n"
            "log:\n  level: warn\n"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.Popen(
        [binary, "run", "--config", cfg.name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(warmup)
        if proc.poll() is not None:
            sys.exit(f"sonde exited early ({proc.returncode})")
        before, n0 = cpu_seconds(proc.pid), sink.stats()["metrics"][0]
        time.sleep(duration)
        after, n1 = cpu_seconds(proc.pid), sink.stats()["metrics"][0]
        rss = peak_rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sink.stop()
        os.unlink(cfg.name)
    cycles = max(n1 - n0, 1)
    return harness.cpu_seconds_between(before, after) / cycles, rss, cycles


def run_node_exporter(binary, duration, warmup, extra=()):
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_port(port, proc, "node-exporter")
        end = time.monotonic() + warmup
        while time.monotonic() < end:
            urllib.request.urlopen(url, timeout=30).read()
            time.sleep(1)
        before = cpu_seconds(proc.pid)
        scrapes = 0
        start = time.monotonic()
        while time.monotonic() - start < duration:
            t = time.monotonic()
            urllib.request.urlopen(url, timeout=30).read()
            scrapes += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
        after = cpu_seconds(proc.pid)
        rss = peak_rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return harness.cpu_seconds_between(before, after) / max(scrapes, 1), rss, scrapes


LIKE_FOR_LIKE = ("--collector.tcpstat", "--collector.processes")
AGENTS = ("sonde (fallback)", "node-exporter", "node-exporter+")


def measure(sonde, node_exporter, duration, warmup, rounds, agents=AGENTS):
    """Each agent in turn, the order reversed every other round; per agent a list of
    (CPU seconds per cycle, peak RSS KiB, cycles), one per round."""
    runners = {
        "sonde (fallback)": lambda: run_sonde(sonde, duration, warmup),
        "node-exporter": lambda: run_node_exporter(node_exporter, duration, warmup),
        "node-exporter+": lambda: run_node_exporter(node_exporter, duration, warmup, LIKE_FOR_LIKE),
    }
    results = {name: [] for name in agents}
    for r in range(rounds):
        order = list(agents) if r % 2 == 0 else list(reversed(agents))
        for name in order:
            results[name].append(runners[name]())
            print(f"round {r + 1}: {name}: {results[name][-1]}", file=sys.stderr)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=60, help="seconds measured per run")
    ap.add_argument("--warmup", type=float, default=3, help="seconds before measuring")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each agent (median)")
    ap.add_argument("--sonde", default=os.path.join(ROOT, "target/release/sonde"))
    ap.add_argument("--node-exporter", default="/usr/bin/prometheus-node-exporter")
    args = ap.parse_args()
    for b in (args.sonde, args.node_exporter):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} is missing (cargo build --release -p sonde; apt-get install prometheus-node-exporter)")

    load = os.getloadavg()[0]
    results = measure(args.sonde, args.node_exporter, args.duration, args.warmup, args.rounds)
    print(f"one collection cycle a second, {args.duration:g} s measured, {args.rounds} round(s), "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}, load average {load:.1f}-"
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'agent':<18} {'CPU ms/cycle':>13} {'CPU % of 1 core':>16} {'peak RSS MiB':>13} {'cycles':>7}")
    for name, rs in results.items():
        cpu = statistics.median(x[0] for x in rs)
        rss = max(x[1] for x in rs) / 1024
        cycles = sum(x[2] for x in rs)
        print(f"{name:<18} {cpu * 1000:>13.2f} {cpu * 100:>16.2f} {rss:>13.1f} {cycles:>7}")


if __name__ == "__main__":
    main()
