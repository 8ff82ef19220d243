//! Cumulative to delta conversion, for exporters asked for delta or lowmemory temporality.
//!
//! Every source Sonde reads is cumulative (kernel counters, /proc totals), so the snapshot
//! is cumulative and an exporter that wants deltas keeps the previous value of each stream.
//! Which metrics become deltas follows the OTel metrics SDK exporter spec's temporality
//! preferences ([`is_delta`]). The rules of the conversion, per stream (metric name +
//! attributes):
//! - A stream's cumulative start time identifies it: a new start time, or a value that went
//!   down, is a reset. The delta after a reset is the new cumulative value, over an interval
//!   that begins no earlier than the end of the previous delta (intervals never overlap).
//! - A stream seen for the first time reports its cumulative value over an interval that
//!   starts at the previous export (or the converter's start), not at the stream's own start
//!   (boot, for /proc totals): earlier intervals were exported without it.
//! - A stream whose cumulative start predates the converter (a /proc total since boot, a
//!   process older than the agent) only sets a baseline when first seen: its total counts
//!   time nobody exported as a delta, and reporting it as one interval's increase would be
//!   wrong (the OTel Collector's cumulativetodelta processor does the same).
//! - A stream missing from a snapshot is forgotten (bounded state). Sources give a stream
//!   that comes back a new start time (the series reset rule), so it starts over cleanly.

use std::collections::HashMap;

use sonde_semconv::{Instrument, MetricDef, OBSERVED_COUNTERS};

use crate::config::Temporality;
use crate::model::{Attributes, Histogram, Number, PointValue, Snapshot};

/// Whether points of `def` are exported as deltas under `preference` (OTel metrics SDK,
/// "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"): `delta` makes every counter and
/// histogram a delta; `lowmemory` only synchronous counters and histograms, keeping
/// asynchronous (observed) counters cumulative; up-down counters and gauges never change.
pub fn is_delta(preference: Temporality, def: &MetricDef) -> bool {
    match (preference, def.instrument) {
        (Temporality::Cumulative, _) | (_, Instrument::UpDownCounter | Instrument::Gauge) => false,
        (Temporality::Delta, Instrument::Counter | Instrument::Histogram) => true,
        (Temporality::LowMemory, Instrument::Histogram) => true,
        (Temporality::LowMemory, Instrument::Counter) => !OBSERVED_COUNTERS.contains(def),
    }
}

#[derive(Debug)]
struct Last {
    value: PointValue,
    /// The stream's cumulative start time.
    start: u64,
}

#[derive(Debug)]
pub struct DeltaConverter {
    preference: Temporality,
    /// When the converter started: streams that began earlier only set a baseline.
    since: u64,
    /// The previous snapshot's time, where the next deltas begin.
    prev: u64,
    last: HashMap<(&'static str, Attributes), Last>,
}

impl DeltaConverter {
    /// `since`: when the agent started watching (Unix ns).
    pub fn new(preference: Temporality, since: u64) -> Self {
        Self {
            preference,
            since,
            prev: since,
            last: HashMap::new(),
        }
    }

    /// Streams remembered (for tests and self-checks of bounded state).
    pub fn streams(&self) -> usize {
        self.last.len()
    }

    /// Rewrites the points of `snap` that `is_delta` selects in place as deltas since the
    /// previous call; a stream that only sets its baseline is removed from `snap`.
    pub fn apply(&mut self, snap: &mut Snapshot) {
        let now = snap.time_unix_nano;
        let mut next = HashMap::with_capacity(self.last.len());
        for metric in &mut snap.metrics {
            if !is_delta(self.preference, &metric.def) {
                continue;
            }
            let name = metric.def.name;
            metric.points.retain_mut(|point| {
                let key = (name, point.attributes.clone());
                let current = Last {
                    value: point.value.clone(),
                    start: point.start_unix_nano,
                };
                let delta = match self.last.remove(&key) {
                    Some(prev) if prev.start == current.start => {
                        match subtract(&current.value, &prev.value) {
                            Some(d) => Some((d, self.prev)),
                            // Went down under the same start: a reset the source did not date.
                            None => self.restart(&current, self.prev),
                        }
                    }
                    // A new start time: the stream restarted.
                    Some(_) => self.restart(&current, self.prev),
                    None => self.restart(&current, self.prev),
                };
                next.insert(key, current);
                match delta {
                    Some((value, start)) => {
                        point.value = value;
                        point.start_unix_nano = start;
                        true
                    }
                    None => false,
                }
            });
        }
        // What was not in this snapshot is gone.
        self.last = next;
        self.prev = now;
    }

