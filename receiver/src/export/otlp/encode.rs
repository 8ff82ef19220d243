//! Snapshot -> `ExportMetricsServiceRequest`, a pure function.
//!
//! Histograms go out with the kernel's own bucket bounds and counts (design decision 2):
//! nothing here re-buckets or replays values. Grid histograms (`PointValue::Exponential`)
//! go out as OTLP exponential histograms when asked for, else in their explicit form
//! (whole grid buckets summed per doubling, so the bounds stay exact).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sonde_semconv::{Instrument, SCHEMA_URL};

use crate::aggregate::temporality::is_delta;
use crate::config::{HistogramAggregation, Temporality};
use crate::model::{self, Attributes, Number, PointValue, Snapshot};

/// `preference` says which metrics of `snap` hold deltas (the caller converted them
/// already with `aggregate::temporality`); the rest are cumulative. `histograms` says how
/// grid histograms go out; explicit-bucket ones always go out as they are.
pub fn encode(
    resource: &Resource,
    snap: &Snapshot,
    preference: Temporality,
    histograms: HistogramAggregation,
) -> ExportMetricsServiceRequest {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let t = snap.time_unix_nano;

    let metrics = snap
        .metrics
        .iter()
        .filter(|m| !m.points.is_empty())
        .map(|m| {
            let counter_temporality = if is_delta(preference, &m.def) {
                AggregationTemporality::Delta as i32
            } else {
                cumulative
            };
            let numbers = || -> Vec<NumberDataPoint> {
                m.points
                    .iter()
                    .filter_map(|p| match &p.value {
                        PointValue::Number(n) => Some(NumberDataPoint {
                            attributes: attributes(&p.attributes),
                            start_time_unix_nano: p.start_unix_nano,
                            time_unix_nano: t,
                            exemplars: Vec::new(),
                            flags: 0,
                            value: Some(match n {
                                Number::Int(i) => number_data_point::Value::AsInt(*i),
                                Number::Double(d) => number_data_point::Value::AsDouble(*d),
                            }),
                        }),
                        PointValue::Histogram(_) | PointValue::Exponential(_) => None,
                    })
                    .collect()
            };
            let data = match m.def.instrument {
                Instrument::Counter => Data::Sum(Sum {
                    data_points: numbers(),
                    aggregation_temporality: counter_temporality,
                    is_monotonic: true,
                }),
                Instrument::UpDownCounter => Data::Sum(Sum {
                    data_points: numbers(),
                    aggregation_temporality: cumulative,
                    is_monotonic: false,
                }),
                Instrument::Gauge => Data::Gauge(Gauge {
                    data_points: numbers(),
                }),
                Instrument::Histogram
                    if histograms == HistogramAggregation::Base2Exponential
                        && m.points
                            .iter()
                            .all(|p| matches!(p.value, PointValue::Exponential(_))) =>
                {
                    Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: m
                            .points
                            .iter()
                            .filter_map(|p| match &p.value {
                                PointValue::Exponential(h) => {
                                    Some(exponential_point(&p.attributes, h, p.start_unix_nano, t))
                                }
                                _ => None,
                            })
                            .collect(),
                        aggregation_temporality: counter_temporality,
                    })
                }
                Instrument::Histogram => Data::Histogram(Histogram {
                    data_points: m
                        .points
                        .iter()
                        .filter_map(|p| {
                            let h = p.value.explicit()?;
                            Some(histogram_point(&p.attributes, &h, p.start_unix_nano, t))
                        })
                        .collect(),
                    aggregation_temporality: counter_temporality,
                }),
            };
            Metric {
                name: m.def.name.to_owned(),
                description: m.def.description.to_owned(),
                unit: m.def.unit.to_owned(),
                metadata: Vec::new(),
                data: Some(data),
            }
        })
        .collect();

    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: crate::export::SCOPE_NAME.to_owned(),
                    version: crate::export::SCOPE_VERSION.to_owned(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                metrics,
                schema_url: SCHEMA_URL.to_owned(),
            }],
            schema_url: SCHEMA_URL.to_owned(),
        }],
    }
}

