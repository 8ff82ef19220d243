//! DNS lookups folded into bounded per-attribute-set state: query counts, failures by
//! `error.type` and resolver, cache hits per resolver, and latency histograms with semconv's advised
//! bounds. Pure: fed with the matcher's events, read by `family::dns::mapping`.
//!
//! Question names are sensitive and unbounded, so they follow a policy: `Off` (never
//! exported), `TopN(n)` (at most n distinct names have their own series at a time; a name
//! idle for the series ttl frees its place; other names are exported without
//! `dns.question.name` and with `otel.metric.overflow=true`), or `All`. Whatever the
//! policy, each metric keeps at most `limit` live attribute sets (idle ones expire, see
//! `aggregate::bounded`); the rest fold into one overflow series, so memory stays bounded
//! and the sum over series stays exact.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use sonde_semconv::dns as sc;

use crate::aggregate::bounded::{BoundedCounter, BoundedSeries, SeriesPolicy, SeriesSnapshot};
use crate::aggregate::process::ProcessKey;
use crate::family::dns::matcher::{Event, Lookup, Outcome, Query};
use crate::family::dns::privacy::NamePrivacy;
use crate::model::Exemplar;
use crate::spans::RecentExemplars;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePolicy {
    Off,
    TopN(usize),
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryKey {
    /// Borrowed for the types semconv names, so a key costs no allocation.
    pub qtype: Cow<'static, str>,
    pub server: IpAddr,
    pub process: Option<Arc<ProcessKey>>,
}

/// (`error.type`, resolver) of `sonde.dns.failures`.
pub type FailureKey = (&'static str, IpAddr);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupKey {
    /// `None` under `Off`, or past the top-N limit (then `name_folded`).
    pub name: Option<Arc<str>>,
    pub name_folded: bool,
    pub qtype: Cow<'static, str>,
    /// `error.type`; `None` on success.
    pub error: Option<&'static str>,
    pub server: IpAddr,
    pub cache_hit: Option<bool>,
}

/// One explicit-bucket histogram over [`sc::DURATION_BOUNDS`].
#[derive(Debug, Clone, PartialEq)]
pub struct Hist {
    /// `DURATION_BOUNDS.len() + 1` buckets; bucket i counts values <= bound i (and above
    /// bound i-1), the last one values above every bound.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
    /// The latest samples that have a span.
    pub exemplars: RecentExemplars,
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            counts: vec![0; sc::DURATION_BOUNDS.len() + 1],
            sum: 0.0,
            count: 0,
            exemplars: RecentExemplars::default(),
        }
    }
}

