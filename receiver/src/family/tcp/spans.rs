//! Which TCP connections become spans, and the span of one. Pure: the event reader calls
//! [`qualifies`] on every open/close/failure event (integer comparisons) and builds a
//! span only for those that pass and that the rate limit lets through.
//!
//! Worth a span: a failed connect (refused, timed out, unreachable), a connection that
//! ended with an error (ECONNRESET: the peer reset it), and, when configured, one that
//! lived longer than a threshold.

use std::sync::Arc;

use sonde_probes::abi::{sonde_tcp_event, sonde_tcp_event_kind as kind};
use sonde_semconv::attr;

use super::collect::{decode_addr, direction, Direction};
use super::mapping::{direction_name, error_type, net_type};
use crate::cgroup::Container;
use crate::family::process::collect::comm_to_string;
use crate::model::Attributes;
use crate::spans::clock::MonotonicToWall;
use crate::spans::{Span, SpanContext, SpanKind, Status};

const AF_INET6: u16 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSpanRule {
    /// Connections that lived longer than this (ns) get a span too.
    pub longer_than_ns: Option<u64>,
}

fn is(e: &sonde_tcp_event, k: kind) -> bool {
    e.kind == k as u32
}

pub fn qualifies(rule: &TcpSpanRule, e: &sonde_tcp_event) -> bool {
    if is(e, kind::SONDE_TCP_EV_FAIL) {
        return true;
    }
    if !is(e, kind::SONDE_TCP_EV_CLOSE) || e.conn.opened == 0 {
        return false;
    }
    e.err != 0
        || rule
            .longer_than_ns
            .is_some_and(|t| e.conn.start_ns != 0 && e.end_ns.saturating_sub(e.conn.start_ns) > t)
}

/// The connection's duration in seconds if the kernel put it in
/// `sonde.tcp.connection.duration` (a close of a connection that opened, with a known
/// start): the exemplar value of its span.
pub fn duration_sample(e: &sonde_tcp_event) -> Option<f64> {
    (is(e, kind::SONDE_TCP_EV_CLOSE) && e.conn.opened != 0 && e.conn.start_ns != 0)
        .then(|| e.end_ns.saturating_sub(e.conn.start_ns) as f64 / 1e9)
}

/// The connection's srtt at close in seconds, and whether it is IPv6, if the kernel put it
/// in `sonde.tcp.rtt` (the condition and the value of `conn_finish` in tcp.bpf.c: a close
/// of a connection that opened or was adopted, with a measured srtt): the exemplar value of
/// its span on that histogram.
pub fn rtt_sample(e: &sonde_tcp_event) -> Option<(bool, f64)> {
    let c = &e.conn;
    (is(e, kind::SONDE_TCP_EV_CLOSE)
        && (c.opened != 0 || direction(c.direction) == Direction::Unknown)
        && c.srtt_us != 0)
        .then(|| (c.family == AF_INET6, f64::from(c.srtt_us) / 1e6))
}

