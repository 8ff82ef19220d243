#!/usr/bin/env python3
"""DNS bench: queries/s through a local caching resolver with and without Sonde's DNS probe.

Starts two dnsmasq instances on loopback addresses of its own (an authoritative one for a
bench zone and a caching forwarder in front of it; never the machine's resolver), then,
for R rounds alternating the order, runs bench/dns_query_loop.c against the forwarder
for D seconds with no tracer and with `sonde run` (only the DNS family enabled, no
exporter). Prints the median queries/s of each, the ratio, and Sonde's CPU (share of one
CPU and microseconds per query) and peak RSS. A benchmark that prints figures, not a test.

    sudo bench/dns.py                  # builds target/release/sonde first
    sudo bench/dns.py --no-build --rounds 7 --duration 5

Needs root, gcc and /usr/sbin/dnsmasq (Debian's dnsmasq-base). Standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as harness  # noqa: E402  (bench/bench.py: CPU and memory readings)

ROOT = Path(__file__).resolve().parent.parent
DNSMASQ = "/usr/sbin/dnsmasq"
ZONE = "bench.sonde.test"
# A loopback /24 of the bench's own, away from the tests' 127.100-249.x.y, and one per
# bench process: two benches on one machine (bench.py all's DNS and memory phases in two
# sessions) must not answer each other's queries or take each other's resolvers away.
NET = f"127.251.{os.getpid() % 256}"
FWD, AUTH = f"{NET}.1", f"{NET}.3"
# Only the DNS family (every other probe family off, read from examples/sonde.yaml so a new
# family is off too: the netio family's send/recv tracepoints cost each query about 1 us of
# the workload's CPU and were counted as the DNS probe's), no exporter, and the default
# collection interval (10 s), as users run it: Sonde's CPU in the window is then the DNS
# work, not /proc scans of a 1 s interval.
SONDE_YAML = harness.sonde_yaml(harness.probe_families(ROOT / "examples/sonde.yaml"), "dns")


def placed(pin: int | None, nice: int):
    """A preexec_fn that runs the child on CPU `pin` alone (if given) at `nice`."""

    def setup() -> None:
        if nice:
            os.nice(nice)
        if pin is not None:
            os.sched_setaffinity(0, {pin})

    return setup


def dnsmasq(listen: str, extra: list[str], pin: int | None = None, nice: int = 0) -> subprocess.Popen:
    return subprocess.Popen(
        [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
         "--bind-interfaces", "--port=53", "--user=root", "--pid-file=",
         f"--listen-address={listen}", "--cache-size=1000", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=placed(pin, nice))


def query_loop(binary: Path, seconds: float, pin: int | None = None, nice: int = 0,
               rate: float = 0) -> tuple[float, int, int]:
    """queries/s, timeouts, queries answered; at most `rate` queries a second if set."""
    qps, timeouts, n, _ = timed_query_loop(binary, seconds, pin, nice, rate=rate)
    return qps, timeouts, n


def timed_query_loop(binary: Path, seconds: float, pin: int | None = None, nice: int = 0,
                     resolvers: list[int] = (), rate: float = 0) -> tuple[float, int, int, float]:
    """queries/s, timeouts, queries answered, and the CPU seconds the query loop and the
    `resolvers` (pids) used meanwhile: the workload's CPU, where the probe's programs run.
    At most `rate` queries a second if set."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r0 = [harness.CpuSnapshot.take(p) for p in resolvers]
    pace = [f"{rate:g}"] if rate else []
    out = subprocess.run([str(binary), FWD, "53", f"www.{ZONE}", str(seconds), *pace],
                         check=True, capture_output=True, text=True,
                         preexec_fn=placed(pin, nice)).stdout.split()
    r1 = [harness.CpuSnapshot.take(p) for p in resolvers]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    cpu += sum(harness.cpu_seconds_between(a, b) for a, b in zip(r0, r1))
    return int(out[0]) / seconds, int(out[1]), int(out[0]), cpu


def start_sonde(binary: Path, work: Path) -> tuple[subprocess.Popen, Path]:
    cfg = work / "sonde.yaml"
    cfg.write_text(SONDE_YAML)
    log = work / "sonde.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["SONDE_LOG"] = "sonde=info"
    p = subprocess.Popen([str(binary), "run", "--config", str(cfg)], env=env,
                         stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    deadline = time.monotonic() + 30
    while "started" not in log.read_text():
        if p.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"sonde did not start:\n{log.read_text()}")
        time.sleep(0.05)
    text = log.read_text()
    for probe in ("dns.ingress", "dns.egress"):
        if f'attached probe="{probe}"' not in text:
            raise SystemExit(f"{probe} is not attached:\n{text}")
    return p, log


