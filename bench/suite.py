"""`bench/bench.py all`: every bench with short settings, one table (issue 14, point 5).

    sudo bench/bench.py all                      # about 6 minutes on a 2-CPU machine
    sudo bench/bench.py all --rounds 5 --duration 2
    sudo bench/bench.py all --only fileio,dns    # a subset of the phases

Phases, each running its configurations side by side (alternating, round by round):
  process   fork+exit, fork+exec churn: none / Sonde (process family) / bpftrace
  fileio    1-byte pread loop, pinned to one CPU: none / Sonde (fileio family) / bpftrace hist()
  tcp       loopback connect+write+close churn, pinned: none / Sonde (tcp family) / bpftrace
  dns       one-in-flight queries through a local caching dnsmasq: none / Sonde (dns family)
  memory    Sonde with every family on, exporting metrics and spans over OTLP/HTTP every
            second, through all of the above workloads and a storm of unanswered DNS
            queries: peak RSS, and steady RSS once it is idle again; several runs
            (--memory-runs), each listed
  fallback  one host-metrics cycle a second: Sonde without eBPF / node-exporter's defaults

and prints one table: per family the workload's throughput against no tracer, Sonde's own
CPU per event, the CPU it adds to the workload per event (the kernel programs' cost), the
same for bpftrace (node-exporter for the fallback), peak RSS; then the issue's targets with
the measured figure. Load averages are printed with each phase: on a busy machine the
throughput ratios blur (read the spread), the CPU-per-event figures much less.
A benchmark that prints figures, not a test. Standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench as harness  # noqa: E402
import dns  # noqa: E402
import fileio  # noqa: E402,F401  (registers the fileio bench)
import host_fallback  # noqa: E402
import tcp  # noqa: E402,F401  (registers the tcp bench)

PHASES = ("process", "fileio", "tcp", "dns", "memory", "fallback")
# The families whose targets are on the workload's throughput or CPU: their phases also run
# the floor configuration (bench/floor.bpf.c).
FLOOR_FAMILIES = ("fileio", "tcp", "dns")


@dataclasses.dataclass
class Row:
    family: str
    workload: str
    unit: str  # what one event is
    base_rate: float | None = None  # the workload's events/s with no tracer
    sonde_ratio: float | None = None  # throughput with Sonde / without
    sonde_cpu_us: float | None = None  # Sonde's own CPU per event
    sonde_added_us: float | None = None  # CPU the workload spent more per event
    other_name: str = "bpftrace"
    other_ratio: float | None = None
    other_cpu_us: float | None = None
    other_added_us: float | None = None
    sonde_rss_mib: float | None = None
    # Memory phase: VmRSS once idle again after the workloads.
    sonde_steady_rss_mib: float | None = None
    other_rss_mib: float | None = None
    # Empty programs on the same hooks (bench/floor.bpf.c): what any probe there costs.
    floor_ratio: float | None = None
    floor_added_us: float | None = None
    # The least a probe must do there to give the family's main metric (floor.bpf.c).
    least_ratio: float | None = None
    least_added_us: float | None = None
    sonde_lost: int | None = None  # events Sonde's probes counted as lost, all rounds
    spread: float | None = None  # largest (max - min) / median of ops/s over configs
    # The same for the workload's CPU per event, which other work on the machine moves
    # much less than its throughput.
    cost_spread: float | None = None
    load: str = ""
    # Lines printed under the table (the memory phase's runs).
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Target:
    what: str
    measured: float | None
    limit: float
    unit: str
    higher_is_better: bool = False
    # Events Sonde lost in the phase: a figure measured while it dropped events shows nothing.
    lost: int = 0
    # The same figure for empty programs on the same hooks (the floor configuration) and
    # for the least a probe there must do (the least configuration).
    floor: float | None = None
    least: float | None = None

    def ok(self, x: float) -> bool:
        return x >= self.limit if self.higher_is_better else x <= self.limit

    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        if self.lost:
            return f"not shown: Sonde lost {self.lost} events"
        if self.ok(self.measured):
            return "met"
        bounds = ", ".join(
            f"{name} {x:.2f}" for name, x in (("floor", self.floor), ("least", self.least)) if x is not None
        )
        # Facts of this run only: whether a bound holds is for several runs to say (a
        # round's throughput can move by more than the gap between two configurations).
        if self.floor is not None and not self.ok(self.floor):
            return f"NOT met; nor by empty programs on the same hooks ({bounds})"
        if self.least is not None and not self.ok(self.least):
            return f"NOT met; nor by the least probe ({bounds})"
        return "NOT met" + (f" ({bounds})" if bounds else "")


def loadavg() -> float:
    return os.getloadavg()[0]


def load_span(a: float, b: float) -> str:
    return f"{min(a, b):.1f}-{max(a, b):.1f}"


def paired(samples: list[harness.Sample], config: str, workload: str, f) -> float | None:
    """Median over rounds of f(traced sample, same round's baseline sample)."""
    base = {s.round: s for s in samples if s.config == "baseline" and s.workload == workload}
    vals = [
        f(s, base[s.round])
        for s in samples
        if s.config == config and s.workload == workload and s.round in base and s.ops
    ]
    return statistics.median(vals) if vals else None


def harness_row(
    m: harness.Measurement, family: str, workload: str, unit: str, load: str, b: bool = False
) -> Row:
    """The row of Sonde's family configuration, or with `b` of the --sonde-b build's (its
    workload named `<workload> (b)`), against bpftrace in the same rounds."""
    ss = m.samples
    sonde = f"sonde-b-{family}" if b else f"sonde-{family}"

    def ratio(s, b):
        return s.ops_per_s / b.ops_per_s

    def added(s, b):
        return 1e6 * (s.workload_cpu_s / s.ops - b.workload_cpu_s / b.ops)

    def own(config):
        xs = [1e6 * s.tracer_cpu_s / s.ops for s in ss if s.config == config and s.workload == workload and s.tracer_cpu_s is not None and s.ops]
        return statistics.median(xs) if xs else None

    def rss(config):
        xs = [s.tracer_peak_rss_kib for s in ss if s.config == config and s.tracer_peak_rss_kib]
        return max(xs) / 1024 if xs else None

    spreads, cost_spreads = [], []
    for config in {s.config for s in ss}:
        mine = [s for s in ss if s.config == config and s.workload == workload and s.ops]
        for xs, out in (
            ([s.ops_per_s for s in mine], spreads),
            ([s.workload_cpu_s / s.ops for s in mine], cost_spreads),
        ):
            if xs and statistics.median(xs):
                out.append((max(xs) - min(xs)) / statistics.median(xs))
    base = [s.ops_per_s for s in ss if s.config == "baseline" and s.workload == workload]
    return Row(
        family,
        f"{workload} (b)" if b else workload,
        unit,
        base_rate=statistics.median(base) if base else None,
        sonde_ratio=paired(ss, sonde, workload, ratio),
        sonde_cpu_us=own(sonde),
        sonde_added_us=paired(ss, sonde, workload, added),
        other_ratio=paired(ss, "bpftrace", workload, ratio),
        other_cpu_us=own("bpftrace"),
        other_added_us=paired(ss, "bpftrace", workload, added),
        sonde_rss_mib=rss(sonde),
        other_rss_mib=rss("bpftrace"),
        floor_ratio=paired(ss, "floor", workload, ratio),
        floor_added_us=paired(ss, "floor", workload, added),
        least_ratio=paired(ss, "least", workload, ratio),
        least_added_us=paired(ss, "least", workload, added),
        # Cumulative per Sonde run (one per round): the rounds' last samples summed.
        sonde_lost=sum({s.round: s.sonde_lost for s in ss if s.config == sonde}.values()),
        spread=max(spreads) if spreads else None,
        cost_spread=max(cost_spreads) if cost_spreads else None,
        load=load,
    )


def harness_args(
    args: argparse.Namespace, pin: int | None, workers: int = 1, duration: float | None = None
) -> argparse.Namespace:
    return argparse.Namespace(
        rounds=args.rounds,
        duration=duration or args.duration,
        workers=workers,
        settle=0.5,
        nice=args.nice,
        pin=pin,
        sonde=str(args.sonde),
        sonde_b=str(args.sonde_b) if args.sonde_b else None,
        no_build=True,
    )


def run_harness_bench(
    name: str,
    workloads: list[str],
    units: dict[str, str],
    args: argparse.Namespace,
    pin: int | None,
    duration: float | None = None,
) -> tuple[list[Row], harness.Measurement]:
    bench = harness.select_workloads(harness.BENCHES[name], workloads)
    configs = ["baseline", f"sonde-{bench.family}", "bpftrace"]
    if bench.family in FLOOR_FAMILIES:
        configs += ["floor", "least"]
    if args.sonde_b:
        configs.insert(2, f"sonde-b-{bench.family}")
    l0 = loadavg()
    m = harness.measure(bench, configs, harness_args(args, pin, duration=duration), args.sonde)
    load = load_span(l0, loadavg())
    rows = [harness_row(m, bench.family, w, units[w], load) for w in workloads]
    if args.sonde_b:
        rows += [harness_row(m, bench.family, w, units[w], load, b=True) for w in workloads]
    return rows, m


def memory_phase(args: argparse.Namespace, pin: int | None) -> list[Row]:
    """Sonde with every family at its defaults, exporting metrics and spans over OTLP/HTTP
    to a local sink every second, through every workload in turn, then idle: its peak RSS
    (VmHWM) and its steady RSS (VmRSS, median of the idle seconds). `--memory-runs` times
    (a fresh Sonde each): the peak is the highest of the runs, every run is logged. With
    --sonde-b, that build too, alternating run by run, in a row of its own."""
    l0 = loadavg()
    families = harness.probe_families(harness.ROOT / "examples/sonde.yaml")
    builds = [("sonde", args.sonde)] + ([("sonde-b", args.sonde_b)] if args.sonde_b else [])
    peaks: dict[str, list[int]] = {name: [] for name, _ in builds}
    steadies: dict[str, list[float]] = {name: [] for name, _ in builds}
    lost: dict[str, int] = {name: 0 for name, _ in builds}
    runs: dict[str, list[str]] = {name: [] for name, _ in builds}
    with tempfile.TemporaryDirectory(prefix="sonde-bench-mem-") as tmp, harness.OtlpSink() as sink:
        work = Path(tmp)
        benches = [harness.BENCHES[b] for b in ("process", "fileio", "tcp")]
        for b in benches:
            harness.compile_workloads(b, work)
        loop = dns.build_loop(work)
        # Export as a deployment does (metrics and spans to a collector, here the sink) at
        # the shortest usual interval, so the export path's buffers are in the peak. The
        # TCP churn ends every connection with a reset: each qualifies for a span, and the
        # spans' rate limit (100/s) holds the trace requests at their fullest. And a
        # storm of DNS queries to a resolver that never answers: each stays an open
        # lookup for the DNS timeout (what the matcher bounds).
        yaml = harness.sonde_yaml(families, None) + (
            "  otlp:\n"
            f"    endpoint: {sink.endpoint}\n"
            "    protocol: http/protobuf\n"
            "collection:\n  interval: 1s\n"
        )
        with dns.Resolvers(loop, pin, 0):
            for run in range(args.memory_runs):
                for name, binary in builds if run % 2 == 0 else builds[::-1]:
                    sink.reset()
                    sonde = harness.Sonde(work, binary, name, yaml, "process", only_family=False)
                    try:
                        sonde.start()
                        # First, so its lookups have timed out before the idle seconds.
                        storm = dns.unanswered(args.duration)
                        for b in benches:
                            for w in b.workloads:
                                harness.run_workload(w.argv(work, args.duration, 1), args.nice, pin)
                        dns.query_loop(loop, args.duration, pin, 0)
                        time.sleep(1.0)  # one more collection after the last workload
                        steady = []
                        for _ in range(max(3, int(args.idle))):
                            time.sleep(1.0)
                            steady.append(rss_kib(sonde.pid))
                        peak = harness.peak_rss_kib(sonde.pid)
                        harness.log(f"memory: {name} steady RSS by mapping (KiB): " + smaps_breakdown(sonde.pid))
                        lost[name] += sum((harness.sonde_losses(sonde.pid) if sonde.pid else {}).values())
                        sonde.stop()
                    finally:
                        sonde._kill()
                    peaks[name].append(peak)
                    steadies[name].append(statistics.median(steady))
                    st = sink.stats()
                    runs[name].append(
                        f"{name} run {run + 1}: peak {peak / 1024:.1f} MiB, steady "
                        f"{steadies[name][-1] / 1024:.1f} MiB; {storm} unanswered DNS queries; "
                        f"metrics {st['metrics'][0]} requests (largest {st['metrics'][2] / 1024:.0f} KiB), "
                        f"traces {st['traces'][0]} requests (largest {st['traces'][2] / 1024:.0f} KiB); "
                        f"load {loadavg():.1f}"
                    )
                    harness.log("memory: " + runs[name][-1])
    load = load_span(l0, loadavg())
    return [
        Row(
            "memory",
            "every family" + (" (b)" if name == "sonde-b" else ""),
            "-",
            sonde_rss_mib=max(peaks[name]) / 1024,
            sonde_steady_rss_mib=statistics.median(steadies[name]) / 1024,
            sonde_lost=lost[name],
            load=load,
            notes=runs[name],
        )
        for name, _ in builds
    ]


def smaps_breakdown(pid: int | None) -> str:
    """Resident KiB per kind of mapping: the binary's own pages, shared libraries, heap and
    other anonymous memory (thread stacks, malloc arenas), BPF ring buffers (the kernel's
    ring pages, whose data area is mapped twice) and the rest; threads."""
    kinds: dict[str, int] = {}
    exe = os.readlink(f"/proc/{pid}/exe")
    kind = "other"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" in head[3]:
            name = head[5] if len(head) > 5 else ""
            kind = (
                "binary" if name == exe
                else "libs" if name.startswith("/")
                else "bpf-ring" if name == "anon_inode:bpf-map"
                else "anon" if name in ("", "[heap]", "[stack]")
                else "other"
            )
        elif head[0] == "Rss:":
            kinds[kind] = kinds.get(kind, 0) + int(head[1])
    threads = next(
        line.split()[1]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Threads:")
    )
    return " ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + f"; threads {threads}"


def rss_kib(pid: int | None) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise harness.BenchError(f"no VmRSS in /proc/{pid}/status")


def fallback_phase(args: argparse.Namespace) -> Row:
    l0 = loadavg()
    agents = ("sonde (fallback)", "node-exporter")
    res = host_fallback.measure(
        str(args.sonde), args.node_exporter, args.fallback_duration, 2, args.fallback_rounds, agents
    )
    sonde = statistics.median(x[0] for x in res[agents[0]])
    ne = statistics.median(x[0] for x in res[agents[1]])
    return Row(
        "fallback",
        "one cycle",
        "cycle",
        sonde_cpu_us=1e6 * sonde,
        other_name="node-exporter",
        other_cpu_us=1e6 * ne,
        sonde_rss_mib=max(x[1] for x in res[agents[0]]) / 1024,
        other_rss_mib=max(x[1] for x in res[agents[1]]) / 1024,
        load=load_span(l0, loadavg()),
    )


def dns_phase(args: argparse.Namespace, pin: int | None) -> Row:
    l0 = loadavg()
    # At nice 0 even when the other workloads run at -20: the query loop and both
    # resolvers together take a whole CPU, and at -20 they left Sonde's reader, at nice 0
    # on a busy machine, too little CPU to drain its ring (most packets lost, which shows
    # nothing about the probe's cost).
    r = dns.measure(args.sonde, args.dns_rounds, args.duration, pin, 0, args.sonde_b, floor=True)
    b = "sonde-b" if args.sonde_b else None
    return Row(
        "dns",
        "query",
        "query",
        base_rate=statistics.median(r.base),
        sonde_ratio=r.ratio(),
        sonde_cpu_us=r.cpu_us_per_query(),
        sonde_added_us=r.added_us_per_query(),
        other_name=b or "-",
        other_ratio=r.ratio(b) if b else None,
        other_cpu_us=r.cpu_us_per_query(b) if b else None,
        other_added_us=r.added_us_per_query(b) if b else None,
        other_rss_mib=r.runs[b].rss_kib / 1024 if b else None,
        sonde_rss_mib=r.rss_kib / 1024,
        sonde_lost=r.lost,
        floor_ratio=r.ratio("floor"),
        floor_added_us=r.added_us_per_query("floor"),
        least_ratio=r.ratio("least"),
        least_added_us=r.added_us_per_query("least"),
        spread=r.spread(),
        load=load_span(l0, loadavg()),
    )


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[Row], started: datetime.datetime, args: argparse.Namespace) -> None:
    m = harness.machine()
    print(
        f"\nbench/bench.py all: {started:%Y-%m-%d %H:%M} UTC, {m['cpus']} CPUs ({m['cpu']}), "
        f"Linux {m['kernel']}, {m['bpftrace']}\n{getattr(args, 'sonde_revision', args.sonde)}\n"
        f"{args.rounds} rounds (DNS {args.dns_rounds}) x {args.duration:g} s (TCP "
        f"{args.tcp_duration:g} s) per configuration, "
        f"alternating; workloads "
        f"pinned to CPU {(os.cpu_count() or 1) - 1}, at nice {args.nice} (DNS at 0); "
        f"fallback {args.fallback_rounds} x {args.fallback_duration:g} s per agent\n"
    )
    head = (
        f"{'family':<8} {'workload':<12} {'none/s':>9} | {'Sonde':>6} {'own us':>7} "
        f"{'+wl us':>7} {'RSS MiB':>9} {'lost':>6} | {'vs':<13} {'ratio':>6} {'own us':>8} {'+wl us':>7} "
        f"{'RSS MiB':>7} | {'floor':>6} {'+wl us':>7} {'least':>6} {'+wl us':>7} | {'spread':>6} {'load':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        rss = fmt(r.sonde_rss_mib, ".1f")
        if r.sonde_steady_rss_mib is not None:
            rss = f"{r.sonde_rss_mib:.1f}/{r.sonde_steady_rss_mib:.1f}"
        print(
            f"{r.family:<8} {r.workload:<12} {fmt(r.base_rate, '.0f'):>9} | "
            f"{fmt(r.sonde_ratio, '.3f'):>6} {fmt(r.sonde_cpu_us, '.3f'):>7} "
            f"{fmt(r.sonde_added_us, '+.2f'):>7} {rss:>9} {fmt(r.sonde_lost, 'd'):>6} | {r.other_name:<13} "
            f"{fmt(r.other_ratio, '.3f'):>6} {fmt(r.other_cpu_us, '.3f'):>8} "
            f"{fmt(r.other_added_us, '+.2f'):>7} {fmt(r.other_rss_mib, '.1f'):>7} | "
            f"{fmt(r.floor_ratio, '.3f'):>6} {fmt(r.floor_added_us, '+.2f'):>7} "
            f"{fmt(r.least_ratio, '.3f'):>6} {fmt(r.least_added_us, '+.2f'):>7} | "
            f"{fmt(None if r.spread is None else 100 * r.spread, '.0f') + ('%' if r.spread is not None else ''):>6} "
            f"{r.load:>9}"
        )
    print(
        """
none/s: the workload's events per second with no tracer (median over rounds).
Sonde / ratio: throughput with the tracer over throughput without, median of the per-round
  ratios. own us: the tracer process's own CPU per event (user + system, every thread).
+wl us: CPU the workload itself spent more per event than in the same round without a
  tracer: the kernel programs run in its context, so this is their cost per event.
RSS MiB: peak (VmHWM); memory: peak / steady (VmRSS once idle after the workloads), the
  highest peak and the median steady of its runs (each listed below the table), with
  metrics and spans exported over OTLP/HTTP to a local sink every second.
lost: events Sonde's probes counted as lost (a ring or map full), over every round; when
  not 0, Sonde did not see every event and its CPU per event is too low to quote.
fallback: own us is CPU per collection cycle (Sonde without eBPF, OTLP/HTTP export
  included) against one node-exporter scrape with its default collectors.
floor: empty programs on the same hooks as Sonde's family (bench/floor.bpf.c): the
  throughput ratio and the workload's added CPU that calling any program there costs,
  which no probe on those hooks can go below. least: the least a probe there must do to
  give the family's main metric at all (fileio: a latency histogram, nothing per file or
  process; tcp: connection durations, nothing per connection kept; dns: telling DNS
  packets from the rest, nothing recorded).
spread: the largest (max - min) / median of the throughput over the rounds of any
  configuration. load: the 1-minute load average at the start and end of the phase."""
    )
    for r in rows:
        for note in r.notes:
            print(f"{r.family}: {note}")


def targets(rows: list[Row]) -> list[Target]:
    by = {(r.family, r.workload): r for r in rows}
    out: list[Target] = []
    if f := by.get(("fileio", "read1")):
        out.append(
            Target(
                "fileio: CPU added per 1-byte pread", f.sonde_added_us, 0.40, "us",
                lost=f.sonde_lost or 0, floor=f.floor_added_us, least=f.least_added_us,
            )
        )

        def of_bpftrace(x: float | None) -> float | None:
            return x / f.other_added_us if x is not None and f.other_added_us else None

        out.append(
            Target(
                "fileio: that cost against bpftrace hist()'s", of_bpftrace(f.sonde_added_us), 0.30, "x",
                floor=of_bpftrace(f.floor_added_us), least=of_bpftrace(f.least_added_us),
            )
        )
    if d := by.get(("dns", "query")):
        out.append(Target("dns: Sonde's own CPU per query", d.sonde_cpu_us, 1.0, "us", lost=d.sonde_lost or 0))
        out.append(
            Target("dns: query rate with Sonde / without", d.sonde_ratio, 0.97, "x", True, d.sonde_lost or 0, d.floor_ratio, d.least_ratio)
        )
    if t := by.get(("tcp", "churn")):
        out.append(Target("tcp: churn spread over rounds (throughput)", t.spread, 0.10, "x"))
        out.append(Target("tcp: churn spread over rounds (CPU per connection)", t.cost_spread, 0.10, "x"))
        out.append(Target("tcp: Sonde's own CPU per connection", t.sonde_cpu_us, 1.0, "us", lost=t.sonde_lost or 0))
        out.append(
            Target("tcp: throughput with Sonde / without", t.sonde_ratio, 0.95, "x", True, t.sonde_lost or 0, t.floor_ratio, t.least_ratio)
        )
    if m := by.get(("memory", "every family")):
        out.append(Target("memory: peak RSS, every family on", m.sonde_rss_mib, 20.0, "MiB"))
    if b := by.get(("fallback", "one cycle")):
        x = b.sonde_cpu_us / b.other_cpu_us if b.sonde_cpu_us is not None and b.other_cpu_us else None
        out.append(Target("fallback: one cycle against node-exporter's scrape", x, 0.70, "x"))
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="bench.py all",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("--rounds", type=int, default=5, help="rounds per phase (5)")
    ap.add_argument("--duration", type=float, default=1.5, help="seconds per workload run (1.5)")
    ap.add_argument(
        "--dns-rounds",
        type=int,
        default=15,
        help="rounds of the DNS phase (15): its rounds are short and on a shared machine "
        "single rounds' ratios scatter by +-8 %%, so it takes more of them for a median to "
        "within about 2 %%",
    )
    ap.add_argument(
        "--tcp-duration",
        type=float,
        default=3,
        help="seconds per run of the TCP phase (3): with 1.5 s runs its rounds spread 11-15 %% "
        "on a quiet machine, with 3 s 5-6 %%",
    )
    ap.add_argument("--fallback-rounds", type=int, default=2, help="fallback rounds (2)")
    ap.add_argument("--fallback-duration", type=float, default=10, help="seconds per agent (10)")
    ap.add_argument(
        "--nice",
        type=int,
        default=-20,
        help="nice value of the workloads (never the tracers); -20 keeps other work on a "
        "shared machine from setting the pace (-20)",
    )
    ap.add_argument("--idle", type=float, default=3, help="idle seconds for steady RSS (3)")
    ap.add_argument(
        "--memory-runs", type=int, default=3, help="fresh Sonde runs in the memory phase (3)"
    )
    ap.add_argument("--only", type=lambda s: s.split(","), help=f"phases, comma-separated: {','.join(PHASES)}")
    ap.add_argument("--sonde", type=Path, help="sonde binary (default: build target/release/sonde)")
    ap.add_argument("--node-exporter", default="/usr/bin/prometheus-node-exporter")
    ap.add_argument(
        "--sonde-b",
        type=Path,
        help="a second build (e.g. main's) run side by side: in the DNS phase as "
        "configuration sonde-b, in the table's vs columns; in the process, fileio and tcp "
        "phases as sonde-b-<family> and in the memory phase, in rows of their own "
        "('<workload> (b)')",
    )
    ap.add_argument("--json", help="also write the rows and targets to this file")
    args = ap.parse_args(argv)
    # SIGTERM as Ctrl-C: unwinds, so a running tracer is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    phases = args.only or list(PHASES)
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        ap.error(f"unknown phase(s) {unknown}; known: {', '.join(PHASES)}")
    try:
        if os.geteuid() != 0:
            raise harness.BenchError("run as root (the tracers load eBPF programs): sudo bench/bench.py all")
        harness.check_prerequisites(["bpftrace"], build=args.sonde is None)
        for need, hint in ((dns.DNSMASQ, "apt-get install dnsmasq-base"), (args.node_exporter, "apt-get install prometheus-node-exporter")):
            if not os.access(need, os.X_OK):
                raise harness.BenchError(f"{need} is missing: {hint} (or scripts/install-deps.sh)")
        if args.sonde is None:
            harness.build_sonde()
            args.sonde = harness.ROOT / "target/release/sonde"
        args.sonde_revision = harness.sonde_revision(args.sonde)
        harness.log(f"sonde: {args.sonde_revision}")
        # The last CPU for the pinned workloads; the tracers and everything else may use any.
        pin = (os.cpu_count() or 1) - 1
        started = datetime.datetime.now(datetime.timezone.utc)
        t0 = time.monotonic()
        rows: list[Row] = []
        raw: dict[str, object] = {}
        for phase in phases:
            harness.log(f"phase {phase} (load {loadavg():.1f}, {time.monotonic() - t0:.0f} s so far)")
            if phase == "process":
                r, m = run_harness_bench("process", ["fork", "exec"], {"fork": "fork", "exec": "exec"}, args, pin)
            elif phase == "fileio":
                r, m = run_harness_bench("fileio", ["read1"], {"read1": "pread"}, args, pin)
            elif phase == "tcp":
                r, m = run_harness_bench(
                    "tcp", ["churn"], {"churn": "conn"}, args, pin, args.tcp_duration
                )
            elif phase == "dns":
                r, m = [dns_phase(args, pin)], None
            elif phase == "memory":
                r, m = memory_phase(args, pin), None
            else:
                r, m = [fallback_phase(args)], None
            rows += r
            if m is not None:
                raw[phase] = [dataclasses.asdict(s) for s in m.samples]
        print_table(rows, started, args)
        ts = targets(rows)
        print("\nTargets (issue 14):")
        for t in ts:
            print(
                f"  {t.what:<52} {fmt(t.measured, '.2f'):>7} {t.unit:<3} "
                f"({'>=' if t.higher_is_better else '<='} {t.limit:g}): {t.verdict()}"
            )
        print(f"\nwall time {time.monotonic() - t0:.0f} s")
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "started": started.isoformat(timespec="seconds"),
                        "machine": harness.machine(),
                        "sonde": args.sonde_revision,
                        "rows": [dataclasses.asdict(r) for r in rows],
                        "targets": [dict(dataclasses.asdict(t), verdict=t.verdict()) for t in ts],
                        "samples": raw,
                    },
                    indent=1,
                    default=str,
                )
            )
        return 0
    except harness.BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
