//! Counters keyed by a high-cardinality value (executable name, container, peer,
//! question name) with a hard limit on live series and an expiry for idle ones.
//!
//! A key gets its own series while fewer than `limit` series are live; past that its
//! counts go to an overflow series (`otel.metric.overflow=true`, as the OTel SDK's
//! cardinality limit does), optionally one per coarse key (direction, file system) so
//! the overflow keeps those dimensions. A series that has not changed for `ttl` is
//! dropped at a tick and frees its slot; if its key comes back it is a new series with
//! a new start time (the OTel data model's reset rule), so each cumulative series stays
//! monotonic over its own life and every count lands in exactly one exported series:
//! the sum over series is exact at every export.
//!
//! Time is passed in (`tick(now)`), never read here: the type is pure and tests drive it
//! with a fake clock.

// Every event of a family lands in one of these maps: foldhash (seeded per process), not
// SipHash, which was a tenth of the DNS reader's CPU.
use foldhash::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::time::Duration;

/// How a family bounds its series. `start_unix_nano` is the start of series that exist
/// from the beginning (the agent's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesPolicy {
    pub limit: usize,
    /// `Duration::ZERO` keeps series forever.
    pub ttl: Duration,
    pub start_unix_nano: u64,
}

impl SeriesPolicy {
    /// The same policy with another limit (families keep their own limit keys).
    pub fn with_limit(self, limit: usize) -> Self {
        Self { limit, ..self }
    }
}

/// One exported series: its key, cumulative value and start time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesPoint<K, V = u64> {
    pub key: K,
    pub value: V,
    pub start_unix_nano: u64,
}

#[derive(Debug, Clone)]
struct Slot<V> {
    value: V,
    start: u64,
    /// The tick that last saw this series change.
    changed: u64,
    /// Changed since the last tick.
    dirty: bool,
}

impl<V: Default> Slot<V> {
    fn new(start: u64) -> Self {
        Self {
            value: V::default(),
            start,
            changed: start,
            dirty: true,
        }
    }

    /// Marks a change seen at `now`; false when the slot has been idle for `ttl`.
    fn keep(&mut self, now: u64, ttl: u64) -> bool {
        if self.dirty {
            self.changed = now;
            self.dirty = false;
            return true;
        }
        ttl == 0 || now.saturating_sub(self.changed) < ttl
    }
}

/// Bounded, expiring series of values `V` (a counter, a histogram) keyed by `K`, with
/// overflow series keyed by `O` (`()` for one overflow series).
#[derive(Debug, Clone)]
pub struct BoundedSeries<K, V, O = ()> {
    limit: usize,
    ttl_ns: u64,
    /// The last tick (the agent's start before the first): the start of series created
    /// after it, which is after the last export of any earlier series with the same key.
    now: u64,
    series: HashMap<K, Slot<V>>,
    overflow: HashMap<O, Slot<V>>,
    expired: u64,
}

/// Live series in key order, and the overflow series.
pub type SeriesSnapshot<K, V = u64, O = ()> = (Vec<SeriesPoint<K, V>>, Vec<SeriesPoint<O, V>>);

/// Bounded, expiring counters.
pub type BoundedCounter<K, O = ()> = BoundedSeries<K, u64, O>;

