//! Snapshot -> `ExportMetricsServiceRequest`, a pure function.
//!
//! Histograms go out with the kernel's own bucket bounds and counts (design decision 2):
//! nothing here re-buckets or replays values.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sonde_semconv::{Instrument, SCHEMA_URL};

use crate::aggregate::temporality::is_delta;
use crate::config::Temporality;
use crate::model::{self, Attributes, Number, PointValue, Snapshot};

/// `preference` says which metrics of `snap` hold deltas (the caller converted them
/// already with `aggregate::temporality`); the rest are cumulative.
pub fn encode(
    resource: &Resource,
    snap: &Snapshot,
    preference: Temporality,
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
                        PointValue::Histogram(_) => None,
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
                Instrument::Histogram => Data::Histogram(Histogram {
                    data_points: m
                        .points
                        .iter()
                        .filter_map(|p| match &p.value {
                            PointValue::Histogram(h) => {
                                Some(histogram_point(&p.attributes, h, p.start_unix_nano, t))
                            }
                            PointValue::Number(_) => None,
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
        exemplars: Vec::new(),
        flags: 0,
        min: None,
        max: None,
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
        let req = encode(&Resource::default(), &snapshot(), Temporality::Cumulative);
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
        let req = encode(&Resource::default(), &snapshot(), Temporality::Delta);
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
}
