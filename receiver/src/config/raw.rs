//! The config file as written: every key optional, unknown keys rejected.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub collection: Option<RawCollection>,
    pub probes: Option<crate::family::RawProbes>,
    pub exporters: Option<RawExporters>,
    pub resource: Option<RawResource>,
    pub self_telemetry: Option<RawSelfTelemetry>,
    pub log: Option<RawLog>,
    /// `semconv` (default) or `hostmetrics_v0`: the name set of host metrics.
    pub metric_names: Option<String>,
    /// /proc and /sys host metrics (both modes).
    pub host: Option<crate::family::host::config::RawHost>,
    pub health: Option<RawHealth>,
    /// Which events become spans.
    pub spans: Option<super::spans::RawSpans>,
    pub attributes: Option<RawAttributes>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollection {
    pub ebpf_enabled: Option<bool>,
    /// How often a snapshot is taken and exported, e.g. `10s`.
    pub interval: Option<String>,
    /// A series unchanged for this long expires and frees its slot, e.g. `5m`.
    pub series_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExporters {
    pub otlp: Option<RawOtlp>,
    pub console: Option<RawConsole>,
    pub prometheus: Option<RawPrometheus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrometheus {
    pub enabled: Option<bool>,
    /// Address or name to listen on (default `localhost`).
    pub host: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// Wins over OTEL_METRICS_EXPORTER; without it the section's presence enables OTLP.
    pub enabled: Option<bool>,
    pub endpoint: Option<String>,
    pub protocol: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub timeout: Option<String>,
    pub compression: Option<String>,
    pub temporality_preference: Option<String>,
    /// `explicit_bucket_histogram` or `base2_exponential_bucket_histogram`.
    pub histogram_aggregation: Option<String>,
    /// Data points held while the collector is unreachable; oldest dropped (and counted) past it.
    pub backlog_max_points: Option<usize>,
    /// Encoded bytes of the batches held in memory; oldest dropped (and counted) past it.
    pub backlog_max_bytes: Option<RawSize>,
    /// The durable queue on disk (off unless a directory is given).
    pub queue: Option<RawQueue>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub directory: Option<String>,
    pub max_bytes: Option<RawSize>,
}

/// A size as a number of bytes or a string such as `64MiB`.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a size such as 64MiB, 512KiB or a number of bytes"
)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    pub enabled: Option<bool>,
    /// `summary` (the default) or `full`.
    pub detail: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    pub service_name: Option<String>,
    pub attributes: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelfTelemetry {
    /// Switch on the kernel's BPF run-time statistics (about +75 ns per probe run, for
    /// every BPF program on the host while Sonde runs: hence off by default).
    pub probe_run_stats: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// `address:port` of the /healthz and /readyz endpoints; off when absent.
    pub listen: Option<String>,
    /// /readyz fails when the oldest unsent data is older than this.
    pub max_export_lag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttributes {
    /// `process.pid` on per-process probe series (off: pids churn).
    pub process_pid: Option<bool>,
}