impl<K, V, O> BoundedSeries<K, V, O>
where
    K: Eq + Hash + Clone + Ord,
    V: Default + Clone,
    O: Eq + Hash + Clone + Ord,
{
    pub fn new(policy: SeriesPolicy) -> Self {
        Self {
            limit: policy.limit,
            ttl_ns: u64::try_from(policy.ttl.as_nanos()).unwrap_or(u64::MAX),
            now: policy.start_unix_nano,
            series: HashMap::default(),
            overflow: HashMap::default(),
            expired: 0,
        }
    }

    /// The value of `key`'s series, or of the overflow series `fold(&key)` when every
    /// slot is taken, created empty if needed and marked changed: the caller updates it.
    pub fn update_or_fold(&mut self, key: K, fold: impl FnOnce(&K) -> O) -> &mut V {
        let start = self.now;
        let full = self.series.len() >= self.limit;
        // One hash of the key on the common path (a live series).
        let slot = match self.series.entry(key) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) if !full => v.insert(Slot::new(start)),
            Entry::Vacant(v) => self
                .overflow
                .entry(fold(v.key()))
                .or_insert_with(|| Slot::new(start)),
        };
        slot.dirty = true;
        &mut slot.value
    }

    /// The overflow series `key`, created empty if needed and marked changed: for counts
    /// that arrive already folded (a kernel map's own overflow slot).
    pub fn overflow_mut(&mut self, key: O) -> &mut V {
        let start = self.now;
        let slot = self.overflow.entry(key).or_insert_with(|| Slot::new(start));
        slot.dirty = true;
        &mut slot.value
    }

    /// One collection tick at `now` (Unix ns): series that changed since the last tick
    /// are marked changed now; series idle for the ttl are dropped. Returns how many
    /// series expired at this tick.
    pub fn tick(&mut self, now: u64) -> usize {
        let ttl = self.ttl_ns;
        let before = self.series.len() + self.overflow.len();
        self.series.retain(|_, s| s.keep(now, ttl));
        self.overflow.retain(|_, s| s.keep(now, ttl));
        self.now = self.now.max(now);
        let gone = before - self.series.len() - self.overflow.len();
        self.expired += gone as u64;
        gone
    }

    /// Live series and overflow series, each in key order (stable output).
    pub fn snapshot(&self) -> SeriesSnapshot<K, V, O> {
        fn points<T: Clone + Ord, V: Clone>(m: &HashMap<T, Slot<V>>) -> Vec<SeriesPoint<T, V>> {
            let mut v: Vec<SeriesPoint<T, V>> = m
                .iter()
                .map(|(k, s)| SeriesPoint {
                    key: k.clone(),
                    value: s.value.clone(),
                    start_unix_nano: s.start,
                })
                .collect();
            v.sort_by(|a, b| a.key.cmp(&b.key));
            v
        }
        (points(&self.series), points(&self.overflow))
    }

    /// Whether `key` has its own series.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.series.contains_key(key)
    }

    /// Live series with their own key (overflow series not included).
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.overflow.is_empty()
    }

    /// Series expired since the start.
    pub fn expired(&self) -> u64 {
        self.expired
    }
}

impl<K: Eq + Hash + Clone + Ord, O: Eq + Hash + Clone + Ord> BoundedSeries<K, u64, O> {
    /// Adds `n` to `key`'s series, or to the overflow series `fold(&key)` when every
    /// slot is taken. Adding zero creates nothing.
    pub fn add_or_fold(&mut self, key: K, n: u64, fold: impl FnOnce(&K) -> O) {
        if n > 0 {
            *self.update_or_fold(key, fold) += n;
        }
    }

    /// The sum over live series and overflow series.
    pub fn total(&self) -> u64 {
        self.series
            .values()
            .chain(self.overflow.values())
            .map(|s| s.value)
            .sum()
    }
}

impl<K: Eq + Hash + Clone + Ord, V: Default + Clone> BoundedSeries<K, V, ()> {
    /// The overflow series, if anything overflowed.
    pub fn overflow(&self) -> Option<SeriesPoint<(), V>> {
        self.snapshot().1.pop()
    }
}

impl<K: Eq + Hash + Clone + Ord> BoundedSeries<K, u64, ()> {
    /// Adds `n` to `key`'s series, or to the one overflow series.
    pub fn add(&mut self, key: K, n: u64) {
        self.add_or_fold(key, n, |_| ());
    }

