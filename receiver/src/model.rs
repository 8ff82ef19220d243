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

/// A sample linked to the span of the same event (OTLP exemplar), so a dashboard can
/// jump from a histogram bucket to the trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The sample, in the histogram's unit.
    pub value: f64,
    pub time_unix_nano: u64,
}

/// Explicit-bucket histogram whose bounds are the kernel's own (design decision 2).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds, inclusive, ascending; `counts.len() == bounds.len() + 1`.
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
    /// The latest samples that have a span (empty for most histograms).
    pub exemplars: Vec<Exemplar>,
}

/// Powers of two (2^j, in the metric's unit) that bound the explicit form of an
/// [`ExpHistogram`]: one bound per doubling from 2^-30 (under a nanosecond, in seconds)
/// to 2^20 (12 days); above the last, the +Inf bucket.
pub const EXPLICIT_LOG2_BOUNDS: std::ops::RangeInclusive<i32> = -30..=20;

/// A histogram on a base-2 exponential grid, as OTLP's exponential histogram carries it:
/// bucket index i holds values in (2^(i/2^scale), 2^((i+1)/2^scale)], exact zeros are
/// counted apart. Kernel latency histograms arrive in this form (design decision 11);
/// an exporter sends it as it is or, summing whole buckets, as [`Self::to_explicit`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExpHistogram {
    pub scale: i32,
    pub zero_count: u64,
    /// Bucket index of `counts[0]`.
    pub offset: i32,
    /// From the first to the last non-empty bucket (empty when all values were zero).
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
    /// The latest samples that have a span (empty for most histograms).
    pub exemplars: Vec<Exemplar>,
}

/// The exemplars of `now` recorded after every exemplar of `earlier`: those that belong
/// to the interval between two cumulative points.
pub fn exemplars_since(now: &[Exemplar], earlier: &[Exemplar]) -> Vec<Exemplar> {
    let seen = earlier.iter().map(|e| e.time_unix_nano).max();
    now.iter()
        .filter(|e| seen.is_none_or(|t| e.time_unix_nano > t))
        .copied()
        .collect()
}

impl ExpHistogram {
    /// From dense counts starting at bucket index `first_index`; trims the empty ends.
    pub fn from_dense(
        scale: i32,
        zero_count: u64,
        first_index: i32,
        dense: &[u64],
        sum: f64,
    ) -> Self {
        let first = dense.iter().position(|c| *c > 0);
        let last = dense.iter().rposition(|c| *c > 0);
        let (offset, counts) = match (first, last) {
            (Some(a), Some(b)) => (first_index + a as i32, dense[a..=b].to_vec()),
            _ => (0, Vec::new()),
        };
        Self {
            scale,
            zero_count,
            offset,
            count: zero_count + counts.iter().sum::<u64>(),
            counts,
            sum,
            exemplars: Vec::new(),
        }
    }

    /// The same histogram carrying `exemplars`.
    pub fn with_exemplars(self, exemplars: Vec<Exemplar>) -> Self {
        Self { exemplars, ..self }
    }