def unanswered(seconds: float) -> int:
    """A storm of queries nobody answers: A queries with changing ids, as fast as one
    process sends them for `seconds`, to port 53 of an address in the bench's /24 where
    nothing listens (a dead resolver). Every one stays an open lookup in Sonde's matcher
    until its timeout: what once grew that table to 20 MiB. Returns the queries sent."""
    import socket
    import struct

    dead = f"{NET}.9"
    head = struct.Struct(">HHHHHH")
    tail = b"\x03www" + b"".join(bytes([len(p)]) + p.encode() for p in ZONE.split(".")) + b"\x00\x00\x01\x00\x01"
    n = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(100):
                s.sendto(head.pack(n & 0xFFFF, 0x0100, 1, 0, 0, 0) + tail, (dead, 53))
                n += 1
    return n


def build_loop(work: Path) -> Path:
    loop = work / "dns_query_loop"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(loop), str(ROOT / "bench/dns_query_loop.c")],
                   check=True)
    return loop


class Resolvers:
    """The bench's two dnsmasq instances on its own loopback addresses, for a `with`
    block: an authoritative one for the bench zone and a caching forwarder in front."""

    def __init__(self, loop: Path, pin: int | None = None, nice: int = 0) -> None:
        self.loop = loop
        self.pin, self.nice = pin, nice
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Resolvers":
        self.procs.append(dnsmasq(AUTH, [f"--auth-zone={ZONE}", f"--auth-server=ns.{ZONE}",
                                         f"--host-record=www.{ZONE},10.1.2.3"], self.pin, self.nice))
        self.procs.append(dnsmasq(FWD, [f"--server={AUTH}#53"], self.pin, self.nice))
        try:
            time.sleep(0.5)
            if any(d.poll() is not None for d in self.procs):
                raise SystemExit(f"dnsmasq did not start on {AUTH} and {FWD} (address taken?)")
            answered, _, _ = query_loop(self.loop, 0.5)  # warms the forwarder's cache
            if answered == 0:
                raise SystemExit("the local resolver does not answer")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        for d in self.procs:
            d.kill()
            d.wait()
        self.procs.clear()


@dataclasses.dataclass
class Traced:
    """One traced configuration's rounds (Sonde, or the --sonde-b build)."""

    rate: list[float] = dataclasses.field(default_factory=list)
    # Sonde's CPU seconds and the queries answered, per round.
    cpu_s: list[float] = dataclasses.field(default_factory=list)
    queries: list[int] = dataclasses.field(default_factory=list)
    # The workload's CPU (query loop and resolvers) per query in us, per round.
    wl_us: list[float] = dataclasses.field(default_factory=list)
    rss_kib: int = 0
    # Packets Sonde's probe counted as lost (ring full...), summed over the rounds.
    lost: int = 0


@dataclasses.dataclass
class DnsResult:
    base: list[float]
    base_wl_us: list[float]
    # Per traced configuration ("sonde", "sonde-b"), its rounds.
    runs: dict[str, Traced]
    load: list[float]

    @property
    def traced(self) -> list[float]:
        return self.runs["sonde"].rate

    @property
    def lost(self) -> int:
        return self.runs["sonde"].lost

    @property
    def rss_kib(self) -> int:
        return self.runs["sonde"].rss_kib

    def added_us_per_query(self, config: str = "sonde") -> float | None:
        """Median over rounds of the workload's CPU per query with Sonde minus without in
        the same round: the probe's programs run in the workload's context, so this is
        their cost, and it blurs less than the rate when other work shares the machine."""
        pairs = list(zip(self.runs[config].wl_us, self.base_wl_us))
        return statistics.median(t - b for t, b in pairs) if pairs else None

    def cpu_us_per_query(self, config: str = "sonde") -> float:
        t = self.runs[config]
        return statistics.median(1e6 * c / q for c, q in zip(t.cpu_s, t.queries) if q)

    def ratio(self, config: str = "sonde") -> float:
        """Median over rounds of each traced round's rate over the same round's baseline."""
        return statistics.median(t / b for t, b in zip(self.runs[config].rate, self.base) if b)

    def spread(self) -> float:
        """The largest (max - min) / median of the rates over the rounds of any configuration."""
        return max(
            (max(x) - min(x)) / statistics.median(x)
            for x in [self.base] + [t.rate for t in self.runs.values()]
        )


