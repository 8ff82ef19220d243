//! DNS metrics from the aggregated lookups. Pure.

use sonde_semconv::attr;
use sonde_semconv::dns as m;

use crate::family::dns::aggregate::{DnsStats, Hist, LookupKey, QueryKey};
use crate::mapping::CounterPoints;
use crate::model::{Attributes, Histogram, Metric, Point, PointValue};

fn overflow() -> Attributes {
    Attributes::new().with(attr::OTEL_METRIC_OVERFLOW, true)
}

fn query_attrs(k: &QueryKey) -> Attributes {
    let mut a = Attributes::new()
        .with(attr::SONDE_DNS_QUESTION_TYPE, k.qtype.as_ref())
        .with(attr::NETWORK_PEER_ADDRESS, k.server.to_string());
    if let Some(p) = &k.process {
        crate::mapping::process::insert(&mut a, p);
    }
    a
}

fn lookup_attrs(k: &LookupKey) -> Attributes {
    let mut a = Attributes::new()
        .with(attr::SONDE_DNS_QUESTION_TYPE, k.qtype.as_ref())
        .with(attr::NETWORK_PEER_ADDRESS, k.server.to_string());
    if let Some(n) = &k.name {
        a.insert(attr::DNS_QUESTION_NAME, n.as_ref());
    }
    if k.name_folded {
        a.insert(attr::OTEL_METRIC_OVERFLOW, true);
    }
    if let Some(e) = k.error {
        a.insert(attr::ERROR_TYPE, e);
    }
    if let Some(hit) = k.cache_hit {
        a.insert(attr::SONDE_DNS_CACHE_HIT, hit);
    }
    a
}

fn hist_point(attributes: Attributes, h: &Hist, start: u64) -> Point {
    Point {
        attributes,
        value: PointValue::Histogram(Histogram {
            bounds: m::DURATION_BOUNDS.to_vec(),
            counts: h.counts.clone(),
            sum: h.sum,
            count: h.count,
            exemplars: h.exemplars.to_vec(),
        }),
        start_unix_nano: start,
    }
}

