//! The span of a process that ended with a failure code or a signal, or ran longer than
//! `spans.process.longer_than`. The kernel decides which processes qualify (only those
//! reach the `process_exits` ring, and only when process spans are on), so nothing is
//! read or allocated for the others; this module is pure.

use std::sync::Arc;

use sonde_probes::abi::{sonde_exit_event, sonde_exit_start};
use sonde_semconv::attr;

use super::collect::comm_to_string;
use crate::aggregate::process::ProcessKey;
use crate::cgroup::Container;
use crate::model::Attributes;
use crate::spans::clock::MonotonicToWall;
use crate::spans::{Span, SpanContext, SpanKind, Status};

/// Linux signal names by number (x86 and arm64 share 1..=31).
const SIGNALS: [&str; 32] = [
    "",
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// How a process ended, from the status wait(2) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited { code: u8 },
    Signaled { signal: u8, core_dumped: bool },
}

pub fn ended(status: u32) -> Ended {
    let signal = (status & 0x7f) as u8;
    if signal != 0 {
        Ended::Signaled {
            signal,
            core_dumped: status & 0x80 != 0,
        }
    } else {
        Ended::Exited {
            code: ((status >> 8) & 0xff) as u8,
        }
    }
}

/// A signal's name (`SIGKILL`), or its number for real-time signals.
pub fn signal_name(signal: u8) -> String {
    match SIGNALS.get(usize::from(signal)) {
        Some(n) if !n.is_empty() => (*n).to_owned(),
        _ => format!("SIG{signal}"),
    }
}

