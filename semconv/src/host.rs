//! Host metrics read from /proc and /sys (metrics.md, "Fallback and system metrics").
//!
//! Two name sets: semantic conventions 1.44 (the default, the names the Collector's
//! hostmetrics receiver is moving to) and, in [`v0`], the hostmetrics receiver's legacy
//! names and attribute keys (`metric_names: hostmetrics_v0`). Metrics that other families
//! already define (`system.disk.*`, `process.disk.io` in [`crate::fileio`],
//! `system.network.connection.count` in [`crate::tcp`], `system.process.*` in
//! [`crate::metric`]) are reused from there, not spelled twice.

use crate::metric::def;
use crate::{Instrument, MetricDef};

use Instrument::{Counter, Gauge, UpDownCounter};

pub const SYSTEM_UPTIME: MetricDef = def(
    "system.uptime",
    Gauge,
    "s",
    "Time the system has been running.",
);
pub const SYSTEM_CPU_TIME: MetricDef = def(
    "system.cpu.time",
    Counter,
    "s",
    "Seconds each logical CPU spent in each mode.",
);
pub const SYSTEM_CPU_UTILIZATION: MetricDef = def(
    "system.cpu.utilization",
    Gauge,
    "1",
    "Share of CPU time spent in each mode over the last interval (0 to 1).",
);
pub const SYSTEM_CPU_LOAD_AVERAGE_1M: MetricDef = def(
    "system.cpu.load_average.1m",
    Gauge,
    "{thread}",
    "Average CPU load over 1 minute.",
);
pub const SYSTEM_CPU_LOAD_AVERAGE_5M: MetricDef = def(
    "system.cpu.load_average.5m",
    Gauge,
    "{thread}",
    "Average CPU load over 5 minutes.",
);
pub const SYSTEM_CPU_LOAD_AVERAGE_15M: MetricDef = def(
    "system.cpu.load_average.15m",
    Gauge,
    "{thread}",
    "Average CPU load over 15 minutes.",
);
pub const SYSTEM_MEMORY_USAGE: MetricDef = def(
    "system.memory.usage",
    UpDownCounter,
    "By",
    "Memory in use, by state; the states add up to the memory limit.",
);
pub const SYSTEM_MEMORY_LIMIT: MetricDef = def(
    "system.memory.limit",
    UpDownCounter,
    "By",
    "Total memory available to the system (MemTotal).",
);
pub const SYSTEM_MEMORY_UTILIZATION: MetricDef = def(
    "system.memory.utilization",
    Gauge,
    "1",
    "Share of memory in each state (0 to 1).",
);
pub const SYSTEM_PAGING_USAGE: MetricDef = def(
    "system.paging.usage",
    UpDownCounter,
    "By",
    "Swap space used and free, per swap device.",
);
pub const SYSTEM_PAGING_UTILIZATION: MetricDef = def(
    "system.paging.utilization",
    Gauge,
    "1",
    "Share of swap space used and free, per swap device (0 to 1).",
);
pub const SYSTEM_PAGING_FAULTS: MetricDef = def(
    "system.paging.faults",
    Counter,
    "{fault}",
    "Page faults, minor and major.",
);
pub const SYSTEM_PAGING_OPERATIONS: MetricDef = def(
    "system.paging.operations",
    Counter,
    "{operation}",
    "Pages swapped (major) and paged (minor) in and out.",
);
pub const SYSTEM_FILESYSTEM_USAGE: MetricDef = def(
    "system.filesystem.usage",
    UpDownCounter,
    "By",
    "File system space used, free and reserved for root, per mount.",
);
pub const SYSTEM_FILESYSTEM_UTILIZATION: MetricDef = def(
    "system.filesystem.utilization",
    Gauge,
    "1",
    "Share of file system space used, per mount (0 to 1).",
);
pub const SYSTEM_NETWORK_IO: MetricDef = def(
    "system.network.io",
    Counter,
    "By",
    "Bytes received and transmitted, per interface.",
);
pub const SYSTEM_NETWORK_PACKET_COUNT: MetricDef = def(
    "system.network.packet.count",
    Counter,
    "{packet}",
    "Packets received and transmitted, per interface.",
);
pub const SYSTEM_NETWORK_PACKET_DROPPED: MetricDef = def(
    "system.network.packet.dropped",
    Counter,
    "{packet}",
    "Packets dropped on receive and transmit, per interface.",
);
pub const SYSTEM_NETWORK_ERRORS: MetricDef = def(
    "system.network.errors",
    Counter,
    "{error}",
    "Receive and transmit errors, per interface.",
);
pub const PROCESS_CPU_TIME: MetricDef = def(
    "process.cpu.time",
    Counter,
    "s",
    "CPU seconds used by the process, by mode (top-N processes).",
);
pub const PROCESS_MEMORY_USAGE: MetricDef = def(
    "process.memory.usage",
    UpDownCounter,
    "By",
    "Resident memory of the process (top-N processes).",
);
pub const PROCESS_MEMORY_VIRTUAL: MetricDef = def(
    "process.memory.virtual",
    UpDownCounter,
    "By",
    "Virtual memory of the process (top-N processes).",
);
pub const PROCESS_THREAD_COUNT: MetricDef = def(
    "process.thread.count",
    UpDownCounter,
    "{thread}",
    "Threads of the process (top-N processes).",
);
pub const PROCESS_UNIX_FILE_DESCRIPTOR_COUNT: MetricDef = def(
    "process.unix.file_descriptor.count",
    UpDownCounter,
    "{file_descriptor}",
    "Open file descriptors of the process (top-N processes; only where readable).",
);