fn histogram_point(
    attrs: &Attributes,
    h: &model::Histogram,
    start: u64,
    t: u64,
) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes: attributes(attrs),
        start_time_unix_nano: start,
        time_unix_nano: t,
        count: h.count,
        sum: Some(h.sum),
        bucket_counts: h.counts.clone(),
        explicit_bounds: h.bounds.clone(),
        exemplars: exemplars(&h.exemplars),
        flags: 0,
        min: None,
        max: None,
    }
}

fn exemplars(es: &[model::Exemplar]) -> Vec<Exemplar> {
    es.iter()
        .map(|e| Exemplar {
            filtered_attributes: Vec::new(),
            time_unix_nano: e.time_unix_nano,
            span_id: e.span_id.to_vec(),
            trace_id: e.trace_id.to_vec(),
            value: Some(exemplar::Value::AsDouble(e.value)),
        })
        .collect()
}

/// Sparse as OTLP allows: positive buckets from the first to the last non-empty one,
/// exact zeros in `zero_count` (threshold 0), no negative buckets (durations).
fn exponential_point(
    attrs: &Attributes,
    h: &model::ExpHistogram,
    start: u64,
    t: u64,
) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        attributes: attributes(attrs),
        start_time_unix_nano: start,
        time_unix_nano: t,
        count: h.count,
        sum: Some(h.sum),
        scale: h.scale,
        zero_count: h.zero_count,
        positive: Some(Buckets {
            offset: h.offset,
            bucket_counts: h.counts.clone(),
        }),
        negative: None,
        flags: 0,
        exemplars: exemplars(&h.exemplars),
        min: None,
        max: None,
        zero_threshold: 0.0,
    }
}

