#!/usr/bin/env python3
"""TCP probe state stays bounded under connection churn: runs 10^6 loopback connections
that die in every way that once leaked a `tcp_conns` entry (normal closes, a reset read
after it arrived, half-closed then reset, reset before accept, refused connects; see
bench/workloads/tcp_dead.c) under `sonde run` (tcp family only), and after every 10^5
prints the entries in Sonde's `tcp_conns` and `tcp_listeners` maps and their memlock,
as bpftool reads them. The entries stay at the host's live connections; before the fix
in issue 16 they grew by one per reset-then-read connection.

    sudo bench/tcp_map_bound.py                      # about 3 minutes
    sudo bench/tcp_map_bound.py --total 200000 --sonde target/debug/sonde

A benchmark that prints figures, not a test. Standard library only; needs bpftool and cc.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """exporters:
  console:
    enabled: false
probes:
  process:
    enabled: false
  fileio:
    enabled: false
  dns:
    enabled: false
"""


def bpftool(*args: str):
    out = subprocess.run(["bpftool", "-j", *args], check=True, capture_output=True)
    return json.loads(out.stdout)


def sonde_maps(pid: int) -> dict[str, dict]:
    """Sonde's maps by name (bpftool's view), found through the map ids in the process's
    /proc/PID/fdinfo (this bpftool may not list owner pids)."""
    ids = set()
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    for f in fdinfo.iterdir():
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("map_id:"):
                ids.add(int(line.split()[1]))
    maps = {}
    for i in ids:
        try:
            m = bpftool("map", "show", "id", str(i))
        except subprocess.CalledProcessError:
            continue
        maps[m.get("name", "")] = m
    return maps


def entries(map_id: int) -> int:
    return len(bpftool("map", "dump", "id", str(map_id)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total", type=int, default=1_000_000)
    ap.add_argument("--step", type=int, default=100_000)
    ap.add_argument("--sonde", type=Path, default=ROOT / "target/release/sonde")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (eBPF): run with sudo", file=sys.stderr)
        return 2
    if not args.sonde.exists():
        print(f"{args.sonde} is missing: cargo build --release -p sonde", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sonde-bench-") as tmp:
        work = Path(tmp) / "tcp_dead"
        subprocess.run(
            ["cc", "-O2", "-o", str(work), str(ROOT / "bench/workloads/tcp_dead.c")],
            check=True,
        )
        cfg = Path(tmp) / "sonde.yaml"
        cfg.write_text(CONFIG)
        sonde = subprocess.Popen(
            [str(args.sonde), "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            maps = {}
            while "tcp_conns" not in maps or "tcp_listeners" not in maps:
                if time.monotonic() > deadline or sonde.poll() is not None:
                    print("sonde did not load the tcp probe", file=sys.stderr)
                    return 1
                time.sleep(0.5)
                maps = sonde_maps(sonde.pid)
            conns, listeners = maps["tcp_conns"]["id"], maps["tcp_listeners"]["id"]

            def row(done: int, rate: str) -> None:
                m = sonde_maps(sonde.pid)
                print(
                    f"{done:>9} {rate:>10} {entries(conns):>10} {entries(listeners):>10}"
                    f" {m['tcp_conns']['bytes_memlock']:>14} {os.getloadavg()[0]:>6.2f}",
                    flush=True,
                )

            print(f"{'conns':>9} {'conns/s':>10} {'tcp_conns':>10} {'listeners':>10}"
                  f" {'conns memlock':>14} {'load1':>6}")
            row(0, "-")
            done = 0
            while done < args.total:
                n = min(args.step, args.total - done)
                out = subprocess.run([str(work), str(n)], check=True, capture_output=True,
                                     text=True).stdout.split()
                done += n
                row(done, out[-1])
        finally:
            sonde.terminate()
            sonde.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