    /// Count per bucket index, non-empty ones only.
    pub fn buckets(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (self.offset + i as i32, *c))
    }

    /// The explicit-bucket form with bounds 2^j for j in [`EXPLICIT_LOG2_BOUNDS`]: each
    /// explicit bucket is the sum of whole grid buckets (a power of two is a boundary of
    /// the grid at every scale >= 0), so the bounds are exact, not re-bucketed.
    pub fn to_explicit(&self) -> Histogram {
        let (lo, hi) = (*EXPLICIT_LOG2_BOUNDS.start(), *EXPLICIT_LOG2_BOUNDS.end());
        let bounds: Vec<f64> = EXPLICIT_LOG2_BOUNDS.map(|j| 2f64.powi(j)).collect();
        let mut counts = vec![0u64; bounds.len() + 1];
        counts[0] = self.zero_count;
        let per_doubling = 1i64 << self.scale.clamp(0, 20);
        for (i, c) in self.buckets() {
            // Index i lies in the doubling (2^(j-1), 2^j] with j = floor(i / 2^scale) + 1.
            let j = i64::from(i).div_euclid(per_doubling) + 1;
            let b = (j - i64::from(lo)).clamp(0, i64::from(hi - lo) + 1) as usize;
            counts[b] += c;
        }
        Histogram {
            bounds,
            counts,
            sum: self.sum,
            count: self.count,
            exemplars: self.exemplars.clone(),
        }
    }

    /// `self - prev` bucket by bucket, or `None` if `prev` is not an earlier state of the
    /// same stream (a different scale or a count that went down: the source restarted).
    pub fn minus(&self, prev: &ExpHistogram) -> Option<ExpHistogram> {
        if self.scale != prev.scale || self.zero_count < prev.zero_count || self.count < prev.count
        {
            return None;
        }
        if prev.counts.is_empty() {
            return Some(ExpHistogram {
                zero_count: self.zero_count - prev.zero_count,
                count: self.count - prev.count,
                sum: self.sum - prev.sum,
                exemplars: exemplars_since(&self.exemplars, &prev.exemplars),
                ..self.clone()
            });
        }
        let prev_end = prev.offset + prev.counts.len() as i32;
        let end = self.offset + self.counts.len() as i32;
        if self.counts.is_empty() || prev.offset < self.offset || prev_end > end {
            return None;
        }
        let mut dense = self.counts.clone();
        for (i, c) in prev.buckets() {
            let d = &mut dense[(i - self.offset) as usize];
            *d = d.checked_sub(c)?;
        }
        Some(
            ExpHistogram::from_dense(
                self.scale,
                self.zero_count - prev.zero_count,
                self.offset,
                &dense,
                self.sum - prev.sum,
            )
            .with_exemplars(exemplars_since(&self.exemplars, &prev.exemplars)),
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    Number(Number),
    Histogram(Histogram),
    /// Served as it is by exporters that speak exponential histograms, else through
    /// [`PointValue::explicit`].
    Exponential(ExpHistogram),
}

impl PointValue {
    /// The explicit-bucket form of a histogram point, for exporters that serve only that
    /// form (console, Prometheus, OTLP by default); `None` for numbers.
    pub fn explicit(&self) -> Option<std::borrow::Cow<'_, Histogram>> {
        match self {
            PointValue::Number(_) => None,
            PointValue::Histogram(h) => Some(std::borrow::Cow::Borrowed(h)),
            PointValue::Exponential(e) => Some(std::borrow::Cow::Owned(e.to_explicit())),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(zero: u64, offset: i32, counts: &[u64], sum: f64) -> ExpHistogram {
        ExpHistogram::from_dense(2, zero, offset, counts, sum)
    }

    #[test]
    fn from_dense_trims_empty_ends_and_counts_zeros() {
        let h = exp(3, -10, &[0, 0, 5, 0, 2, 0], 1.5);
        assert_eq!(
            (h.offset, h.counts.clone(), h.count),
            (-8, vec![5, 0, 2], 10)
        );
        assert_eq!(h.buckets().collect::<Vec<_>>(), vec![(-8, 5), (-6, 2)]);
        let z = exp(4, 0, &[0, 0], 0.0);
        assert_eq!((z.counts.len(), z.count), (0, 4));
    }

    #[test]
    fn explicit_form_sums_whole_buckets_per_doubling() {
        // Scale 2: indices -4..=-1 are (2^-1, 2^0], index 0 is (2^0, 2^0.25].
        let h = exp(1, -5, &[1, 2, 0, 0, 3, 4], 9.0);
        let e = h.to_explicit();
        let lo = *EXPLICIT_LOG2_BOUNDS.start();
        let at = |j: i32| (j - lo) as usize;
        assert_eq!(e.bounds.len(), EXPLICIT_LOG2_BOUNDS.count());
        assert_eq!(e.counts.len(), e.bounds.len() + 1);
        assert_eq!(e.bounds[at(0)], 1.0);
        assert_eq!(e.bounds[at(-1)], 0.5);
        assert_eq!(e.counts[0], 1, "zeros in the first bucket");
        assert_eq!(e.counts[at(-1)], 1, "index -5 is in (2^-2, 2^-1]");
        assert_eq!(
            e.counts[at(0)],
            2 + 3,
            "indices -4 and -1 are in (2^-1, 2^0]"
        );
        assert_eq!(e.counts[at(1)], 4, "index 0 is in (2^0, 2^1]");
        assert_eq!(e.counts.iter().sum::<u64>(), h.count);
        assert_eq!((e.count, e.sum), (11, 9.0));
    }

    #[test]
    fn explicit_form_folds_the_ends_into_the_first_and_inf_buckets() {
        let lo = *EXPLICIT_LOG2_BOUNDS.start();
        let hi = *EXPLICIT_LOG2_BOUNDS.end();
        // Index 4*lo - 1 is the top of (.., 2^lo]: the first bucket; 4*hi is above 2^hi.
        let h = ExpHistogram::from_dense(2, 0, 4 * lo - 1, &[7], 0.0);
        assert_eq!(h.to_explicit().counts[0], 7);
        let h = ExpHistogram::from_dense(2, 0, 4 * lo, &[7], 0.0);
        assert_eq!(h.to_explicit().counts[1], 7);
        let h = ExpHistogram::from_dense(2, 0, 4 * hi - 1, &[5, 6], 0.0);
        let e = h.to_explicit();
        assert_eq!(
            (e.counts[e.bounds.len() - 1], e.counts[e.bounds.len()]),
            (5, 6)
        );
    }

    #[test]
    fn minus_subtracts_by_index_across_offsets() {
        let now = exp(2, -3, &[1, 4, 0, 6], 10.0);
        let prev = exp(1, -2, &[4], 4.0);
        let d = now.minus(&prev).expect("an earlier state");
        assert_eq!(
            (d.zero_count, d.offset, d.counts.clone()),
            (1, -3, vec![1, 0, 0, 6])
        );
        assert_eq!((d.count, d.sum), (8, 6.0));
        assert!(prev.minus(&now).is_none(), "a restart is not a delta");
        assert!(
            now.minus(&exp(0, 5, &[1], 0.0)).is_none(),
            "a bucket that was not there"
        );
    }
}
