//! Which DNS lookups become spans, and the span of one. Pure: the collector calls
//! [`qualifies`] on every finished lookup (integer comparisons, nothing allocated) and
//! builds a span only for the few that pass and that the rate limit lets through.

use std::sync::Arc;

use sonde_semconv::{attr, dns as sc};

use super::matcher::{Lookup, Outcome};
use crate::cgroup::Container;
use crate::model::Attributes;
use crate::spans::clock::MonotonicToWall;
use crate::spans::{Span, SpanContext, SpanKind, Status};

/// What makes a lookup worth a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsSpanRule {
    /// Answered lookups slower than this (ns); failed ones always qualify.
    pub slower_than_ns: u64,
    /// Timeouts end this long after the query (the matcher's timeout).
    pub timeout_ns: u64,
}

/// The lookup's `error.type`, if it failed.
fn error(l: &Lookup) -> Option<&'static str> {
    match l.outcome {
        Outcome::Answered { rcode } => sc::rcode_error(rcode),
        Outcome::Timeout => Some(sc::ERROR_TIMEOUT),
    }
}

/// When a lookup ended on the kernel's clock: its response, or its timeout.
pub fn end_ns(rule: &DnsSpanRule, l: &Lookup) -> u64 {
    l.start_ns + l.duration_ns.unwrap_or(rule.timeout_ns)
}

pub fn qualifies(rule: &DnsSpanRule, l: &Lookup) -> bool {
    error(l).is_some() || l.duration_ns.is_some_and(|d| d > rule.slower_than_ns)
}