pub(super) fn attributes(attrs: &Attributes) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|(k, v)| KeyValue {
            key: (*k).to_owned(),
            value: Some(AnyValue {
                value: Some(match v {
                    model::Value::Str(s) => any_value::Value::StringValue(s.clone()),
                    model::Value::Int(i) => any_value::Value::IntValue(*i),
                    model::Value::Bool(b) => any_value::Value::BoolValue(*b),
                }),
            }),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{numbers, Point};
    use sonde_semconv::metric as m;

    fn snapshot() -> Snapshot {
        let mut hist = model::Metric {
            def: m::SONDE_PROCESS_EXEC,
            points: vec![Point {
                attributes: Attributes::new().with("k", "v"),
                value: PointValue::Histogram(model::Histogram {
                    bounds: vec![0.001, 0.002],
                    counts: vec![1, 0, 4],
                    sum: 1.5,
                    count: 5,
                    exemplars: Vec::new(),
                }),
                start_unix_nano: 3,
            }],
        };
        hist.def.instrument = Instrument::Histogram;
        Snapshot {
            time_unix_nano: 99,
            metrics: vec![
                numbers(
                    m::SYSTEM_PROCESS_CREATED,
                    7,
                    [(Attributes::new(), Number::Int(12))],
                ),
                numbers(
                    m::SYSTEM_PROCESS_COUNT,
                    7,
                    [(
                        Attributes::new().with("process.state", "running"),
                        Number::Int(2),
                    )],
                ),
                numbers(
                    m::SONDE_AGENT_MEMORY_RSS,
                    7,
                    [(Attributes::new(), Number::Int(1024))],
                ),
                numbers(m::SONDE_PROCESS_EXIT, 7, []),
                hist,
            ],
        }
    }

    #[test]
    fn instruments_map_to_otlp_data_types() {
        let req = encode(
            &Resource::default(),
            &snapshot(),
            Temporality::Cumulative,
            HistogramAggregation::Explicit,
        );
        let rm = &req.resource_metrics[0];
        assert_eq!(rm.schema_url, "https://opentelemetry.io/schemas/1.44.0");
        let ms = &rm.scope_metrics[0].metrics;
        assert_eq!(ms.len(), 4, "metrics without points are left out");

        let Some(Data::Sum(s)) = &ms[0].data else {
            panic!("counter is a Sum")
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsInt(12))
        );
        assert_eq!(
            (
                s.data_points[0].start_time_unix_nano,
                s.data_points[0].time_unix_nano
            ),
            (7, 99)
        );
        assert_eq!(ms[0].unit, "{process}");

        let Some(Data::Sum(s)) = &ms[1].data else {
            panic!("updown is a Sum")
        };
        assert!(!s.is_monotonic);
        assert_eq!(s.data_points[0].attributes[0].key, "process.state");

        assert!(matches!(ms[2].data, Some(Data::Gauge(_))));

        let Some(Data::Histogram(h)) = &ms[3].data else {
            panic!("histogram")
        };
        let p = &h.data_points[0];
        assert_eq!(
            p.explicit_bounds,
            vec![0.001, 0.002],
            "kernel bounds, unchanged"
        );
        assert_eq!(p.bucket_counts, vec![1, 0, 4]);
        assert_eq!((p.count, p.sum), (5, Some(1.5)));
    }

    #[test]
    fn delta_applies_to_counters_and_histograms_only() {
        let req = encode(
            &Resource::default(),
            &snapshot(),
            Temporality::Delta,
            HistogramAggregation::Explicit,
        );
        let ms = &req.resource_metrics[0].scope_metrics[0].metrics;
        let temporality = |i: usize| match &ms[i].data {
            Some(Data::Sum(s)) => s.aggregation_temporality,
            Some(Data::Histogram(h)) => h.aggregation_temporality,
            _ => -1,
        };
        assert_eq!(temporality(0), AggregationTemporality::Delta as i32);
        assert_eq!(temporality(1), AggregationTemporality::Cumulative as i32);
        assert_eq!(temporality(3), AggregationTemporality::Delta as i32);
    }

    fn grid_snapshot() -> Snapshot {
        let mut hist = model::Metric {
            def: m::SONDE_PROCESS_EXEC,
            points: vec![Point {
                attributes: Attributes::new(),
                value: PointValue::Exponential(model::ExpHistogram::from_dense(
                    2,
                    1,
                    -8,
                    &[0, 3, 0, 2, 0, 0, 0, 0, 5],
                    0.25,
                )),
                start_unix_nano: 3,
            }],
        };
        hist.def.instrument = Instrument::Histogram;
        Snapshot {
            time_unix_nano: 9,
            metrics: vec![hist],
        }
    }

    #[test]
    fn grid_histograms_go_out_exponential_when_asked_with_the_same_counts_as_explicit() {
        let snap = grid_snapshot();
        let exp = encode(
            &Resource::default(),
            &snap,
            Temporality::Cumulative,
            HistogramAggregation::Base2Exponential,
        );
        let Some(Data::ExponentialHistogram(h)) =
            &exp.resource_metrics[0].scope_metrics[0].metrics[0].data
        else {
            panic!("an exponential histogram")
        };
        let p = &h.data_points[0];
        assert_eq!(
            (p.scale, p.zero_count, p.count, p.sum),
            (2, 1, 11, Some(0.25))
        );
        let pos = p.positive.as_ref().expect("positive buckets");
        assert_eq!(pos.offset, -7, "starts at the first non-empty bucket");
        assert_eq!(pos.bucket_counts, vec![3, 0, 2, 0, 0, 0, 0, 5]);
        assert_eq!(p.zero_threshold, 0.0);

        let explicit = encode(
            &Resource::default(),
            &snap,
            Temporality::Cumulative,
            HistogramAggregation::Explicit,
        );
        let Some(Data::Histogram(h)) =
            &explicit.resource_metrics[0].scope_metrics[0].metrics[0].data
        else {
            panic!("an explicit histogram")
        };
        let e = &h.data_points[0];
        assert_eq!(e.count, 11);
        assert_eq!(e.bucket_counts.iter().sum::<u64>(), 11);
        // Indices -7 and -5 are in (2^-2, 2^-1], index 0 in (2^0, 2^1].
        let at = |bound: f64| {
            e.explicit_bounds
                .iter()
                .position(|b| *b == bound)
                .expect("bound")
        };
        assert_eq!(e.bucket_counts[at(0.5)], 5);
        assert_eq!(e.bucket_counts[at(2.0)], 5);
        assert_eq!(e.bucket_counts[0], 1, "the zero");
    }
}
