//! The netio family: where each program attaches: the raw forms of sock_send_length and
//! sock_recv_length (a classic tracepoint builds a record of the socket's fields before
//! any program runs; the raw one passes its arguments as they are).

use sonde_probes::names::netio as n;

use crate::probe::needs::{Feature, FeatureKind, Need, Without};
use crate::probe::{Attach, ProgramSpec};

pub const PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        probe: "netio.send",
        program: n::PROG_SEND,
        attach: Attach::RawTracePoint {
            name: "sock_send_length",
            args: crate::family::tcp::probe::SOCK_LENGTH_ARGS,
        },
    },
    ProgramSpec {
        probe: "netio.recv",
        program: n::PROG_RECV,
        attach: Attach::RawTracePoint {
            name: "sock_recv_length",
            args: crate::family::tcp::probe::SOCK_LENGTH_ARGS,
        },
    },
];

/// The tcp family needs the same tracepoints (for its byte totals): one id, so
/// `SONDE_KERNEL_FEATURES_OFF=sock_length_tracepoints` takes both away.
static SOCK_LENGTH: Feature = Feature {
    id: "sock_length_tracepoints",
    what: "tracepoints sock:sock_send_length and sock:sock_recv_length, Linux 6.3",
    kind: FeatureKind::TracePoints(&[("sock", "sock_send_length"), ("sock", "sock_recv_length")]),
};

/// Nothing else sees the bytes of every send and receive call with its task.
const LOST: &str = "process.network.io and container.network.io are not exported";

pub const NEEDS: &[Need] = &[
    Need {
        probe: "netio.send",
        feature: &SOCK_LENGTH,
        without: Without::Nothing,
        lost: LOST,
    },
    Need {
        probe: "netio.recv",
        feature: &SOCK_LENGTH,
        without: Without::Nothing,
        lost: LOST,
    },
];