/// Every metric this module defines (semconv 1.44 names).
pub const ALL: &[MetricDef] = &[
    SYSTEM_UPTIME,
    SYSTEM_CPU_TIME,
    SYSTEM_CPU_UTILIZATION,
    SYSTEM_CPU_LOAD_AVERAGE_1M,
    SYSTEM_CPU_LOAD_AVERAGE_5M,
    SYSTEM_CPU_LOAD_AVERAGE_15M,
    SYSTEM_MEMORY_USAGE,
    SYSTEM_MEMORY_LIMIT,
    SYSTEM_MEMORY_UTILIZATION,
    SYSTEM_PAGING_USAGE,
    SYSTEM_PAGING_UTILIZATION,
    SYSTEM_PAGING_FAULTS,
    SYSTEM_PAGING_OPERATIONS,
    SYSTEM_FILESYSTEM_USAGE,
    SYSTEM_FILESYSTEM_UTILIZATION,
    SYSTEM_NETWORK_IO,
    SYSTEM_NETWORK_PACKET_COUNT,
    SYSTEM_NETWORK_PACKET_DROPPED,
    SYSTEM_NETWORK_ERRORS,
    PROCESS_CPU_TIME,
    PROCESS_MEMORY_USAGE,
    PROCESS_MEMORY_VIRTUAL,
    PROCESS_THREAD_COUNT,
    PROCESS_UNIX_FILE_DESCRIPTOR_COUNT,
];

/// Values of `cpu.mode` (semconv 1.44) for `system.cpu.*`.
pub mod cpu_mode {
    pub const USER: &str = "user";
    pub const SYSTEM: &str = "system";
    pub const NICE: &str = "nice";
    pub const IDLE: &str = "idle";
    pub const IOWAIT: &str = "iowait";
    /// Hard and soft interrupts together (semconv has one mode for both).
    pub const INTERRUPT: &str = "interrupt";
    pub const STEAL: &str = "steal";
}

/// Values of `system.memory.state`.
pub mod memory_state {
    pub const USED: &str = "used";
    pub const FREE: &str = "free";
    pub const BUFFERS: &str = "buffers";
    pub const CACHED: &str = "cached";
}

/// Values of `system.paging.state`.
pub mod paging_state {
    pub const USED: &str = "used";
    pub const FREE: &str = "free";
}

/// Values of `system.paging.fault.type`.
pub mod paging_fault_type {
    pub const MAJOR: &str = "major";
    pub const MINOR: &str = "minor";
}

/// Values of `system.paging.direction`.
pub mod paging_direction {
    pub const IN: &str = "in";
    pub const OUT: &str = "out";
}

/// Values of `system.filesystem.state`.
pub mod filesystem_state {
    pub const USED: &str = "used";
    pub const FREE: &str = "free";
    pub const RESERVED: &str = "reserved";
}

/// Values of `system.filesystem.mode`.
pub mod filesystem_mode {
    pub const RW: &str = "rw";
    pub const RO: &str = "ro";
}

/// The Collector hostmetrics receiver's legacy (v0) names and attributes, for
/// `metric_names: hostmetrics_v0`. Only metrics the two sets share are renamed; the
/// rest keep their semconv names in both modes.
pub mod v0 {
    use super::def;
    use crate::Instrument::{Counter, Gauge, UpDownCounter};
    use crate::MetricDef;

