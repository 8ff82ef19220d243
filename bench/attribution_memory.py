#!/usr/bin/env python3
"""Sonde's memory stays bounded under attribution churn: runs `sonde run` (every family on,
the default series limits) while 10^5 short-lived processes, each with an executable name of
its own and a TCP peer of its own, and then thousands of Docker-shaped container cgroups, each
with a short process of its own, come and go (bench/workloads/attr_churn.c). After every step
it prints Sonde's VmRSS and VmHWM (and VmRSS split into anonymous memory and shared pages:
the BPF maps and ring buffers Sonde has mapped), the series its Prometheus endpoint exports (all, those
keyed by an executable name, by a container, and the otel.metric.overflow series) and what
the overflow series of a few per-key counters hold. Then it waits past the series ttl and
prints the same once more: the churned keys' series have expired.

    sudo bench/attribution_memory.py                          # about 5 minutes
    sudo bench/attribution_memory.py --processes 20000 --containers 2000 --ttl 10

A benchmark that prints figures, not a test. Standard library only; needs cc and root (eBPF,
cgroups). The cgroups are made under <cgroup v2 root>/sonde-bench-<pid>.slice and removed,
even when the run fails.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """collection:
  interval: {interval}s
  series_ttl: {ttl}s
exporters:
  console:
    enabled: false
  prometheus:
    host: 127.0.0.1
    port: {port}
