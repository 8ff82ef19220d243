//! The in-memory shape of a metric snapshot, between mapping and export.
//!
//! Pure data: no I/O, no aya, no tokio. Mapping builds these from aggregated state;
//! the exporters turn them into OTLP protobuf, console rows, or anything else.

use sonde_semconv::MetricDef;

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

/// Attributes of one data point. Keys come from `sonde_semconv::attr`; kept sorted by
/// key so that equal sets compare and hash equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attributes(Vec<(&'static str, Value)>);

impl Attributes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    pub fn insert(&mut self, key: &'static str, value: impl Into<Value>) {
        let value = value.into();
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(&'static str, Value)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<const N: usize> From<[(&'static str, Value); N]> for Attributes {
    fn from(pairs: [(&'static str, Value); N]) -> Self {
        pairs
            .into_iter()
            .fold(Attributes::new(), |a, (k, v)| a.with(k, v))
    }
}

/// A number as OTLP carries it: integers stay integers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Double(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(v) => v as f64,
            Number::Double(v) => v,
        }
    }
}

/// Explicit-bucket histogram whose bounds are the kernel's own (design decision 2).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds, inclusive, ascending; `counts.len() == bounds.len() + 1`.
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    Number(Number),
    Histogram(Histogram),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub attributes: Attributes,
    pub value: PointValue,
    /// Start of the cumulative (or delta) period, Unix nanoseconds.
    pub start_unix_nano: u64,
}

/// One metric with all its points at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub def: MetricDef,
    pub points: Vec<Point>,
}

/// Everything collected at one tick.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    pub time_unix_nano: u64,
    pub metrics: Vec<Metric>,
}

impl Snapshot {
    pub fn point_count(&self) -> usize {
        self.metrics.iter().map(|m| m.points.len()).sum()
    }
}

/// Helper for the common case: a metric of number points.
pub fn numbers(
    def: MetricDef,
    start_unix_nano: u64,
    points: impl IntoIterator<Item = (Attributes, Number)>,
) -> Metric {
    Metric {
        def,
        points: points
            .into_iter()
            .map(|(attributes, n)| Point {
                attributes,
                value: PointValue::Number(n),
                start_unix_nano,
            })
            .collect(),
    }
}
