//! DNS lookups folded into bounded per-attribute-set state: query counts, failures by
//! `error.type` and resolver, cache hits per resolver, and latency histograms with semconv's advised
//! bounds. Pure: fed with the matcher's events, read by `family::dns::mapping`.
//!
//! Question names are sensitive and unbounded, so they follow a policy: `Off` (never
//! exported), `TopN(n)` (the first n distinct names keep their own series for the life of
//! the agent; later names are exported without `dns.question.name` and with
//! `otel.metric.overflow=true`), or `All`. Whatever the policy, each metric keeps at most
//! `series_limit` attribute sets; the rest fold into one overflow series, so memory stays
//! bounded and the sum over series stays exact.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use sonde_semconv::dns as sc;

use crate::aggregate::bounded::BoundedCounter;
use crate::family::dns::matcher::{Event, Lookup, Outcome, Process, Query};
use crate::family::dns::privacy::NamePrivacy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePolicy {
    Off,
    TopN(usize),
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryKey {
    pub qtype: String,
    pub server: IpAddr,
    pub process: Option<Process>,
}

/// (`error.type`, resolver) of `sonde.dns.failures`.
pub type FailureKey = (&'static str, IpAddr);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupKey {
    /// `None` under `Off`, or past the top-N limit (then `name_folded`).
    pub name: Option<String>,
    pub name_folded: bool,
    pub qtype: String,
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
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            counts: vec![0; sc::DURATION_BOUNDS.len() + 1],
            sum: 0.0,
            count: 0,
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
}

#[derive(Debug)]
pub struct DnsStats {
    policy: NamePolicy,
    privacy: NamePrivacy,
    series_limit: usize,
    /// Names that have their own series under `TopN`.
    kept_names: HashSet<String>,
    queries: BoundedCounter<QueryKey>,
    failures: BoundedCounter<FailureKey>,
    cache_hits: BoundedCounter<IpAddr>,
    durations: HashMap<LookupKey, Hist>,
    durations_overflow: Option<Hist>,
}

impl DnsStats {
    pub fn new(policy: NamePolicy, series_limit: usize) -> Self {
        Self {
            policy,
            privacy: NamePrivacy::default(),
            series_limit,
            kept_names: HashSet::new(),
            queries: BoundedCounter::new(series_limit),
            failures: BoundedCounter::new(series_limit),
            cache_hits: BoundedCounter::new(series_limit),
            durations: HashMap::new(),
            durations_overflow: None,
        }
    }

    /// Question names go through `privacy` (redaction, never-exported suffixes) before
    /// the name policy sees them.
    pub fn with_privacy(mut self, privacy: NamePrivacy) -> Self {
        self.privacy = privacy;
        self
    }

    pub fn add(&mut self, event: &Event) {
        match event {
            Event::Query(q) => self.query(q),
            Event::Lookup(l) => self.lookup(l),
        }
    }

    fn query(&mut self, q: &Query) {
        self.queries.add(
            QueryKey {
                qtype: sc::qtype_name(q.question.qtype).into_owned(),
                server: q.server.ip(),
                process: q.process.clone(),
            },
            1,
        );
    }

    fn lookup(&mut self, l: &Lookup) {
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
            qtype: sc::qtype_name(l.question.qtype).into_owned(),
            error,
            server: l.server.ip(),
            cache_hit: l.cache_hit,
        };
        let seconds = ns as f64 / 1e9;
        if let Some(h) = self.durations.get_mut(&key) {
            h.record(seconds);
        } else if self.durations.len() < self.series_limit {
            self.durations.entry(key).or_default().record(seconds);
        } else {
            self.durations_overflow
                .get_or_insert_with(Hist::default)
                .record(seconds);
        }
    }

    fn name(&mut self, name: &str) -> (Option<String>, bool) {
        if self.policy == NamePolicy::Off {
            return (None, false);
        }
        let Some(name) = self.privacy.exported(name) else {
            return (None, false);
        };
        match self.policy {
            NamePolicy::Off => (None, false),
            NamePolicy::All => (Some(name), false),
            NamePolicy::TopN(n) => {
                if self.kept_names.contains(&name) {
                    (Some(name), false)
                } else if self.kept_names.len() < n {
                    self.kept_names.insert(name.clone());
                    (Some(name), false)
                } else {
                    (None, true)
                }
            }
        }
    }

    /// Query counts by key (stable order) and the overflow total.
    pub fn queries(&self) -> (Vec<(QueryKey, u64)>, u64) {
        self.queries.snapshot()
    }

    /// Failures by (`error.type`, resolver) in stable order, and the overflow total.
    pub fn failures(&self) -> (Vec<(FailureKey, u64)>, u64) {
        self.failures.snapshot()
    }

    pub fn cache_hits(&self) -> (Vec<(IpAddr, u64)>, u64) {
        self.cache_hits.snapshot()
    }

    /// Latency histograms by key (stable order) and the overflow histogram.
    pub fn durations(&self) -> (Vec<(LookupKey, Hist)>, Option<Hist>) {
        let mut v: Vec<(LookupKey, Hist)> = self
            .durations
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        (v, self.durations_overflow.clone())
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
                name: name.to_owned(),
                qtype: 1,
                qclass: 1,
            },
            process: None,
            outcome,
            duration_ns: ms.map(|m| m * 1_000_000),
            cache_hit: hit,
        })
    }

    const OK: Outcome = Outcome::Answered { rcode: 0 };

    #[test]
    fn failures_hits_and_buckets() {
        let mut s = DnsStats::new(NamePolicy::All, 100);
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
        assert_eq!(
            s.failures(),
            (
                vec![(("nxdomain", resolver), 1), (("timeout", resolver), 1)],
                0
            )
        );
        assert_eq!(s.cache_hits().0, [(IpAddr::from([127, 0, 0, 2]), 2)]);
        let (d, overflow) = s.durations();
        assert!(overflow.is_none());
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
            let mut s = DnsStats::new(policy, 100);
            for n in ["a.test", "b.test", "c.test", "a.test"] {
                s.add(&lookup(n, OK, Some(1), None));
            }
            s.durations()
                .0
                .into_iter()
                .map(|(k, h)| (k.name, k.name_folded, h.count))
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
        let mut s = DnsStats::new(NamePolicy::TopN(10), 100).with_privacy(privacy.clone());
        for n in ["a.test", "db.secret.test", "A.test.", "b.test"] {
            s.add(&lookup(n, OK, Some(1), None));
        }
        let got: Vec<(Option<String>, bool, u64)> = s
            .durations()
            .0
            .into_iter()
            .map(|(k, h)| (k.name, k.name_folded, h.count))
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
        let mut s = DnsStats::new(NamePolicy::All, 2);
        for n in ["a.test", "b.test", "c.test", "d.test", "a.test"] {
            s.add(&lookup(n, OK, Some(1), None));
        }
        let (d, overflow) = s.durations();
        assert_eq!(d.iter().map(|(_, h)| h.count).sum::<u64>(), 3);
        assert_eq!(overflow.map(|h| h.count), Some(2));
    }
}