"""

# Counters whose overflow series the table shows: one per kind of key that churns here.
OVERFLOW_OF = {
    "exec": "sonde_process_exec_total",
    "tcp.opened": "sonde_tcp_connection_opened_total",
    "file.io": "sonde_file_io_bytes_total",
    "net.io": "process_network_io_bytes_total",
}

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cgroup2_root() -> Path:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] == "cgroup2":
            return Path(left.split()[4])
    sys.exit("no cgroup2 mount in /proc/self/mountinfo")


def status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[k] = int(v.split()[0])
    return out


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    series = per_process = per_container = overflow = 0
    sums = dict.fromkeys(OVERFLOW_OF, 0.0)
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m or line.startswith("#"):
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if name.endswith("_bucket"):
            continue  # a histogram is one series, not one per bucket
        series += 1
        per_process += "process_executable_name=" in labels
        per_container += "container_id=" in labels
        if 'otel_metric_overflow="true"' in labels:
            overflow += 1
            for k, metric in OVERFLOW_OF.items():
                if name == metric:
                    sums[k] += value
    return {"series": series, "process": per_process, "container": per_container,
            "overflow": overflow, **sums}


HEADER = (f"{'phase':<11} {'done':>7} {'per s':>6} {'VmRSS':>8} {'VmHWM':>8} {'anon':>8}"
          f" {'shared':>8} {'series':>7}"
          f" {'by exe':>7} {'by ctr':>7} {'ovfl':>5} " + " ".join(f"{k:>11}" for k in OVERFLOW_OF)
          + f" {'load1':>6}")


def row(phase: str, done: int, rate: str, pid: int, port: int) -> None:
    s, m = status(pid), scrape(port)
    shared = s["RssFile"] + s["RssShmem"]
    print(f"{phase:<11} {done:>7} {rate:>6} {s['VmRSS']:>6}Ki {s['VmHWM']:>6}Ki"
          f" {s['RssAnon']:>6}Ki {shared:>6}Ki {m['series']:>7}"
          f" {m['process']:>7} {m['container']:>7} {m['overflow']:>5} "
          + " ".join(f"{m[k]:>11.0f}" for k in OVERFLOW_OF)
          + f" {os.getloadavg()[0]:>6.2f}", flush=True)


def steps(total: int, step: int):
    done = 0
    while done < total:
        n = min(step, total - done)
        yield done, n
        done += n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=100_000,
                    help="processes with distinct names and peers (100000)")
    ap.add_argument("--step", type=int, default=10_000, help="processes between rows (10000)")
    ap.add_argument("--containers", type=int, default=20_000,
                    help="container cgroups, one short process each (20000)")
    ap.add_argument("--container-step", type=int, default=2_000,
                    help="containers between rows (2000)")
    ap.add_argument("--live", type=int, default=500,
                    help="container cgroups that exist at once (500)")
    ap.add_argument("--interval", type=int, default=2, help="Sonde's collection interval, s (2)")
    ap.add_argument("--ttl", type=int, default=60, help="Sonde's collection.series_ttl, s (60)")
    ap.add_argument("--sonde", type=Path, default=ROOT / "target/release/sonde")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (eBPF, cgroups): run with sudo", file=sys.stderr)
        return 2
    if not args.sonde.exists():
        print(f"{args.sonde} is missing: cargo build --release -p sonde", file=sys.stderr)
        return 2
    parent = cgroup2_root() / f"sonde-bench-{os.getpid()}.slice"
    with tempfile.TemporaryDirectory(prefix="sonde-attr-") as tmp:
        work = Path(tmp) / "attr_churn"
        src = str(ROOT / "bench/workloads/attr_churn.c")
        # Static: each of the 10^5 execs then skips the dynamic loader (about 2x faster).
        if subprocess.run(["cc", "-O2", "-static", "-pthread", "-o", str(work), src],
                          capture_output=True).returncode != 0:
            subprocess.run(["cc", "-O2", "-pthread", "-o", str(work), src], check=True)
        links = Path(tmp) / "names"
        links.mkdir()
        sink = Path(tmp) / "written"
        sink.touch()
        port = free_port()
        cfg = Path(tmp) / "sonde.yaml"
        cfg.write_text(CONFIG.format(interval=args.interval, ttl=args.ttl, port=port))
        log = open(Path(tmp) / "sonde.log", "w")
        sonde = subprocess.Popen([str(args.sonde), "run", "--config", str(cfg)],
                                 stdout=log, stderr=subprocess.STDOUT)
        parent.mkdir()
        try:
            deadline = time.monotonic() + 120
            while True:
                if sonde.poll() is not None or time.monotonic() > deadline:
                    print(Path(log.name).read_text()[-3000:], file=sys.stderr)
                    print("sonde did not start", file=sys.stderr)
                    return 1
                try:
                    if scrape(port)["series"] > 0:
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            settle = 2 * args.interval + 1
            time.sleep(settle)
            print(f"sonde {args.sonde} (pid {sonde.pid}), interval {args.interval}s, "
                  f"series_ttl {args.ttl}s, default series limits; {os.cpu_count()} CPUs")
            print(HEADER)
            row("before", 0, "-", sonde.pid, port)

            def drive(argv: list[str]) -> str:
                out = subprocess.run([str(work), *argv], capture_output=True, text=True)
                if out.returncode != 0:
                    raise RuntimeError(f"attr_churn {argv[0]} failed: {out.stderr.strip()}")
                return out.stdout.split()[-1]

            for done, n in steps(args.processes, args.step):
                rate = drive(["procs", str(links), str(done), str(n), "0", str(sink)])
                time.sleep(args.interval + 0.5)  # a snapshot that includes the step
                row("processes", done + n, rate, sonde.pid, port)
            for done, n in steps(args.containers, args.container_step):
                # Container indexes go on from the processes', so peers stay distinct.
                rate = drive(["containers", str(parent), str(args.processes + done), str(n),
                              "0", str(sink), str(args.live)])
                time.sleep(args.interval + 0.5)
                row("containers", done + n, rate, sonde.pid, port)
            time.sleep(args.ttl + 2 * args.interval + 1)
            row("after ttl", args.processes + args.containers, "-", sonde.pid, port)
        finally:
            sonde.terminate()
            sonde.wait(timeout=60)
            log.close()
            # Whatever a failed run left: tasks are gone with their driver; empty dirs go.
            for d in sorted(parent.glob("docker-*.scope"), reverse=True):
                d.rmdir()
            parent.rmdir()
            shutil.rmtree(links, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
