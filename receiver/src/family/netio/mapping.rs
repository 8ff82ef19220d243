//! process.network.io and container.network.io from the netio totals. Pure.

use std::sync::Arc;

use sonde_semconv::attr::{self, network_io_direction};
use sonde_semconv::netio as m;

use crate::aggregate::process::ProcessKey;
use crate::cgroup::Container;
use crate::family::netio::aggregate::{Direction, Snapshot};
use crate::mapping::{process, CounterPoints};
use crate::model::{Attributes, Metric};

fn direction(d: Direction) -> Attributes {
    Attributes::new().with(
        attr::NETWORK_IO_DIRECTION,
        match d {
            Direction::Transmit => network_io_direction::TRANSMIT,
            Direction::Receive => network_io_direction::RECEIVE,
        },
    )
}

fn overflow(d: Direction) -> Attributes {
    direction(d).with(attr::OTEL_METRIC_OVERFLOW, true)
}

/// Both metrics. `unkeyed` (tx, rx) are the bytes the kernel could not key (its map was
/// full): they join the overflow series, so the sum over series stays exact. `start` is
/// the agent's start, the start of an overflow series made only of them.
pub fn metrics(
    processes: &Snapshot<ProcessKey>,
    containers: &Snapshot<Arc<Container>>,
    unkeyed: (u64, u64),
    start: u64,
) -> Vec<Metric> {
    let mut p = CounterPoints::default();
    for s in &processes.0 {
        p.add(
            process::with(direction(s.key.1), &s.key.0),
            s.value,
            s.start_unix_nano,
        );
    }
    for s in &processes.1 {
        p.add(overflow(s.key), s.value, s.start_unix_nano);
    }
    for (d, n) in [
        (Direction::Transmit, unkeyed.0),
        (Direction::Receive, unkeyed.1),
    ] {
        if n > 0 {
            p.add(overflow(d), n, start);
        }
    }
    let mut c = CounterPoints::default();
    for s in &containers.0 {
        let a = direction(s.key.1).with(attr::CONTAINER_ID, s.key.0.id.as_str());
        c.add(a, s.value, s.start_unix_nano);
    }
    for s in &containers.1 {
        c.add(overflow(s.key), s.value, s.start_unix_nano);
    }
    [
        p.metric(m::PROCESS_NETWORK_IO),
        c.metric(m::CONTAINER_NETWORK_IO),
    ]
    .into_iter()
    .filter(|m| !m.points.is_empty())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::bounded::SeriesPoint;
    use crate::cgroup::Runtime;
    use crate::model::{Number, PointValue, Value};

    fn sp<K>(key: K, value: u64, start: u64) -> SeriesPoint<K> {
        SeriesPoint {
            key,
            value,
            start_unix_nano: start,
        }
    }

    #[test]
    fn process_and_container_series_with_their_attributes_and_overflow() {
        let c = Arc::new(Container {
            id: "f".repeat(64),
            runtime: Runtime::Podman,
            k8s: None,
        });
        let nginx = ProcessKey::named("nginx").in_container(Some(c.clone()));
        let processes = (
            vec![
                sp((nginx.clone(), Direction::Transmit), 100, 5),
                sp((nginx, Direction::Receive), 40, 5),
            ],
            vec![sp(Direction::Receive, 7, 6)],
        );
        let containers = (vec![sp((c, Direction::Transmit), 100, 5)], vec![]);
        let ms = metrics(&processes, &containers, (3, 2), 1);
        assert_eq!(ms[0].def.name, "process.network.io");
        assert_eq!(ms[1].def.name, "container.network.io");
        let row = |p: &crate::model::Point| {
            let mut a: Vec<String> = p
                .attributes
                .iter()
                .map(|(k, v)| match v {
                    Value::Str(s) => format!("{k}={}", if s.len() == 64 { "ID" } else { s }),
                    other => format!("{k}={other:?}"),
                })
                .collect();
            a.sort();
            let PointValue::Number(Number::Int(n)) = p.value else {
                panic!("integer points")
            };
            (a.join(" "), n, p.start_unix_nano)
        };
        let got: Vec<_> = ms[0].points.iter().map(row).collect();
        assert_eq!(
            got,
            vec![
                (
                    "container.id=ID network.io.direction=receive process.executable.name=nginx"
                        .to_owned(),
                    40,
                    5
                ),
                (
                    "container.id=ID network.io.direction=transmit process.executable.name=nginx"
                        .to_owned(),
                    100,
                    5
                ),
                (
                    "network.io.direction=receive otel.metric.overflow=Bool(true)".to_owned(),
                    9,
                    1
                ),
                (
                    "network.io.direction=transmit otel.metric.overflow=Bool(true)".to_owned(),
                    3,
                    1
                ),
            ],
            "unkeyed bytes join the overflow series"
        );
        let got: Vec<_> = ms[1].points.iter().map(row).collect();
        assert_eq!(
            got,
            vec![(
                "container.id=ID network.io.direction=transmit".to_owned(),
                100,
                5
            )]
        );
        let no_containers: Snapshot<Arc<Container>> = (vec![], vec![]);
        let no_processes: Snapshot<ProcessKey> = (vec![], vec![]);
        let host_only = metrics(&processes, &no_containers, (0, 0), 1);
        assert_eq!(host_only.len(), 1, "no container: no container.network.io");
        assert!(metrics(&no_processes, &no_containers, (0, 0), 1).is_empty());
    }
}
