#!/usr/bin/env python3
"""TCP bench: loopback connection churn (connect, send 1 KiB, close, as fast as possible)
with no tracer, with Sonde (all families and the tcp family alone) and with bpftrace
counting the same tracepoints. Uses bench/bench.py's harness unchanged (same rounds,
rotation, CPU and RSS accounting, report); this file only registers the `tcp` bench.

    sudo bench/tcp.py tcp                       # about 2 minutes
    sudo bench/tcp.py tcp --duration 3 --rounds 7 --workers 2

A benchmark that prints figures, not a test. Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

# No bench/__pycache__ left in the tree by importing the harness.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as harness  # noqa: E402  (bench/bench.py)

# The same tracepoints as Sonde's tcp family, doing the equivalent counting: transitions
# per state, opens and closes, byte sums from send/recv lengths (Sonde reads the socket's
# own totals instead), retransmits and resets. bpftrace keeps no per-connection state and
# no attribution: it is the cheaper of the two by construction.
TCP_BT = r"""
tracepoint:sock:inet_sock_set_state /args->protocol == 6/ {
    @states[args->newstate] = count();
    if (args->newstate == 1) { @opened = count(); }
    if (args->newstate == 7) { @closed = count(); }
}
tracepoint:sock:sock_send_length /args->protocol == 6 && args->ret > 0/ { @tx = sum(args->ret); }
tracepoint:sock:sock_recv_length /args->protocol == 6 && args->ret > 0/ { @rx = sum(args->ret); }
tracepoint:tcp:tcp_retransmit_skb { @retrans = count(); }
tracepoint:tcp:tcp_send_reset { @rst_tx = count(); }
tracepoint:tcp:tcp_receive_reset { @rst_rx = count(); }
"""

harness.BENCHES["tcp"] = harness.Bench(
    name="tcp",
    summary="TCP churn over loopback: connect, send 1 KiB, close, as fast as possible",
    sources={"tcp_churn": "workloads/tcp_churn.c"},
    workloads=[
        harness.Workload(
            "churn",
            "connect(127.0.0.1); write 1 KiB; close(); the server reads to EOF and closes",
            lambda d, s, w: [str(d / "tcp_churn"), f"{s:g}", str(w)],
        ),
    ],
    family="tcp",
    bpftrace=TCP_BT,
    bpftrace_note="counts per state, opens/closes, byte sums from send/recv lengths; "
    "no per-connection map, no attribution, no histograms",
    bpftrace_ops_map="@opened",
)

if __name__ == "__main__":
    sys.exit(harness.main())