/// The span of one process's life: `process <executable>`, INTERNAL, from its last exec
/// (its fork when the kernel saw no exec: `sonde.process.span.start` says which) to its
/// last thread's exit, in `container` (the exiting task's); ERROR when it failed or was
/// killed.
pub fn span(
    e: &sonde_exit_event,
    container: Option<Arc<Container>>,
    clock: &MonotonicToWall,
    context: SpanContext,
) -> Span {
    let exe = comm_to_string(&e.comm);
    let who = ProcessKey {
        // A span is one event: its pid always.
        pid: Some(e.pid),
        ..ProcessKey::named(exe.as_str()).in_container(container)
    };
    let mut a = crate::mapping::process::with(Attributes::new(), &who)
        .with(attr::PROCESS_PARENT_PID, i64::from(e.ppid))
        .with(
            attr::SONDE_PROCESS_SPAN_START,
            if e.started == sonde_exit_start::SONDE_EXIT_FROM_EXEC as u32 {
                attr::span_start::EXEC
            } else {
                attr::span_start::FORK
            },
        );
    let status = match ended(e.status) {
        Ended::Exited { code: 0 } => {
            a.insert(attr::PROCESS_EXIT_CODE, 0i64);
            Status::Unset
        }
        Ended::Exited { code } => {
            a.insert(attr::PROCESS_EXIT_CODE, i64::from(code));
            a.insert(attr::ERROR_TYPE, code.to_string());
            Status::Error {
                description: format!("exited with code {code}"),
            }
        }
        Ended::Signaled {
            signal,
            core_dumped,
        } => {
            let name = signal_name(signal);
            a.insert(attr::SONDE_PROCESS_EXIT_SIGNAL, i64::from(signal));
            a.insert(attr::ERROR_TYPE, name.as_str());
            Status::Error {
                description: format!(
                    "killed by signal {signal} ({name}){}",
                    if core_dumped { ", core dumped" } else { "" }
                ),
            }
        }
    };
    // A start after the end can only come from a torn read: make the span a point.
    let start = e.start_ns.min(e.end_ns);
    Span {
        context,
        name: format!("process {exe}"),
        kind: SpanKind::Internal,
        start_unix_nano: clock.to_unix_nanos(start),
        end_unix_nano: clock.to_unix_nanos(e.end_ns),
        attributes: a,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    const MS: u64 = 1_000_000;

    fn event(status: u32, lived_ms: u64) -> sonde_exit_event {
        let mut e = sonde_exit_event {
            start_ns: 5_000 * MS,
            end_ns: 5_000 * MS + lived_ms * MS,
            pid: 4242,
            ppid: 1,
            status,
            ..Default::default()
        };
        for (d, s) in e.comm.iter_mut().zip(b"backup.sh") {
            *d = *s as core::ffi::c_char;
        }
        e
    }

    fn ctx() -> SpanContext {
        SpanContext {
            trace_id: [3; 16],
            span_id: [4; 8],
        }
    }

    #[test]
    fn wait_statuses_decode() {
        for (status, want) in [
            (0, Ended::Exited { code: 0 }),
            (1 << 8, Ended::Exited { code: 1 }),
            (255 << 8, Ended::Exited { code: 255 }),
            (
                9,
                Ended::Signaled {
                    signal: 9,
                    core_dumped: false,
                },
            ),
            (
                0x80 | 11,
                Ended::Signaled {
                    signal: 11,
                    core_dumped: true,
                },
            ),
        ] {
            assert_eq!(ended(status), want, "status {status:#x}");
        }
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(34), "SIG34");
    }

    #[test]
    fn span_of_a_killed_a_failed_and_a_long_process() {
        let clock = MonotonicToWall::from_offset(1_000);
        let get = |s: &Span, k| s.attributes.get(k).cloned();

        let killed = span(&event(9, 30), None, &clock, ctx());
        assert_eq!(killed.name, "process backup.sh");
        assert_eq!(killed.kind, SpanKind::Internal);
        assert_eq!(killed.start_unix_nano, 5_000 * MS + 1_000);
        assert_eq!(killed.end_unix_nano - killed.start_unix_nano, 30 * MS);
        assert_eq!(get(&killed, attr::ERROR_TYPE), Some(Value::from("SIGKILL")));
        assert_eq!(
            get(&killed, attr::SONDE_PROCESS_EXIT_SIGNAL),
            Some(Value::Int(9))
        );
        assert_eq!(get(&killed, attr::PROCESS_EXIT_CODE), None);
        assert_eq!(get(&killed, attr::PROCESS_PARENT_PID), Some(Value::Int(1)));
        assert!(
            matches!(&killed.status, Status::Error { description } if description.contains("SIGKILL"))
        );

        let failed = span(&event(2 << 8, 1), None, &clock, ctx());
        assert_eq!(get(&failed, attr::PROCESS_EXIT_CODE), Some(Value::Int(2)));
        assert_eq!(get(&failed, attr::ERROR_TYPE), Some(Value::from("2")));

        let long = span(&event(0, 3_600_000), None, &clock, ctx());
        assert_eq!(long.status, Status::Unset);
        assert_eq!(get(&long, attr::ERROR_TYPE), None);
        assert_eq!(get(&long, attr::PROCESS_EXIT_CODE), Some(Value::Int(0)));
        assert_eq!(
            get(&long, attr::SONDE_PROCESS_SPAN_START),
            Some(Value::from(attr::span_start::FORK))
        );
        assert_eq!(get(&long, attr::CONTAINER_ID), None);
    }

    #[test]
    fn a_span_from_exec_in_a_container() {
        let clock = MonotonicToWall::from_offset(0);
        let mut e = event(1 << 8, 20);
        e.started = sonde_exit_start::SONDE_EXIT_FROM_EXEC as u32;
        let c = Arc::new(Container {
            id: "c".repeat(64),
            runtime: crate::cgroup::Runtime::Docker,
            k8s: None,
        });
        let s = span(&e, Some(c), &clock, ctx());
        let get = |k| s.attributes.get(k).cloned();
        assert_eq!(
            get(attr::SONDE_PROCESS_SPAN_START),
            Some(Value::from(attr::span_start::EXEC))
        );
        assert_eq!(get(attr::CONTAINER_ID), Some(Value::from("c".repeat(64))));
        assert_eq!(get(attr::PROCESS_PID), Some(Value::Int(4242)));
        assert_eq!(
            get(attr::PROCESS_EXECUTABLE_NAME),
            Some(Value::from("backup.sh"))
        );
        assert_eq!(s.end_unix_nano - s.start_unix_nano, 20 * MS);
    }
}
