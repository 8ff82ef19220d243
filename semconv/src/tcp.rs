//! TCP metrics (metrics.md, "TCP").
//!
//! Semconv 1.44 defines `system.network.connection.count`; it has no metric for
//! connection lifecycle, RTT, retransmits or resets, hence `sonde.tcp.*`.

use crate::{Instrument, MetricDef};

pub const SYSTEM_NETWORK_CONNECTION_COUNT: MetricDef = MetricDef {
    name: "system.network.connection.count",
    instrument: Instrument::UpDownCounter,
    unit: "{connection}",
    description: "TCP connections by state, seeded from the kernel's socket table and kept by state transitions.",
};
pub const SONDE_TCP_CONNECTION_OPENED: MetricDef = MetricDef {
    name: "sonde.tcp.connection.opened",
    instrument: Instrument::Counter,
    unit: "{connection}",
    description:
        "TCP connections that reached ESTABLISHED (outbound from connect, inbound from accept).",
};
pub const SONDE_TCP_CONNECTION_CLOSED: MetricDef = MetricDef {
    name: "sonde.tcp.connection.closed",
    instrument: Instrument::Counter,
    unit: "{connection}",
    description: "Opened TCP connections that reached CLOSE.",
};
pub const SONDE_TCP_CONNECTION_FAILED: MetricDef = MetricDef {
    name: "sonde.tcp.connection.failed",
    instrument: Instrument::Counter,
    unit: "{connection}",
    description: "Outbound connects that went from SYN_SENT to CLOSE, by error.",
};
pub const SONDE_TCP_CONNECTION_DURATION: MetricDef = MetricDef {
    name: "sonde.tcp.connection.duration",
    instrument: Instrument::Histogram,
    unit: "s",
    description: "Lifetime of opened TCP connections, from the first SYN to CLOSE.",
};
pub const SONDE_TCP_IO: MetricDef = MetricDef {
    name: "sonde.tcp.io",
    instrument: Instrument::Counter,
    unit: "By",
    description: "TCP payload bytes acknowledged by the peer (transmit) and received (receive), counted while connections are open.",
};
pub const SONDE_TCP_RTT: MetricDef = MetricDef {
    name: "sonde.tcp.rtt",
    instrument: Instrument::Histogram,
    unit: "s",
    description: "Smoothed round-trip time of TCP connections: one sample per open connection per interval and one at close.",
};
pub const SONDE_TCP_RETRANSMITS: MetricDef = MetricDef {
    name: "sonde.tcp.retransmits",
    instrument: Instrument::Counter,
    unit: "{segment}",
    description: "Retransmitted TCP segments (the socket's total_retrans).",
};
pub const SONDE_TCP_RESETS: MetricDef = MetricDef {
    name: "sonde.tcp.resets",
    instrument: Instrument::Counter,
    unit: "{segment}",
    description: "TCP resets sent (transmit) and received (receive).",
};
pub const SONDE_TCP_STATE_CORRECTIONS: MetricDef = MetricDef {
    name: "sonde.tcp.state.corrections",
    instrument: Instrument::Counter,
    unit: "{connection}",
    description: "Connections by which the per-state counts had drifted from the kernel's \
                  socket table (netlink sock_diag) when reconciled: transitions the probe missed.",
};

/// Every metric of this family.
pub const ALL: &[MetricDef] = &[
    SYSTEM_NETWORK_CONNECTION_COUNT,
    SONDE_TCP_CONNECTION_OPENED,
    SONDE_TCP_CONNECTION_CLOSED,
    SONDE_TCP_CONNECTION_FAILED,
    SONDE_TCP_CONNECTION_DURATION,
    SONDE_TCP_IO,
    SONDE_TCP_RTT,
    SONDE_TCP_RETRANSMITS,
    SONDE_TCP_RESETS,
    SONDE_TCP_STATE_CORRECTIONS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_pins_tcp_names_units_and_instruments() {
        let got: Vec<(&str, &str, Instrument)> =
            ALL.iter().map(|m| (m.name, m.unit, m.instrument)).collect();
        assert_eq!(
            got,
            [
                (
                    "system.network.connection.count",
                    "{connection}",
                    Instrument::UpDownCounter
                ),
                (
                    "sonde.tcp.connection.opened",
                    "{connection}",
                    Instrument::Counter
                ),
                (
                    "sonde.tcp.connection.closed",
                    "{connection}",
                    Instrument::Counter
                ),
                (
                    "sonde.tcp.connection.failed",
                    "{connection}",
                    Instrument::Counter
                ),
                ("sonde.tcp.connection.duration", "s", Instrument::Histogram),
                ("sonde.tcp.io", "By", Instrument::Counter),
                ("sonde.tcp.rtt", "s", Instrument::Histogram),
                ("sonde.tcp.retransmits", "{segment}", Instrument::Counter),
                ("sonde.tcp.resets", "{segment}", Instrument::Counter),
                (
                    "sonde.tcp.state.corrections",
                    "{connection}",
                    Instrument::Counter
                ),
            ]
        );
        for m in ALL {
            assert!(
                !crate::metric::ALL.iter().any(|o| o.name == m.name),
                "{} is also defined in metric.rs",
                m.name
            );
        }
    }
}
