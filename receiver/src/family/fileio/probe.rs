//! The fileio family: where each program attaches.
//!
//! File I/O uses the classic `syscalls:sys_enter_*/sys_exit_*` tracepoints of six
//! syscalls rather than the raw `sys_enter`/`sys_exit` tracepoints: a raw syscall
//! program pair runs on every syscall of every task on the host (+120 to +180 ns on a
//! `getpid` on the test VM, against 0 to +60 ns for the classic pair) and saves a
//! 1-byte pread only ~50 ns, so it would tax the whole host to watch six syscalls
//! (ARCHITECTURE.md, "fileio probe", has the measurements).

use sonde_probes::names::fileio as n;

use crate::probe::btf::RawArg;
use crate::probe::{Attach, ProgramSpec};

macro_rules! pair {
    ($sys:literal, $idx:expr) => {
        [
            ProgramSpec {
                probe: concat!("fileio.", $sys, ".enter"),
                program: n::SYSCALLS[$idx].1,
                attach: Attach::TracePoint {
                    category: "syscalls",
                    name: concat!("sys_enter_", $sys),
                },
            },
            ProgramSpec {
                probe: concat!("fileio.", $sys, ".exit"),
                program: n::SYSCALLS[$idx].2,
                attach: Attach::TracePoint {
                    category: "syscalls",
                    name: concat!("sys_exit_", $sys),
                },
            },
        ]
    };
}

const READ: [ProgramSpec; 2] = pair!("read", 0);
const WRITE: [ProgramSpec; 2] = pair!("write", 1);
const PREAD: [ProgramSpec; 2] = pair!("pread64", 2);
const PWRITE: [ProgramSpec; 2] = pair!("pwrite64", 3);
const READV: [ProgramSpec; 2] = pair!("readv", 4);
const WRITEV: [ProgramSpec; 2] = pair!("writev", 5);

pub const PROGRAMS: &[ProgramSpec] = &[
    READ[0],
    READ[1],
    WRITE[0],
    WRITE[1],
    PREAD[0],
    PREAD[1],
    PWRITE[0],
    PWRITE[1],
    READV[0],
    READV[1],
    WRITEV[0],
    WRITEV[1],
    ProgramSpec {
        probe: "fileio.block_issue",
        program: n::PROG_BLOCK_ISSUE,
        attach: Attach::RawTracePoint {
            name: "block_rq_issue",
            args: &[RawArg::Ptr("request")],
        },
    },
    ProgramSpec {
        probe: "fileio.block_complete",
        program: n::PROG_BLOCK_COMPLETE,
        attach: Attach::RawTracePoint {
            name: "block_rq_complete",
            args: &[RawArg::Ptr("request"), RawArg::Int(1), RawArg::Int(4)],
        },
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_syscall_has_its_enter_and_exit_and_names_match() {
        assert_eq!(PROGRAMS.len(), 14);
        for (i, (sys, enter, exit)) in n::SYSCALLS.iter().enumerate() {
            assert_eq!(PROGRAMS[2 * i].program, *enter);
            assert_eq!(PROGRAMS[2 * i + 1].program, *exit);
            assert!(PROGRAMS[2 * i].probe.contains(sys));
            match PROGRAMS[2 * i + 1].attach {
                Attach::TracePoint { name, .. } => assert_eq!(name, format!("sys_exit_{sys}")),
                _ => panic!("{sys}: classic tracepoint expected"),
            }
        }
    }
}
