//! Process lifecycle metrics.

use sonde_semconv::attr::{self, exit_kind, process_state};
use sonde_semconv::metric as m;

use crate::aggregate::bounded::SeriesPoint;
use crate::aggregate::process::ProcessKey;
use crate::family::process::aggregate::ExitTotals;
use crate::family::process::collect::ProcessCounts;
use crate::family::process::procfs::ProcessStates;
use crate::model::{numbers, Attributes, Metric, Number, Point, PointValue};

fn int(v: u64) -> Number {
    Number::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The eBPF-sourced process metrics.
pub fn lifecycle(
    counts: &ProcessCounts,
    exec_names: &[SeriesPoint<ProcessKey>],
    exec_overflow: Option<&SeriesPoint<()>>,
    start: u64,
) -> Vec<Metric> {
    let point = |attributes: Attributes, p_value: u64, start_unix_nano: u64| Point {
        attributes,
        value: PointValue::Number(int(p_value)),
        start_unix_nano,
    };
    let mut exec: Vec<Point> = exec_names
        .iter()
        .map(|p| {
            point(
                crate::mapping::process::with(Attributes::new(), &p.key),
                p.value,
                p.start_unix_nano,
            )
        })
        .collect();
    if let Some(o) = exec_overflow {
        exec.push(point(
            Attributes::new().with(attr::OTEL_METRIC_OVERFLOW, true),
            o.value,
            o.start_unix_nano,
        ));
    }
    let exit = |kind: &str, n: u64| {
        (
            Attributes::new().with(attr::SONDE_PROCESS_EXIT_KIND, kind),
            int(n),
        )
    };
    vec![
        numbers(
            m::SYSTEM_PROCESS_CREATED,
            start,
            [(Attributes::new(), int(counts.created))],
        ),
        Metric {
            def: m::SONDE_PROCESS_EXEC,
            points: exec,
        },
        numbers(
            m::SONDE_PROCESS_EXIT,
            start,
            [
                exit(exit_kind::SUCCESS, counts.exit_success),
                exit(exit_kind::FAILURE, counts.exit_failure),
                exit(exit_kind::SIGNAL, counts.exit_signal),
            ],
        ),
    ]
}

/// Process attributes of a per-executable series (none for the unknown name).
fn exe(key: &Option<ProcessKey>) -> Attributes {
    match key {
        Some(k) => crate::mapping::process::with(Attributes::new(), k),
        None => Attributes::new(),
    }
}

fn overflow() -> Attributes {
    Attributes::new().with(attr::OTEL_METRIC_OVERFLOW, true)
}

/// `sonde.process.exited.cpu.time` (user and system per name) and
/// `sonde.process.oom_kills`, from the kernel's per-executable totals.
pub fn exited(totals: &ExitTotals) -> Vec<Metric> {
    let (cpu, cpu_over) = totals.cpu_points();
    let seconds = |ns: u64| PointValue::Number(Number::Double(ns as f64 / 1e9));
    let mut cpu_points = Vec::new();
    let series = cpu
        .iter()
        .map(|p| (exe(&p.key), p.value, p.start_unix_nano))
        .chain(
            cpu_over
                .iter()
                .map(|p| (overflow(), p.value, p.start_unix_nano)),
        );
    for (attributes, v, start_unix_nano) in series {
        for (mode, ns) in [
            (attr::cpu_mode::USER, v.user_ns),
            (attr::cpu_mode::SYSTEM, v.system_ns),
        ] {
            cpu_points.push(Point {
                attributes: attributes.clone().with(attr::CPU_MODE, mode),
                value: seconds(ns),
                start_unix_nano,
            });
        }
    }
    let (oom, oom_over) = totals.oom_points();
    let oom_points = oom
        .iter()
        .map(|p| (exe(&p.key), p.value, p.start_unix_nano))
        .chain(
            oom_over
                .iter()
                .map(|p| (overflow(), p.value, p.start_unix_nano)),
        )
        .map(|(attributes, n, start_unix_nano)| Point {
            attributes,
            value: PointValue::Number(int(n)),
            start_unix_nano,
        })
        .collect();
    vec![
        Metric {
            def: m::SONDE_PROCESS_EXITED_CPU_TIME,
            points: cpu_points,
        },
        Metric {
            def: m::SONDE_PROCESS_OOM_KILLS,
            points: oom_points,
        },
    ]
}

/// `system.process.count` from /proc.
pub fn count(states: &ProcessStates, start: u64) -> Metric {
    let s = |state: &str, n: u64| (Attributes::new().with(attr::PROCESS_STATE, state), int(n));
    numbers(
        m::SYSTEM_PROCESS_COUNT,
        start,
        [
            s(process_state::RUNNING, states.running),
            s(process_state::SLEEPING, states.sleeping),
            s(process_state::STOPPED, states.stopped),
            s(process_state::DEFUNCT, states.defunct),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PointValue, Value};

    #[test]
    fn lifecycle_maps_counts_to_contract_names_and_attributes() {
        let counts = ProcessCounts {
            created: 10,
            exec: 4,
            exit_success: 5,
            exit_failure: 2,
            exit_signal: 1,
            lost_ringbuf: 0,
            lost_exits: 0,
            lost_exec_starts: 0,
        };
        let bash = SeriesPoint {
            key: ProcessKey::named("bash"),
            value: 3,
            start_unix_nano: 50,
        };
        let in_container = SeriesPoint {
            key: ProcessKey::named("bash").in_container(Some(std::sync::Arc::new(
                crate::cgroup::Container {
                    id: "a".repeat(64),
                    runtime: crate::cgroup::Runtime::Docker,
                    k8s: None,
                },
            ))),
            value: 2,
            start_unix_nano: 60,
        };
        let overflow = SeriesPoint {
            key: (),
            value: 1,
            start_unix_nano: 42,
        };
        let ms = lifecycle(&counts, &[bash, in_container], Some(&overflow), 42);
        let names: Vec<&str> = ms.iter().map(|m| m.def.name).collect();
        assert_eq!(
            names,
            [
                "system.process.created",
                "sonde.process.exec",
                "sonde.process.exit"
            ]
        );
        assert_eq!(ms[0].points[0].value, PointValue::Number(Number::Int(10)));
        assert_eq!(ms[0].points[0].start_unix_nano, 42);
        let exec = &ms[1].points;
        assert_eq!(exec[0].start_unix_nano, 50, "each series has its own start");
        assert_eq!(
            exec[0].attributes.get("process.executable.name"),
            Some(&Value::Str("bash".into()))
        );
        assert_eq!(exec[0].attributes.get("container.id"), None);
        assert_eq!(
            exec[1].attributes.get("container.id"),
            Some(&Value::Str("a".repeat(64)))
        );
        assert_eq!(exec[1].value, PointValue::Number(Number::Int(2)));
        assert_eq!(
            exec[2].attributes.get("otel.metric.overflow"),
            Some(&Value::Bool(true))
        );
        let kinds: Vec<_> = ms[2]
            .points
            .iter()
            .map(|p| {
                (
                    p.attributes.get("sonde.process.exit.kind").cloned(),
                    p.value.clone(),
                )
            })
            .collect();
        assert_eq!(
            kinds[1],
            (
                Some(Value::Str("failure".into())),
                PointValue::Number(Number::Int(2))
            )
        );
    }

    #[test]
    fn exited_cpu_in_seconds_per_mode_and_oom_kills_per_name() {
        use crate::aggregate::bounded::SeriesPolicy;
        let mut t = ExitTotals::new(SeriesPolicy {
            limit: 1,
            ttl: std::time::Duration::ZERO,
            start_unix_nano: 5,
        });
        let comm = |s: &str| {
            let mut c = [0u8; 16];
            c[..s.len()].copy_from_slice(s.as_bytes());
            (c, 0u64)
        };
        let tot = |u, s, o| crate::family::process::aggregate::Totals {
            user_ns: u,
            system_ns: s,
            oom_kills: o,
        };
        t.update(
            10,
            [
                (comm("make"), tot(1_500_000_000, 250_000_000, 0)),
                (comm("cc1"), tot(1, 0, 2)),
            ],
            tot(0, 0, 0),
            |raw| crate::family::process::aggregate::comm_name(&raw.0).map(ProcessKey::named),
        );
        let ms = exited(&t);
        assert_eq!(ms[0].def.name, "sonde.process.exited.cpu.time");
        assert_eq!(ms[1].def.name, "sonde.process.oom_kills");
        let get = |p: &Point, k: &str| p.attributes.get(k).cloned();
        let user = ms[0]
            .points
            .iter()
            .find(|p| {
                get(p, "process.executable.name") == Some(Value::Str("make".into()))
                    && get(p, "cpu.mode") == Some(Value::Str("user".into()))
            })
            .expect("make user");
        assert_eq!(user.value, PointValue::Number(Number::Double(1.5)));
        // The limit of one series sent cc1's CPU to the overflow series; its OOM kills
        // have a series of their own.
        assert!(ms[0]
            .points
            .iter()
            .any(|p| get(p, "otel.metric.overflow") == Some(Value::Bool(true))));
        assert_eq!(ms[1].points.len(), 1);
        assert_eq!(ms[1].points[0].value, PointValue::Number(Number::Int(2)));
    }

    #[test]
    fn no_overflow_series_until_something_overflows() {
        let ms = lifecycle(&ProcessCounts::default(), &[], None, 0);
        assert!(ms[1].points.is_empty());
    }
}
