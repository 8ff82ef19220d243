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
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DNSMASQ = "/usr/sbin/dnsmasq"
ZONE = "bench.sonde.test"
# A loopback /24 of the bench's own, away from the tests' 127.100-249.x.y.
NET = "127.251.0"
FWD, AUTH = f"{NET}.1", f"{NET}.3"
SONDE_YAML = """collection:
  interval: 1s
probes:
  process:
    enabled: false
  fileio:
    enabled: false
  tcp:
    enabled: false
  dns:
    enabled: true
exporters:
  console:
    enabled: false
"""


def dnsmasq(listen: str, extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
         "--bind-interfaces", "--port=53", "--user=root", "--pid-file=",
         f"--listen-address={listen}", "--cache-size=1000", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def query_loop(binary: Path, seconds: float) -> tuple[float, int]:
    out = subprocess.run([str(binary), FWD, "53", f"www.{ZONE}", str(seconds)],
                         check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]) / seconds, int(out[1])


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    ap.add_argument("--sonde", type=Path, default=ROOT / "target/release/sonde")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: Sonde loads eBPF programs and dnsmasq binds port 53")
    if not Path(DNSMASQ).exists():
        raise SystemExit("needs dnsmasq: apt-get install dnsmasq-base")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "sonde"], cwd=ROOT, check=True)

    with tempfile.TemporaryDirectory(prefix="sonde-bench-dns-") as tmp:
        work = Path(tmp)
        loop = work / "dns_query_loop"
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(loop), str(ROOT / "bench/dns_query_loop.c")],
                       check=True)
        auth = dnsmasq(AUTH, [f"--auth-zone={ZONE}", f"--auth-server=ns.{ZONE}",
                              f"--host-record=www.{ZONE},10.1.2.3"])
        fwd = dnsmasq(FWD, [f"--server={AUTH}#53"])
        try:
            time.sleep(0.5)
            answered, _ = query_loop(loop, 0.5)  # warms the forwarder's cache
            if answered == 0:
                raise SystemExit("the local resolver does not answer")
            base: list[float] = []
            traced: list[float] = []
            cpu: list[float] = []
            rss = 0
            for r in range(args.rounds):
                for config in (("baseline", "sonde") if r % 2 == 0 else ("sonde", "baseline")):
                    if config == "baseline":
                        qps, lost = query_loop(loop, args.duration)
                        base.append(qps)
                    else:
                        p, _ = start_sonde(args.sonde, work)
                        time.sleep(0.5)
                        c0 = cpu_seconds(p.pid)
                        qps, lost = query_loop(loop, args.duration)
                        c1 = cpu_seconds(p.pid)
                        traced.append(qps)
                        cpu.append((c1 - c0) / args.duration)
                        rss = max(rss, peak_rss_kib(p.pid))
                        p.send_signal(signal.SIGTERM)
                        if p.wait(timeout=30) != 0:
                            raise SystemExit("sonde did not exit cleanly")
                    print(f"round {r + 1} {config:<8} {qps:10.0f} queries/s ({lost} timeouts)",
                          file=sys.stderr)
        finally:
            for d in (fwd, auth):
                d.kill()
                d.wait()

    b, t, c = statistics.median(base), statistics.median(traced), statistics.median(cpu)
    spread = lambda xs: (max(xs) - min(xs)) / statistics.median(xs)  # noqa: E731
    load = os.getloadavg()[0]
    print(f"\nqueries/s through a local caching dnsmasq (one query in flight, loopback, "
          f"median of {args.rounds} x {args.duration:g} s)")
    print(f"{'config':<10} {'queries/s':>10} {'spread':>7} {'ratio':>6} {'sonde CPU':>10} {'us/query':>9} {'peak RSS':>9}")
    print(f"{'baseline':<10} {b:10.0f} {spread(base):6.0%} {1.0:6.3f}")
    print(f"{'sonde-dns':<10} {t:10.0f} {spread(traced):6.0%} {t / b:6.3f} {c * 100:9.1f}% "
          f"{c / t * 1e6:9.2f} {rss / 1024:7.1f} MiB")
    print(f"(load average at the end: {load:.1f} on {os.cpu_count()} CPUs; a large spread means "
          f"other work shared the machine and the ratio is blurred)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
