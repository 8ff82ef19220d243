//! TCP metrics from the tcp collector's counts and ledger. Pure: no I/O.
//!
//! Histograms keep the kernel's buckets exactly (metrics.md rule 6): the grid of
//! `sonde_probes::grid`, carried as the model's exponential histogram.

use std::collections::BTreeMap;

use sonde_semconv::attr::{
    self, connection_direction, connection_state, network_io_direction, network_transport,
    network_type, tcp_error,
};
use sonde_semconv::tcp as m;

use crate::aggregate::bounded::BoundedCounter;
use crate::family::tcp::collect::{Direction, Hist, PortAttr, TcpCounts, TcpLedger, Who};
use crate::mapping::CounterPoints;
use crate::model::{
    numbers, Attributes, Exemplar, ExpHistogram, Metric, Number, Point, PointValue,
};

fn int(v: u64) -> Number {
    Number::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The semconv value of a kernel TCP state number (include/net/tcp_states.h); `None`
/// for states not exported (CLOSE, NEW_SYN_RECV and anything unknown).
pub fn state_name(state: usize) -> Option<&'static str> {
    Some(match state {
        1 => connection_state::ESTABLISHED,
        2 => connection_state::SYN_SENT,
        3 => connection_state::SYN_RECEIVED,
        4 => connection_state::FIN_WAIT_1,
        5 => connection_state::FIN_WAIT_2,
        6 => connection_state::TIME_WAIT,
        8 => connection_state::CLOSE_WAIT,
        9 => connection_state::LAST_ACK,
        10 => connection_state::LISTEN,
        11 => connection_state::CLOSING,
        _ => return None,
    })
}

/// `error.type` of a failed connect from the socket's errno.
pub fn error_type(errno: i32) -> &'static str {
    match errno {
        111 => tcp_error::REFUSED,           // ECONNREFUSED
        110 => tcp_error::TIMEOUT,           // ETIMEDOUT
        104 => tcp_error::RESET,             // ECONNRESET
        101 | 113 => tcp_error::UNREACHABLE, // ENETUNREACH, EHOSTUNREACH
        _ => tcp_error::OTHER,
    }
}

pub(super) fn net_type(v6: bool) -> &'static str {
    if v6 {
        network_type::IPV6
    } else {
        network_type::IPV4
    }
}

fn who_attrs(mut a: Attributes, w: &Who) -> Attributes {
    if let Some(p) = &w.process {
        crate::mapping::process::insert(&mut a, p);
    }
    a.insert(attr::NETWORK_PEER_ADDRESS, w.peer.to_string());
    match w.port {
        PortAttr::Peer(p) => a.insert(attr::NETWORK_PEER_PORT, i64::from(p)),
        PortAttr::Server(p) => a.insert(attr::SERVER_PORT, i64::from(p)),
    }
    a
}

/// Points of one bounded counter under common attributes, plus its overflow series.
fn bounded_points(base: &Attributes, c: &BoundedCounter<Who>, out: &mut CounterPoints) {
    let (series, overflow) = c.snapshot();
    for p in series {
        out.add(who_attrs(base.clone(), &p.key), p.value, p.start_unix_nano);
    }
    for p in overflow {
        out.add(
            base.clone().with(attr::OTEL_METRIC_OVERFLOW, true),
            p.value,
            p.start_unix_nano,
        );
    }
}

fn histogram(h: &Hist) -> ExpHistogram {
    crate::mapping::grid_histogram(&h.slots, h.sum_ns)
}

pub(super) fn direction_name(d: Direction) -> Option<&'static str> {
    match d {
        Direction::Inbound => Some(connection_direction::INBOUND),
        Direction::Outbound => Some(connection_direction::OUTBOUND),
        Direction::Unknown => None,
    }
}

fn lifecycle(by: &BTreeMap<(Direction, bool), BoundedCounter<Who>>) -> CounterPoints {
    let mut out = CounterPoints::default();
    for ((d, v6), c) in by {
        let mut base = Attributes::new().with(attr::NETWORK_TYPE, net_type(*v6));
        if let Some(name) = direction_name(*d) {
            base.insert(attr::SONDE_CONNECTION_DIRECTION, name);
        }
        bounded_points(&base, c, &mut out);
    }
    out
}