def measure(sonde: Path, rounds: int, duration: float, pin: int | None = None, nice: int = 0,
            sonde_b: Path | None = None, floor: bool = False) -> DnsResult:
    """Starts the two resolvers and runs rounds without Sonde, with it and (if given) with a
    second build `sonde_b`, each round in another order (rotated), a fresh Sonde for each
    traced run; with `floor`, also with empty programs on the DNS probe's hooks and with
    the least a DNS probe must do there (configurations "floor" and "least",
    bench/floor.bpf.c); with `pin` and `nice`, the resolvers and the
    query loop run on that CPU at that nice value."""
    binaries = {"sonde": sonde} | ({"sonde-b": sonde_b} if sonde_b else {})
    configs = ["baseline", *binaries] + (["floor", "least"] if floor else [])
    with tempfile.TemporaryDirectory(prefix="sonde-bench-dns-") as tmp:
        work = Path(tmp)
        loop = build_loop(work)
        r = DnsResult([], [], {c: Traced() for c in configs[1:]}, [])
        with Resolvers(loop, pin, nice) as resolvers:
            pids = [d.pid for d in resolvers.procs]
            for i in range(rounds):
                r.load.append(os.getloadavg()[0])
                k = i % len(configs)
                for config in configs[k:] + configs[:k]:
                    if config == "baseline":
                        qps, lost, n, wl = timed_query_loop(loop, duration, pin, nice, pids)
                        r.base.append(qps)
                        r.base_wl_us.append(1e6 * wl / max(n, 1))
                    else:
                        t = r.runs[config]
                        if config in ("floor", "least"):
                            f = harness.Floor(work, "dns", least=config == "least")
                            f.start()
                            p = f.proc
                        else:
                            p, _ = start_sonde(binaries[config], work)
                        time.sleep(0.5)
                        c0 = harness.CpuSnapshot.take(p.pid)
                        qps, lost, n, wl = timed_query_loop(loop, duration, pin, nice, pids)
                        t.cpu_s.append(harness.cpu_seconds_between(c0, harness.CpuSnapshot.take(p.pid)))
                        t.queries.append(n)
                        t.rate.append(qps)
                        t.wl_us.append(1e6 * wl / max(n, 1))
                        t.rss_kib = max(t.rss_kib, harness.peak_rss_kib(p.pid))
                        losses = harness.sonde_losses(p.pid) if config in binaries else {}
                        if losses:
                            print(f"warning: {config} lost events: {losses}", file=sys.stderr)
                        t.lost += sum(losses.values())
                        p.send_signal(signal.SIGTERM)
                        if p.wait(timeout=30) != 0:
                            raise SystemExit(f"{config} did not exit cleanly")
                    print(f"round {i + 1} {config:<8} {qps:10.0f} queries/s ({lost} timeouts)",
                          file=sys.stderr)
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    ap.add_argument("--pin", type=int, help="run the resolvers and the query loop on this CPU only")
    ap.add_argument("--nice", type=int, default=0, help="their nice value, e.g. -20 on a busy machine")
    ap.add_argument("--sonde", type=Path, default=ROOT / "target/release/sonde")
    ap.add_argument("--sonde-b", type=Path, help="a second build, run as configuration sonde-b")
    ap.add_argument("--floor", action="store_true",
                    help="also run empty programs on the probe's hooks and the least a DNS probe "
                         "must do there (configurations floor and least, bench/floor.bpf.c)")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: Sonde loads eBPF programs and dnsmasq binds port 53")
    if not Path(DNSMASQ).exists():
        raise SystemExit("needs dnsmasq: apt-get install dnsmasq-base")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "sonde"], cwd=ROOT, check=True)

    r = measure(args.sonde, args.rounds, args.duration, args.pin, args.nice, args.sonde_b, args.floor)
    spread = lambda xs: (max(xs) - min(xs)) / statistics.median(xs)  # noqa: E731
    print(f"\nqueries/s through a local caching dnsmasq (one query in flight, loopback, "
          f"median of {args.rounds} x {args.duration:g} s)")
    print(f"{'config':<10} {'queries/s':>10} {'spread':>7} {'ratio':>6} {'wl us':>6} {'+wl us':>7} "
          f"{'sonde CPU':>10} {'us/query':>9} {'peak RSS':>9}")
    print(f"{'baseline':<10} {statistics.median(r.base):10.0f} {spread(r.base):6.0%} {1.0:6.3f} "
          f"{statistics.median(r.base_wl_us):6.2f}")
    for config, t in r.runs.items():
        c = statistics.median(x / args.duration for x in t.cpu_s)
        print(f"{config:<10} {statistics.median(t.rate):10.0f} {spread(t.rate):6.0%} {r.ratio(config):6.3f} "
              f"{statistics.median(t.wl_us):6.2f} {r.added_us_per_query(config):+7.2f} {c * 100:9.1f}% "
              f"{r.cpu_us_per_query(config):9.2f} {t.rss_kib / 1024:7.1f} MiB")
        if t.lost:
            print(f"{config} lost {t.lost} packets (ring full): its CPU per query is too low to quote")
    print("(wl us: CPU of the query loop and both resolvers per query; +wl us: how much more "
          "with Sonde, median of the rounds' differences)")
    print(f"(ratio: median over rounds of traced / the same round's baseline; load average "
          f"{min(r.load):.1f}-{max(r.load):.1f} on {os.cpu_count()} CPUs; a large spread means "
          f"other work shared the machine and the ratio is blurred)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