    /// The first delta of a (re)started stream: its whole cumulative value, over an
    /// interval from its start but never before `floor` (the end of the last delta), or
    /// nothing when it started before the converter (a baseline).
    fn restart(&self, current: &Last, floor: u64) -> Option<(PointValue, u64)> {
        (current.start >= self.since).then(|| (current.value.clone(), current.start.max(floor)))
    }
}

fn subtract(now: &PointValue, prev: &PointValue) -> Option<PointValue> {
    match (now, prev) {
        (PointValue::Number(Number::Int(a)), PointValue::Number(Number::Int(b))) if a >= b => {
            Some(PointValue::Number(Number::Int(a - b)))
        }
        (PointValue::Number(Number::Double(a)), PointValue::Number(Number::Double(b)))
            if a >= b =>
        {
            Some(PointValue::Number(Number::Double(a - b)))
        }
        (PointValue::Histogram(a), PointValue::Histogram(b))
            if a.bounds == b.bounds
                && a.count >= b.count
                && a.counts.iter().zip(&b.counts).all(|(x, y)| x >= y) =>
        {
            Some(PointValue::Histogram(Histogram {
                bounds: a.bounds.clone(),
                counts: a.counts.iter().zip(&b.counts).map(|(x, y)| x - y).collect(),
                sum: a.sum - b.sum,
                count: a.count - b.count,
                // Only the exemplars recorded in this interval belong to its delta.
                exemplars: crate::model::exemplars_since(&a.exemplars, &b.exemplars),
            }))
        }
        (PointValue::Exponential(a), PointValue::Exponential(b)) => {
            a.minus(b).map(PointValue::Exponential)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{numbers, Metric, Point, Value};
    use sonde_semconv::{attr, host, metric as m};

    const SINCE: u64 = 1_000;

    /// One point of `def` with attribute `k=key`, cumulative `value` since `start`.
    fn point(def: MetricDef, key: &str, start: u64, value: i64) -> Metric {
        let attrs = Attributes::new().with(attr::PROCESS_EXECUTABLE_NAME, key);
        numbers(def, start, [(attrs, Number::Int(value))])
    }

    fn snap(t: u64, metrics: Vec<Metric>) -> Snapshot {
        Snapshot {
            time_unix_nano: t,
            metrics,
        }
    }

    /// (key, value, start) of every point of the first metric.
    fn points(s: &Snapshot) -> Vec<(String, i64, u64)> {
        s.metrics[0]
            .points
            .iter()
            .map(|p| {
                let key = match p.attributes.get(attr::PROCESS_EXECUTABLE_NAME) {
                    Some(Value::Str(s)) => s.clone(),
                    other => format!("{other:?}"),
                };
                let PointValue::Number(Number::Int(v)) = p.value else {
                    panic!("int expected")
                };
                (key, v, p.start_unix_nano)
            })
            .collect()
    }

    /// Runs a counter stream through the converter: each step is (snapshot time, stream
    /// start, cumulative value); returns what each step exported (value, start).
    fn run(steps: &[(u64, u64, i64)]) -> Vec<Option<(i64, u64)>> {
        let mut c = DeltaConverter::new(Temporality::Delta, SINCE);
        steps
            .iter()
            .map(|&(t, start, v)| {
                let mut s = snap(t, vec![point(m::SYSTEM_PROCESS_CREATED, "a", start, v)]);
                c.apply(&mut s);
                points(&s).first().map(|(_, v, start)| (*v, *start))
            })
            .collect()
    }

    #[test]
    fn deltas_per_case() {
        /// (what, steps of (time, start, cumulative value), exported (value, start) per step)
        type Case<'a> = (&'a str, &'a [(u64, u64, i64)], &'a [Option<(i64, u64)>]);
        let cases: &[Case] = &[
            (
                "a stream from the agent's start: first delta from the converter's start, \
                 then from each previous export",
                &[(2_000, SINCE, 5), (3_000, SINCE, 12), (4_000, SINCE, 12)],
                &[Some((5, SINCE)), Some((7, 2_000)), Some((0, 3_000))],
            ),
            (
                "a total since boot (before the converter) only sets a baseline",
                &[(2_000, 10, 500), (3_000, 10, 530)],
                &[None, Some((30, 2_000))],
            ),
            (
                "a new start time is a reset even when the value went up: the whole new \
                 value, from the new start",
                &[(2_000, SINCE, 10), (3_000, 2_500, 50), (4_000, 2_500, 55)],
                &[Some((10, SINCE)), Some((50, 2_500)), Some((5, 3_000))],
            ),
            (
                "a reset dated before the previous export does not overlap it",
                &[(2_000, SINCE, 10), (3_000, 1_500, 3)],
                &[Some((10, SINCE)), Some((3, 2_000))],
            ),
            (
                "a value that went down under the same start is an undated reset",
                &[(2_000, SINCE, 10), (3_000, SINCE, 4), (4_000, SINCE, 6)],
                &[Some((10, SINCE)), Some((4, 2_000)), Some((2, 3_000))],
            ),
            (
                "an undated reset of a total since boot cannot be dated: a new baseline",
                &[(2_000, 10, 100), (3_000, 10, 50), (4_000, 10, 60)],
                &[None, None, Some((10, 3_000))],
            ),
        ];
        for (what, steps, want) in cases {
            assert_eq!(run(steps), *want, "{what}");
        }
    }

    #[test]
    fn a_stream_first_seen_later_starts_at_the_previous_export_not_its_own_start() {
        let mut c = DeltaConverter::new(Temporality::Delta, SINCE);
        let mut a = snap(2_000, vec![point(m::SONDE_PROCESS_EXEC, "a", SINCE, 3)]);
        c.apply(&mut a);
        let mut b = snap(
            3_000,
            vec![Metric {
                def: m::SONDE_PROCESS_EXEC,
                points: [("a", 5), ("b", 4)]
                    .into_iter()
                    .flat_map(|(k, v)| point(m::SONDE_PROCESS_EXEC, k, SINCE, v).points)
                    .collect(),
            }],
        );
        c.apply(&mut b);
        assert_eq!(
            points(&b),
            vec![("a".to_owned(), 2, 2_000), ("b".to_owned(), 4, 2_000)]
        );
    }

    #[test]
    fn streams_gone_from_a_snapshot_are_forgotten() {
        let mut c = DeltaConverter::new(Temporality::Delta, SINCE);
        for t in 0..1000u64 {
            // Each snapshot has two streams of its own and one that stays.
            let mut s = snap(
                2_000 + t,
                vec![Metric {
                    def: m::SONDE_PROCESS_EXEC,
                    points: [format!("a{t}"), format!("b{t}"), "stay".to_owned()]
                        .into_iter()
                        .flat_map(|k| point(m::SONDE_PROCESS_EXEC, &k, SINCE, 1).points)
                        .collect(),
                }],
            );
            c.apply(&mut s);
            assert_eq!(c.streams(), 3);
        }
        // A stream that comes back with a new start time starts over.
        let mut s = snap(5_000, vec![point(m::SONDE_PROCESS_EXEC, "a0", 4_500, 2)]);
        c.apply(&mut s);
        assert_eq!(points(&s), vec![("a0".to_owned(), 2, 4_500)]);
        assert_eq!(c.streams(), 1);
    }

    #[test]
    fn lowmemory_keeps_observed_counters_and_updowncounters_cumulative() {
        let cases = [
            (Temporality::Cumulative, m::SONDE_PROCESS_EXEC, false),
            (Temporality::Delta, m::SONDE_PROCESS_EXEC, true),
            (Temporality::Delta, host::SYSTEM_CPU_TIME, true),
            (Temporality::Delta, m::SYSTEM_PROCESS_COUNT, false),
            (Temporality::Delta, m::SONDE_AGENT_MEMORY_RSS, false),
            (Temporality::LowMemory, m::SONDE_PROCESS_EXEC, true),
            (Temporality::LowMemory, host::SYSTEM_CPU_TIME, false),
            (Temporality::LowMemory, host::PROCESS_CPU_TIME, false),
            (Temporality::LowMemory, m::SONDE_AGENT_CPU_TIME, false),
            (Temporality::LowMemory, m::SYSTEM_PROCESS_COUNT, false),
            (
                Temporality::LowMemory,
                sonde_semconv::fileio::SONDE_FILE_IO_DURATION,
                true,
            ),
        ];
        for (pref, def, want) in cases {
            assert_eq!(is_delta(pref, &def), want, "{pref:?} {}", def.name);
        }
        // Applied: the observed counter keeps its cumulative value and start.
        let mut c = DeltaConverter::new(Temporality::LowMemory, SINCE);
        for (t, v) in [(2_000, 100), (3_000, 130)] {
            let mut s = snap(t, vec![point(host::SYSTEM_CPU_TIME, "cpu", 10, v)]);
            c.apply(&mut s);
            assert_eq!(points(&s), vec![("cpu".to_owned(), v, 10)]);
        }
        assert_eq!(c.streams(), 0, "nothing kept for a cumulative stream");
    }

    #[test]
    fn histograms_subtract_bucket_by_bucket() {
        let h = |counts: Vec<u64>, sum: f64| Metric {
            def: sonde_semconv::fileio::SONDE_FILE_IO_DURATION,
            points: vec![Point {
                attributes: Attributes::new(),
                value: PointValue::Histogram(Histogram {
                    bounds: vec![1.0, 2.0],
                    count: counts.iter().sum(),
                    counts,
                    sum,
                    exemplars: Vec::new(),
                }),
                start_unix_nano: SINCE,
            }],
        };
        let mut c = DeltaConverter::new(Temporality::Delta, SINCE);
        let mut a = snap(2_000, vec![h(vec![1, 2, 3], 10.0)]);
        c.apply(&mut a);
        let mut b = snap(3_000, vec![h(vec![2, 2, 5], 15.0)]);
        c.apply(&mut b);
        let p = &b.metrics[0].points[0];
        let PointValue::Histogram(d) = &p.value else {
            panic!("histogram expected")
        };
        assert_eq!(d.counts, vec![1, 0, 2]);
        assert_eq!(d.count, 3);
        assert_eq!(d.sum, 5.0);
        assert_eq!(p.start_unix_nano, 2_000);
        // Fewer observations in a bucket: a reset, the whole histogram from the last export.
        let mut r = snap(4_000, vec![h(vec![0, 1, 0], 1.5)]);
        c.apply(&mut r);
        let p = &r.metrics[0].points[0];
        assert_eq!(p.start_unix_nano, 3_000);
        let PointValue::Histogram(d) = &p.value else {
            panic!("histogram expected")
        };
        assert_eq!(d.counts, vec![0, 1, 0]);
    }
}
