//! The metric contract: name, instrument, unit and description of each metric.

use crate::{Instrument, MetricDef};

pub(crate) const fn def(
    name: &'static str,
    instrument: Instrument,
    unit: &'static str,
    description: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        instrument,
        unit,
        description,
    }
}

// ---- process lifecycle -------------------------------------------------------------

pub const SYSTEM_PROCESS_CREATED: MetricDef = def(
    "system.process.created",
    Instrument::Counter,
    "{process}",
    "Processes created (fork/clone of a new process, not a thread).",
);
pub const SONDE_PROCESS_EXEC: MetricDef = def(
    "sonde.process.exec",
    Instrument::Counter,
    "{exec}",
    "Successful execs, by executable name.",
);
pub const SONDE_PROCESS_EXIT: MetricDef = def(
    "sonde.process.exit",
    Instrument::Counter,
    "{process}",
    "Process exits, by how they ended.",
);
pub const SONDE_PROCESS_EXITED_CPU_TIME: MetricDef = def(
    "sonde.process.exited.cpu.time",
    Instrument::Counter,
    "s",
    "CPU time of threads that ended, each counted by the kernel at its exit (a process's \
     whole CPU once its last thread has ended, even if no /proc reading saw it), by \
     executable name and cpu.mode.",
);
pub const SONDE_PROCESS_OOM_KILLS: MetricDef = def(
    "sonde.process.oom_kills",
    Instrument::Counter,
    "{process}",
    "Processes chosen by the kernel's OOM killer (oom:mark_victim), by executable name.",
);
pub const SYSTEM_PROCESS_COUNT: MetricDef = def(
    "system.process.count",
    Instrument::UpDownCounter,
    "{process}",
    "Processes on the host, by state.",
);

// ---- Sonde's own telemetry ------------------------------------------------------------

pub const SONDE_PROBE_EVENTS_LOST: MetricDef = def(
    "sonde.probe.events.lost",
    Instrument::Counter,
    "{event}",
    "Events a probe could not deliver, by reason.",
);
pub const SONDE_PROBE_MAP_MEMORY: MetricDef = def(
    "sonde.probe.map.memory",
    Instrument::Gauge,
    "By",
    "Kernel memory pinned by Sonde's BPF maps (the kernel's memlock figure per map, summed).",
);
pub const SONDE_PROBE_RUN_DURATION: MetricDef = def(
    "sonde.probe.run.duration",
    Instrument::Counter,
    "s",
    "Kernel time spent running each probe program (BPF run-time statistics).",
);
pub const SONDE_PROBE_RUN_COUNT: MetricDef = def(
    "sonde.probe.run.count",
    Instrument::Counter,
    "{run}",
    "Times each probe program ran (BPF run-time statistics).",
);
pub const SONDE_PROBE_STATUS: MetricDef = def(
    "sonde.probe.status",
    Instrument::Gauge,
    "1",
    "1 for the state each probe is in.",
);
pub const SONDE_EXPORT_POINTS: MetricDef = def(
    "sonde.export.points",
    Instrument::Counter,
    "{point}",
    "Data points handed to the exporter, by outcome.",
);
pub const SONDE_EXPORT_SPANS: MetricDef = def(
    "sonde.export.spans",
    Instrument::Counter,
    "{span}",
    "Spans of notable events by export outcome; dropped ones carry sonde.loss.reason \
     (rate_limit, queue_full, rejected).",
);
pub const SONDE_EXPORT_LAG: MetricDef = def(
    "sonde.export.lag",
    Instrument::Gauge,
    "s",
    "Age of the oldest data point the collector has not accepted yet (0 when nothing waits).",
);
pub const SONDE_EXPORT_QUEUE_USAGE: MetricDef = def(
    "sonde.export.queue.usage",
    Instrument::UpDownCounter,
    "By",
    "Bytes of the durable export queue's files on disk.",
);
pub const SONDE_EXPORT_QUEUE_ERRORS: MetricDef = def(
    "sonde.export.queue.errors",
    Instrument::Counter,
    "{record}",
    "Durable export queue records skipped as torn or corrupt, and batches held in memory \
     because the queue could not be written, by error.type.",
);
pub const SONDE_COLLECT_SKIPPED: MetricDef = def(
    "sonde.collect.skipped",
    Instrument::Counter,
    "{sample}",
    "Samples in which a file system was left out because its statvfs did not return in \
     time (an unresponsive network or FUSE mount), by system.filesystem.mountpoint.",
);
pub const SONDE_AGENT_CPU_TIME: MetricDef = def(
    "sonde.agent.cpu.time",
    Instrument::Counter,
    "s",
    "CPU time used by the Sonde process.",
);
pub const SONDE_AGENT_MEMORY_RSS: MetricDef = def(
    "sonde.agent.memory.rss",
    Instrument::Gauge,
    "By",
    "Resident set size of the Sonde process.",
);

/// Every metric above, for tests and for `sonde check --metrics`.
pub const ALL: &[MetricDef] = &[
    SYSTEM_PROCESS_CREATED,
    SONDE_PROCESS_EXEC,
    SONDE_PROCESS_EXIT,
    SONDE_PROCESS_EXITED_CPU_TIME,
    SONDE_PROCESS_OOM_KILLS,
    SYSTEM_PROCESS_COUNT,
    SONDE_PROBE_EVENTS_LOST,
    SONDE_PROBE_MAP_MEMORY,
    SONDE_PROBE_RUN_DURATION,
    SONDE_PROBE_RUN_COUNT,
    SONDE_PROBE_STATUS,
    SONDE_EXPORT_POINTS,
    SONDE_EXPORT_SPANS,
    SONDE_EXPORT_LAG,
    SONDE_EXPORT_QUEUE_USAGE,
    SONDE_EXPORT_QUEUE_ERRORS,
    SONDE_COLLECT_SKIPPED,
    SONDE_AGENT_CPU_TIME,
    SONDE_AGENT_MEMORY_RSS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_units_are_ucum_as_otel_uses_them() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} is defined twice", m.name);
            assert!(
                !matches!(m.unit, "ms" | "us" | "ns" | "bytes" | "seconds"),
                "{}: durations are `s` and bytes `By` (metrics.md rule 4), got {}",
                m.name,
                m.unit
            );
        }
    }

    #[test]
    fn contract_pins_process_names() {
        // Dashboards depend on these exact strings (metrics.md).
        assert_eq!(SYSTEM_PROCESS_CREATED.name, "system.process.created");
        assert_eq!(SYSTEM_PROCESS_COUNT.instrument, Instrument::UpDownCounter);
        assert_eq!(SONDE_PROCESS_EXIT.unit, "{process}");
    }
}