/// The span of a lookup: `DNS <qtype>`, CLIENT, from the query's to the response's
/// kernel time (a timeout ends at the timeout), ERROR with the error type on failure.
/// `client_container` is the container of the client's socket, for a lookup whose
/// process the kernel could not name (the process's key carries it otherwise).
pub fn span(
    rule: &DnsSpanRule,
    l: &Lookup,
    name: Option<String>,
    client_container: Option<Arc<Container>>,
    clock: &MonotonicToWall,
    context: SpanContext,
) -> Span {
    let qtype = sc::qtype_name(l.question.qtype);
    let mut a = Attributes::new()
        .with(attr::SONDE_DNS_QUESTION_TYPE, qtype.as_ref())
        .with(attr::NETWORK_PEER_ADDRESS, l.server.ip().to_string());
    // `name` is what the name policy and privacy rules let out (see
    // `DnsStats::span_name`); a span is one event, so the top-N bound does not apply.
    if let Some(name) = name {
        a.insert(attr::DNS_QUESTION_NAME, name);
    }
    if let Some(p) = &l.process {
        // A span is one event: its pid always, with the series key's other attributes.
        crate::mapping::process::insert(&mut a, &p.key);
        a.insert(attr::PROCESS_PID, i64::from(p.pid));
    } else if let Some(c) = client_container.as_deref() {
        crate::mapping::process::insert_container(&mut a, c);
    }
    if let Some(hit) = l.cache_hit {
        a.insert(attr::SONDE_DNS_CACHE_HIT, hit);
    }
    let status = match error(l) {
        Some(e) => {
            a.insert(attr::ERROR_TYPE, e);
            Status::Error {
                description: match l.outcome {
                    Outcome::Timeout => "no response within the DNS timeout".to_owned(),
                    Outcome::Answered { rcode } => {
                        format!("the resolver answered {e} (rcode {rcode})")
                    }
                },
            }
        }
        None => Status::Unset,
    };
    let end = end_ns(rule, l);
    Span {
        context,
        name: format!("DNS {qtype}"),
        kind: SpanKind::Client,
        start_unix_nano: clock.to_unix_nanos(l.start_ns),
        end_unix_nano: clock.to_unix_nanos(end),
        attributes: a,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::dns::matcher::Process;
    use crate::family::dns::wire::Question;
    use crate::model::Value;

    const MS: u64 = 1_000_000;
    const RULE: DnsSpanRule = DnsSpanRule {
        slower_than_ns: 100 * MS,
        timeout_ns: 5_000 * MS,
    };

    fn lookup(outcome: Outcome, duration_ms: Option<u64>) -> Lookup {
        Lookup {
            server: "127.0.0.53:53".parse().expect("addr"),
            question: Question {
                name: "slow.test".into(),
                qtype: 28,
                qclass: 1,
            },
            process: Some(Process {
                pid: 42,
                key: crate::aggregate::process::ProcessKey::named("curl").into(),
            }),
            client_cgroup: 0,
            outcome,
            start_ns: 1_000 * MS,
            duration_ns: duration_ms.map(|d| d * MS),
            cache_hit: Some(false),
        }
    }

    const OK: Outcome = Outcome::Answered { rcode: 0 };
    const NXDOMAIN: Outcome = Outcome::Answered { rcode: 3 };

    #[test]
    fn which_lookups_qualify() {
        for (name, l, want) in [
            ("fast success", lookup(OK, Some(5)), false),
            ("exactly the threshold", lookup(OK, Some(100)), false),
            ("slow success", lookup(OK, Some(101)), true),
            ("fast nxdomain", lookup(NXDOMAIN, Some(1)), true),
            ("timeout", lookup(Outcome::Timeout, None), true),
        ] {
            assert_eq!(qualifies(&RULE, &l), want, "{name}");
        }
    }

    #[test]
    fn span_of_a_slow_lookup() {
        let clock = MonotonicToWall::from_offset(1_000_000_000_000);
        let ctx = SpanContext {
            trace_id: [1; 16],
            span_id: [2; 8],
        };
        let s = span(
            &RULE,
            &lookup(OK, Some(250)),
            Some("slow.test".to_owned()),
            None,
            &clock,
            ctx,
        );
        assert_eq!(s.name, "DNS AAAA");
        assert_eq!(s.kind, SpanKind::Client);
        assert_eq!(s.end_unix_nano - s.start_unix_nano, 250 * MS);
        assert_eq!(s.start_unix_nano, 1_000_000_000_000 + 1_000 * MS);
        assert_eq!(s.status, Status::Unset);
        let get = |k| s.attributes.get(k).cloned();
        assert_eq!(get(attr::DNS_QUESTION_NAME), Some(Value::from("slow.test")));
        assert_eq!(get(attr::PROCESS_PID), Some(Value::Int(42)));
        assert_eq!(
            get(attr::NETWORK_PEER_ADDRESS),
            Some(Value::from("127.0.0.53"))
        );
        assert_eq!(get(attr::ERROR_TYPE), None);
    }

    #[test]
    fn failures_are_errors_and_names_follow_the_policy() {
        let clock = MonotonicToWall::from_offset(0);
        let ctx = SpanContext {
            trace_id: [1; 16],
            span_id: [2; 8],
        };
        let s = span(&RULE, &lookup(NXDOMAIN, Some(3)), None, None, &clock, ctx);
        assert!(matches!(s.status, Status::Error { .. }));
        assert_eq!(
            s.attributes.get(attr::ERROR_TYPE),
            Some(&Value::from("nxdomain"))
        );
        assert_eq!(
            s.attributes.get(attr::DNS_QUESTION_NAME),
            None,
            "policy off or a private name"
        );
        let t = span(
            &RULE,
            &lookup(Outcome::Timeout, None),
            None,
            None,
            &clock,
            ctx,
        );
        assert_eq!(
            t.end_unix_nano - t.start_unix_nano,
            5_000 * MS,
            "ends at the timeout"
        );
        assert_eq!(
            t.attributes.get(attr::ERROR_TYPE),
            Some(&Value::from("timeout"))
        );
    }

    #[test]
    fn a_lookup_of_an_unknown_process_carries_its_sockets_container() {
        let clock = MonotonicToWall::from_offset(0);
        let ctx = SpanContext {
            trace_id: [1; 16],
            span_id: [2; 8],
        };
        let c = Arc::new(Container {
            id: "e".repeat(64),
            runtime: crate::cgroup::Runtime::Docker,
            k8s: None,
        });
        let mut l = lookup(NXDOMAIN, Some(3));
        l.process = None;
        let s = span(&RULE, &l, None, Some(c), &clock, ctx);
        assert_eq!(
            s.attributes.get(attr::CONTAINER_ID),
            Some(&Value::from("e".repeat(64)))
        );
        assert_eq!(s.attributes.get(attr::PROCESS_PID), None);
    }
}
