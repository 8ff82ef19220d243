//! Counters keyed by a high-cardinality value (executable name, peer, question name)
//! with a hard limit on distinct keys.
//!
//! The first `limit` keys get their own series for the life of the agent; everything
//! after that is added to one overflow series (`otel.metric.overflow=true`), as the OTel
//! SDK's cardinality limit does. Series never move between buckets, so every exported
//! cumulative sum stays monotonic and the total over all series stays exact.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug, Clone)]
pub struct BoundedCounter<K> {
    limit: usize,
    series: HashMap<K, u64>,
    overflow: u64,
}

impl<K: Eq + Hash + Clone + Ord> BoundedCounter<K> {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            series: HashMap::new(),
            overflow: 0,
        }
    }

    pub fn add(&mut self, key: K, n: u64) {
        if let Some(v) = self.series.get_mut(&key) {
            *v += n;
        } else if self.series.len() < self.limit {
            self.series.insert(key, n);
        } else {
            self.overflow += n;
        }
    }

    /// The series in key order (stable output), and the overflow total.
    pub fn snapshot(&self) -> (Vec<(K, u64)>, u64) {
        let mut v: Vec<(K, u64)> = self.series.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort();
        (v, self.overflow)
    }

    pub fn total(&self) -> u64 {
        self.series.values().sum::<u64>() + self.overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_past_the_limit_fold_into_overflow_and_totals_stay_exact() {
        let mut c = BoundedCounter::new(2);
        for (k, n) in [("a", 1), ("b", 2), ("c", 3), ("a", 4), ("d", 5), ("c", 1)] {
            c.add(k, n);
        }
        let (series, overflow) = c.snapshot();
        assert_eq!(series, vec![("a", 5), ("b", 2)]);
        assert_eq!(overflow, 9, "c and d past the limit of 2");
        assert_eq!(c.total(), 16);
    }

    #[test]
    fn a_key_keeps_its_series_once_given_one() {
        let mut c = BoundedCounter::new(1);
        c.add("x", 1);
        c.add("y", 1);
        c.add("x", 1);
        assert_eq!(c.snapshot(), (vec![("x", 2)], 1));
    }
}
