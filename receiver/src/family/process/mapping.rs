//! Process lifecycle metrics.

use sonde_semconv::attr::{self, exit_kind, process_state};
use sonde_semconv::metric as m;

use crate::aggregate::bounded::SeriesPoint;
use crate::family::process::collect::ProcessCounts;
use crate::family::process::procfs::ProcessStates;
use crate::model::{numbers, Attributes, Metric, Number, Point, PointValue};

fn int(v: u64) -> Number {
    Number::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The eBPF-sourced process metrics.
pub fn lifecycle(
    counts: &ProcessCounts,
    exec_names: &[SeriesPoint<String>],
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
                Attributes::new().with(attr::PROCESS_EXECUTABLE_NAME, p.key.as_str()),
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
        };
        let bash = SeriesPoint {
            key: "bash".to_owned(),
            value: 3,
            start_unix_nano: 50,
        };
        let overflow = SeriesPoint {
            key: (),
            value: 1,
            start_unix_nano: 42,
        };
        let ms = lifecycle(&counts, &[bash], Some(&overflow), 42);
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
        assert_eq!(
            exec[1].attributes.get("otel.metric.overflow"),
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
    fn no_overflow_series_until_something_overflows() {
        let ms = lifecycle(&ProcessCounts::default(), &[], None, 0);
        assert!(ms[1].points.is_empty());
    }
}
