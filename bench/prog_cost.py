#!/usr/bin/env python3
"""What each BPF program costs per workload operation: the kernel's own run-time
statistics (run_cnt, run_time_ns of every program the tracer holds), read around one
workload run under Sonde (the bench's family alone) and under the bench's bpftrace program,
next to the workload's CPU per operation with no tracer.

    sudo bench/prog_cost.py tcp                    # about 30 s
    sudo bench/prog_cost.py process --workloads exec --duration 3
    sudo bench/prog_cost.py fileio --workloads read1
    sudo bench/prog_cost.py dns --sonde-b /tmp/sonde-old   # per query, two builds, no bpftrace

The programs' own time is a part of what `bench.py`'s `+wl us` column shows (the rest is
the tracepoints' dispatch, which no program can avoid), but it is measured per program,
by the kernel, and does not blur when other work shares the machine: the fastest way to
see which program a cost comes from. Statistics are switched on with BPF_ENABLE_STATS,
which holds them on only while this script keeps the returned descriptor open (host-wide,
like `sysctl kernel.bpf_stats_enabled=1`, but never left on, and never turning off a
setting someone else made). They add two clock reads to every program run on the host
meanwhile, which is in the figures too (tens of ns per run).

A benchmark that prints figures, not a test. Needs root, bpftool, gcc and bpftrace.
Standard library only.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as harness  # noqa: E402
import dns  # noqa: E402
import fileio  # noqa: E402,F401  (registers the fileio bench)
import tcp  # noqa: E402,F401  (registers the tcp bench)

BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0
SYS_BPF = {"x86_64": 321, "aarch64": 280}


def enable_stats() -> int:
    """BPF_ENABLE_STATS: run-time statistics stay on while the returned fd is open."""
    nr = SYS_BPF.get(platform.machine())
    if nr is None:
        raise harness.BenchError(f"the bpf(2) system call number on {platform.machine()} is unknown here")
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(BPF_STATS_RUN_TIME.to_bytes(4, "little"), 8)
    fd = libc.syscall(nr, BPF_ENABLE_STATS, attr, 8)
    if fd < 0:
        raise harness.BenchError(f"BPF_ENABLE_STATS failed: {os.strerror(ctypes.get_errno())}")
    return fd


def programs(pid: int) -> dict[int, dict]:
    """The BPF programs process `pid` holds (by their ids in /proc/PID/fdinfo), as
    `bpftool prog show` describes them (name, run_cnt, run_time_ns)."""
    ids = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            info = (Path(f"/proc/{pid}/fdinfo") / fd.name).read_text()
        except OSError:
            continue  # closed meanwhile
        m = re.search(r"^prog_id:\s*(\d+)", info, re.M)
        if m:
            ids.add(int(m.group(1)))
    out = {}
    for i in ids:
        r = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(i)], capture_output=True, text=True)
        if r.returncode == 0:
            out[i] = json.loads(r.stdout)
    return out


def program_costs(ops: int, before: dict[int, dict], after: dict[int, dict]) -> tuple[float, list]:
    """ns per op of all the programs, and per program (name, runs/op, ns/run, ns/op)."""
    total = 0
    rows = []
    for id_, a in after.items():
        b = before.get(id_, {})
        runs = a.get("run_cnt", 0) - b.get("run_cnt", 0)
        ns = a.get("run_time_ns", 0) - b.get("run_time_ns", 0)
        if runs:
            total += ns
            rows.append((a.get("name", "?"), runs / ops, ns / runs, ns / ops))
    return total / ops, sorted(rows, key=lambda r: -r[3])


def print_costs(config: str, base: float, cpu_us: float, total_ns: float, rows: list) -> None:
    print(
        f"  {config}: the workload's CPU {cpu_us:.2f} us/op ({cpu_us - base:+.2f}), "
        f"its programs {total_ns / 1000:.2f} us/op"
    )
    for name, per_op, per_run, ns_op in rows:
        print(f"    {name:<28} {per_op:6.2f} runs/op {per_run:7.0f} ns/run {ns_op:8.0f} ns/op")


def run_dns(args: argparse.Namespace) -> None:
    """The DNS bench's query loop through its two local resolvers (bench/dns.py), at nice 0
    as there: per query, each program of Sonde's DNS family alone (and of --sonde-b's)."""
    builds = {"sonde-dns": args.sonde} | ({"sonde-b-dns": args.sonde_b} if args.sonde_b else {})
    with tempfile.TemporaryDirectory(prefix="sonde-progcost-") as tmp:
        work = Path(tmp)
        loop = dns.build_loop(work)
        with dns.Resolvers(loop, args.pin, 0) as resolvers:
            pids = [d.pid for d in resolvers.procs]
            print(f"dns: queries through a local caching dnsmasq\nload {os.getloadavg()[0]:.1f}; per query:")
            for _ in range(args.repeat):
                _, _, n, cpu = dns.timed_query_loop(loop, args.duration, args.pin, 0, pids)
                base = 1e6 * cpu / n
                print(f"\nno tracer, the workload's CPU {base:.2f} us/query")
                for config, binary in builds.items():
                    p, _ = dns.start_sonde(binary, work)
                    try:
                        time.sleep(0.5)
                        fd = enable_stats()
                        try:
                            before = programs(p.pid)
                            _, _, n, cpu = dns.timed_query_loop(loop, args.duration, args.pin, 0, pids)
                            after = programs(p.pid)
                        finally:
                            os.close(fd)
                    finally:
                        p.send_signal(signal.SIGTERM)
                        p.wait(timeout=30)
                    print_costs(config, base, 1e6 * cpu / n, *program_costs(n, before, after))


def run(args: argparse.Namespace) -> None:
    bench = harness.select_workloads(harness.BENCHES[args.bench], args.workloads)
    families = harness.probe_families(harness.ROOT / "examples/sonde.yaml")
    with tempfile.TemporaryDirectory(prefix="sonde-progcost-") as tmp:
        work = Path(tmp)
        harness.compile_workloads(bench, work)
        tracers = harness.make_tracers(
            ["baseline", f"sonde-{bench.family}", "bpftrace"], bench, work, args.sonde, families
        )
        print(f"{bench.name}: {bench.summary}\nload {os.getloadavg()[0]:.1f}; per workload operation:")
        for wl in bench.workloads:
            argv = wl.argv(work, args.duration, 1)
            ops, _, cpu = harness.run_workload(argv, args.nice, args.pin)
            base = 1e6 * cpu / ops
            print(f"\n{wl.name}: no tracer, the workload's CPU {base:.2f} us/op")
            for config in (f"sonde-{bench.family}", "bpftrace"):
                tracer = tracers[config]()
                try:
                    tracer.start()
                    time.sleep(0.5)
                    fd = enable_stats()
                    try:
                        before = programs(tracer.pid)
                        ops, _, cpu = harness.run_workload(argv, args.nice, args.pin)
                        after = programs(tracer.pid)
                    finally:
                        os.close(fd)
                    tracer.stop()
                finally:
                    tracer._kill()
                print_costs(config, base, 1e6 * cpu / ops, *program_costs(ops, before, after))


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("bench", choices=sorted([*harness.BENCHES, "dns"]), help="which bench's workloads")
    p.add_argument("--workloads", type=lambda s: s.split(","), help="a subset of its workloads")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per workload run (2)")
    p.add_argument("--nice", type=int, default=-20, help="the workload's nice value (-20)")
    p.add_argument("--pin", type=int, default=(os.cpu_count() or 1) - 1, help="the workload's CPU (the last)")
    p.add_argument("--sonde", type=Path, default=harness.ROOT / "target/release/sonde", help="sonde binary")
    p.add_argument("--sonde-b", type=Path, help="dns: a second build, measured after the first")
    p.add_argument("--repeat", type=int, default=1, help="dns: runs of every configuration (1)")
    args = p.parse_args()

    def body() -> int:
        harness.check_prerequisites(["bpftrace"], build=False)
        if not os.access(args.sonde, os.X_OK):
            raise harness.BenchError(f"{args.sonde} missing: cargo build --release -p sonde")
        run_dns(args) if args.bench == "dns" else run(args)
        return 0

    return harness.guarded("prog_cost", body)


if __name__ == "__main__":
    sys.exit(main())
