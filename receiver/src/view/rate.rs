//! Rates from two readings of one cumulative series.
//!
//! A cumulative series counts from its start time. Between two readings the increase is
//! the difference, unless the series was reset (a new start time, or a value that went
//! down): then what it holds now is the increase only if it restarted after the earlier
//! reading; otherwise part of it happened before and the increase is unknown. A period of
//! zero or less has no rate (a snapshot read twice, or a clock step backwards).

use crate::model::Histogram;

/// A value that only grows while its series is not reset.
pub trait Cumulative: Sized + Clone {
    /// `self - earlier`, or `None` when some part of it went down (a reset).
    fn since(&self, earlier: &Self) -> Option<Self>;
}

impl Cumulative for f64 {
    fn since(&self, earlier: &Self) -> Option<Self> {
        (*self >= *earlier).then(|| self - earlier)
    }
}

impl Cumulative for Histogram {
    fn since(&self, earlier: &Self) -> Option<Self> {
        if self.bounds != earlier.bounds
            || self.counts.len() != earlier.counts.len()
            || self.count < earlier.count
        {
            return None;
        }
        let counts = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(now, then)| now.checked_sub(*then))
            .collect::<Option<Vec<u64>>>()?;
        Some(Histogram {
            bounds: self.bounds.clone(),
            counts,
            sum: (self.sum - earlier.sum).max(0.0),
            count: self.count - earlier.count,
            exemplars: Vec::new(),
        })
    }
}

/// One reading of a cumulative series.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading<T> {
    pub value: T,
    /// When the series started counting, Unix nanoseconds.
    pub start_unix_nano: u64,
    /// When it was read, Unix nanoseconds.
    pub time_unix_nano: u64,
}

/// What the series gained from `prev` to `cur`, or `None` when that cannot be known.
pub fn increase<T: Cumulative>(prev: &Reading<T>, cur: &Reading<T>) -> Option<T> {
    if cur.time_unix_nano <= prev.time_unix_nano {
        return None;
    }
    if cur.start_unix_nano == prev.start_unix_nano {
        if let Some(d) = cur.value.since(&prev.value) {
            return Some(d);
        }
    }
    // Reset. Everything the series holds now was counted after the earlier reading only
    // if it restarted after it.
    (cur.start_unix_nano >= prev.time_unix_nano && cur.start_unix_nano <= cur.time_unix_nano)
        .then(|| cur.value.clone())
}

/// Seconds between two instants in Unix nanoseconds; `None` for a zero or negative period.
pub fn period_secs(prev_unix_nano: u64, cur_unix_nano: u64) -> Option<f64> {
    (cur_unix_nano > prev_unix_nano).then(|| (cur_unix_nano - prev_unix_nano) as f64 / 1e9)
}

/// Per-second rate of a counter between two readings.
pub fn per_second(prev: &Reading<f64>, cur: &Reading<f64>) -> Option<f64> {
    let d = increase(prev, cur)?;
    Some(d / period_secs(prev.time_unix_nano, cur.time_unix_nano)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// (case, previous reading, current reading, expected result)
    type Case<T, R> = (&'static str, Reading<T>, Reading<T>, Option<R>);

    fn r(value: f64, start: u64, time: u64) -> Reading<f64> {
        Reading {
            value,
            start_unix_nano: start * S,
            time_unix_nano: time * S,
        }
    }

    #[test]
    fn counter_rates() {
        let cases: &[Case<f64, f64>] = &[
            ("steady", r(10.0, 0, 10), r(30.0, 0, 12), Some(10.0)),
            ("no change", r(10.0, 0, 10), r(10.0, 0, 11), Some(0.0)),
            ("zero period", r(10.0, 0, 10), r(30.0, 0, 10), None),
            ("time backwards", r(10.0, 0, 10), r(30.0, 0, 9), None),
            // The series restarted at 11 s, after the reading at 10 s: all 4 are new.
            (
                "reset by start time",
                r(100.0, 0, 10),
                r(4.0, 11, 12),
                Some(2.0),
            ),
            // A new start time with a larger value: still a reset, not +1.
            (
                "reset, value grew",
                r(3.0, 0, 10),
                r(4.0, 11, 12),
                Some(2.0),
            ),
            // Same start, value went down: it restarted at an unknown time.
            ("reset by value only", r(100.0, 0, 10), r(4.0, 0, 12), None),
            // A new start time before the earlier reading: part of the value is older.
            (
                "restart before prev",
                r(100.0, 5, 10),
                r(120.0, 8, 12),
                None,
            ),
        ];
        for (name, prev, cur, want) in cases {
            assert_eq!(per_second(prev, cur), *want, "{name}");
        }
    }

    fn h(counts: &[u64], sum: f64) -> Histogram {
        Histogram {
            bounds: vec![1.0, 2.0],
            counts: counts.to_vec(),
            sum,
            count: counts.iter().sum(),
            exemplars: Vec::new(),
        }
    }

    #[test]
    fn histogram_increase() {
        let rd = |v: Histogram, start, time| Reading {
            value: v,
            start_unix_nano: start * S,
            time_unix_nano: time * S,
        };
        let cases: &[Case<Histogram, Histogram>] = &[
            (
                "bucket-wise difference",
                rd(h(&[1, 2, 0], 4.0), 0, 10),
                rd(h(&[3, 2, 1], 9.0), 0, 11),
                Some(h(&[2, 0, 1], 5.0)),
            ),
            (
                "one bucket went down: reset at an unknown time",
                rd(h(&[1, 2, 0], 4.0), 0, 10),
                rd(h(&[0, 5, 0], 9.0), 0, 11),
                None,
            ),
            (
                "restarted after the earlier reading",
                rd(h(&[1, 2, 0], 4.0), 0, 10),
                rd(h(&[0, 1, 0], 1.5), 10, 11),
                Some(h(&[0, 1, 0], 1.5)),
            ),
            (
                "zero period",
                rd(h(&[1, 2, 0], 4.0), 0, 10),
                rd(h(&[3, 2, 1], 9.0), 0, 10),
                None,
            ),
        ];
        for (name, prev, cur, want) in cases {
            assert_eq!(increase(prev, cur), *want, "{name}");
        }
        let other_bounds = Histogram {
            bounds: vec![1.0, 4.0],
            ..h(&[3, 3, 3], 9.0)
        };
        assert_eq!(
            other_bounds.since(&h(&[1, 1, 1], 1.0)),
            None,
            "bounds differ"
        );
    }
}
