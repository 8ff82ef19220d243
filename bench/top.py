#!/usr/bin/env python3
"""Cost of `sonde top` itself at a 1 s refresh (issue 15, item 4).

Runs, side by side in one run and alternating round by round:

  run      target/release/sonde run with every probe family, a 1 s interval, no exporter
           (console off, no endpoint) and host.top_processes: 20: the collection alone
  top      target/release/sonde top --interval 1s in a tmux pane of 200x50 (a real
           terminal: the view, the layout and the drawing on top of the same collection)
  top-pipe sonde top --interval 1s with stdout a pipe (one line per interval)

and prints each one's CPU time as a share of one core and per refresh, and its peak RSS,
with the machine's load average (the ratios mean little on a busy machine: say so).
A benchmark that prints figures, not a test. Needs root (probes) and tmux.

  sudo bench/top.py                        # about 4 minutes
  sudo bench/top.py --duration 20 --rounds 2
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a whole process (all threads, live and exited), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICKS


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["SONDE_LOG"] = "sonde=warn"
    return env


class Run:
    name = "run"

    def __init__(self, sonde, tmp):
        cfg = os.path.join(tmp, "run.yaml")
        with open(cfg, "w") as f:
            f.write(
                "collection:\n  interval: 1s\nexporters:\n  console:\n    enabled: false\n"
                "host:\n  top_processes: 20\n"
            )
        self.proc = subprocess.Popen(
            [sonde, "run", "--config", cfg], env=clean_env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid

    def stop(self):
        self.proc.terminate()
        if self.proc.wait(timeout=30) != 0:
            sys.exit(f"sonde run exited {self.proc.returncode}")


class TopPipe(Run):
    name = "top-pipe"

    def __init__(self, sonde, tmp):
        self.proc = subprocess.Popen(
            [sonde, "top", "--interval", "1s"], env=clean_env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid

    def stop(self):
        self.proc.terminate()
        self.proc.stdout.read()
        if self.proc.wait(timeout=30) != 0:
            sys.exit(f"sonde top exited {self.proc.returncode}")


class Top:
    name = "top"

    def __init__(self, sonde, tmp):
        self.socket = f"sonde-bench-top-{os.getpid()}"
        env = " ".join(f"{k}={v}" for k, v in [("SONDE_LOG", "sonde=warn")])
        subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", "200",
             "-y", "50", f"exec env -u OTEL_EXPORTER_OTLP_ENDPOINT {env} {sonde} top --interval 1s"],
            check=True)
        pane = subprocess.run(
            ["tmux", "-L", self.socket, "display-message", "-p", "#{pane_pid}"],
            check=True, capture_output=True, text=True).stdout.strip()
        # `exec`: the pane's process becomes sonde top itself.
        self.pid = int(pane)

    def stop(self):
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "q"], check=True)
        deadline = time.time() + 30
        while os.path.exists(f"/proc/{self.pid}") and time.time() < deadline:
            time.sleep(0.1)
        # The session ends with sonde top (`exec`); this is for a sonde that did not quit.
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], check=False,
                       stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sonde", default=os.path.join(ROOT, "target/release/sonde"))
    ap.add_argument("--duration", type=float, default=30, help="seconds measured per round")
    ap.add_argument("--warmup", type=float, default=5, help="seconds before measuring")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the probes need it")
    kinds = [Run, Top, TopPipe]
    cpu = {k.name: [] for k in kinds}
    rss = {k.name: 0.0 for k in kinds}
    load = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for k in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
                t = k(args.sonde, tmp)
                time.sleep(args.warmup)
                c0, t0 = cpu_seconds(t.pid), time.time()
                time.sleep(args.duration)
                c1, t1 = cpu_seconds(t.pid), time.time()
                rss[k.name] = max(rss[k.name], peak_rss_mib(t.pid))
                load.append(os.getloadavg()[0])
                t.stop()
                cpu[k.name].append((c1 - c0) / (t1 - t0))
                print(f"round {r + 1} {k.name:9} {100 * cpu[k.name][-1]:6.2f} % of a core",
                      file=sys.stderr)
    version = subprocess.run([args.sonde, "--version"], capture_output=True, text=True).stdout
    print(f"\n{version.strip()}, {os.cpu_count()} CPUs, {os.uname().release}, "
          f"{args.rounds} rounds x {args.duration:.0f} s, load average (1 min) during the "
          f"runs {min(load):.1f}-{max(load):.1f}")
    print(f"{'config':10} {'CPU, % of one core':>20} {'per refresh':>12} {'spread':>8} "
          f"{'peak RSS':>10}")
    base = statistics.median(cpu["run"])
    for k in kinds:
        m = statistics.median(cpu[k.name])
        spread = (max(cpu[k.name]) - min(cpu[k.name])) / m if m else float("nan")
        print(f"{k.name:10} {100 * m:19.2f}% {1000 * m:9.1f} ms {100 * spread:7.0f}% "
              f"{rss[k.name]:7.1f} MiB   x{m / base:.2f} of run")


if __name__ == "__main__":
    main()