/// Every TCP metric. `time_wait` is the TIME_WAIT count from /proc/net/sockstat.
pub fn metrics(c: &TcpCounts, l: &TcpLedger, time_wait: Option<i64>, start: u64) -> Vec<Metric> {
    let mut count: Vec<(Attributes, Number)> = c
        .states
        .iter()
        .filter_map(|((v6, s), n)| {
            // TIME_WAIT is never reached by a transition: it comes from sockstat.
            let name = state_name(*s).filter(|_| *s != 6)?;
            Some((
                Attributes::new()
                    .with(attr::NETWORK_TRANSPORT, network_transport::TCP)
                    .with(attr::NETWORK_CONNECTION_STATE, name)
                    .with(attr::NETWORK_TYPE, net_type(*v6)),
                Number::Int(*n),
            ))
        })
        .collect();
    if let Some(tw) = time_wait {
        count.push((
            Attributes::new()
                .with(attr::NETWORK_TRANSPORT, network_transport::TCP)
                .with(attr::NETWORK_CONNECTION_STATE, connection_state::TIME_WAIT),
            Number::Int(tw),
        ));
    }

    let mut failed = CounterPoints::default();
    for (errno, counter) in &l.failed {
        let base = Attributes::new().with(attr::ERROR_TYPE, error_type(*errno));
        bounded_points(&base, counter, &mut failed);
    }
    let mut io = CounterPoints::default();
    bounded_points(
        &Attributes::new().with(attr::NETWORK_IO_DIRECTION, network_io_direction::TRANSMIT),
        &l.transmitted,
        &mut io,
    );
    bounded_points(
        &Attributes::new().with(attr::NETWORK_IO_DIRECTION, network_io_direction::RECEIVE),
        &l.received,
        &mut io,
    );
    let mut retrans = CounterPoints::default();
    bounded_points(&Attributes::new(), &l.retransmits, &mut retrans);

    let hist_metric = |def, points: Vec<(Attributes, &Hist, Vec<Exemplar>)>| Metric {
        def,
        points: points
            .into_iter()
            .map(|(attributes, h, exemplars)| Point {
                attributes,
                value: PointValue::Exponential(histogram(h).with_exemplars(exemplars)),
                start_unix_nano: start,
            })
            .collect(),
    };
    // RTT: every connection at close (kernel) and every open one once per interval.
    let rtt_v4 = c.rtt_v4.plus(&l.rtt_live_v4);
    let rtt_v6 = c.rtt_v6.plus(&l.rtt_live_v6);
    let dir = |d: &'static str| Attributes::new().with(attr::SONDE_CONNECTION_DIRECTION, d);
    let nt = |v6: bool| Attributes::new().with(attr::NETWORK_TYPE, net_type(v6));
    let io_dir = |d: &'static str| Attributes::new().with(attr::NETWORK_IO_DIRECTION, d);
    vec![
        numbers(m::SYSTEM_NETWORK_CONNECTION_COUNT, start, count),
        lifecycle(&l.opened).metric(m::SONDE_TCP_CONNECTION_OPENED),
        lifecycle(&l.closed).metric(m::SONDE_TCP_CONNECTION_CLOSED),
        failed.metric(m::SONDE_TCP_CONNECTION_FAILED),
        hist_metric(
            m::SONDE_TCP_CONNECTION_DURATION,
            vec![
                (
                    dir(connection_direction::INBOUND),
                    &c.duration_in,
                    l.duration_exemplars_in.to_vec(),
                ),
                (
                    dir(connection_direction::OUTBOUND),
                    &c.duration_out,
                    l.duration_exemplars_out.to_vec(),
                ),
            ],
        ),
        io.metric(m::SONDE_TCP_IO),
        hist_metric(
            m::SONDE_TCP_RTT,
            vec![
                (nt(false), &rtt_v4, l.rtt_exemplars_v4.to_vec()),
                (nt(true), &rtt_v6, l.rtt_exemplars_v6.to_vec()),
            ],
        ),
        retrans.metric(m::SONDE_TCP_RETRANSMITS),
        numbers(
            m::SONDE_TCP_RESETS,
            start,
            [
                (io_dir(network_io_direction::TRANSMIT), int(c.rst_sent)),
                (io_dir(network_io_direction::RECEIVE), int(c.rst_received)),
            ],
        ),
        numbers(
            m::SONDE_TCP_STATE_CORRECTIONS,
            start,
            [(Attributes::new(), int(c.corrections))],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use sonde_probes::abi::{
        sonde_tcp_conn, sonde_tcp_direction as dir, sonde_tcp_event, sonde_tcp_event_kind as kind,
    };

    #[test]
    fn kernel_states_map_to_semconv_values() {
        let got: Vec<_> = (0..16).map(state_name).collect();
        assert_eq!(got[1], Some("established"));
        assert_eq!(got[2], Some("syn_sent"));
        assert_eq!(got[3], Some("syn_received"));
        assert_eq!(got[4], Some("fin_wait_1"));
        assert_eq!(got[5], Some("fin_wait_2"));
        assert_eq!(got[6], Some("time_wait"));
        assert_eq!(got[7], None, "CLOSE sockets are not connections");
        assert_eq!(got[8], Some("close_wait"));
        assert_eq!(got[9], Some("last_ack"));
        assert_eq!(got[10], Some("listen"));
        assert_eq!(got[11], Some("closing"));
        assert_eq!(got[12], None, "request sockets have no transitions");
    }

    #[test]
    fn errnos_map_to_error_types() {
        assert_eq!(error_type(111), "refused");
        assert_eq!(error_type(110), "timeout");
        assert_eq!(error_type(104), "reset");
        assert_eq!(error_type(113), "unreachable");
        assert_eq!(error_type(0), "_OTHER");
    }

    fn event(k: kind, d: dir, addr: [u8; 4], err: i32) -> sonde_tcp_event {
        let mut c = sonde_tcp_conn {
            family: 2,
            direction: d as u16,
            lport: 8080,
            rport: 5555,
            tgid: 9,
            opened: 1,
            ..Default::default()
        };
        c.raddr[..4].copy_from_slice(&addr);
        sonde_tcp_event {
            sk: 1,
            conn: c,
            kind: k as u32,
            err,
            ..Default::default()
        }
    }

    #[test]
    fn metrics_carry_contract_names_direction_peer_and_overflow() {
        let mut l = TcpLedger::new(
            crate::aggregate::bounded::SeriesPolicy {
                limit: 1,
                ttl: std::time::Duration::ZERO,
                start_unix_nano: 0,
            },
            crate::cgroup::Attribution::default(),
        );
        // Two established connections found by a walk: opened, the second in overflow.
        for (sk, peer) in [(1, [10, 0, 0, 1]), (2, [10, 0, 0, 2])] {
            let e = event(
                kind::SONDE_TCP_EV_CLOSE,
                dir::SONDE_TCP_DIR_INBOUND,
                peer,
                0,
            );
            l.live(sk, &e.conn);
        }
        l.event(&event(
            kind::SONDE_TCP_EV_FAIL,
            dir::SONDE_TCP_DIR_OUTBOUND,
            [10, 0, 0, 3],
            111,
        ));
        let counts = TcpCounts {
            rst_received: 1,
            states: vec![((false, 1), 3), ((true, 10), 1), ((false, 7), 5)],
            ..Default::default()
        };
        let ms = metrics(&counts, &l, Some(4), 0);
        let names: Vec<&str> = ms.iter().map(|m| m.def.name).collect();
        assert_eq!(
            names,
            [
                "system.network.connection.count",
                "sonde.tcp.connection.opened",
                "sonde.tcp.connection.closed",
                "sonde.tcp.connection.failed",
                "sonde.tcp.connection.duration",
                "sonde.tcp.io",
                "sonde.tcp.rtt",
                "sonde.tcp.retransmits",
                "sonde.tcp.resets",
                "sonde.tcp.state.corrections",
            ]
        );
        assert_eq!(
            ms[0].points.len(),
            3,
            "two states and time_wait; CLOSE dropped"
        );
        let opened = &ms[1].points;
        assert_eq!(opened.len(), 2);
        let first = &opened[0].attributes;
        assert_eq!(first.get("server.port"), Some(&Value::Int(8080)));
        assert_eq!(first.get("network.peer.port"), None);
        assert_eq!(
            first.get("network.peer.address"),
            Some(&Value::Str("10.0.0.1".into()))
        );
        assert_eq!(
            first.get("sonde.connection.direction"),
            Some(&Value::Str("inbound".into()))
        );
        assert_eq!(
            opened[1].attributes.get("otel.metric.overflow"),
            Some(&Value::Bool(true))
        );
        let failed = &ms[3].points[0].attributes;
        assert_eq!(
            failed.get("error.type"),
            Some(&Value::Str("refused".into()))
        );
        assert_eq!(failed.get("network.peer.port"), Some(&Value::Int(5555)));
        match &ms[4].points[0].value {
            PointValue::Exponential(h) => assert_eq!(h.scale, 2),
            other => panic!("histogram expected, got {other:?}"),
        }
    }
}
