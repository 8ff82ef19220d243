//! File and block I/O metrics (metrics.md, "File and block I/O").
//!
//! Semconv 1.44 defines `system.disk.*` and `process.disk.io`; it has no metric for
//! file-system-level I/O, hence `sonde.file.*` and `sonde.disk.io.duration`.

use crate::{Instrument, MetricDef};

pub const SONDE_FILE_IO_DURATION: MetricDef = MetricDef {
    name: "sonde.file.io.duration",
    instrument: Instrument::Histogram,
    unit: "s",
    description: "Latency of read/write syscalls on regular files, by file system and direction.",
};
pub const SONDE_FILE_IO: MetricDef = MetricDef {
    name: "sonde.file.io",
    instrument: Instrument::Counter,
    unit: "By",
    description: "Bytes read and written by syscalls on regular files, by file system, direction and process.",
};
pub const SONDE_FILE_OPERATIONS: MetricDef = MetricDef {
    name: "sonde.file.operations",
    instrument: Instrument::Counter,
    unit: "{operation}",
    description: "Completed read/write syscalls on regular files, by file system and direction.",
};
pub const SYSTEM_DISK_IO: MetricDef = MetricDef {
    name: "system.disk.io",
    instrument: Instrument::Counter,
    unit: "By",
    description: "Bytes transferred by block devices.",
};
pub const SYSTEM_DISK_OPERATIONS: MetricDef = MetricDef {
    name: "system.disk.operations",
    instrument: Instrument::Counter,
    unit: "{operation}",
    description: "Completed block device requests.",
};
pub const SYSTEM_DISK_OPERATION_TIME: MetricDef = MetricDef {
    name: "system.disk.operation_time",
    instrument: Instrument::Counter,
    unit: "s",
    description: "Sum of the time block device requests took, from issue to completion.",
};
pub const SONDE_DISK_IO_DURATION: MetricDef = MetricDef {
    name: "sonde.disk.io.duration",
    instrument: Instrument::Histogram,
    unit: "s",
    description: "Latency of block device requests, from issue to completion.",
};
pub const PROCESS_DISK_IO: MetricDef = MetricDef {
    name: "process.disk.io",
    instrument: Instrument::Counter,
    unit: "By",
    description: "Block device bytes issued by each process (page-cache writeback is issued by kernel threads and attributed to none).",
};

/// Every metric of this family.
pub const ALL: &[MetricDef] = &[
    SONDE_FILE_IO_DURATION,
    SONDE_FILE_IO,
    SONDE_FILE_OPERATIONS,
    SYSTEM_DISK_IO,
    SYSTEM_DISK_OPERATIONS,
    SYSTEM_DISK_OPERATION_TIME,
    SONDE_DISK_IO_DURATION,
    PROCESS_DISK_IO,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_pins_fileio_names_units_and_instruments() {
        let got: Vec<(&str, &str, Instrument)> =
            ALL.iter().map(|m| (m.name, m.unit, m.instrument)).collect();
        assert_eq!(
            got,
            [
                ("sonde.file.io.duration", "s", Instrument::Histogram),
                ("sonde.file.io", "By", Instrument::Counter),
                ("sonde.file.operations", "{operation}", Instrument::Counter),
                ("system.disk.io", "By", Instrument::Counter),
                ("system.disk.operations", "{operation}", Instrument::Counter),
                ("system.disk.operation_time", "s", Instrument::Counter),
                ("sonde.disk.io.duration", "s", Instrument::Histogram),
                ("process.disk.io", "By", Instrument::Counter),
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
