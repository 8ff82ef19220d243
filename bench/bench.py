#!/usr/bin/env python3
"""Overhead benchmarks: a workload's throughput with no tracer, with Sonde, with bpftrace.

    sudo bench/bench.py process            # fork+exit and fork+exec churn (about 2 minutes)
    sudo bench/bench.py process --duration 5 --rounds 7 --workers 2
    sudo bench/bench.py all                # every bench, short, one table (under 10 minutes)
    bench/bench.py --list

One run measures every configuration side by side: each round starts each tracer in turn
(the order rotates from round to round), waits until its probes are attached, runs every
workload of the bench under it, then stops it. The table gives, per workload and
configuration, the median ops/s over the rounds, its ratio to the no-tracer median, the
tracer's own CPU time (utime+stime from /proc/PID/stat, over the workload's window only)
and the tracer's peak RSS (VmHWM from /proc/PID/status, read just before it is stopped).

This is a benchmark that prints figures, not a test: nothing here asserts a timing.
Standard library only; see bench/README.md. Adding a bench = one `Bench(...)` entry in
BENCHES: its C workloads (built with the system C compiler into a temp dir), the probe
family it exercises, and the bpftrace program that counts the same events.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import http.server
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# --------------------------------------------------------------------------------------
# Benches
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    """One workload: `argv(bin_dir, seconds, workers)` must print a line whose first field
    is the number of operations done and whose last field is ops/s."""

    name: str
    description: str
    argv: Callable[[Path, float, int], list[str]]


@dataclasses.dataclass(frozen=True)
class Bench:
    name: str
    summary: str
    # C sources under bench/, compiled to bin_dir/<key>.
    sources: dict[str, str]
    workloads: list[Workload]
    # The Sonde probe family this bench exercises (a key under `probes:` in the config).
    family: str
    # A bpftrace program that does the equivalent counting on the same tracepoints.
    bpftrace: str
    # What the bpftrace program gives up or adds against Sonde's probe, for the README/table.
    bpftrace_note: str = ""
    # A bpftrace map that must count at least one event per workload operation (a check
    # that the tracer saw the workload), or "".
    bpftrace_ops_map: str = ""


# bpftrace v0.17 (Debian 12) has no `rawtracepoint:` probe type, so the fork count uses the
# classic sched_process_fork tracepoint, which does not carry the child task: it counts
# threads too. The workloads here create no threads, so the counts are the same.
PROCESS_BT = r"""
tracepoint:sched:sched_process_fork { @created = count(); }
tracepoint:sched:sched_process_exec { @exec[comm] = count(); }
tracepoint:sched:sched_process_exit /pid == tid/ {
    $code = curtask->exit_code;
    if ($code & 0x7f) { @exit_signal = count(); }
    else if (($code >> 8) & 0xff) { @exit_failure = count(); }
    else { @exit_success = count(); }
}
"""

BENCHES: dict[str, Bench] = {
    b.name: b
    for b in [
        Bench(
            name="process",
            summary="process churn: fork+exit and fork+exec(/bin/true)+exit as fast as possible",
            sources={"forkexit": "workloads/forkexit.c"},
            workloads=[
                Workload(
                    "fork",
                    "fork(); child _exit(0); parent waitpid()",
                    lambda d, s, w: [str(d / "forkexit"), "fork", f"{s:g}", str(w)],
                ),
                Workload(
                    "exec",
                    "fork(); child execv(/bin/true); parent waitpid()",
                    lambda d, s, w: [str(d / "forkexit"), "exec", f"{s:g}", str(w), "/bin/true"],
                ),
            ],
            family="process",
            bpftrace=PROCESS_BT,
            bpftrace_note="fork counted on the classic tracepoint (v0.17 has no rawtracepoint), "
            "exec counted per comm in a hash map, exit classified by exit code",
            bpftrace_ops_map="@created",
        ),
    ]
}


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


class BenchError(Exception):
    """A prerequisite or a step failed; the message says what to do."""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class CpuSnapshot:
    """A process's CPU time at one instant, two ways: per live thread in nanoseconds
    (/proc/PID/task/*/schedstat) and for the whole process in clock ticks
    (utime+stime of /proc/PID/stat, which also holds the threads that have exited)."""

    threads_ns: dict[str, int]
    ticks: int

    @staticmethod
    def take(pid: int) -> CpuSnapshot:
        threads = {}
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                threads[task.name] = int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                continue  # a thread that exited meanwhile
        stat = Path(f"/proc/{pid}/stat").read_text()
        # The command name is in parentheses and may hold spaces: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        return CpuSnapshot(threads, int(fields[11]) + int(fields[12]))


def cpu_seconds_between(a: CpuSnapshot, b: CpuSnapshot) -> float:
    """CPU seconds used between two snapshots: nanosecond-precise from the threads when
    every thread of `a` is still alive in `b` (the ticks are 10 ms, too coarse for a tracer
    that uses tens of milliseconds in a window), else from the ticks."""
    if a.threads_ns and all(t in b.threads_ns for t in a.threads_ns):
        return sum(ns - a.threads_ns.get(t, 0) for t, ns in b.threads_ns.items()) / 1e9
    return (b.ticks - a.ticks) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time spent by every CPU on anything but idle and iowait, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest is in user.
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def foreign_bpf(own: set[int]) -> str:
    """BPF programs attached to tracepoints, kprobes and uprobes by processes other than
    `own` (the tracer under test), per owner: "comm: n, ...", "" when none or when bpftool
    cannot say. Other sessions' tracers (another Sonde's tests, a bpftrace on malloc) run
    their programs in the workload too and come and go between rounds: the first thing to
    look at when rounds disagree."""
    try:
        r = subprocess.run(
            ["bpftool", "-j", "perf", "list"], capture_output=True, text=True, timeout=10
        )
        links = json.loads(r.stdout or "[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return ""
    owners: dict[str, int] = {}
    for link in links:
        pid = link.get("pid")
        if not isinstance(pid, int) or pid in own:
            continue
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            comm = str(pid)
        owners[f"{comm}[{pid}]"] = owners.get(f"{comm}[{pid}]", 0) + 1
    return ", ".join(f"{o}: {n}" for o, n in sorted(owners.items()))


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise BenchError(f"no VmHWM in /proc/{pid}/status")


def probe_families(example: Path) -> list[str]:
    """The probe families Sonde's config knows, read from the `probes:` block of
    examples/sonde.yaml (which documents every key)."""
    families, inside = [], False
    for line in example.read_text().splitlines():
        if re.match(r"^\S", line):
            inside = line.startswith("probes:")
        elif inside:
            m = re.match(r"^  ([a-z_]+):\s*$", line)
            if m:
                families.append(m.group(1))
    return families


def lost_slots() -> dict[str, dict[int, str]]:
    """The loss counters of Sonde's probes, from probes/include/sonde_abi.h: per counter
    map (`<family>_counters`), slot -> name of every `SONDE_*_LOST_*` slot."""
    abi = (ROOT / "probes/include/sonde_abi.h").read_text()
    out: dict[str, dict[int, str]] = {}
    for m in re.finditer(r"enum sonde_(\w+)_counter \{(.*?)\}", abi, re.S):
        slots = {
            int(n): name
            for name, n in re.findall(r"\b(SONDE_\w*_LOST_\w+)\s*=\s*(\d+)", m.group(2))
        }
        if slots:
            out[f"{m.group(1)}_counters"] = slots
    return out


def sonde_losses(pid: int) -> dict[str, int]:
    """Events Sonde's probes counted as lost so far (ring full, map full...), read from
    the counter maps that process holds open (their ids in /proc/PID/fdinfo, their
    per-CPU values with bpftool). Non-zero means Sonde did not see every event: its CPU
    per event is then too low to quote. Empty when bpftool is missing."""
    if not shutil.which("bpftool"):
        return {}
    wanted = lost_slots()
    losses: dict[str, int] = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) != "anon_inode:bpf-map":
                continue
            info = (Path(f"/proc/{pid}/fdinfo") / fd.name).read_text()
        except OSError:
            continue  # closed meanwhile
        m = re.search(r"^map_id:\s*(\d+)", info, re.M)
        if not m:
            continue
        r = subprocess.run(["bpftool", "-j", "map", "dump", "id", m.group(1)], capture_output=True, text=True)
        show = subprocess.run(["bpftool", "-j", "map", "show", "id", m.group(1)], capture_output=True, text=True)
        try:
            name = json.loads(show.stdout).get("name", "")
            entries = json.loads(r.stdout)
        except json.JSONDecodeError:
            continue
        slots = wanted.get(name)
        if not slots:
            continue
        for e in entries:
            key = int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little")
            if key not in slots:
                continue
            total = sum(
                int.from_bytes(bytes(int(b, 16) for b in v["value"]), "little") for v in e["values"]
            )
            if total:
                losses[slots[key]] = losses.get(slots[key], 0) + total
    return losses


class OtlpSink:
    """A local OTLP/HTTP endpoint for Sonde to export to: answers every request with 200
    and an empty (valid) response, and counts the requests and bytes per signal and the
    largest body. Nothing leaves the machine.

        with OtlpSink() as sink:
            ... f"endpoint: {sink.endpoint}" ...
            sink.stats()  # {"metrics": (requests, bytes, largest), "traces": ...}
    """

    def __init__(self) -> None:
        counts: dict[str, list[int]] = {"metrics": [0, 0, 0], "traces": [0, 0, 0]}
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                n = int(self.headers.get("Content-Length", 0))
                self.rfile.read(n)
                signal_ = "traces" if self.path.endswith("/v1/traces") else "metrics"
                with lock:
                    c = counts[signal_]
                    c[0], c[1], c[2] = c[0] + 1, c[1] + n, max(c[2], n)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self._counts, self._lock = counts, lock
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> OtlpSink:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> OtlpSink:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, tuple[int, int, int]]:
        """Per signal: (requests, body bytes, largest body in bytes) so far."""
        with self._lock:
            return {k: (v[0], v[1], v[2]) for k, v in self._counts.items()}

    def reset(self) -> None:
        with self._lock:
            for v in self._counts.values():
                v[:] = [0, 0, 0]


# --------------------------------------------------------------------------------------
# Tracers
# --------------------------------------------------------------------------------------


class Tracer:
    """A tracer process started for one round of one configuration."""

    name = "baseline"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.proc: subprocess.Popen[bytes] | None = None
        self.out_path: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        pass

    def stop(self) -> str:
        return ""

    def _spawn(self, argv: list[str], env: dict[str, str], tag: str) -> None:
        self.out_path = self.work / f"{tag}.log"
        out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        out.close()

    def _output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path else ""

    def _wait_for(self, ready: Callable[[str], bool], timeout: float, what: str) -> None:
        assert self.proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self._output()
            if ready(text):
                return
            if self.proc.poll() is not None:
                raise BenchError(f"{what} exited with {self.proc.returncode} before attaching:\n{text}")
            time.sleep(0.05)
        self._kill()
        raise BenchError(f"{what} did not attach within {timeout:g} s:\n{self._output()}")

    def _stop(self, sig: int, timeout: float, what: str) -> str:
        assert self.proc
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise BenchError(f"{what} did not stop within {timeout:g} s of signal {sig}")
        text = self._output()
        if self.proc.returncode != 0:
            raise BenchError(f"{what} exited with {self.proc.returncode}:\n{text}")
        return text

    def _kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Sonde(Tracer):
    """`sonde run` with no exporter: it still attaches, collects and aggregates every
    interval; nothing leaves the machine."""

    warned_other = False
    warned_strays = False

    def __init__(
        self, work: Path, binary: Path, name: str, yaml: str, family: str, only_family: bool
    ) -> None:
        super().__init__(work)
        self.binary = binary
        self.name = name
        self.family = family
        self.only_family = only_family
        self.attached: list[str] = []
        self.config = work / f"{name}.yaml"
        self.config.write_text(yaml)

    def start(self) -> None:
        # No OTEL_* or SONDE_* from the caller's environment: the config file alone decides.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SONDE_"))}
        self._spawn([str(self.binary), "run", "--config", str(self.config)], env, self.name)
        self._wait_for(lambda t: " started" in t, 30, f"sonde ({self.name})")
        # One line per probe: `attached probe="process.fork"`, or a reason it was not.
        text = self._output()
        attached, other = set(), []
        for line in text.splitlines():
            m = re.search(r'probe="([\w.]+)"', line)
            if m and re.search(r"\battached\b", line):
                attached.add(m.group(1))
            elif m:
                other.append(line)
        ours = [line for line in other if f'probe="{self.family}.' in line]
        if ours or not any(p.startswith(f"{self.family}.") for p in attached):
            self._kill()
            raise BenchError(f"sonde ({self.name}) did not attach the {self.family} probes:\n{text}")
        if other and not Sonde.warned_other:
            log(f"note: sonde ({self.name}) left out probes of other families:\n  " + "\n  ".join(other))
            Sonde.warned_other = True
        self.attached = sorted(attached)
        strays = sorted({p.split(".")[0] for p in attached} - {self.family})
        if self.only_family and strays and not Sonde.warned_strays:
            log(
                f"warning: sonde ({self.name}) also attached {strays}: families missing from "
                "the probes: block of examples/sonde.yaml cannot be switched off here"
            )
            Sonde.warned_strays = True

    def stop(self) -> str:
        return self._stop(signal.SIGTERM, 30, f"sonde ({self.name})")


class Bpftrace(Tracer):
    name = "bpftrace"

    def __init__(self, work: Path, program: str) -> None:
        super().__init__(work)
        self.script = work / "bench.bt"
        self.script.write_text(program)

    def start(self) -> None:
        # bpftrace prints this marker once every probe is attached (its own test harness
        # relies on it); "Attaching N probes..." comes before the attaching itself.
        env = dict(os.environ, __BPFTRACE_NOTIFY_PROBES_ATTACHED="1")
        self._spawn(["bpftrace", str(self.script)], env, "bpftrace")
        self._wait_for(lambda t: "__BPFTRACE_NOTIFY_PROBES_ATTACHED" in t, 60, "bpftrace")

    def stop(self) -> str:
        # SIGINT: bpftrace prints its maps and detaches.
        return self._stop(signal.SIGINT, 30, "bpftrace")


class Floor(Tracer):
    """Programs of bench/floor.bpf.c on the same hooks as Sonde's family. "floor": empty
    ones, what the kernel charges for calling any program there, which no probe on those
    hooks can go below. "least": the least a probe must do to give the family's main
    metric at all (see floor.bpf.c). Their figures bound what a target on the workload's
    throughput can ask of any probe there."""

    def __init__(self, work: Path, family: str, least: bool = False) -> None:
        super().__init__(work)
        self.name = "least" if least else "floor"
        self.family = family
        self.prefix = f"least{family}" if least else family
        self.obj, self.loader = build_floor(work)

    def start(self) -> None:
        argv = [str(self.loader), str(self.obj), self.prefix]
        if self.family == "dns":
            argv.append(str(cgroup2_root()))
        self._spawn(argv, dict(os.environ), self.name)
        self._wait_for(lambda t: "attached" in t, 30, self.name)

    def stop(self) -> str:
        return self._stop(signal.SIGTERM, 30, self.name)


# The kernel's name for this machine's architecture, as CO-RE headers want it.
BPF_ARCH = {"x86_64": "x86", "aarch64": "arm64", "s390x": "s390", "ppc64le": "powerpc", "riscv64": "riscv"}


def build_floor(work: Path) -> tuple[Path, Path]:
    """bench/floor.bpf.c (clang) and its loader bench/floor.c (cc, libbpf), once per work
    directory."""
    obj, loader = work / "floor.bpf.o", work / "floor"
    if not loader.exists():
        # Sonde's bucketing tables, generated by its build (probes/build.rs).
        grids = sorted(ROOT.glob("target/*/build/*/out/sonde_grid.h"), key=lambda p: p.stat().st_mtime)
        if not grids:
            raise BenchError("no sonde_grid.h under target/: build Sonde first (cargo build --release -p sonde)")
        cc = shutil.which("cc") or shutil.which("gcc") or "cc"
        for argv in (
            ["clang", "-O2", "-g", "-target", "bpf", f"-D__TARGET_ARCH_{BPF_ARCH.get(platform.machine(), 'x86')}", "-I", str(ROOT / "probes/include"),
             "-I", str(grids[-1].parent), "-c", str(HERE / "floor.bpf.c"), "-o", str(obj)],
            [cc, "-O2", "-Wall", "-Wextra", "-o", str(loader), str(HERE / "floor.c"), "-lbpf"],
        ):
            r = subprocess.run(argv, capture_output=True, text=True)
            if r.returncode != 0:
                raise BenchError(f"{' '.join(argv)} failed:\n{r.stderr}")
    return obj, loader


def cgroup2_root() -> Path:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified
    on hybrid hosts): Sonde's DNS programs attach to its root."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            return Path(left.split()[4])
    raise BenchError("no cgroup2 mount: mount -t cgroup2 none /sys/fs/cgroup/unified")


def bpftrace_counts(text: str) -> dict[str, int]:
    """Scalar and summed keyed maps from bpftrace's exit dump, e.g. {'@created': 1234}."""
    counts: dict[str, int] = {}
    for m in re.finditer(r"^(@\w+)(?:\[.*\])?: (\d+)$", text, re.M):
        counts[m.group(1)] = counts.get(m.group(1), 0) + int(m.group(2))
    return counts


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Sample:
    config: str
    workload: str
    round: int
    ops: int
    ops_per_s: float
    tracer_cpu_s: float | None
    window_s: float
    # CPU time of the workload itself (with its children), whose share of the BPF programs'
    # cost does not depend on how busy the rest of the machine is.
    workload_cpu_s: float
    # CPU time used during the window by everything but the workload and the tracer: other
    # load on the machine, which makes the figures noisier.
    other_cpu_s: float = 0.0
    tracer_peak_rss_kib: int | None = None
    # Sonde's probes' loss counters at the end of the round (cumulative over its workloads).
    sonde_lost: int = 0
    # Other processes' BPF programs on tracepoints, kprobes and uprobes when the window
    # started ("comm: n" each): other sessions' tracers, whose programs run in the
    # workload too, so rounds with and without them disagree.
    foreign_bpf: str = ""


def check_prerequisites(configs: list[str], build: bool) -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (the tracers load eBPF programs): sudo bench/bench.py ...")
    if not (shutil.which("cc") or shutil.which("gcc")):
        problems.append("no C compiler for the workloads: apt-get install gcc")
    if "bpftrace" in configs and not shutil.which("bpftrace"):
        problems.append("bpftrace is missing: apt-get install bpftrace (or leave it out with --configs)")
    if "floor" in configs and not (shutil.which("clang") and Path("/usr/include/bpf/libbpf.h").exists()):
        problems.append("the floor configuration needs clang and libbpf: apt-get install clang libbpf-dev")
    if build and not shutil.which("cargo"):
        problems.append(
            "cargo is not on PATH (under sudo it often is not): build first with "
            "`cargo build --release -p sonde`, then rerun with --no-build"
        )
    if not Path("/sys/kernel/tracing/events").is_dir() and not Path(
        "/sys/kernel/debug/tracing/events"
    ).is_dir():
        problems.append("tracefs is not mounted: mount -t tracefs tracefs /sys/kernel/tracing")
    if problems:
        raise BenchError("prerequisites missing:\n  - " + "\n  - ".join(problems))


def build_sonde() -> None:
    log("cargo build --release -p sonde")
    r = subprocess.run(["cargo", "build", "--release", "-p", "sonde"], cwd=ROOT)
    if r.returncode != 0:
        raise BenchError("cargo build --release -p sonde failed (see above)")


def compile_workloads(bench: Bench, bin_dir: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    for out, src in bench.sources.items():
        argv = [cc, "-O2", "-Wall", "-Wextra", "-o", str(bin_dir / out), str(HERE / src)]
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"{' '.join(argv)} failed:\n{r.stderr}")


def set_autogroup_nice(nice: int) -> None:
    """Gives the calling process's autogroup (its session's scheduling group) this nice
    value. With kernel.sched_autogroup_enabled (the default on desktop and many server
    kernels), CPU time is shared between sessions first and by nice value only inside a
    session: a workload at nice -20 still got half of its CPU when one other session
    (another engineer's build) ran there, and its rounds disagreed by 20-60 %. Called in a
    child after setsid(2), so only the workload's own new group is raised. Nothing to do
    where the kernel has no autogroups."""
    try:
        Path("/proc/self/autogroup").write_text(f"{nice}\n")
    except FileNotFoundError:
        pass  # a kernel built without CONFIG_SCHED_AUTOGROUP: nice alone decides


def run_workload(argv: list[str], nice: int, pin: int | None = None) -> tuple[int, float, float]:
    """Runs one workload at the given nice value (and on CPU `pin` alone, if given);
    returns its ops, its ops/s and the CPU time it used (with its children, all waited
    for)."""

    def setup() -> None:
        if nice:
            os.nice(nice)
            set_autogroup_nice(nice)
        if pin is not None:
            os.sched_setaffinity(0, {pin})

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # A session of its own (with a nice value): see set_autogroup_nice.
    r = subprocess.run(
        argv, capture_output=True, text=True, preexec_fn=setup, start_new_session=bool(nice)
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise BenchError(f"workload {' '.join(argv)} failed ({r.returncode}):\n{r.stderr}")
    fields = r.stdout.split()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return int(fields[0]), float(fields[-1]), cpu


def sonde_yaml(families: list[str], only: str | None) -> str:
    """Console off and no OTLP endpoint: Sonde collects but exports nothing. With `only`,
    every other probe family is switched off."""
    lines = ["exporters:", "  console:", "    enabled: false"]
    if only:
        lines.append("probes:")
        for f in families:
            lines += [f"  {f}:", f"    enabled: {'true' if f == only else 'false'}"]
    return "\n".join(lines) + "\n"


def make_tracers(
    configs: list[str],
    bench: Bench,
    work: Path,
    sonde: Path,
    families: list[str],
    sonde_b: Path | None = None,
) -> dict[str, Callable[[], Tracer]]:
    """Every configuration by name; with `sonde_b` (a second build, e.g. an older commit)
    also `sonde-b` and `sonde-b-<family>`, the same runs with that binary."""
    known: dict[str, Callable[[], Tracer]] = {
        "baseline": lambda: Tracer(work),
        "bpftrace": lambda: Bpftrace(work, bench.bpftrace),
        "floor": lambda: Floor(work, bench.family),
        "least": lambda: Floor(work, bench.family, least=True),
    }
    builds = [("sonde", sonde)] + ([("sonde-b", sonde_b)] if sonde_b is not None else [])
    for prefix, binary in builds:
        # Every family at its defaults, and the bench's family alone.
        for name, only in [(prefix, None), (f"{prefix}-{bench.family}", bench.family)]:
            known[name] = functools.partial(
                Sonde,
                work,
                binary,
                name,
                sonde_yaml(families, only),
                bench.family,
                only_family=only is not None,
            )
    unknown = [c for c in configs if c not in known]
    if unknown:
        raise BenchError(f"unknown configuration(s) {unknown}; known: {list(known)}")
    return {c: known[c] for c in configs}


def select_workloads(bench: Bench, wanted: list[str] | None) -> Bench:
    if not wanted:
        return bench
    names = [w.name for w in bench.workloads]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise BenchError(f"unknown workload(s) {unknown}; {bench.name} has {names}")
    return dataclasses.replace(bench, workloads=[w for w in bench.workloads if w.name in wanted])


def prepare_sonde(args: argparse.Namespace, configs: list[str]) -> Path:
    """Checks the prerequisites, builds Sonde (unless told not to) and returns its binary."""
    check_prerequisites(configs, build=not args.no_build and args.sonde is None)
    sonde_bin = Path(args.sonde) if args.sonde else ROOT / "target/release/sonde"
    if any(c.startswith("sonde") for c in configs):
        if not args.no_build and args.sonde is None:
            build_sonde()
        if not os.access(sonde_bin, os.X_OK):
            raise BenchError(f"{sonde_bin} missing: cargo build --release -p sonde")
        args.sonde_revision = sonde_revision(sonde_bin)
        log(f"sonde: {args.sonde_revision}")
    return sonde_bin


@dataclasses.dataclass
class Measurement:
    samples: list[Sample]
    # The programs each Sonde configuration attached.
    attached: dict[str, list[str]]
    started: datetime.datetime


def measure(bench: Bench, configs: list[str], args: argparse.Namespace, sonde_bin: Path) -> Measurement:
    """Every configuration side by side: `args.rounds` rounds, each starting every tracer
    in turn (the order rotates) and running every workload under it."""
    families = probe_families(ROOT / "examples/sonde.yaml")
    if bench.family not in families:
        raise BenchError(f"examples/sonde.yaml has no probes.{bench.family} block")
    samples: list[Sample] = []
    attached: dict[str, list[str]] = {}
    started = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="sonde-bench-") as tmp:
        work = Path(tmp)
        compile_workloads(bench, work)
        sonde_b = Path(args.sonde_b) if getattr(args, "sonde_b", None) else None
        tracers = make_tracers(configs, bench, work, sonde_bin, families, sonde_b)
        n_runs = args.rounds * len(configs) * len(bench.workloads)
        log(
            f"{bench.name}: {args.rounds} rounds x {len(configs)} configs x "
            f"{len(bench.workloads)} workloads x {args.duration:g} s = {n_runs * args.duration:g} s "
            "of measurement, plus tracer start-up"
        )
        # One unmeasured run of every workload first: the first round's runs were often
        # the slowest of their configuration (5-10 % below the rest in the TCP churn,
        # the caches, the socket tables and the CPU's clock still settling after the
        # previous phase), which alone made the spread.
        for wl in bench.workloads:
            run_workload(wl.argv(work, min(args.duration, 2.0), args.workers), args.nice, args.pin)
        for rnd in range(args.rounds):
            shift = rnd % len(configs)
            for config in configs[shift:] + configs[:shift]:
                tracer = tracers[config]()
                try:
                    tracer.start()
                    if isinstance(tracer, Sonde):
                        attached[config] = tracer.attached
                    time.sleep(args.settle)
                    total_ops = 0
                    round_samples = []
                    for wl in bench.workloads:
                        pid = tracer.pid
                        foreign = foreign_bpf({pid} if pid else set())
                        cpu0 = CpuSnapshot.take(pid) if pid else None
                        busy0 = machine_busy_seconds()
                        t0 = time.monotonic()
                        ops, rate, wl_cpu = run_workload(
                            wl.argv(work, args.duration, args.workers), args.nice, args.pin
                        )
                        window = time.monotonic() - t0
                        busy = machine_busy_seconds() - busy0
                        cpu = (
                            cpu_seconds_between(cpu0, CpuSnapshot.take(pid))
                            if pid and cpu0 is not None
                            else None
                        )
                        other = max(0.0, busy - wl_cpu - (cpu or 0.0))
                        total_ops += ops
                        s = Sample(config, wl.name, rnd, ops, rate, cpu, window, wl_cpu, other)
                        s.foreign_bpf = foreign
                        round_samples.append(s)
                        log(
                            f"round {rnd + 1}/{args.rounds} {config:<16} {wl.name:<6} "
                            f"{rate:>10.0f} ops/s"
                            + (f"  tracer cpu {cpu:.2f} s" if cpu is not None else "")
                            + f"  other cpu {other:.2f} s"
                            + (f"  other BPF: {foreign}" if foreign else "")
                        )
                    rss = peak_rss_kib(tracer.pid) if tracer.pid else None
                    lost = sonde_losses(tracer.pid) if isinstance(tracer, Sonde) and tracer.pid else {}
                    if lost:
                        log(f"warning: {config} lost events in round {rnd + 1}: {lost}")
                    for s in round_samples:
                        s.tracer_peak_rss_kib = rss
                        s.sonde_lost = sum(lost.values())
                    out = tracer.stop()
                finally:
                    tracer._kill()  # only if it is still running: on an error or Ctrl-C
                samples.extend(round_samples)
                if isinstance(tracer, Bpftrace) and bench.bpftrace_ops_map:
                    seen = bpftrace_counts(out).get(bench.bpftrace_ops_map, 0)
                    if seen < total_ops:
                        log(
                            f"warning: bpftrace's {bench.bpftrace_ops_map} is {seen}, "
                            f"below the workload's {total_ops} operations"
                        )
    # Other work that took more than a third of a CPU during a run (a build, a test
    # suite): those runs' throughput says little about the tracers. Logged per run above
    # as "other cpu"; said once here so it is not missed.
    busy = [s for s in samples if s.window_s and s.other_cpu_s / s.window_s > 0.33]
    if busy:
        worst = max(busy, key=lambda s: s.other_cpu_s / s.window_s)
        log(
            f"warning: other work on the machine took over a third of a CPU in {len(busy)} of "
            f"{len(samples)} runs (up to {worst.other_cpu_s / worst.window_s:.0%} of one, round "
            f"{worst.round + 1} {worst.config}): their figures are blurred; rerun on a quiet machine"
        )
    foreign_rounds = sum(1 for s in samples if s.foreign_bpf)
    if foreign_rounds:
        log(
            f"warning: other processes held BPF programs on tracepoints or probes in "
            f"{foreign_rounds} of {len(samples)} runs (see 'other BPF' above): they run in "
            "the workload too, so those runs are slower and the spread is theirs as much as "
            "the tracers'"
        )
    return Measurement(samples, attached, started)


def run(args: argparse.Namespace) -> int:
    bench = select_workloads(BENCHES[args.bench], args.workloads)
    configs = args.configs or ["baseline", "sonde", f"sonde-{bench.family}", "bpftrace"]
    if args.sonde_b and not args.configs:
        configs[2:2] = ["sonde-b", f"sonde-b-{bench.family}"]
    sonde_bin = prepare_sonde(args, configs)
    if args.sonde_b:
        if not os.access(args.sonde_b, os.X_OK):
            raise BenchError(f"{args.sonde_b} (--sonde-b) is not an executable")
        # Not this tree's commit: say which binary it is.
        version = subprocess.run([args.sonde_b, "--version"], capture_output=True, text=True)
        args.sonde_b_revision = f"{version.stdout.strip() or 'sonde'} ({args.sonde_b})"
        log(f"sonde-b: {args.sonde_b_revision}")
    m = measure(bench, configs, args, sonde_bin)
    report(bench, configs, m.samples, args, m.started, m.attached)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "bench": bench.name,
                    "started": m.started.isoformat(timespec="seconds"),
                    "machine": machine(),
                    "args": vars(args),
                    "sonde_attached": m.attached,
                    "samples": [dataclasses.asdict(s) for s in m.samples],
                },
                indent=1,
            )
        )
        log(f"samples written to {args.json}")
    return 0


def sonde_revision(binary: Path) -> str:
    """`sonde --version` and the commit it was built from, marked when the working tree
    had uncommitted changes (the figures then describe that tree, not the commit)."""

    def out(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""  # no git (a tarball), or the binary will not run: said below

    version = out([str(binary), "--version"])
    git = ["git", "-C", str(ROOT)]
    rev = out(git + ["rev-parse", "--short", "HEAD"]) or "unknown commit"
    if out(git + ["status", "--porcelain", "--untracked-files=no", "--", "receiver", "probes", "semconv"]):
        rev += " + uncommitted changes"
    return f"{version or binary.name} ({rev})"


def machine() -> dict[str, str]:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "bpftrace": (
            subprocess.run(["bpftrace", "--version"], capture_output=True, text=True).stdout.strip()
            if shutil.which("bpftrace")
            else "absent"
        ),
    }


def report(
    bench: Bench,
    configs: list[str],
    samples: list[Sample],
    args: argparse.Namespace,
    started: datetime.datetime,
    attached: dict[str, list[str]],
) -> None:
    m = machine()
    revision = getattr(args, "sonde_revision", None)
    revision_b = getattr(args, "sonde_b_revision", None)
    if revision_b:
        revision = f"{revision}\nsonde-b: {revision_b}"
    print(
        f"\n{bench.name}: {bench.summary}\n"
        f"{started:%Y-%m-%d %H:%M} UTC, {m['cpus']} CPUs ({m['cpu']}), Linux {m['kernel']}, "
        f"{m['bpftrace']}\n"
        + (f"{revision}\n" if revision else "")
        + f"{args.rounds} rounds x {args.duration:g} s per workload, {args.workers} worker(s) "
        f"at nice {args.nice}"
        + (f", workload pinned to CPU {args.pin}" if args.pin is not None else "")
        + ", medians\n"
    )
    head = (
        f"{'workload':<8} {'config':<14} {'ops/s':>8} {'spread':>6} {'ratio':>6} "
        f"{'wl us/op':>8} {'ratio':>6} {'tracer CPU':>10} {'us/op':>6} {'peak RSS':>9} {'other':>6}"
    )
    print(head)
    print("-" * len(head))
    for wl in bench.workloads:
        base = [s for s in samples if s.workload == wl.name and s.config == "baseline"]
        base_rate = statistics.median(s.ops_per_s for s in base) if base else None
        base_cost = statistics.median(1e6 * s.workload_cpu_s / s.ops for s in base) if base else None
        for config in configs:
            ss = [s for s in samples if s.workload == wl.name and s.config == config]
            rates = [s.ops_per_s for s in ss]
            rate = statistics.median(rates)
            spread = (max(rates) - min(rates)) / rate if rate else 0.0
            cost = statistics.median(1e6 * s.workload_cpu_s / s.ops for s in ss)
            rate_ratio = f"{rate / base_rate:.3f}" if base_rate else "-"
            cost_ratio = f"{cost / base_cost:.3f}" if base_cost else "-"
            cpu = rss = per_op = "-"
            traced = [s for s in ss if s.tracer_cpu_s is not None]
            if traced:
                cpu = f"{100 * statistics.median(s.tracer_cpu_s / s.window_s for s in traced):.2f}%"
                per_op = f"{statistics.median(1e6 * s.tracer_cpu_s / s.ops for s in traced):.2f}"
            rsss = [s.tracer_peak_rss_kib for s in ss if s.tracer_peak_rss_kib]
            if rsss:
                rss = f"{max(rsss) / 1024:.1f}MiB"
            other = statistics.median(s.other_cpu_s / s.window_s for s in ss)
            print(
                f"{wl.name:<8} {config:<14} {rate:>8.0f} {100 * spread:>5.0f}% {rate_ratio:>6} "
                f"{cost:>8.1f} {cost_ratio:>6} {cpu:>10} {per_op:>6} {rss:>9} {100 * other:>5.0f}%"
            )
    print(
        """
ops/s: the workload's throughput, median over the rounds; spread: (max - min) / median;
  ratio: against the baseline median (1.000 = no cost; 0.950 = 5% fewer ops/s).
wl us/op: the workload's own CPU time (with its children) per operation; ratio against the
  baseline. The tracers' BPF programs run in the workload's context, so their cost lands
  here; this figure holds up better than ops/s when other work shares the machine.
tracer CPU: the tracer process's CPU time (user + system, every thread) during the
  workload, as a share of one CPU; us/op: the same per workload operation.
peak RSS: the tracer's VmHWM, highest over the rounds.
other: CPU used meanwhile by everything but the workload and the tracer, in % of one CPU;
  above a few percent, other work on the machine is blurring the figures."""
    )
    notes = []
    for c, d in config_descriptions(bench).items():
        if c not in configs:
            continue
        if attached.get(c):
            by_family: dict[str, int] = {}
            for p in attached[c]:
                by_family[p.split(".")[0]] = by_family.get(p.split(".")[0], 0) + 1
            d += " (programs attached: " + ", ".join(f"{f} {n}" for f, n in by_family.items()) + ")"
        notes.append(f"{c}: {d}")
    print("\n" + "\n".join(notes))


def config_descriptions(bench: Bench) -> dict[str, str]:
    return {
        "baseline": "no tracer",
        "sonde": "sonde run, every probe family at its defaults, no exporter",
        f"sonde-{bench.family}": f"sonde run, only the {bench.family} family, no exporter",
        "bpftrace": f"bpftrace program equivalent to the {bench.family} family ({bench.bpftrace_note})",
        "sonde-b": "as sonde, with the --sonde-b binary",
        f"sonde-b-{bench.family}": f"as sonde-{bench.family}, with the --sonde-b binary",
    }


def main() -> int:
    if sys.argv[1:2] == ["all"]:
        # Every bench, short, one table (bench/suite.py): its own flags and errors.
        sys.path.insert(0, str(HERE))
        import suite

        return suite.main(sys.argv[2:])
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Benches:\n"
        + "\n".join(f"  {b.name:<10} {b.summary}" for b in BENCHES.values())
        + "\n  all        every bench with short settings, one table (bench.py all --help)",
    )
    p.add_argument("bench", nargs="?", choices=sorted(BENCHES), help="which bench to run")
    p.add_argument("--list", action="store_true", help="list the benches and exit")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per workload run (2)")
    p.add_argument("--rounds", type=int, default=5, help="rounds over every configuration (5)")
    p.add_argument("--workers", type=int, default=1, help="parallel workload processes (1)")
    p.add_argument(
        "--configs",
        type=lambda s: s.split(","),
        help="comma-separated subset, e.g. baseline,sonde (default: baseline,sonde,"
        "sonde-<family>,bpftrace)",
    )
    p.add_argument(
        "--workloads",
        type=lambda s: s.split(","),
        help="comma-separated subset of the bench's workloads (default: all)",
    )
    p.add_argument("--settle", type=float, default=0.5, help="seconds after attach before measuring (0.5)")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the workload (not the tracers) at this nice value, e.g. -20 on a machine "
        "busy with other work (0)",
    )
    p.add_argument(
        "--pin",
        type=int,
        help="run the workload (with its threads and children) on this CPU only; the "
        "tracers stay free to run anywhere",
    )
    p.add_argument("--sonde", help="use this sonde binary instead of building target/release/sonde")
    p.add_argument(
        "--sonde-b",
        help="a second sonde binary (e.g. a build of an older commit) run side by side as "
        "configurations sonde-b and sonde-b-<family> (added to the default configurations)",
    )
    p.add_argument("--no-build", action="store_true", help="do not run cargo build first")
    p.add_argument("--json", help="also write every sample to this file")
    args = p.parse_args()
    if args.list:
        for b in BENCHES.values():
            print(f"{b.name:<10} {b.summary}")
        return 0
    if not args.bench:
        p.error("name a bench (see --list)")
    if args.rounds < 1 or args.duration <= 0 or args.workers < 1:
        p.error("--rounds and --workers must be >= 1 and --duration > 0")
    return guarded("bench", lambda: run(args))


def guarded(prog: str, body: Callable[[], int]) -> int:
    """Runs a command's body: SIGTERM unwinds as Ctrl-C does (so a running tracer is
    stopped on the way out); a BenchError is printed as the command's error."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return body()
    except BenchError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