    /// [`add`](Self::add) for a borrowed key: one lookup, and the key is cloned only when
    /// its series is new (per-event paths that add one key to several counters).
    pub fn add_ref(&mut self, key: &K, n: u64) {
        if n == 0 {
            return;
        }
        match self.series.get_mut(key) {
            Some(slot) => {
                slot.value += n;
                slot.dirty = true;
            }
            None => self.add(key.clone(), n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn policy(limit: usize, ttl_s: u64) -> SeriesPolicy {
        SeriesPolicy {
            limit,
            ttl: Duration::from_secs(ttl_s),
            start_unix_nano: 100 * S,
        }
    }

    fn values<K: Clone + Ord>(points: &[SeriesPoint<K>]) -> Vec<(K, u64, u64)> {
        points
            .iter()
            .map(|p| (p.key.clone(), p.value, p.start_unix_nano / S))
            .collect()
    }

    #[test]
    fn keys_past_the_limit_fold_into_overflow_and_totals_stay_exact() {
        let mut c = BoundedCounter::new(policy(2, 0));
        for (k, n) in [("a", 1), ("b", 2), ("c", 3), ("a", 4), ("d", 5), ("c", 1)] {
            c.add(k, n);
        }
        let (series, overflow) = c.snapshot();
        assert_eq!(values(&series), vec![("a", 5, 100), ("b", 2, 100)]);
        assert_eq!(
            values(&overflow),
            vec![((), 9, 100)],
            "c and d past the limit of 2"
        );
        assert_eq!(c.total(), 16);
    }

    #[test]
    fn adding_a_borrowed_key_counts_as_adding_it() {
        let mut owned = BoundedCounter::new(policy(2, 0));
        let mut borrowed = BoundedCounter::new(policy(2, 0));
        for (k, n) in [("a", 1), ("b", 2), ("c", 3), ("a", 4), ("b", 0), ("d", 5)] {
            owned.add(k.to_string(), n);
            borrowed.add_ref(&k.to_string(), n);
        }
        assert_eq!(owned.snapshot(), borrowed.snapshot());
        assert_eq!(borrowed.total(), 15);
    }

    #[test]
    fn without_a_ttl_a_key_keeps_its_series() {
        let mut c = BoundedCounter::new(policy(1, 0));
        c.add("x", 1);
        c.add("y", 1);
        for t in 1..1000 {
            c.tick((100 + t * 3600) * S);
        }
        c.add("x", 1);
        let (series, overflow) = c.snapshot();
        assert_eq!(values(&series), vec![("x", 2, 100)]);
        assert_eq!(overflow[0].value, 1);
    }

    #[test]
    fn idle_series_expire_after_the_ttl_and_free_their_slot() {
        let mut c = BoundedCounter::new(policy(1, 300));
        c.add("old", 5);
        c.tick(110 * S); // seen changed at 110
        c.add("new", 7); // no slot yet
        c.tick(120 * S);
        assert_eq!(c.overflow().map(|p| p.value), Some(7));
        c.tick(409 * S);
        assert_eq!(c.len(), 1, "299 s idle: still there");
        assert_eq!(c.tick(410 * S), 1, "300 s idle: expired");
        assert_eq!(c.len(), 0);
        c.add("new", 3);
        let (series, overflow) = c.snapshot();
        assert_eq!(
            values(&series),
            vec![("new", 3, 410)],
            "the freed slot goes to the next key, starting at the expiry tick"
        );
        assert_eq!(values(&overflow), vec![((), 7, 110)]);
        assert_eq!(c.expired(), 1);
    }

    #[test]
    fn a_series_that_changes_never_expires() {
        let mut c = BoundedCounter::new(policy(4, 60));
        for t in 0..100 {
            c.add("busy", 1);
            c.tick((100 + t * 50) * S);
        }
        assert_eq!(values(&c.snapshot().0), vec![("busy", 100, 100)]);
    }

    #[test]
    fn a_returning_key_is_a_new_series_with_a_new_start() {
        let mut c = BoundedCounter::new(policy(10, 60));
        c.add("job", 4);
        c.tick(110 * S);
        c.tick(170 * S);
        assert!(c.is_empty(), "expired at 170");
        c.tick(180 * S);
        c.add("job", 1);
        let (series, _) = c.snapshot();
        assert_eq!(values(&series), vec![("job", 1, 180)]);
        assert!(
            series[0].start_unix_nano > 110 * S,
            "starts after the old series' last export"
        );
    }

    #[test]
    fn overflow_keyed_by_a_coarse_key_keeps_that_dimension() {
        let mut c: BoundedCounter<(&str, u8), u8> = BoundedCounter::new(policy(1, 0));
        c.add_or_fold(("a", 0), 1, |k| k.1);
        c.add_or_fold(("b", 0), 2, |k| k.1);
        c.add_or_fold(("c", 1), 3, |k| k.1);
        c.add_or_fold(("b", 0), 4, |k| k.1);
        let (series, overflow) = c.snapshot();
        assert_eq!(values(&series), vec![(("a", 0), 1, 100)]);
        assert_eq!(values(&overflow), vec![(0, 6, 100), (1, 3, 100)]);
    }

    #[test]
    fn churn_of_many_short_lived_keys_keeps_every_count_and_bounded_memory() {
        // 300 keys, one count each, one new key per 10 s tick, a limit of 100 and a ttl
        // of 60 s: at every export the counts exported since the start add up to what
        // was added, and never more than 100 series are live.
        let mut c = BoundedCounter::new(policy(100, 60));
        let mut exported: HashMap<(u32, u64), u64> = HashMap::default();
        for i in 0..300u32 {
            c.add(i, 1);
            c.tick((100 + 10 * u64::from(i + 1)) * S);
            let (series, overflow) = c.snapshot();
            assert!(series.len() <= 100);
            for p in series {
                exported.insert((p.key, p.start_unix_nano), p.value);
            }
            assert!(
                overflow.is_empty(),
                "expiry keeps slots free under this churn"
            );
        }
        assert_eq!(exported.values().sum::<u64>(), 300);
        assert_eq!(exported.len(), 300, "every key had its own series");
    }
}
