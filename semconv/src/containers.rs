//! Per-container resources from cgroup statistics (metrics.md, "Per-process and
//! per-container resources"): semconv 1.44's `container.*` names and units, each point
//! carrying `container.id` (one Sonde reports for many containers, so it is a datapoint
//! attribute, not a resource attribute). `container.network.io` comes from the netio
//! probe and is spelled in `netio.rs`.

use crate::{Instrument, MetricDef};

pub const CONTAINER_CPU_TIME: MetricDef = MetricDef {
    name: "container.cpu.time",
    instrument: Instrument::Counter,
    unit: "s",
    description: "CPU time used by the container's cgroup, by cpu.mode (user, system).",
};
pub const CONTAINER_MEMORY_USAGE: MetricDef = MetricDef {
    name: "container.memory.usage",
    instrument: Instrument::UpDownCounter,
    unit: "By",
    description: "Memory charged to the container's cgroup, page cache included.",
};
pub const CONTAINER_MEMORY_WORKING_SET: MetricDef = MetricDef {
    name: "container.memory.working_set",
    instrument: Instrument::UpDownCounter,
    unit: "By",
    description: "Memory usage minus inactive file pages: what the kernel cannot reclaim easily.",
};
pub const CONTAINER_DISK_IO: MetricDef = MetricDef {
    name: "container.disk.io",
    instrument: Instrument::Counter,
    unit: "By",
    description: "Bytes the container's cgroup read from and wrote to block devices, by device.",
};

/// Every metric of this family.
pub const ALL: &[MetricDef] = &[
    CONTAINER_CPU_TIME,
    CONTAINER_MEMORY_USAGE,
    CONTAINER_MEMORY_WORKING_SET,
    CONTAINER_DISK_IO,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_and_units_are_semconv_1_44() {
        // From semconv-1.44-metrics.json: name -> (instrument, unit).
        let want = [
            ("container.cpu.time", Instrument::Counter, "s"),
            ("container.memory.usage", Instrument::UpDownCounter, "By"),
            (
                "container.memory.working_set",
                Instrument::UpDownCounter,
                "By",
            ),
            ("container.disk.io", Instrument::Counter, "By"),
        ];
        let got: Vec<_> = ALL.iter().map(|m| (m.name, m.instrument, m.unit)).collect();
        assert_eq!(got, want);
        for m in ALL {
            assert!(!crate::metric::ALL.iter().any(|o| o.name == m.name));
        }
    }
}