/// The span of a connection, from its first SYN to its close or failure; `container` is
/// that of the cgroup the kernel recorded for its owner.
pub fn span(
    e: &sonde_tcp_event,
    container: Option<Arc<Container>>,
    clock: &MonotonicToWall,
    context: SpanContext,
) -> Span {
    let c = &e.conn;
    let d = direction(c.direction);
    let failed_connect = is(e, kind::SONDE_TCP_EV_FAIL);
    let mut a = Attributes::new()
        .with(attr::NETWORK_TYPE, net_type(c.family == AF_INET6))
        .with(
            attr::NETWORK_PEER_ADDRESS,
            decode_addr(c.family, &c.raddr).to_string(),
        )
        .with(attr::NETWORK_PEER_PORT, i64::from(c.rport))
        .with(attr::NETWORK_LOCAL_PORT, i64::from(c.lport))
        .with(
            attr::SONDE_TCP_BYTES_SENT,
            bytes(c.bytes_acked, c.base_acked),
        )
        .with(
            attr::SONDE_TCP_BYTES_RECEIVED,
            bytes(c.bytes_received, c.base_received),
        )
        .with(
            attr::SONDE_TCP_RETRANSMITS,
            i64::from(c.total_retrans.saturating_sub(c.base_retrans)),
        );
    if let Some(dir) = direction_name(d) {
        a.insert(attr::SONDE_CONNECTION_DIRECTION, dir);
    }
    if c.tgid != 0 {
        a.insert(attr::PROCESS_PID, i64::from(c.tgid));
        a.insert(attr::PROCESS_EXECUTABLE_NAME, comm_to_string(&c.comm));
    }
    if let Some(c) = container.as_deref() {
        crate::mapping::process::insert_container(&mut a, c);
    }
    if c.srtt_us != 0 {
        a.insert(attr::SONDE_TCP_SRTT, f64_attr(f64::from(c.srtt_us) / 1e6));
    }
    let status = if e.err != 0 {
        let t = error_type(e.err);
        a.insert(attr::ERROR_TYPE, t);
        Status::Error {
            description: if failed_connect {
                format!("connect failed: {t} (errno {})", e.err)
            } else {
                format!("connection ended with an error: {t} (errno {})", e.err)
            },
        }
    } else if failed_connect {
        a.insert(attr::ERROR_TYPE, error_type(0));
        Status::Error {
            description: "connect failed".to_owned(),
        }
    } else {
        Status::Unset
    };
    // A connection seen only after its set-up has no start: the span is then a point.
    let start = if c.start_ns != 0 {
        c.start_ns
    } else {
        e.end_ns
    };
    Span {
        context,
        name: if failed_connect {
            "TCP connect".to_owned()
        } else {
            "TCP connection".to_owned()
        },
        kind: match d {
            Direction::Inbound => SpanKind::Server,
            Direction::Outbound => SpanKind::Client,
            Direction::Unknown => SpanKind::Internal,
        },
        start_unix_nano: clock.to_unix_nanos(start),
        end_unix_nano: clock.to_unix_nanos(e.end_ns),
        attributes: a,
        status,
    }
}

/// Sequence-space totals less their baseline (SYN/FIN are not taken off here: this is
/// one connection's figure for a person, the exact accounting is in the metrics).
fn bytes(total: u64, base: u64) -> i64 {
    i64::try_from(total.saturating_sub(base)).unwrap_or(i64::MAX)
}