    pub const SYSTEM_CPU_TIME: MetricDef = def(
        "system.cpu.time",
        Counter,
        "s",
        "Total seconds each logical CPU spent on each mode.",
    );
    pub const SYSTEM_CPU_UTILIZATION: MetricDef = def(
        "system.cpu.utilization",
        Gauge,
        "1",
        "Difference in system.cpu.time since the last measurement per logical CPU, divided by the elapsed time (value in interval [0,1]).",
    );
    pub const SYSTEM_MEMORY_USAGE: MetricDef = def(
        "system.memory.usage",
        UpDownCounter,
        "By",
        "Bytes of memory in use.",
    );
    pub const SYSTEM_MEMORY_UTILIZATION: MetricDef = def(
        "system.memory.utilization",
        Gauge,
        "1",
        "Percentage of memory bytes in use.",
    );
    pub const SYSTEM_PAGING_USAGE: MetricDef = def(
        "system.paging.usage",
        UpDownCounter,
        "By",
        "Swap (unix) or pagefile (windows) usage.",
    );
    pub const SYSTEM_PAGING_UTILIZATION: MetricDef = def(
        "system.paging.utilization",
        Gauge,
        "1",
        "Swap (unix) or pagefile (windows) utilization.",
    );
    pub const SYSTEM_PAGING_FAULTS: MetricDef = def(
        "system.paging.faults",
        Counter,
        "{faults}",
        "The number of page faults.",
    );
    pub const SYSTEM_PAGING_OPERATIONS: MetricDef = def(
        "system.paging.operations",
        Counter,
        "{operations}",
        "The number of paging operations.",
    );
    pub const SYSTEM_DISK_IO: MetricDef =
        def("system.disk.io", Counter, "By", "Disk bytes transferred.");
    pub const SYSTEM_DISK_OPERATIONS: MetricDef = def(
        "system.disk.operations",
        Counter,
        "{operations}",
        "Disk operations count.",
    );
    pub const SYSTEM_DISK_OPERATION_TIME: MetricDef = def(
        "system.disk.operation_time",
        Counter,
        "s",
        "Time spent in disk operations.",
    );
    pub const SYSTEM_FILESYSTEM_USAGE: MetricDef = def(
        "system.filesystem.usage",
        UpDownCounter,
        "By",
        "Filesystem bytes used.",
    );
    pub const SYSTEM_FILESYSTEM_UTILIZATION: MetricDef = def(
        "system.filesystem.utilization",
        Gauge,
        "1",
        "Fraction of filesystem bytes used.",
    );
    pub const SYSTEM_NETWORK_IO: MetricDef = def(
        "system.network.io",
        Counter,
        "By",
        "The number of bytes transmitted and received.",
    );
    pub const SYSTEM_NETWORK_PACKETS: MetricDef = def(
        "system.network.packets",
        Counter,
        "{packets}",
        "The number of packets transferred.",
    );
    pub const SYSTEM_NETWORK_DROPPED: MetricDef = def(
        "system.network.dropped",
        Counter,
        "{packets}",
        "The number of packets dropped.",
    );
    pub const SYSTEM_NETWORK_ERRORS: MetricDef = def(
        "system.network.errors",
        Counter,
        "{errors}",
        "The number of errors encountered.",
    );
    pub const SYSTEM_NETWORK_CONNECTIONS: MetricDef = def(
        "system.network.connections",
        UpDownCounter,
        "{connections}",
        "The number of connections.",
    );
    pub const SYSTEM_PROCESSES_COUNT: MetricDef = def(
        "system.processes.count",
        UpDownCounter,
        "{processes}",
        "Total number of processes in each state.",
    );
    pub const SYSTEM_PROCESSES_CREATED: MetricDef = def(
        "system.processes.created",
        Counter,
        "{processes}",
        "Total number of created processes.",
    );
    pub const PROCESS_CPU_TIME: MetricDef = def(
        "process.cpu.time",
        Counter,
        "s",
        "Total CPU seconds broken down by different states.",
    );
    pub const PROCESS_DISK_IO: MetricDef =
        def("process.disk.io", Counter, "By", "Disk bytes transferred.");
    pub const PROCESS_THREADS: MetricDef = def(
        "process.threads",
        UpDownCounter,
        "{threads}",
        "Process threads count.",
    );
    pub const PROCESS_OPEN_FILE_DESCRIPTORS: MetricDef = def(
        "process.open_file_descriptors",
        UpDownCounter,
        "{count}",
        "Number of file descriptors in use by the process.",
    );

    /// v0 attribute keys.
    pub mod attr {
        pub const CPU: &str = "cpu";
        pub const STATE: &str = "state";
        pub const DEVICE: &str = "device";
        pub const DIRECTION: &str = "direction";
        pub const TYPE: &str = "type";
        pub const MODE: &str = "mode";
        pub const MOUNTPOINT: &str = "mountpoint";
        pub const PROTOCOL: &str = "protocol";
        pub const STATUS: &str = "status";
    }

