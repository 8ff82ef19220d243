#!/usr/bin/env python3
"""What one collection tick costs with many open TCP connections (issue 17, point 1).

For each of 0, 10 000 and 50 000 open loopback connections (both ends held by this
script, spread over four listening ports), in one run: starts target/release/sonde run
with every probe family, a 1 s interval and no exporter, opens the connections (each end
sends one byte, so the tcp probe tracks both sockets), lets it tick, and prints per tick:

  wall   the snapshot's duration, from Sonde's own debug line "snapshot taken" (median
         and 90th percentile over the ticks)
  cpu    CPU time of the `sonde-collect` thread per tick (utime + stime from
         /proc/PID/task/TID/stat over the measured ticks)
  proc   CPU of the whole process as a share of one core (drain tasks and exporters too)

with `uptime` before and after: the machine is shared and busy, so read the ratios
between the rows, not the absolute figures. A benchmark that prints figures, not a test.

The tcp_conns map holds 65 536 entries: 50 000 connections are 100 000 sockets, so the
last row walks a full map and counts the rest as map_full. Every Sonde on the host
tracks these sockets in its own map while they are open, so the 50 000 row is kept short.

  sudo bench/tick_connections.py               # about 2 minutes
  sudo bench/tick_connections.py --ticks 20
"""

import argparse
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")
PORTS = 4
# Connections one holder process keeps (two descriptors each): the hard RLIMIT_NOFILE
# here is 20 000 and cannot be raised without CAP_SYS_RESOURCE.
PER_HOLDER = 9000


def thread_cpu(pid, name):
    """utime + stime (s) of the thread of `pid` named `name`, or None."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() != name:
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            return (int(rest[11]) + int(rest[12])) / TICKS
        except FileNotFoundError:
            continue
    return None


def process_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICKS


def open_connections(n):
    """n established loopback connections; returns every socket (both ends)."""
    listeners = []
    for _ in range(PORTS):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(4096)
        s.setblocking(False)
        listeners.append(s)
    socks = list(listeners)
    accepted = 0
    batch = 2000
    for start in range(0, n, batch):
        for i in range(start, min(n, start + batch)):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(listeners[i % PORTS].getsockname())
            except BlockingIOError:
                pass
            socks.append(c)
        want = min(n, start + batch)
        while accepted < want:
            progressed = False
            for ls in listeners:
                while True:
                    try:
                        a, _ = ls.accept()
                    except BlockingIOError:
                        break
                    a.setblocking(False)
                    socks.append(a)
                    accepted += 1
                    progressed = True
            if not progressed:
                time.sleep(0.001)
    # One byte each way: the probe sees a send and a receive on every socket.
    for s in socks[PORTS:]:
        try:
            s.send(b"x")
        except (BlockingIOError, OSError):
            pass
    time.sleep(0.2)
    for s in socks[PORTS:]:
        try:
            s.recv(16)
        except (BlockingIOError, OSError):
            pass
    return socks


def hold(n, ready, release):
    """A holder process: opens n connections, says so, keeps them until released."""
    socks = open_connections(n)
    ready.send(len(socks))
    release.recv()
    for s in socks:
        s.close()


class Connections:
    """n loopback connections held open by as many processes as the fd limit needs."""

    def __init__(self, n):
        self.procs = []
        self.pipes = []
        left = n
        while left > 0:
            k = min(PER_HOLDER, left)
            left -= k
            ready_r, ready_w = multiprocessing.Pipe(duplex=False)
            release_r, release_w = multiprocessing.Pipe(duplex=False)
            p = multiprocessing.Process(target=hold, args=(k, ready_w, release_r))
            p.start()
            self.procs.append(p)
            self.pipes.append((ready_r, release_w))
        for ready_r, _ in self.pipes:
            ready_r.recv()

    def close(self):
        for _, release_w in self.pipes:
            release_w.send(True)
        for p in self.procs:
            p.join(timeout=60)


def measure(sonde, n, ticks, tmp):
    cfg = os.path.join(tmp, "sonde.yaml")
    with open(cfg, "w") as f:
        f.write("collection:\n  interval: 1s\nexporters:\n  console:\n    enabled: false\n")
    log = os.path.join(tmp, f"sonde-{n}.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["SONDE_LOG"] = "sonde::tick=debug,sonde=warn"
    with open(log, "w") as err:
        p = subprocess.Popen(
            [sonde, "run", "--config", cfg],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    conns = None
    try:
        time.sleep(3)  # probes attached
        conns = Connections(n)
        time.sleep(3)  # a few ticks with the connections in the map
        with open(log) as f:
            skip = len(f.read().splitlines())
        c0, p0, t0 = thread_cpu(p.pid, "sonde-collect"), process_cpu(p.pid), time.monotonic()
        time.sleep(ticks)
        c1, p1, t1 = thread_cpu(p.pid, "sonde-collect"), process_cpu(p.pid), time.monotonic()
    finally:
        if conns:
            conns.close()
        p.terminate()
        p.wait(timeout=30)
    with open(log) as f:
        lines = f.read().splitlines()[skip:]
    took = [int(m.group(1)) / 1000 for m in (re.search(r"took_us=(\d+)", l) for l in lines) if m]
    if not took:
        sys.exit(f"no 'snapshot taken' lines in {log}")
    took.sort()
    return {
        "n": n,
        "ticks": len(took),
        "wall_p50": statistics.median(took),
        "wall_p90": took[int(0.9 * (len(took) - 1))],
        "cpu": (c1 - c0) * 1000 / len(took),
        "proc": 100 * (p1 - p0) / (t1 - t0),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ticks", type=int, default=15, help="seconds measured per row")
    ap.add_argument("--sonde", default=os.path.join(ROOT, "target/release/sonde"))
    ap.add_argument("--counts", default="0,10000,50000")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (the probes): sudo bench/tick_connections.py")
    if not os.path.exists(a.sonde):
        sys.exit(f"{a.sonde} is missing: cargo build --release -p sonde")
    print("load before:", subprocess.check_output(["uptime"], text=True).strip())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in a.counts.split(",")):
            rows.append(measure(a.sonde, n, a.ticks, tmp))
    print("load after: ", subprocess.check_output(["uptime"], text=True).strip())
    base = rows[0]["wall_p50"] or 1
    print(f"{'connections':>11} {'ticks':>5} {'wall p50 ms':>11} {'wall p90 ms':>11} "
          f"{'collect cpu ms/tick':>19} {'process cpu %':>13} {'p50 vs 0':>8}")
    for r in rows:
        print(f"{r['n']:>11} {r['ticks']:>5} {r['wall_p50']:>11.1f} {r['wall_p90']:>11.1f} "
              f"{r['cpu']:>19.1f} {r['proc']:>13.1f} {r['wall_p50'] / base:>7.1f}x")


if __name__ == "__main__":
    main()
