//! The tcp family: where each program attaches. Tracepoints only (no kprobes or fentry
//! on the kernels Sonde targets): `sock:*` for state changes and byte totals, `tcp:*`
//! for retransmits and resets.

use sonde_probes::names::tcp as n;

use super::{Attach, ProgramSpec};

pub const PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        probe: "tcp.state",
        program: n::PROG_STATE,
        attach: Attach::TracePoint {
            category: "sock",
            name: "inet_sock_set_state",
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
