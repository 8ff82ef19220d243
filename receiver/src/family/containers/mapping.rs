//! Per-container series to semconv 1.44's `container.*` metrics. Pure.

use sonde_semconv::attr::{self, cpu_mode, disk_io_direction};
use sonde_semconv::containers as m;

use crate::aggregate::bounded::SeriesPoint;
use crate::family::containers::aggregate::{Snapshot, Usage};
use crate::model::{Attributes, Metric, Number, Point, PointValue};

fn int(v: u64) -> Number {
    Number::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn point(attributes: Attributes, value: Number, start_unix_nano: u64) -> Point {
    Point {
        attributes,
        value: PointValue::Number(value),
        start_unix_nano,
    }
}

/// The metrics of one snapshot taken at `now`: memory only for series read at `now` (a
/// container that is gone has no memory, though its counters stay until they expire).
pub fn metrics((series, overflow): &Snapshot, now: u64) -> Vec<Metric> {
    let mut cpu = Vec::new();
    let mut memory = Vec::new();
    let mut working_set = Vec::new();
    let mut disk = Vec::new();
    let mut add = |who: Attributes, u: &Usage, start: u64| {
        if u.has_cpu {
            let secs = |ns: u64| Number::Double(ns as f64 / 1e9);
            let mode = |m: &'static str| who.clone().with(attr::CPU_MODE, m);
            cpu.push(point(mode(cpu_mode::USER), secs(u.cpu.user_ns), start));
            cpu.push(point(mode(cpu_mode::SYSTEM), secs(u.cpu.system_ns), start));
        }
        for ((device, dir), bytes) in &u.disk {
            let direction = if *dir == 0 {
                disk_io_direction::READ
            } else {
                disk_io_direction::WRITE
            };
            let a = who
                .clone()
                .with(attr::SYSTEM_DEVICE, device.as_str())
                .with(attr::DISK_IO_DIRECTION, direction);
            disk.push(point(a, int(*bytes), start));
        }
        if u.memory_at == Some(now) {
            memory.push(point(who.clone(), int(u.memory), start));
            if let Some(ws) = u.working_set {
                working_set.push(point(who.clone(), int(ws), start));
            }
        }
    };
    for SeriesPoint {
        key,
        value,
        start_unix_nano,
    } in series
    {
        let who = Attributes::new().with(attr::CONTAINER_ID, key.as_str());
        add(who, value, *start_unix_nano);
    }
    if let Some(o) = overflow {
        let who = Attributes::new().with(attr::OTEL_METRIC_OVERFLOW, true);
        add(who, &o.value, o.start_unix_nano);
    }
    [
        (m::CONTAINER_CPU_TIME, cpu),
        (m::CONTAINER_MEMORY_USAGE, memory),
        (m::CONTAINER_MEMORY_WORKING_SET, working_set),
        (m::CONTAINER_DISK_IO, disk),
    ]
    .into_iter()
    .filter(|(_, points)| !points.is_empty())
    .map(|(def, points)| Metric { def, points })
    .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::family::containers::stat::Cpu;
    use crate::model::Value;

    fn usage(at: u64) -> Usage {
        Usage {
            has_cpu: true,
            cpu: Cpu {
                user_ns: 1_500_000_000,
                system_ns: 250_000_000,
            },
            disk: BTreeMap::from([(("sda".to_owned(), 0), 4096), (("sda".to_owned(), 1), 512)]),
            memory: 8192,
            working_set: Some(4096),
            memory_at: Some(at),
        }
    }

    /// (metric, attributes, value, start).
    type Row = (String, Vec<(String, String)>, f64, u64);

    fn rows(ms: &[Metric]) -> Vec<Row> {
        ms.iter()
            .flat_map(|m| {
                m.points.iter().map(move |p| {
                    let attrs = p
                        .attributes
                        .iter()
                        .map(|(k, v)| {
                            let v = match v {
                                Value::Str(s) => s.clone(),
                                other => format!("{other:?}"),
                            };
                            (k.to_string(), v)
                        })
                        .collect();
                    let PointValue::Number(n) = p.value else {
                        panic!("numbers only")
                    };
                    (m.def.name.to_owned(), attrs, n.as_f64(), p.start_unix_nano)
                })
            })
            .collect()
    }

    #[test]
    fn series_map_to_contract_names_units_and_attributes() {
        let snap: Snapshot = (
            vec![SeriesPoint {
                key: "abc".into(),
                value: usage(7),
                start_unix_nano: 5,
            }],
            Some(SeriesPoint {
                key: (),
                value: usage(6),
                start_unix_nano: 3,
            }),
        );
        let ms = metrics(&snap, 7);
        let units: Vec<_> = ms.iter().map(|m| (m.def.name, m.def.unit)).collect();
        assert_eq!(
            units,
            [
                ("container.cpu.time", "s"),
                ("container.memory.usage", "By"),
                ("container.memory.working_set", "By"),
                ("container.disk.io", "By"),
            ]
        );
        let id = |rest: &[(&str, &str)]| {
            let mut v = vec![("container.id".to_owned(), "abc".to_owned())];
            v.extend(rest.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            v.sort();
            v
        };
        let overflow = |mode: &str| {
            vec![
                ("cpu.mode".to_owned(), mode.to_owned()),
                ("otel.metric.overflow".to_owned(), "Bool(true)".to_owned()),
            ]
        };
        let want = vec![
            (
                "container.cpu.time".into(),
                id(&[("cpu.mode", "user")]),
                1.5,
                5,
            ),
            (
                "container.cpu.time".into(),
                id(&[("cpu.mode", "system")]),
                0.25,
                5,
            ),
            ("container.cpu.time".into(), overflow("user"), 1.5, 3),
            ("container.cpu.time".into(), overflow("system"), 0.25, 3),
            ("container.memory.usage".into(), id(&[]), 8192.0, 5),
            ("container.memory.working_set".into(), id(&[]), 4096.0, 5),
            (
                "container.disk.io".into(),
                id(&[("disk.io.direction", "read"), ("system.device", "sda")]),
                4096.0,
                5,
            ),
            (
                "container.disk.io".into(),
                id(&[("disk.io.direction", "write"), ("system.device", "sda")]),
                512.0,
                5,
            ),
            (
                "container.disk.io".into(),
                vec![
                    ("disk.io.direction".into(), "read".into()),
                    ("otel.metric.overflow".into(), "Bool(true)".into()),
                    ("system.device".into(), "sda".into()),
                ],
                4096.0,
                3,
            ),
            (
                "container.disk.io".into(),
                vec![
                    ("disk.io.direction".into(), "write".into()),
                    ("otel.metric.overflow".into(), "Bool(true)".into()),
                    ("system.device".into(), "sda".into()),
                ],
                512.0,
                3,
            ),
        ];
        let mut got = rows(&ms);
        for r in &mut got {
            r.1.sort();
        }
        assert_eq!(
            got, want,
            "the overflow's memory was read at an earlier tick"
        );
    }

    #[test]
    fn nothing_read_nothing_exported() {
        assert!(metrics(&(vec![], None), 1).is_empty());
    }
}
