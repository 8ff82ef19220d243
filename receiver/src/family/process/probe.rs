//! The process family: where each program attaches.

use sonde_probes::names::process as n;

use crate::probe::btf::RawArg;
use crate::probe::{Attach, ProgramSpec};

pub const PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        probe: "process.fork",
        program: n::PROG_FORK,
        attach: Attach::RawTracePoint {
            name: "sched_process_fork",
            args: &[RawArg::Ptr("task_struct"), RawArg::Ptr("task_struct")],
        },
    },
    ProgramSpec {
        probe: "process.exec",
        program: n::PROG_EXEC,
        attach: Attach::TracePoint {
            category: "sched",
            name: "sched_process_exec",
        },
    },
    ProgramSpec {
        probe: "process.exit",
        program: n::PROG_EXIT,
        attach: Attach::TracePoint {
            category: "sched",
            name: "sched_process_exit",
        },
    },
    ProgramSpec {
        probe: "process.oom",
        program: n::PROG_OOM,
        attach: Attach::RawTracePoint {
            name: "mark_victim",
            args: &[],
        },
    },
];