    /// v0 `state` values of `system.cpu.*` (`wait` is iowait; `interrupt` hard IRQs only).
    pub mod cpu_state {
        pub const USER: &str = "user";
        pub const SYSTEM: &str = "system";
        pub const NICE: &str = "nice";
        pub const IDLE: &str = "idle";
        pub const WAIT: &str = "wait";
        pub const INTERRUPT: &str = "interrupt";
        pub const SOFTIRQ: &str = "softirq";
        pub const STEAL: &str = "steal";
    }

    /// v0 `state` values of `system.memory.*`.
    pub mod memory_state {
        pub const USED: &str = "used";
        pub const FREE: &str = "free";
        pub const BUFFERED: &str = "buffered";
        pub const CACHED: &str = "cached";
        pub const SLAB_RECLAIMABLE: &str = "slab_reclaimable";
        pub const SLAB_UNRECLAIMABLE: &str = "slab_unreclaimable";
    }

    /// v0 `direction` values.
    pub mod direction {
        pub const READ: &str = "read";
        pub const WRITE: &str = "write";
        pub const RECEIVE: &str = "receive";
        pub const TRANSMIT: &str = "transmit";
        pub const PAGE_IN: &str = "page_in";
        pub const PAGE_OUT: &str = "page_out";
    }

    /// Every v0 metric (what `metric_names: hostmetrics_v0` renames; the rest keep their
    /// semconv names in both modes).
    pub const ALL: &[MetricDef] = &[
        SYSTEM_CPU_TIME,
        SYSTEM_CPU_UTILIZATION,
        SYSTEM_MEMORY_USAGE,
        SYSTEM_MEMORY_UTILIZATION,
        SYSTEM_PAGING_USAGE,
        SYSTEM_PAGING_UTILIZATION,
        SYSTEM_PAGING_FAULTS,
        SYSTEM_PAGING_OPERATIONS,
        SYSTEM_DISK_IO,
        SYSTEM_DISK_OPERATIONS,
        SYSTEM_DISK_OPERATION_TIME,
        SYSTEM_FILESYSTEM_USAGE,
        SYSTEM_FILESYSTEM_UTILIZATION,
        SYSTEM_NETWORK_IO,
        SYSTEM_NETWORK_PACKETS,
        SYSTEM_NETWORK_DROPPED,
        SYSTEM_NETWORK_ERRORS,
        SYSTEM_NETWORK_CONNECTIONS,
        SYSTEM_PROCESSES_COUNT,
        SYSTEM_PROCESSES_CREATED,
        PROCESS_CPU_TIME,
        PROCESS_DISK_IO,
        PROCESS_THREADS,
        PROCESS_OPEN_FILE_DESCRIPTORS,
    ];

    /// v0 `protocol` value of `system.network.connections`.
    pub const PROTOCOL_TCP: &str = "tcp";

    /// v0 `state` values of `system.network.connections` (the kernel's names).
    pub mod tcp_state {
        pub const ESTABLISHED: &str = "ESTABLISHED";
        pub const SYN_SENT: &str = "SYN_SENT";
        pub const SYN_RECV: &str = "SYN_RECV";
        pub const FIN_WAIT1: &str = "FIN_WAIT1";
        pub const FIN_WAIT2: &str = "FIN_WAIT2";
        pub const TIME_WAIT: &str = "TIME_WAIT";
        pub const CLOSE: &str = "CLOSE";
        pub const CLOSE_WAIT: &str = "CLOSE_WAIT";
        pub const LAST_ACK: &str = "LAST_ACK";
        pub const LISTEN: &str = "LISTEN";
        pub const CLOSING: &str = "CLOSING";
    }

    /// v0 `status` values of `system.processes.count`.
    pub mod process_status {
        pub const RUNNING: &str = "running";
        pub const SLEEPING: &str = "sleeping";
        pub const BLOCKED: &str = "blocked";
        pub const STOPPED: &str = "stopped";
        pub const ZOMBIES: &str = "zombies";
        pub const IDLE: &str = "idle";
        pub const PAGING: &str = "paging";
        pub const UNKNOWN: &str = "unknown";
    }

    /// v0 `state` values of `process.cpu.time`.
    pub mod process_cpu_state {
        pub const USER: &str = "user";
        pub const SYSTEM: &str = "system";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_unique_and_not_defined_elsewhere() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} is defined twice", m.name);
            for other in crate::metric::ALL.iter().chain(crate::fileio::ALL) {
                assert_ne!(m.name, other.name, "{} is already defined", m.name);
            }
        }
    }
}
