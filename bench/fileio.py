#!/usr/bin/env python3
"""File I/O bench: a tight loop of pread(2) from a 4 KiB regular file (1 byte, then 4 KiB
per call) with no tracer, with Sonde (all families and the fileio family alone) and with
bpftrace building the same latency histogram from the same tracepoints. Uses
bench/bench.py's harness unchanged; this file only registers the `fileio` bench.

    sudo bench/fileio.py fileio                  # about 2 minutes
    sudo bench/fileio.py fileio --duration 3 --rounds 7

`bench/fileio.sh` measures the same loop pinned to one CPU, alternating bare and traced
runs, and prints the traced loop's extra CPU ns per call: the cost per event.
A benchmark that prints figures, not a test. Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as harness  # noqa: E402  (bench/bench.py)

# What Sonde's fileio probe does for the loop's syscall, minus the regular-file check,
# the per-file-system key and the per-process bytes: start time per thread, log2
# histogram of the latency at exit.
FILEIO_BT = r"""
tracepoint:syscalls:sys_enter_pread64 { @start[tid] = nsecs; }
tracepoint:syscalls:sys_exit_pread64 /@start[tid]/ {
    @lat = hist(nsecs - @start[tid]);
    delete(@start[tid]);
}
"""


def loop_argv(size: int):
    def argv(d: Path, seconds: float, _workers: int) -> list[str]:
        data = d / "fileio_data"
        if not data.exists():
            data.write_bytes(bytes(range(256)) * 16)
        return [str(d / "fileio_read_loop"), str(data), str(size), f"{seconds:g}"]

    return argv


harness.BENCHES["fileio"] = harness.Bench(
    name="fileio",
    summary="pread(2) of 1 B and of 4 KiB from a 4 KiB regular file, in a tight loop",
    sources={"fileio_read_loop": "fileio_read_loop.c"},
    workloads=[
        harness.Workload("read1", "pread(fd, buf, 1, 0) in a loop", loop_argv(1)),
        harness.Workload("read4k", "pread(fd, buf, 4096, 0) in a loop", loop_argv(4096)),
    ],
    family="fileio",
    bpftrace=FILEIO_BT,
    bpftrace_note="latency histogram of pread64 only, no regular-file check, no per-file-system "
    "or per-process keys",
)

if __name__ == "__main__":
    sys.exit(harness.main())
