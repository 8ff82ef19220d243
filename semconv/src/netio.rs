//! Network I/O per process and per container (metrics.md, "Per-process and per-container
//! resources"): semconv 1.44's `process.network.io` and `container.network.io`, from the
//! netio probe (sock:sock_send_length / sock:sock_recv_length, TCP and UDP).

use crate::{Instrument, MetricDef};

pub const PROCESS_NETWORK_IO: MetricDef = MetricDef {
    name: "process.network.io",
    instrument: Instrument::Counter,
    unit: "By",
    description: "Bytes processes sent and received on TCP and UDP sockets (what send and \
                  receive calls returned), by executable name, container and direction.",
};
pub const CONTAINER_NETWORK_IO: MetricDef = MetricDef {
    name: "container.network.io",
    instrument: Instrument::Counter,
    unit: "By",
    description: "Bytes the container's processes sent and received on TCP and UDP sockets, \
                  by direction.",
};

/// Every metric of this family.
pub const ALL: &[MetricDef] = &[PROCESS_NETWORK_IO, CONTAINER_NETWORK_IO];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_io_names_and_units_are_semconv_1_44() {
        // From semconv-1.44-metrics.json: both counters in By with network.io.direction.
        let got: Vec<_> = ALL.iter().map(|m| (m.name, m.instrument, m.unit)).collect();
        assert_eq!(
            got,
            [
                ("process.network.io", Instrument::Counter, "By"),
                ("container.network.io", Instrument::Counter, "By"),
            ]
        );
        for m in ALL {
            assert!(!crate::metric::ALL.iter().any(|o| o.name == m.name));
            assert!(!crate::host::ALL.iter().any(|o| o.name == m.name));
        }
    }
}
