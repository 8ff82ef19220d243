//! The tcp family: where each program attaches. Tracepoints only (no kprobes or fentry
//! on the kernels Sonde targets): state changes and socket destruction as raw tracepoints
//! (a classic tracepoint program is skipped whenever another BPF program runs on the CPU,
//! and a missed transition would corrupt state), `sock:*` for byte totals, `tcp:*` for
//! retransmits and resets, and the exit of listen(2) for listeners bound by the kernel.

use sonde_probes::names::tcp as n;

use crate::probe::{Attach, ProgramSpec};

pub const PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        probe: "tcp.state",
        program: n::PROG_STATE,
        attach: Attach::RawTracePoint {
            name: "inet_sock_set_state",
        },
    },
    ProgramSpec {
        probe: "tcp.destroy",
        program: n::PROG_DESTROY,
        attach: Attach::RawTracePoint {
            name: "tcp_destroy_sock",
        },
    },
    ProgramSpec {
        probe: "tcp.listen",
        program: n::PROG_LISTEN_EXIT,
        attach: Attach::TracePoint {
            category: "syscalls",
            name: "sys_exit_listen",
        },
    },
    ProgramSpec {
        probe: "tcp.send",
        program: n::PROG_SEND,
        attach: Attach::TracePoint {
            category: "sock",
            name: "sock_send_length",
        },
    },
    ProgramSpec {
        probe: "tcp.recv",
        program: n::PROG_RECV,
        attach: Attach::TracePoint {
            category: "sock",
            name: "sock_recv_length",
        },
    },
    ProgramSpec {
        probe: "tcp.retransmit",
        program: n::PROG_RETRANSMIT,
        attach: Attach::TracePoint {
            category: "tcp",
            name: "tcp_retransmit_skb",
        },
    },
    ProgramSpec {
        probe: "tcp.send_reset",
        program: n::PROG_SEND_RESET,
        attach: Attach::TracePoint {
            category: "tcp",
            name: "tcp_send_reset",
        },
    },
    ProgramSpec {
        probe: "tcp.receive_reset",
        program: n::PROG_RECEIVE_RESET,
        attach: Attach::TracePoint {
            category: "tcp",
            name: "tcp_receive_reset",
        },
    },
];