/// Attribute values are strings, integers or booleans in Sonde's model: the RTT goes out
/// as text with microsecond precision.
fn f64_attr(seconds: f64) -> String {
    format!("{seconds:.6}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use sonde_probes::abi::{sonde_tcp_conn, sonde_tcp_direction as dir};

    const MS: u64 = 1_000_000;

    fn event(k: kind, d: dir, err: i32, lived_ms: u64) -> sonde_tcp_event {
        let mut c = sonde_tcp_conn {
            start_ns: 1_000 * MS,
            family: 2,
            direction: d as u16,
            lport: 40_000,
            rport: 443,
            tgid: 7,
            opened: u32::from(k != kind::SONDE_TCP_EV_FAIL),
            bytes_acked: 1_000,
            bytes_received: 2_000,
            srtt_us: 36_000,
            ..Default::default()
        };
        c.raddr[..4].copy_from_slice(&[127, 0, 0, 9]);
        sonde_tcp_event {
            sk: 1,
            conn: c,
            kind: k as u32,
            err,
            end_ns: 1_000 * MS + lived_ms * MS,
        }
    }

    #[test]
    fn which_events_qualify() {
        let off = TcpSpanRule {
            longer_than_ns: None,
        };
        let hour = TcpSpanRule {
            longer_than_ns: Some(3_600_000 * MS),
        };
        let close = kind::SONDE_TCP_EV_CLOSE;
        let fail = kind::SONDE_TCP_EV_FAIL;
        let out = dir::SONDE_TCP_DIR_OUTBOUND;
        for (name, rule, e, want) in [
            ("a clean close", off, event(close, out, 0, 10), false),
            ("a refused connect", off, event(fail, out, 111, 1), true),
            ("a reset", off, event(close, out, 104, 10), true),
            (
                "long-lived, rule off",
                off,
                event(close, out, 0, 7_200_000),
                false,
            ),
            (
                "long-lived, rule 1h",
                hour,
                event(close, out, 0, 7_200_000),
                true,
            ),
            (
                "short-lived, rule 1h",
                hour,
                event(close, out, 0, 1_000),
                false,
            ),
        ] {
            assert_eq!(qualifies(&rule, &e), want, "{name}");
        }
    }

    #[test]
    fn only_closes_of_opened_connections_are_duration_samples() {
        let out = dir::SONDE_TCP_DIR_OUTBOUND;
        assert_eq!(
            duration_sample(&event(kind::SONDE_TCP_EV_CLOSE, out, 104, 250)),
            Some(0.25)
        );
        assert_eq!(
            duration_sample(&event(kind::SONDE_TCP_EV_FAIL, out, 111, 3)),
            None
        );
        let mut adopted = event(kind::SONDE_TCP_EV_CLOSE, out, 104, 250);
        adopted.conn.start_ns = 0;
        assert_eq!(duration_sample(&adopted), None);
    }

    #[test]
    fn rtt_samples_are_the_kernels() {
        let out = dir::SONDE_TCP_DIR_OUTBOUND;
        assert_eq!(
            rtt_sample(&event(kind::SONDE_TCP_EV_CLOSE, out, 104, 250)),
            Some((false, 0.036))
        );
        let mut v6 = event(kind::SONDE_TCP_EV_CLOSE, out, 0, 250);
        v6.conn.family = AF_INET6;
        assert_eq!(rtt_sample(&v6), Some((true, 0.036)));
        assert_eq!(
            rtt_sample(&event(kind::SONDE_TCP_EV_FAIL, out, 111, 3)),
            None,
            "a failed connect adds no RTT sample"
        );
        let mut unmeasured = event(kind::SONDE_TCP_EV_CLOSE, out, 104, 250);
        unmeasured.conn.srtt_us = 0;
        assert_eq!(rtt_sample(&unmeasured), None);
        // Closed before it opened (a reset during the handshake, inbound): no sample; the
        // same with an unknown direction (adopted) is one.
        let mut unopened = event(kind::SONDE_TCP_EV_CLOSE, dir::SONDE_TCP_DIR_INBOUND, 104, 1);
        unopened.conn.opened = 0;
        assert_eq!(rtt_sample(&unopened), None);
        unopened.conn.direction = dir::SONDE_TCP_DIR_UNKNOWN as u16;
        assert_eq!(rtt_sample(&unopened), Some((false, 0.036)));
    }

    #[test]
    fn span_of_a_refused_connect_and_of_a_reset() {
        let clock = MonotonicToWall::from_offset(0);
        let ctx = SpanContext {
            trace_id: [1; 16],
            span_id: [2; 8],
        };
        let container = Arc::new(Container {
            id: "d".repeat(64),
            runtime: crate::cgroup::Runtime::Docker,
            k8s: None,
        });
        let s = span(
            &event(kind::SONDE_TCP_EV_FAIL, dir::SONDE_TCP_DIR_OUTBOUND, 111, 3),
            Some(container),
            &clock,
            ctx,
        );
        assert_eq!((s.name.as_str(), s.kind), ("TCP connect", SpanKind::Client));
        assert_eq!(s.end_unix_nano - s.start_unix_nano, 3 * MS);
        assert!(matches!(s.status, Status::Error { .. }));
        let get = |s: &Span, k| s.attributes.get(k).cloned();
        assert_eq!(get(&s, attr::ERROR_TYPE), Some(Value::from("refused")));
        assert_eq!(
            get(&s, attr::NETWORK_PEER_ADDRESS),
            Some(Value::from("127.0.0.9"))
        );
        assert_eq!(get(&s, attr::NETWORK_PEER_PORT), Some(Value::Int(443)));
        assert_eq!(
            get(&s, attr::CONTAINER_ID),
            Some(Value::from("d".repeat(64)))
        );
        assert_eq!(get(&s, attr::PROCESS_PID), Some(Value::Int(7)));

        let r = span(
            &event(
                kind::SONDE_TCP_EV_CLOSE,
                dir::SONDE_TCP_DIR_INBOUND,
                104,
                50,
            ),
            None,
            &clock,
            ctx,
        );
        assert_eq!(
            (r.name.as_str(), r.kind),
            ("TCP connection", SpanKind::Server)
        );
        assert_eq!(get(&r, attr::ERROR_TYPE), Some(Value::from("reset")));
        assert_eq!(get(&r, attr::SONDE_TCP_BYTES_SENT), Some(Value::Int(1_000)));
        assert_eq!(get(&r, attr::SONDE_TCP_SRTT), Some(Value::from("0.036000")));
        assert_eq!(get(&r, attr::CONTAINER_ID), None);
    }
}
