//! Cumulative to delta conversion, for exporters asked for delta temporality.
//!
//! Every source Sonde reads is cumulative (kernel counters, /proc totals), so the
//! snapshot is cumulative and an exporter that wants deltas keeps the previous value of
//! each stream. Per the OTLP exporter spec, counters and histograms become deltas;
//! up-down counters and gauges stay as they are.

use std::collections::HashMap;

use sonde_semconv::Instrument;

use crate::model::{Attributes, Histogram, Number, PointValue, Snapshot};

#[derive(Debug, Default)]
pub struct DeltaConverter {
    last: HashMap<(&'static str, Attributes), (PointValue, u64)>,
}

impl DeltaConverter {
    /// Rewrites counter and histogram points of `snap` in place as deltas since the
    /// previous call. A stream seen for the first time reports its whole cumulative
    /// value since its start; a stream whose value went down (source restarted) starts
    /// over from the new value.
    pub fn apply(&mut self, snap: &mut Snapshot) {
        let now = snap.time_unix_nano;
        for metric in &mut snap.metrics {
            if !matches!(
                metric.def.instrument,
                Instrument::Counter | Instrument::Histogram
            ) {
                continue;
            }
            for point in &mut metric.points {
                let key = (metric.def.name, point.attributes.clone());
                let current = point.value.clone();
                if let Some((prev, prev_time)) = self.last.get(&key) {
                    if let Some(delta) = subtract(&current, prev) {
                        point.value = delta;
                        point.start_unix_nano = *prev_time;
                    }
                }
                self.last.insert(key, (current, now));
            }
        }
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
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{numbers, Metric, Point};
    use sonde_semconv::metric as m;

    fn snap(t: u64, created: i64, count: i64) -> Snapshot {
        Snapshot {
            time_unix_nano: t,
            metrics: vec![
                numbers(
                    m::SYSTEM_PROCESS_CREATED,
                    1,
                    [(Attributes::new(), Number::Int(created))],
                ),
                numbers(
                    m::SYSTEM_PROCESS_COUNT,
                    1,
                    [(Attributes::new(), Number::Int(count))],
                ),
            ],
        }
    }

    fn value(s: &Snapshot, i: usize) -> (&PointValue, u64) {
        let p = &s.metrics[i].points[0];
        (&p.value, p.start_unix_nano)
    }

    #[test]
    fn counters_become_deltas_and_updowncounters_stay_cumulative() {
        let mut c = DeltaConverter::default();
        let mut a = snap(10, 5, 100);
        c.apply(&mut a);
        assert_eq!(value(&a, 0), (&PointValue::Number(Number::Int(5)), 1));
        let mut b = snap(20, 12, 90);
        c.apply(&mut b);
        assert_eq!(value(&b, 0), (&PointValue::Number(Number::Int(7)), 10));
        assert_eq!(value(&b, 1), (&PointValue::Number(Number::Int(90)), 1));
        // A reset starts over rather than reporting a negative delta.
        let mut r = snap(30, 3, 90);
        c.apply(&mut r);
        assert_eq!(value(&r, 0), (&PointValue::Number(Number::Int(3)), 1));
    }

    #[test]
    fn histograms_subtract_bucket_by_bucket() {
        let h = |counts: Vec<u64>, sum: f64| Metric {
            def: m::SONDE_PROCESS_EXEC, // any counter-like def; instrument patched below
            points: vec![Point {
                attributes: Attributes::new(),
                value: PointValue::Histogram(Histogram {
                    bounds: vec![1.0, 2.0],
                    count: counts.iter().sum(),
                    counts,
                    sum,
                }),
                start_unix_nano: 0,
            }],
        };
        let mk = |t, counts, sum| {
            let mut metric = h(counts, sum);
            metric.def.instrument = Instrument::Histogram;
            Snapshot {
                time_unix_nano: t,
                metrics: vec![metric],
            }
        };
        let mut c = DeltaConverter::default();
        let mut a = mk(1, vec![1, 2, 3], 10.0);
        c.apply(&mut a);
        let mut b = mk(2, vec![2, 2, 5], 15.0);
        c.apply(&mut b);
        let PointValue::Histogram(d) = &b.metrics[0].points[0].value else {
            panic!("histogram expected")
        };
        assert_eq!(d.counts, vec![1, 0, 2]);
        assert_eq!(d.count, 3);
        assert_eq!(d.sum, 5.0);
    }
}
