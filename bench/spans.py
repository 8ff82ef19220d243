#!/usr/bin/env python3
"""Spans bench: what span support costs when nothing qualifies. The DNS bench's workload
(queries through a local caching dnsmasq) and the TCP bench's (loopback connection churn)
each run under `sonde run` with only their family, exporting to a local OTLP sink, twice
side by side: `spans-off` (`spans: {enabled: false}`) and `spans-on` (the defaults: slow or
failed lookups, failed or reset connections; `spans.tcp.longer_than` off). Three workloads:
- `dns`: lookups that are fast and succeed, so none qualifies: the difference is the cost
  of deciding that (issue 11's point 6). Paced to `--dns-rate` queries a second so that
  the probe's ring never overflows on a busy machine (a loss would make Sonde's CPU per
  query a lower bound); the losses are read and printed.
- `tcp-fin`: the churn with ordinary closes (the server's FIN first, then the client's; see
  workloads/tcp_churn.c `fin`): no connection fails or is reset, none qualifies.
- `tcp-rst`: the churn whose server ends every connection with a reset (SO_LINGER 0), so
  every one qualifies and the token bucket refuses all but `spans.max_per_second` (100) a
  second: the cost of a flood held to the limit.
Both churns are paced to `--tcp-rate` connections a second, for the same reason as DNS:
unpaced, on a busy machine the TCP event ring overflowed in some rounds.
Prints, per workload, the median throughput and Sonde's CPU per operation under each,
spans-on / spans-off paired by round, the trace requests the sink got and the events
Sonde's probes lost (a loss makes its CPU per operation too low to quote).

    sudo bench/spans.py                       # about 3 minutes; builds target/release/sonde
    sudo bench/spans.py --no-build --rounds 7 --duration 3

Both configurations send their metrics to the same sink (`bench.py`'s OtlpSink, an
HTTP/protobuf endpoint that answers 200 to everything and counts requests), so the export work is the
same; nothing leaves the machine. A benchmark that prints figures, not a test. Needs root,
gcc and dnsmasq (Debian's dnsmasq-base). Standard library only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as harness  # noqa: E402  (bench/bench.py: tracer, CPU and memory readings)
import dns  # noqa: E402  (bench/dns.py: the resolvers and the query loop)
import tcp  # noqa: E402,F401  (registers the tcp bench in harness.BENCHES)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("spans-off", "spans-on")
# (workload, its family, what qualifies)
WORKLOADS = (
    ("dns", "dns", "no lookup qualifies: 0 trace requests expected"),
    ("tcp-fin", "tcp", "no connection qualifies: 0 trace requests expected"),
    ("tcp-rst", "tcp", "every connection is reset: all qualify, all but 100/s refused"),
)
# Resolvers on a loopback /24 of this bench's own (dns.py's are 127.251.x), so it can run
# while bench/dns.py does.
dns.FWD, dns.AUTH = "127.252.0.1", "127.252.0.3"


def yaml(family: str, spans: bool, endpoint: str) -> str:
    families = harness.probe_families(ROOT / "examples/sonde.yaml")
    lines = ["probes:"]
    for f in families:
        lines += [f"  {f}:", f"    enabled: {'true' if f == family else 'false'}"]
    lines += [
        "exporters:",
        "  console:",
        "    enabled: false",
        "  otlp:",
        f"    endpoint: {endpoint}",
        "    protocol: http/protobuf",
    ]
    if not spans:
        lines += ["spans:", "  enabled: false"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per workload run (2)")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds after attach (0.5)")
    ap.add_argument(
        "--dns-rate", type=float, default=4000, help="DNS queries a second at most (4000; 0: unpaced)"
    )
    ap.add_argument("--sonde", type=Path, default=ROOT / "target/release/sonde")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument(
        "--tcp-rate",
        type=float,
        default=2500,
        help="TCP connections a second at most (2500; 0: unpaced)",
    )
    ap.add_argument(
        "--workloads",
        default=",".join(w for w, _, _ in WORKLOADS),
        help="comma-separated subset of " + ", ".join(w for w, _, _ in WORKLOADS),
    )
    args = ap.parse_args()
    chosen = [w for w in WORKLOADS if w[0] in args.workloads.split(",")]
    if not chosen:
        raise SystemExit(f"no known workload in {args.workloads!r}")
    if os.geteuid() != 0:
        raise SystemExit("run as root: Sonde loads eBPF programs and dnsmasq binds port 53")
    if not Path(dns.DNSMASQ).exists():
        raise SystemExit("needs dnsmasq: apt-get install dnsmasq-base")
    if not args.no_build:
        harness.build_sonde()

    sink = harness.OtlpSink().start()
    endpoint = sink.endpoint

    # (workload, config) -> samples of (ops/s, sonde CPU us per op)
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    load: list[float] = []
    lost: dict[str, dict[str, int]] = {}
    traces: dict[str, int] = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="sonde-bench-spans-") as tmp:
        work = Path(tmp)
        tcp_bench = harness.BENCHES["tcp"]
        harness.compile_workloads(tcp_bench, work)
        churn = tcp_bench.workloads[0]
        loop = dns.build_loop(work)

        def dns_run() -> tuple[int, float]:
            qps, _, n = dns.query_loop(loop, args.duration, rate=args.dns_rate)
            return n, qps

        def tcp_run(close: str) -> Callable[[], tuple[int, float]]:
            def run() -> tuple[int, float]:
                argv = churn.argv(work, args.duration, 1) + [close, f"{args.tcp_rate:g}"]
                ops, rate, _ = harness.run_workload(argv, 0)
                return ops, rate

            return run

        runs = {"dns": dns_run, "tcp-fin": tcp_run("fin"), "tcp-rst": tcp_run("rst")}
        with dns.Resolvers(loop):
            for workload, family, _ in chosen:
                sink.reset()
                for rnd in range(args.rounds):
                    load.append(os.getloadavg()[0])
                    order = CONFIGS if rnd % 2 == 0 else CONFIGS[::-1]
                    for config in order:
                        name = f"{workload}-{config}"
                        tracer = harness.Sonde(
                            work,
                            args.sonde,
                            name,
                            yaml(family, config == "spans-on", endpoint),
                            family,
                            only_family=True,
                        )
                        try:
                            tracer.start()
                            time.sleep(args.settle)
                            cpu0 = harness.CpuSnapshot.take(tracer.pid)
                            ops, rate = runs[workload]()
                            cpu = harness.cpu_seconds_between(
                                cpu0, harness.CpuSnapshot.take(tracer.pid)
                            )
                            for what, n in harness.sonde_losses(tracer.pid).items():
                                by = lost.setdefault(workload, {})
                                by[what] = by.get(what, 0) + n
                            tracer.stop()
                        finally:
                            tracer._kill()
                        samples.setdefault((workload, config), []).append(
                            (rate, 1e6 * cpu / ops if ops else 0.0)
                        )
                        harness.log(
                            f"round {rnd + 1}/{args.rounds} {name:<18} {rate:>9.0f} ops/s  "
                            f"sonde {1e6 * cpu / max(ops, 1):.2f} us/op"
                        )
                # Spans leave at most a second after they are made.
                time.sleep(1.5)
                traces[workload] = sink.stats()["traces"][0]
    sink.stop()

    pace = ", ".join(
        f"{what} paced to {rate:g}/s" if rate else f"{what} unpaced"
        for what, rate in (("DNS", args.dns_rate), ("TCP", args.tcp_rate))
    )
    print(
        f"\nspans off vs on ({started}, {os.cpu_count()} CPUs, "
        f"load average {min(load):.1f}-{max(load):.1f}; {args.rounds} rounds x "
        f"{args.duration:g} s, alternating; medians; {pace})"
    )
    head = f"{'workload':<10} {'config':<10} {'ops/s':>9} {'sonde us/op':>12} | {'ops/s on/off':>12} {'us/op on/off':>13}"
    print(head)
    print("-" * len(head))
    for workload, _, _ in chosen:
        med = {
            c: (
                statistics.median(r for r, _ in samples[(workload, c)]),
                statistics.median(u for _, u in samples[(workload, c)]),
            )
            for c in CONFIGS
        }
        # Ratios paired by round (the rounds alternate the order), then the median.
        pairs = list(zip(samples[(workload, "spans-off")], samples[(workload, "spans-on")]))
        rate_ratio = statistics.median(on[0] / off[0] for off, on in pairs if off[0])
        cpu_ratio = statistics.median(on[1] / off[1] for off, on in pairs if off[1])
        for c in CONFIGS:
            tail = f" | {rate_ratio:>12.3f} {cpu_ratio:>13.3f}" if c == "spans-on" else " |"
            print(f"{workload:<10} {c:<10} {med[c][0]:>9.0f} {med[c][1]:>12.2f}{tail}")
    for workload, _, qualifies in chosen:
        losses = {k: v for k, v in lost.get(workload, {}).items() if v}
        print(
            f"{workload}: {qualifies}; trace requests the sink received "
            f"{traces.get(workload, 0)}; events sonde's probes lost {sum(losses.values())}"
            + (f" {losses} (CPU per op too low to quote)" if losses else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
