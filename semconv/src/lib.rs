//! Every metric name, unit, description and attribute key that Sonde exports, spelled once.
//!
//! The contract is `../shared/reference/metrics.md` (OpenTelemetry semantic conventions
//! 1.44.0 where a name exists there, `sonde.*` otherwise). Dashboards depend on these exact
//! strings: a change here is a breaking change and belongs in the changelog.
//!
//! Nothing else in the workspace may spell a metric or attribute name; the `names_*` test
//! in `receiver` checks that no exported name escapes this crate.

pub mod attr;
pub mod containers;
pub mod dns;
pub mod fileio;
pub mod host;
pub mod metric;
pub mod netio;
pub mod tcp;

/// Every family's metrics under the default names (semconv 1.44, `sonde.*`): the set
/// tests hold what Sonde exports and serves to. A family's semconv file adds its `ALL`
/// here. The legacy twins (`host::v0::ALL`) are not in it.
pub const CONTRACT: &[&[MetricDef]] = &[
    metric::ALL,
    tcp::ALL,
    dns::ALL,
    fileio::ALL,
    host::ALL,
    containers::ALL,
    netio::ALL,
];

/// [`CONTRACT`] as one list.
pub fn contract() -> Vec<MetricDef> {
    CONTRACT.concat()
}

/// The semantic-conventions schema every export carries.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.44.0";

/// Instrument kinds as the OTel API names them; the OTLP data type follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Instrument {
    /// Monotonic sum.
    Counter,
    /// Non-monotonic sum.
    UpDownCounter,
    Gauge,
    Histogram,
}

/// One metric of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricDef {
    pub name: &'static str,
    pub instrument: Instrument,
    /// UCUM unit as OTel uses it (`s`, `By`, `{process}`).
    pub unit: &'static str,
    pub description: &'static str,
}

/// Counters that are *asynchronous* in the OTel API's terms: running totals that something
/// else keeps (/proc, /sys, the kernel's BPF run-time statistics) and Sonde only observes.
/// Every other counter counts events where they happen (the probes in the kernel, the
/// exporter), as a synchronous counter does. The `lowmemory` temporality preference keeps
/// these cumulative. A name that both a probe and /proc can supply (`system.disk.*`,
/// `process.disk.io`, `system.process.created`) is counted here as its default source, the
/// probe, supplies it; the hostmetrics_v0 names are the /proc side's.
pub const OBSERVED_COUNTERS: &[MetricDef] = &[
    host::SYSTEM_CPU_TIME,
    host::SYSTEM_PAGING_FAULTS,
    host::SYSTEM_PAGING_OPERATIONS,
    host::SYSTEM_NETWORK_IO,
    host::SYSTEM_NETWORK_PACKET_COUNT,
    host::SYSTEM_NETWORK_PACKET_DROPPED,
    host::SYSTEM_NETWORK_ERRORS,
    host::PROCESS_CPU_TIME,
    containers::CONTAINER_CPU_TIME,
    containers::CONTAINER_DISK_IO,
    host::v0::SYSTEM_CPU_TIME,
    host::v0::SYSTEM_PAGING_FAULTS,
    host::v0::SYSTEM_PAGING_OPERATIONS,
    host::v0::SYSTEM_DISK_IO,
    host::v0::SYSTEM_DISK_OPERATIONS,
    host::v0::SYSTEM_DISK_OPERATION_TIME,
    host::v0::SYSTEM_NETWORK_IO,
    host::v0::SYSTEM_NETWORK_PACKETS,
    host::v0::SYSTEM_NETWORK_DROPPED,
    host::v0::SYSTEM_NETWORK_ERRORS,
    host::v0::SYSTEM_PROCESSES_CREATED,
    host::v0::PROCESS_CPU_TIME,
    host::v0::PROCESS_DISK_IO,
    metric::SONDE_PROBE_RUN_DURATION,
    metric::SONDE_PROBE_RUN_COUNT,
    metric::SONDE_AGENT_CPU_TIME,
];

#[cfg(test)]
mod observed_tests {
    use super::*;

    #[test]
    fn observed_counters_are_counters() {
        for d in OBSERVED_COUNTERS {
            assert_eq!(d.instrument, Instrument::Counter, "{}", d.name);
        }
        // The probe-side twin of a v0 name is not in the list.
        assert!(!OBSERVED_COUNTERS.contains(&fileio::SYSTEM_DISK_IO));
        assert!(OBSERVED_COUNTERS.contains(&host::v0::SYSTEM_DISK_IO));
    }
}
