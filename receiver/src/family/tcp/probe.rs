//! The tcp family: where each program attaches. Tracepoints only (no kprobes or fentry
//! on the kernels Sonde targets), all raw: a classic tracepoint program is skipped
//! whenever another BPF program runs on the CPU (a missed transition would corrupt
//! state), and a classic tracepoint builds a record of its fields before the program
//! runs. State changes, socket destruction, sends and receives (byte totals),
//! retransmits and resets. No syscall tracepoint (one attached slows every system call
//! on the host): a listener whose port listen(2) picks is resolved at its first
//! connection.

use sonde_probes::names::tcp as n;

use crate::probe::btf::RawArg;
use crate::probe::needs::{Feature, FeatureKind, Need, Without};
use crate::probe::{Attach, ProgramSpec};

/// (struct sock *sk, int ret, int flags) of sock_send_length / sock_recv_length.
pub(crate) const SOCK_LENGTH_ARGS: &[RawArg] =
    &[RawArg::Ptr("sock"), RawArg::Int(4), RawArg::Int(4)];

pub const PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        probe: "tcp.state",
        program: n::PROG_STATE,
        attach: Attach::RawTracePoint {
            name: "inet_sock_set_state",
            args: &[RawArg::Ptr("sock"), RawArg::Int(4), RawArg::Int(4)],
        },
    },
    ProgramSpec {
        probe: "tcp.destroy",
        program: n::PROG_DESTROY,
        attach: Attach::RawTracePoint {
            name: "tcp_destroy_sock",
            args: &[RawArg::Ptr("sock")],
        },
    },
    ProgramSpec {
        probe: "tcp.send",
        program: n::PROG_SEND,
        attach: Attach::RawTracePoint {
            name: "sock_send_length",
            args: SOCK_LENGTH_ARGS,
        },
    },
    ProgramSpec {
        probe: "tcp.recv",
        program: n::PROG_RECV,
        attach: Attach::RawTracePoint {
            name: "sock_recv_length",
            args: SOCK_LENGTH_ARGS,
        },
    },
    ProgramSpec {
        probe: "tcp.retransmit",
        program: n::PROG_RETRANSMIT,
        attach: Attach::RawTracePoint {
            name: "tcp_retransmit_skb",
            args: &[RawArg::Ptr("sock")],
        },
    },
    ProgramSpec {
        probe: "tcp.send_reset",
        program: n::PROG_SEND_RESET,
        attach: Attach::RawTracePoint {
            name: "tcp_send_reset",
            args: &[],
        },
    },
    ProgramSpec {
        probe: "tcp.receive_reset",
        program: n::PROG_RECEIVE_RESET,
        attach: Attach::RawTracePoint {
            name: "tcp_receive_reset",
            args: &[],
        },
    },
];

static SOCK_LENGTH: Feature = Feature {
    id: "sock_length_tracepoints",
    what: "tracepoints sock:sock_send_length and sock:sock_recv_length, Linux 6.3",
    kind: FeatureKind::TracePoints(&[("sock", "sock_send_length"), ("sock", "sock_recv_length")]),
};

/// Without the byte tracepoints the connection table still holds every connection from
/// its SYN to its close, whose final totals are the socket's own.
const AT_CLOSE_ONLY: &str = "the bytes and RTT of open TCP connections are counted at their \
    close (or a retransmit), not every interval, and connections older than Sonde are not seen";

pub const NEEDS: &[Need] = &[
    Need {
        probe: "tcp.send",
        feature: &SOCK_LENGTH,
        without: Without::Nothing,
        lost: AT_CLOSE_ONLY,
    },
    Need {
        probe: "tcp.recv",
        feature: &SOCK_LENGTH,
        without: Without::Nothing,
        lost: AT_CLOSE_ONLY,
    },
];
