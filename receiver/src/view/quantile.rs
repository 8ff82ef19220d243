//! Quantiles read off explicit-bucket histograms, the kernel's own buckets (design
//! decision 2): no sample is ever replayed. Within the bucket that holds the rank the
//! value is interpolated linearly, as Prometheus' `histogram_quantile` does, so the error
//! is at most the bucket's width. The first bucket has no lower edge worth the name (it
//! starts at 0), so a rank there reads "at most its bound", and a rank in the open last
//! bucket "above the last bound": neither is invented. (DNS uses semconv's coarse bounds,
//! whose first bucket is (0, 5 ms]: interpolating there would print 2.5 ms for a 60 us
//! lookup.)

use crate::model::Histogram;

/// A quantile estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quantile {
    /// Interpolated inside a bounded bucket.
    At(f64),
    /// In the first bucket: at most this bound.
    AtMost(f64),
    /// In the open last bucket: greater than this bound.
    Above(f64),
}

impl Quantile {
    /// The estimate as a number (the bound itself for [`Quantile::Above`]).
    pub fn value(self) -> f64 {
        match self {
            Quantile::At(v) | Quantile::AtMost(v) | Quantile::Above(v) => v,
        }
    }
}

/// The `q`-quantile (0..=1) of a histogram; `None` when it holds no observation.
pub fn quantile(h: &Histogram, q: f64) -> Option<Quantile> {
    let total: u64 = h.counts.iter().sum();
    if total == 0 || h.counts.len() != h.bounds.len() + 1 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &n) in h.counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        if (below + n) as f64 >= rank {
            let Some(&upper) = h.bounds.get(i) else {
                return h.bounds.last().map(|&b| Quantile::Above(b));
            };
            if i == 0 {
                return Some(Quantile::AtMost(upper));
            }
            let lower = h.bounds[i - 1];
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some(Quantile::At(lower + (upper - lower) * within));
        }
        below += n;
    }
    None
}

/// Adds `other` into `into` when both have the same bounds; returns whether it did.
pub fn add(into: &mut Histogram, other: &Histogram) -> bool {
    if into.bounds != other.bounds || into.counts.len() != other.counts.len() {
        return false;
    }
    for (a, b) in into.counts.iter_mut().zip(&other.counts) {
        *a += b;
    }
    into.sum += other.sum;
    into.count += other.count;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(bounds: &[f64], counts: &[u64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: counts.to_vec(),
            sum: 0.0,
            count: counts.iter().sum(),
            exemplars: Vec::new(),
        }
    }

    #[test]
    fn quantiles_from_buckets() {
        let b = [1.0, 2.0, 4.0, 8.0];
        let cases: &[(&str, Histogram, f64, Option<Quantile>)] = &[
            ("empty", h(&b, &[0, 0, 0, 0, 0]), 0.5, None),
            // 10 in (2, 4]: the median is half-way through that bucket.
            (
                "one bucket",
                h(&b, &[0, 0, 10, 0, 0]),
                0.5,
                Some(Quantile::At(3.0)),
            ),
            (
                "p99 near the top of it",
                h(&b, &[0, 0, 10, 0, 0]),
                0.99,
                Some(Quantile::At(3.98)),
            ),
            (
                "first bucket",
                h(&b, &[4, 0, 0, 0, 0]),
                0.5,
                Some(Quantile::AtMost(1.0)),
            ),
            // 50 in (0,1], 50 in (4,8]: p50 is in the first, p99 high in the last.
            (
                "bimodal p50",
                h(&b, &[50, 0, 0, 50, 0]),
                0.5,
                Some(Quantile::AtMost(1.0)),
            ),
            (
                "bimodal p51",
                h(&b, &[50, 0, 0, 50, 0]),
                0.51,
                Some(Quantile::At(4.08)),
            ),
            (
                "bimodal p99",
                h(&b, &[50, 0, 0, 50, 0]),
                0.99,
                Some(Quantile::At(7.92)),
            ),
            // Empty buckets below the rank are skipped, not interpolated into.
            (
                "p0 skips empty",
                h(&b, &[0, 0, 0, 2, 0]),
                0.0,
                Some(Quantile::At(4.0)),
            ),
            (
                "open last bucket",
                h(&b, &[1, 0, 0, 0, 9]),
                0.5,
                Some(Quantile::Above(8.0)),
            ),
            ("mismatched lengths", h(&b, &[1, 1]), 0.5, None),
        ];
        for (name, hist, q, want) in cases {
            let got = quantile(hist, *q);
            match (got, want) {
                (Some(Quantile::At(g)), Some(Quantile::At(w))) => {
                    assert!((g - w).abs() < 1e-9, "{name}: got {g}, want {w}")
                }
                _ => assert_eq!(got, *want, "{name}"),
            }
        }
    }

    #[test]
    fn adds_only_matching_bounds() {
        let mut a = h(&[1.0], &[1, 2]);
        assert!(add(&mut a, &h(&[1.0], &[3, 4])));
        assert_eq!((a.counts.clone(), a.count), (vec![4, 6], 10));
        assert!(!add(&mut a, &h(&[2.0], &[3, 4])));
        assert_eq!(a.count, 10);
    }
}