impl Hist {
    pub fn record(&mut self, seconds: f64) {
        let i = sc::DURATION_BOUNDS.partition_point(|b| *b < seconds);
        self.counts[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    fn record_with(&mut self, seconds: f64, exemplar: Option<Exemplar>) {
        self.record(seconds);
        if let Some(e) = exemplar {
            self.exemplars.push(e);
        }
    }
}

#[derive(Debug)]
pub struct DnsStats {
    policy: NamePolicy,
    privacy: NamePrivacy,
    /// Lookups per name that has its own series under `TopN` (limit n).
    kept_names: BoundedCounter<Arc<str>>,
    queries: BoundedCounter<QueryKey>,
    failures: BoundedCounter<FailureKey>,
    cache_hits: BoundedCounter<IpAddr>,
    durations: BoundedSeries<LookupKey, Hist>,
}

impl DnsStats {
    pub fn new(policy: NamePolicy, series: SeriesPolicy) -> Self {
        let names_limit = match policy {
            NamePolicy::TopN(n) => n,
            NamePolicy::Off | NamePolicy::All => 0,
        };
        Self {
            policy,
            privacy: NamePrivacy::default(),
            kept_names: BoundedCounter::new(series.with_limit(names_limit)),
            queries: BoundedCounter::new(series),
            failures: BoundedCounter::new(series),
            cache_hits: BoundedCounter::new(series),
            durations: BoundedSeries::new(series),
        }
    }

    /// The question name a span may carry: none under `Off`, else what the privacy rules
    /// let out (redacted or hidden); spans follow the same policy as the metrics.
    pub fn span_name(&self, name: &str) -> Option<String> {
        if self.policy == NamePolicy::Off {
            return None;
        }
        self.privacy.exported(name)
    }

    /// Question names go through `privacy` (redaction, never-exported suffixes) before
    /// the name policy sees them.
    pub fn with_privacy(mut self, privacy: NamePrivacy) -> Self {
        self.privacy = privacy;
        self
    }

    /// A snapshot tick at `now` (Unix ns): idle series and names expire.
    pub fn tick(&mut self, now: u64) {
        self.kept_names.tick(now);
        self.queries.tick(now);
        self.failures.tick(now);
        self.cache_hits.tick(now);
        self.durations.tick(now);
    }

    pub fn add(&mut self, event: &Event) {
        self.add_with_exemplar(event, None);
    }

    /// As [`Self::add`], linking a lookup's latency sample to its span.
    pub fn add_with_exemplar(&mut self, event: &Event, exemplar: Option<Exemplar>) {
        match event {
            Event::Query(q) => self.query(q),
            Event::Lookup(l) => self.lookup(l, exemplar),
        }
    }

    fn query(&mut self, q: &Query) {
        self.queries.add(
            QueryKey {
                qtype: sc::qtype_name(q.question.qtype),
                server: q.server.ip(),
                process: q.process.as_ref().map(|p| p.key.clone()),
            },
            1,
        );
    }

    fn lookup(&mut self, l: &Lookup, exemplar: Option<Exemplar>) {
        let error = match l.outcome {
            Outcome::Answered { rcode } => sc::rcode_error(rcode),
            Outcome::Timeout => Some(sc::ERROR_TIMEOUT),
        };
        if let Some(e) = error {
            self.failures.add((e, l.server.ip()), 1);
        }
        if l.cache_hit == Some(true) {
            self.cache_hits.add(l.server.ip(), 1);
        }
        // A timeout has no measured duration: it is a failure, not a latency sample.
        let Some(ns) = l.duration_ns else {
            return;
        };
        let (name, name_folded) = self.name(&l.question.name);
        let key = LookupKey {
            name,
            name_folded,
            qtype: sc::qtype_name(l.question.qtype),
            error,
            server: l.server.ip(),
            cache_hit: l.cache_hit,
        };
        let seconds = ns as f64 / 1e9;
        self.durations
            .update_or_fold(key, |_| ())
            .record_with(seconds, exemplar);
    }

    fn name(&mut self, name: &Arc<str>) -> (Option<Arc<str>>, bool) {
        if self.policy == NamePolicy::Off {
            return (None, false);
        }
        let Some(name) = self.privacy.exported_shared(name) else {
            return (None, false);
        };
        match self.policy {
            NamePolicy::Off => (None, false),
            NamePolicy::All => (Some(name), false),
            NamePolicy::TopN(_) => {
                self.kept_names.add(name.clone(), 1);
                if self.kept_names.contains(&name) {
                    (Some(name), false)
                } else {
                    (None, true)
                }
            }
        }
    }

    /// Query counts by key (stable order) and the overflow series.
    pub fn queries(&self) -> SeriesSnapshot<QueryKey> {
        self.queries.snapshot()
    }

    /// Failures by (`error.type`, resolver) in stable order, and the overflow series.
    pub fn failures(&self) -> SeriesSnapshot<FailureKey> {
        self.failures.snapshot()
    }

    pub fn cache_hits(&self) -> SeriesSnapshot<IpAddr> {
        self.cache_hits.snapshot()
    }

    /// Latency histograms by key (stable order) and the overflow histogram.
    pub fn durations(&self) -> SeriesSnapshot<LookupKey, Hist> {
        self.durations.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::dns::wire::Question;
    use std::net::SocketAddr;

    fn lookup(name: &str, outcome: Outcome, ms: Option<u64>, hit: Option<bool>) -> Event {
        Event::Lookup(Lookup {
            server: SocketAddr::from(([127, 0, 0, 2], 53)),
            question: Question {
                name: name.into(),
                qtype: 1,
                qclass: 1,
            },
            process: None,
            client_cgroup: 0,
            outcome,
            start_ns: 0,
            duration_ns: ms.map(|m| m * 1_000_000),
            cache_hit: hit,
        })
    }

    const OK: Outcome = Outcome::Answered { rcode: 0 };

    fn series(limit: usize) -> SeriesPolicy {
        SeriesPolicy {
            limit,
            ttl: std::time::Duration::ZERO,
            start_unix_nano: 0,
        }
    }

    fn pairs<K: Clone, V: Clone>(
        s: &[crate::aggregate::bounded::SeriesPoint<K, V>],
    ) -> Vec<(K, V)> {
        s.iter().map(|p| (p.key.clone(), p.value.clone())).collect()
    }

    #[test]
    fn failures_hits_and_buckets() {
        let mut s = DnsStats::new(NamePolicy::All, series(100));
        for e in [
            lookup("a.test", OK, Some(1), Some(true)),
            lookup("a.test", OK, Some(5), Some(true)),
            lookup("a.test", OK, Some(300), Some(false)),
            lookup("nx.test", Outcome::Answered { rcode: 3 }, Some(2), None),
            lookup("t.test", Outcome::Timeout, None, None),
        ] {
            s.add(&e);
        }
        let resolver = IpAddr::from([127, 0, 0, 2]);
        let (failures, overflow) = s.failures();
        assert_eq!(
            pairs(&failures),
            vec![(("nxdomain", resolver), 1), (("timeout", resolver), 1)],
        );
        assert!(overflow.is_empty());
        assert_eq!(
            pairs(&s.cache_hits().0),
            [(IpAddr::from([127, 0, 0, 2]), 2)]
        );
        let (d, overflow) = s.durations();
        let d = pairs(&d);
        assert!(overflow.is_empty());
        assert_eq!(
            d.len(),
            3,
            "hit, miss and nxdomain series; no timeout series"
        );
        let hit = d
            .iter()
            .find(|(k, _)| k.cache_hit == Some(true))
            .map(|(_, h)| h)
            .expect("hit series");
        // 1 ms and 5 ms both land in (0, 0.005]: bounds are inclusive upper bounds.
        assert_eq!(hit.counts[0], 2);
        assert_eq!(hit.count, 2);
        let miss = d
            .iter()
            .find(|(k, _)| k.cache_hit == Some(false))
            .map(|(_, h)| h)
            .expect("miss series");
        let i = sc::DURATION_BOUNDS
            .iter()
            .position(|b| *b == 0.5)
            .expect("0.5 s bound");
        assert_eq!(miss.counts[i], 1, "300 ms lands in (0.25, 0.5]");
    }

    #[test]
    fn name_policies() {
        let names = |policy| {
            let mut s = DnsStats::new(policy, series(100));
            for n in ["a.test", "b.test", "c.test", "a.test"] {
                s.add(&lookup(n, OK, Some(1), None));
            }
            s.durations()
                .0
                .into_iter()
                .map(|p| (p.key.name, p.key.name_folded, p.value.count))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(NamePolicy::Off), [(None, false, 4)]);
        assert_eq!(
            names(NamePolicy::TopN(2)),
            [
                (None, true, 1),
                (Some("a.test".into()), false, 2),
                (Some("b.test".into()), false, 1)
            ]
        );
        assert_eq!(names(NamePolicy::All).len(), 3);
    }

    #[test]
    fn privacy_applies_before_the_name_policy() {
        let privacy = NamePrivacy::new(Some(b"test key"), &["secret.test".to_owned()]);
        let mut s = DnsStats::new(NamePolicy::TopN(10), series(100)).with_privacy(privacy.clone());
        for n in ["a.test", "db.secret.test", "A.test.", "b.test"] {
            s.add(&lookup(n, OK, Some(1), None));
        }
        let got: Vec<(Option<String>, bool, u64)> = s
            .durations()
            .0
            .into_iter()
            .map(|p| {
                (
                    p.key.name.map(|n| n.to_string()),
                    p.key.name_folded,
                    p.value.count,
                )
            })
            .collect();
        let hash = |n: &str| privacy.exported(n);
        let mut want = vec![
            (None, false, 1),
            (hash("a.test"), false, 2),
            (hash("b.test"), false, 1),
        ];
        want.sort();
        assert_eq!(
            got, want,
            "hashed, repeated names kept together, the secret one nameless"
        );
        for (name, _, _) in &got {
            assert!(!name.as_deref().unwrap_or("").contains("test"), "{name:?}");
        }
    }

    #[test]
    fn series_past_the_limit_fold_into_one_overflow_histogram() {
        let mut s = DnsStats::new(NamePolicy::All, series(2));
        for n in ["a.test", "b.test", "c.test", "d.test", "a.test"] {
            s.add(&lookup(n, OK, Some(1), None));
        }
        let (d, overflow) = s.durations();
        assert_eq!(d.iter().map(|p| p.value.count).sum::<u64>(), 3);
        assert_eq!(overflow.first().map(|p| p.value.count), Some(2));
    }
}