/// The four DNS metrics. Each series carries its own start (`aggregate::bounded`).
pub fn metrics(stats: &DnsStats) -> Vec<Metric> {
    let (queries, queries_overflow) = stats.queries();
    let mut q = CounterPoints::default();
    for p in &queries {
        q.add(query_attrs(&p.key), p.value, p.start_unix_nano);
    }
    for p in &queries_overflow {
        q.add(overflow(), p.value, p.start_unix_nano);
    }

    // The resolver on failures too (beyond metrics.md's `error.type`): "which resolver
    // fails" is the first question a failure alert raises.
    let (failures, failures_overflow) = stats.failures();
    let mut f = CounterPoints::default();
    for p in &failures {
        let (e, ip) = p.key;
        f.add(
            Attributes::new()
                .with(attr::ERROR_TYPE, e)
                .with(attr::NETWORK_PEER_ADDRESS, ip.to_string()),
            p.value,
            p.start_unix_nano,
        );
    }
    for p in &failures_overflow {
        f.add(overflow(), p.value, p.start_unix_nano);
    }

    let (hits, hits_overflow) = stats.cache_hits();
    let mut h = CounterPoints::default();
    for p in &hits {
        h.add(
            Attributes::new().with(attr::NETWORK_PEER_ADDRESS, p.key.to_string()),
            p.value,
            p.start_unix_nano,
        );
    }
    for p in &hits_overflow {
        h.add(overflow(), p.value, p.start_unix_nano);
    }

    let (durations, durations_overflow) = stats.durations();
    let points: Vec<Point> = durations
        .iter()
        .map(|p| hist_point(lookup_attrs(&p.key), &p.value, p.start_unix_nano))
        .chain(
            durations_overflow
                .iter()
                .map(|p| hist_point(overflow(), &p.value, p.start_unix_nano)),
        )
        .collect();

    vec![
        Metric {
            def: m::DNS_LOOKUP_DURATION,
            points,
        },
        q.metric(m::SONDE_DNS_QUERIES),
        f.metric(m::SONDE_DNS_FAILURES),
        h.metric(m::SONDE_DNS_CACHE_HITS),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::dns::aggregate::NamePolicy;
    use crate::family::dns::matcher::{Event, Lookup, Outcome, Process, Query};
    use crate::family::dns::wire::Question;
    use crate::model::{Number, Value};
    use std::net::SocketAddr;

    #[test]
    fn names_attributes_and_buckets_follow_the_contract() {
        let server = SocketAddr::from(([127, 0, 0, 2], 53));
        let question = Question {
            name: "www.example.test".into(),
            qtype: 28,
            qclass: 1,
        };
        let mut s = DnsStats::new(
            NamePolicy::All,
            crate::aggregate::bounded::SeriesPolicy {
                limit: 10,
                ttl: std::time::Duration::ZERO,
                start_unix_nano: 7,
            },
        );
        s.add(&Event::Query(Query {
            server,
            question: question.clone(),
            process: Some(Process {
                pid: 42,
                key: crate::aggregate::process::ProcessKey::named("curl").into(),
            }),
        }));
        for (outcome, ns, hit) in [
            (Outcome::Answered { rcode: 0 }, Some(2_000_000), Some(true)),
            (
                Outcome::Answered { rcode: 2 },
                Some(20_000_000),
                Some(false),
            ),
            (Outcome::Timeout, None, None),
        ] {
            s.add(&Event::Lookup(Lookup {
                server,
                question: question.clone(),
                process: None,
                client_cgroup: 0,
                outcome,
                start_ns: 0,
                duration_ns: ns,
                cache_hit: hit,
            }));
        }
        let ms = metrics(&s);
        let names: Vec<&str> = ms.iter().map(|m| m.def.name).collect();
        assert_eq!(
            names,
            [
                "dns.lookup.duration",
                "sonde.dns.queries",
                "sonde.dns.failures",
                "sonde.dns.cache_hits"
            ]
        );
        let q = &ms[1].points[0].attributes;
        assert_eq!(
            q.get("sonde.dns.question.type"),
            Some(&Value::Str("AAAA".into()))
        );
        assert_eq!(
            q.get("network.peer.address"),
            Some(&Value::Str("127.0.0.2".into()))
        );
        assert_eq!(
            q.get("process.executable.name"),
            Some(&Value::Str("curl".into()))
        );
        assert_eq!(q.get("process.pid"), None, "pids are opt-in");
        let failures: Vec<_> = ms[2]
            .points
            .iter()
            .map(|p| (p.attributes.get("error.type").cloned(), p.value.clone()))
            .collect();
        assert_eq!(
            failures,
            [
                (
                    Some(Value::Str("servfail".into())),
                    PointValue::Number(Number::Int(1))
                ),
                (
                    Some(Value::Str("timeout".into())),
                    PointValue::Number(Number::Int(1))
                ),
            ]
        );
        assert_eq!(ms[3].points.len(), 1);
        let d = &ms[0].points;
        assert_eq!(d.len(), 2, "no histogram point for the timeout");
        let ok = d
            .iter()
            .find(|p| p.attributes.get("error.type").is_none())
            .expect("success series");
        assert_eq!(
            ok.attributes.get("dns.question.name"),
            Some(&Value::Str("www.example.test".into()))
        );
        assert_eq!(
            ok.attributes.get("sonde.dns.cache_hit"),
            Some(&Value::Bool(true))
        );
        let PointValue::Histogram(h) = &ok.value else {
            panic!("a histogram")
        };
        assert_eq!(h.bounds.len() + 1, h.counts.len());
        assert_eq!(h.counts[0], 1);
        assert_eq!(ok.start_unix_nano, 7);
    }
}
