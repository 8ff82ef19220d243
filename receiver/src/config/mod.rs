//! Configuration: the YAML file and the OTEL_* environment, validated into one typed
//! [`Config`] that the rest of the agent sees.
//!
//! Precedence for each setting: a key written in the config file, then the standard
//! OTEL_* variable, then Sonde's default. Every key is optional; unknown keys are
//! rejected with their path so a typo never silently falls back to a default.

mod env;
mod raw;
mod spans;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use env::OtelEnv;
use raw::RawConfig;
pub use spans::SpansConfig;

pub use crate::family::dns::config::{
    DnsProbeConfig, DEFAULT_DNS_TIMEOUT, DEFAULT_REDACTION_KEY_FILE,
};
pub use crate::family::fileio::config::FileIoProbeConfig;
pub use crate::family::host::config::{HostConfig, DEFAULT_TOP_PROCESSES};
pub use crate::family::host::mapping::MetricNames;
pub use crate::family::process::config::ProcessProbeConfig;
pub use crate::family::tcp::config::TcpProbeConfig;
pub use crate::family::ProbesConfig;
use crate::family::Section;

/// Default snapshot/export interval. The OTel SDK's 60 s is too coarse for a host agent
/// whose users watch connection churn; 10 s matches the Collector's scrape habits.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BACKLOG_MAX_POINTS: usize = 200_000;
/// Default bound of the memory backlog in encoded bytes, the one that binds first by
/// default (about 127 bytes a point: 200,000 points are ~24 MiB): ~16,500 points, six
/// minutes of a 2-CPU host's snapshots with every family on at the default interval, so
/// the agent stays under 20 MiB while its collector is down (4 MiB took it to 21.3).
/// Longer outages are the durable queue's job (`exporters.otlp.queue`, on disk).
pub const DEFAULT_BACKLOG_MAX_BYTES: u64 = 2 << 20;
pub const DEFAULT_NAME_LIMIT: usize = 100;
/// Default bound of the durable export queue: a day of a busy host's snapshots at 10 s
/// stays well inside it, and it is a quarter of what Vector's disk buffer needs at least.
pub const DEFAULT_QUEUE_MAX_BYTES: u64 = 64 << 20;
/// Smallest durable queue accepted: a couple of segments of a few batches each.
pub const MIN_QUEUE_MAX_BYTES: u64 = 1 << 20;
/// Default `health.max_export_lag`.
pub const DEFAULT_MAX_EXPORT_LAG: Duration = Duration::from_secs(300);
/// Default `collection.series_ttl`: long enough that a cron job every few minutes keeps
/// its series, short enough that a host's churn of processes and peers frees slots.
pub const DEFAULT_SERIES_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: at `{key}`: {message} (see examples/sonde.yaml for every key)")]
    Parse {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// What the console exporter prints (`exporters.console.detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsoleDetail {
    /// At most ~40 lines: headline rates and the top 5 of each kind.
    #[default]
    Summary,
    /// Every series of every metric.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    /// The name OTEL_EXPORTER_OTLP_PROTOCOL uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    Cumulative,
    /// Counters and histograms as deltas; up-down counters stay cumulative (spec).
    Delta,
    /// As delta for Sonde: every counter it exports is read from a cumulative source.
    LowMemory,
}

/// OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION: how the kernel's grid
/// histograms go out over OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramAggregation {
    /// `explicit_bucket_histogram` (default): bounds at powers of two, whole grid buckets
    /// summed per doubling.
    Explicit,
    /// `base2_exponential_bucket_histogram`: the grid itself, at its scale.
    Base2Exponential,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The full URL requests go to (for HTTP, including `/v1/metrics`).
    pub endpoint: String,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub compression: Compression,
    pub temporality: Temporality,
    pub histogram_aggregation: HistogramAggregation,
    pub backlog_max_points: usize,
    /// Encoded bytes of the batches waiting in memory (`exporters.otlp.backlog_max_bytes`).
    pub backlog_max_bytes: u64,
    /// The durable queue (`exporters.otlp.queue`); `None` keeps the backlog in memory only.
    pub queue: Option<QueueConfig>,
}

/// `exporters.otlp.queue`: batches that could not be sent wait on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    pub directory: PathBuf,
    /// Bound on the queue's files; past it the oldest records are dropped and counted.
    pub max_bytes: u64,
}

/// `health`: liveness and readiness over HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// Where /healthz and /readyz are served; `None` (the default) serves nothing.
    pub listen: Option<std::net::SocketAddr>,
    /// /readyz fails while the oldest unsent data is older than this.
    pub max_export_lag: Duration,
}

/// The Prometheus endpoint's defaults (OTel SDK environment spec).
pub const DEFAULT_PROMETHEUS_HOST: &str = "localhost";
pub const DEFAULT_PROMETHEUS_PORT: u16 = 9464;

/// Where the Prometheus endpoint listens (`GET /metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusConfig {
    pub host: String,
    /// 0 asks the kernel for a free port (the log says which).
    pub port: u16,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceConfig {
    /// `resource.service_name` from the file.
    pub service_name: Option<String>,
    /// `resource.attributes` from the file.
    pub attributes: Vec<(String, String)>,
    /// OTEL_SERVICE_NAME.
    pub env_service_name: Option<String>,
    /// OTEL_RESOURCE_ATTRIBUTES, percent-decoded.
    pub env_attributes: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub ebpf_enabled: bool,
    pub interval: Duration,
    /// A series unchanged this long expires (`Duration::ZERO`: never).
    pub series_ttl: Duration,
    /// `process.pid` on per-process probe series (`attributes.process_pid`).
    pub process_pid: bool,
    /// Every probe family's section (`probes.<name>`); `config.tcp` reads through to it.
    pub probes: ProbesConfig,
    /// `None` when no collector is configured (neither in the file nor OTEL_* endpoints).
    pub otlp: Option<OtlpConfig>,
    /// `None` unless the Prometheus endpoint is enabled.
    pub prometheus: Option<PrometheusConfig>,
    /// Where spans go: the same collector settings with the traces variables
    /// (OTEL_EXPORTER_OTLP_TRACES_*); `None` with no collector or OTEL_TRACES_EXPORTER=none.
    pub traces: Option<OtlpConfig>,
    /// Which events become spans (`spans:`).
    pub spans: SpansConfig,
    pub console: bool,
    /// What the console prints each interval.
    pub console_detail: ConsoleDetail,
    pub resource: ResourceConfig,
    pub probe_run_stats: bool,
    pub log_level: String,
    /// Name set of the host metrics (`metric_names`).
    pub metric_names: MetricNames,
    pub host: HostConfig,
    pub health: HealthConfig,
}

/// `config.tcp` and the like: each family's section, as if it were a field of `Config`.
impl std::ops::Deref for Config {
    type Target = ProbesConfig;

    fn deref(&self) -> &ProbesConfig {
        &self.probes
    }
}

impl Config {
    /// Reads and validates the file (if any) against the given environment.
    pub fn load(path: Option<&Path>, env: &OtelEnv) -> Result<Config, ConfigError> {
        let raw = match path {
            None => RawConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                parse_yaml(path, &text)?
            }
        };
        validate(raw, env)
    }

    /// Validates YAML text; for tests and `sonde check --config`.
    pub fn from_yaml(text: &str, env: &OtelEnv) -> Result<Config, ConfigError> {
        validate(parse_yaml(Path::new("<config>"), text)?, env)
    }
}

fn parse_yaml(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let message = plain_message(&key, &e.into_inner().to_string());
        ConfigError::Parse {
            path: path.to_owned(),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message,
        }
    })
}

/// The YAML library's message in the file's own terms: without the key path it repeats
/// (the error already names it) and with the Rust types it expected ("struct RawProbes",
/// "usize") said as what a user writes instead.
fn plain_message(key: &str, message: &str) -> String {
    // The library prefixes the path it was at (the key, or its parent for an unknown key).
    let message = match message.split_once(": ") {
        Some((at, rest)) if !at.is_empty() && key.starts_with(at) => rest,
        _ => message,
    };
    let Some(at) = message.find("expected ") else {
        return message.to_owned();
    };
    let (head, tail) = message.split_at(at + "expected ".len());
    // The expectation runs to the location suffix (" at line 3 column 5"), if any.
    let end = tail.find(" at line ").unwrap_or(tail.len());
    let (expected, location) = tail.split_at(end);
    let int_width = |prefix: char| {
        expected
            .strip_prefix(prefix)
            .is_some_and(|w| matches!(w, "8" | "16" | "32" | "64" | "size"))
    };
    let plain = if expected.starts_with("struct ") || expected.starts_with("a map") {
        "a mapping of keys (key: value, one per line)"
    } else if expected.starts_with("enum ") {
        "one of the values listed in examples/sonde.yaml"
    } else if expected == "u16" {
        "a whole number from 0 to 65535"
    } else if int_width('u') {
        "a whole number (0 or more)"
    } else if int_width('i') {
        "a whole number"
    } else if matches!(expected, "f32" | "f64") {
        "a number"
    } else {
        return message.to_owned();
    };
    format!("{head}{plain}{location}")
}

fn validate(raw: RawConfig, env: &OtelEnv) -> Result<Config, ConfigError> {
    let collection = raw.collection.unwrap_or_default();
    let (interval_key, interval) =
        match (&collection.interval, env.get("OTEL_METRIC_EXPORT_INTERVAL")) {
            (Some(s), _) => (
                "collection.interval",
                parse_duration("collection.interval", s)?,
            ),
            (None, Some(ms)) => (
                "OTEL_METRIC_EXPORT_INTERVAL",
                parse_millis("OTEL_METRIC_EXPORT_INTERVAL", ms)?,
            ),
            (None, None) => ("collection.interval", DEFAULT_INTERVAL),
        };
    if interval < Duration::from_millis(100) {
        return Err(invalid(
            interval_key,
            format!("{interval:?} is too short: use at least 100ms"),
        ));
    }

    let series_ttl = match &collection.series_ttl {
        Some(s) => parse_duration("collection.series_ttl", s)?,
        None => DEFAULT_SERIES_TTL,
    };
    if !series_ttl.is_zero() && series_ttl < interval {
        return Err(invalid(
            "collection.series_ttl",
            format!(
                "{series_ttl:?} is shorter than collection.interval ({interval:?}): series \
                 would expire between two exports; use at least the interval, or 0s to \
                 keep series forever"
            ),
        ));
    }

    let probes = ProbesConfig::validate(raw.probes.unwrap_or_default())?;

    let exporters = raw.exporters.unwrap_or_default();
    let listed = match env.get("OTEL_METRICS_EXPORTER") {
        Some(v) => Some(parse_exporter_list(v)?),
        None => None,
    };
    let is_listed = |name: &str| listed.as_ref().map(|l| l.iter().any(|e| e == name));
    // Per exporter: the file's `enabled`, else the section's presence, else
    // OTEL_METRICS_EXPORTER, else the default.
    let otlp_on = match exporters.otlp.as_ref() {
        Some(o) => o.enabled.unwrap_or(true),
        None => is_listed("otlp").unwrap_or_else(|| {
            env.first_of(&[
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ])
            .is_some()
        }),
    };
    // Spans go wherever a collector is named, whatever OTEL_METRICS_EXPORTER says.
    let traces_configured = exporters.otlp.is_some()
        || env
            .first_of(&["OTEL_EXPORTER_OTLP_ENDPOINT", TRACES.endpoint])
            .is_some()
        || otlp_on;
    let traces = match env.get("OTEL_TRACES_EXPORTER") {
        _ if !traces_configured => None,
        None | Some("otlp") => Some(validate_otlp(
            exporters.otlp.clone().unwrap_or_default(),
            env,
            &TRACES,
        )?),
        Some("none") => None,
        Some(other) => {
            return Err(invalid(
                "OTEL_TRACES_EXPORTER",
                format!("`{other}` is not `otlp` or `none`"),
            ))
        }
    };
    let otlp = if otlp_on {
        Some(validate_otlp(
            exporters.otlp.unwrap_or_default(),
            env,
            &METRICS,
        )?)
    } else {
        None
    };
    let prometheus_on = match exporters.prometheus.as_ref() {
        Some(p) => p.enabled.unwrap_or(true),
        None => is_listed("prometheus").unwrap_or(false),
    };
    let prometheus = if prometheus_on {
        Some(validate_prometheus(
            exporters.prometheus.unwrap_or_default(),
            env,
        )?)
    } else {
        None
    };
    let raw_console = exporters.console.unwrap_or_default();
    // With no other exporter the table on stdout is the default output.
    let console = match raw_console.enabled {
        Some(on) => on,
        None => is_listed("console").unwrap_or(otlp.is_none() && prometheus.is_none()),
    };
    let console_detail = match raw_console.detail.as_deref() {
        None | Some("summary") => ConsoleDetail::Summary,
        Some("full") => ConsoleDetail::Full,
        Some(other) => {
            return Err(invalid(
                "exporters.console.detail",
                format!("`{other}` is not `summary` or `full`"),
            ))
        }
    };

    let resource = raw.resource.unwrap_or_default();
    let resource = ResourceConfig {
        service_name: resource.service_name,
        attributes: resource
            .attributes
            .unwrap_or_default()
            .into_iter()
            .collect(),
        env_service_name: env.get("OTEL_SERVICE_NAME").map(str::to_owned),
        env_attributes: match env.get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(v) => {
                env::parse_key_values(v).map_err(|m| invalid("OTEL_RESOURCE_ATTRIBUTES", m))?
            }
            None => Vec::new(),
        },
    };

    let log_level = raw
        .log
        .and_then(|l| l.level)
        .unwrap_or_else(|| "info".to_owned());
    if !matches!(
        log_level.as_str(),
        "error" | "warn" | "info" | "debug" | "trace"
    ) {
        return Err(invalid(
            "log.level",
            format!("`{log_level}` is not one of error, warn, info, debug, trace"),
        ));
    }

    let metric_names = match raw.metric_names.as_deref() {
        None | Some("semconv") => MetricNames::Semconv,
        Some("hostmetrics_v0") => MetricNames::HostmetricsV0,
        Some(other) => {
            return Err(invalid(
                "metric_names",
                format!("`{other}` is not `semconv` or `hostmetrics_v0`"),
            ))
        }
    };

    let health = validate_health(raw.health.unwrap_or_default())?;
    let spans = spans::validate(raw.spans.unwrap_or_default())?;

    Ok(Config {
        health,
        ebpf_enabled: collection.ebpf_enabled.unwrap_or(true),
        interval,
        series_ttl,
        process_pid: raw.attributes.and_then(|a| a.process_pid).unwrap_or(false),
        probes,
        otlp,
        prometheus,
        traces,
        spans,
        console,
        console_detail,
        resource,
        probe_run_stats: raw
            .self_telemetry
            .and_then(|s| s.probe_run_stats)
            .unwrap_or(false),
        log_level,
        metric_names,
        host: HostConfig::validate(raw.host.unwrap_or_default())?,
    })
}

fn validate_health(raw: raw::RawHealth) -> Result<HealthConfig, ConfigError> {
    let listen = match raw.listen.as_deref() {
        None => None,
        Some(s) => Some(s.trim().parse().map_err(|_| {
            invalid(
                "health.listen",
                format!("`{s}` is not an address:port such as 127.0.0.1:13133 or [::]:13133"),
            )
        })?),
    };
    let max_export_lag = match raw.max_export_lag.as_deref() {
        Some(s) => parse_duration("health.max_export_lag", s)?,
        None => DEFAULT_MAX_EXPORT_LAG,
    };
    if max_export_lag.is_zero() {
        return Err(invalid("health.max_export_lag", "must be longer than 0s"));
    }
    Ok(HealthConfig {
        listen,
        max_export_lag,
    })
}

fn validate_queue(raw: raw::RawQueue) -> Result<Option<QueueConfig>, ConfigError> {
    let max_bytes = match &raw.max_bytes {
        None => DEFAULT_QUEUE_MAX_BYTES,
        Some(raw::RawSize::Bytes(n)) => *n,
        Some(raw::RawSize::Text(s)) => parse_size("exporters.otlp.queue.max_bytes", s)?,
    };
    if max_bytes < MIN_QUEUE_MAX_BYTES {
        return Err(invalid(
            "exporters.otlp.queue.max_bytes",
            format!("{max_bytes} bytes is too small: use at least 1MiB"),
        ));
    }
    let Some(directory) = raw.directory else {
        if raw.max_bytes.is_some() {
            return Err(invalid(
                "exporters.otlp.queue",
                "max_bytes is set but directory is not: name the directory the queue lives in",
            ));
        }
        return Ok(None);
    };
    let directory = PathBuf::from(directory);
    if !directory.is_absolute() {
        return Err(invalid(
            "exporters.otlp.queue.directory",
            format!(
                "`{}` is relative: give an absolute path such as /var/lib/sonde/queue",
                directory.display()
            ),
        ));
    }
    Ok(Some(QueueConfig {
        directory,
        max_bytes,
    }))
}

/// `64MiB`, `512 KiB`, `1GiB`, `1000000` (bytes); KB/MB/GB are decimal.
fn parse_size(key: &str, s: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => u64::MAX,
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| mult != u64::MAX)
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| {
            invalid(
                key,
                format!("`{s}` is not a size such as 64MiB, 512KiB or a number of bytes"),
            )
        })
}

/// The OTEL_* variables specific to one signal, and its HTTP path under a base endpoint.
#[derive(Debug)]
pub(crate) struct Signal {
    endpoint: &'static str,
    protocol: &'static str,
    headers: &'static str,
    timeout: &'static str,
    compression: &'static str,
    path: &'static str,
}

pub(crate) const METRICS: Signal = Signal {
    endpoint: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    headers: "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    timeout: "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    compression: "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
    path: "/v1/metrics",
};

pub(crate) const TRACES: Signal = Signal {
    endpoint: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    headers: "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    timeout: "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    compression: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    path: "/v1/traces",
};

fn validate_otlp(
    raw: raw::RawOtlp,
    env: &OtelEnv,
    signal: &Signal,
) -> Result<OtlpConfig, ConfigError> {
    let protocol = match raw.protocol.as_deref() {
        Some(p) => parse_protocol("exporters.otlp.protocol", p)?,
        None => match env.first_of(&[signal.protocol, "OTEL_EXPORTER_OTLP_PROTOCOL"]) {
            Some((key, p)) => parse_protocol(key, p)?,
            // The OTLP exporter spec's default transport.
            None => Protocol::HttpProtobuf,
        },
    };

    let endpoint = match (
        raw.endpoint.as_deref(),
        env.get(signal.endpoint),
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(base), _, _) => signal_endpoint("exporters.otlp.endpoint", base, protocol, signal)?,
        (None, Some(full), _) => {
            check_url(signal.endpoint, full)?;
            full.to_owned()
        }
        (None, None, Some(base)) => {
            signal_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", base, protocol, signal)?
        }
        (None, None, None) => match protocol {
            Protocol::Grpc => "http://localhost:4317".to_owned(),
            Protocol::HttpProtobuf => format!("http://localhost:4318{}", signal.path),
        },
    };

    // Headers merge per key: generic, then metrics-specific, then the file.
    let mut headers: Vec<(String, String)> = Vec::new();
    for key in ["OTEL_EXPORTER_OTLP_HEADERS", signal.headers] {
        if let Some(v) = env.get(key) {
            for (k, v) in env::parse_key_values(v).map_err(|m| invalid(key, m))? {
                set_header(&mut headers, k, v);
            }
        }
    }
    for (k, v) in raw.headers.unwrap_or_default() {
        set_header(&mut headers, k, v);
    }
    for (k, v) in &headers {
        let ok_name = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok_name || v.bytes().any(|b| b < 0x20 && b != b'\t') {
            return Err(invalid(
                "exporters.otlp.headers",
                format!("header `{k}` is not a valid HTTP header name/value"),
            ));
        }
    }

    let (timeout_key, timeout) = match raw.timeout.as_deref() {
        Some(s) => (
            "exporters.otlp.timeout",
            parse_duration("exporters.otlp.timeout", s)?,
        ),
        None => match env.first_of(&[signal.timeout, "OTEL_EXPORTER_OTLP_TIMEOUT"]) {
            Some((key, ms)) => (key, parse_millis(key, ms)?),
            None => ("exporters.otlp.timeout", DEFAULT_TIMEOUT),
        },
    };
    // Zero would make every request time out at once (and the shutdown flush with it).
    if timeout.is_zero() {
        return Err(invalid(
            timeout_key,
            "a zero timeout fails every export: give one longer than 0, such as 10s",
        ));
    }

    let compression = match raw.compression.as_deref() {
        Some(c) => parse_compression("exporters.otlp.compression", c)?,
        None => match env.first_of(&[signal.compression, "OTEL_EXPORTER_OTLP_COMPRESSION"]) {
            Some((key, c)) => parse_compression(key, c)?,
            None => Compression::None,
        },
    };

    let temporality = match raw.temporality_preference.as_deref() {
        Some(t) => parse_temporality("exporters.otlp.temporality_preference", t)?,
        None => match env.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") {
            Some(t) => parse_temporality("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", t)?,
            None => Temporality::Cumulative,
        },
    };

    const AGGREGATION_ENV: &str = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION";
    let histogram_aggregation = match raw.histogram_aggregation.as_deref() {
        Some(a) => parse_histogram_aggregation("exporters.otlp.histogram_aggregation", a)?,
        None => match env.get(AGGREGATION_ENV) {
            Some(a) => parse_histogram_aggregation(AGGREGATION_ENV, a)?,
            None => HistogramAggregation::Explicit,
        },
    };

    Ok(OtlpConfig {
        endpoint,
        protocol,
        headers,
        timeout,
        compression,
        temporality,
        histogram_aggregation,
        backlog_max_points: positive(
            "exporters.otlp.backlog_max_points",
            raw.backlog_max_points.unwrap_or(DEFAULT_BACKLOG_MAX_POINTS),
        )?,
        backlog_max_bytes: validate_backlog_bytes(raw.backlog_max_bytes.as_ref())?,
        queue: validate_queue(raw.queue.unwrap_or_default())?,
    })
}

fn validate_backlog_bytes(raw: Option<&raw::RawSize>) -> Result<u64, ConfigError> {
    const KEY: &str = "exporters.otlp.backlog_max_bytes";
    let n = match raw {
        None => DEFAULT_BACKLOG_MAX_BYTES,
        Some(raw::RawSize::Bytes(n)) => *n,
        Some(raw::RawSize::Text(s)) => parse_size(KEY, s)?,
    };
    if n == 0 {
        return Err(invalid(
            KEY,
            "0 bytes holds nothing: give a size such as 2MiB",
        ));
    }
    Ok(n)
}

/// OTEL_METRICS_EXPORTER: a comma list of `otlp`, `prometheus`, `console`, or `none` alone.
fn parse_exporter_list(v: &str) -> Result<Vec<String>, ConfigError> {
    const KEY: &str = "OTEL_METRICS_EXPORTER";
    let list: Vec<String> = v
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect();
    for e in &list {
        if !matches!(e.as_str(), "otlp" | "prometheus" | "console" | "none") {
            return Err(invalid(
                KEY,
                format!("`{e}` is not an exporter: list otlp, prometheus, console, or none"),
            ));
        }
    }
    if list.iter().any(|e| e == "none") && list.len() > 1 {
        return Err(invalid(
            KEY,
            "`none` means no exporter: it cannot be combined with others",
        ));
    }
    Ok(list)
}

fn validate_prometheus(
    raw: raw::RawPrometheus,
    env: &OtelEnv,
) -> Result<PrometheusConfig, ConfigError> {
    let host = match (raw.host, env.get("OTEL_EXPORTER_PROMETHEUS_HOST")) {
        (Some(h), _) => h,
        (None, Some(h)) => h.to_owned(),
        (None, None) => DEFAULT_PROMETHEUS_HOST.to_owned(),
    };
    if host.trim().is_empty() || host.contains(['/', ' ']) {
        return Err(invalid(
            "exporters.prometheus.host",
            format!(
                "`{host}` is not a host: write an address or name such as 0.0.0.0 or localhost"
            ),
        ));
    }
    let port = match (raw.port, env.get("OTEL_EXPORTER_PROMETHEUS_PORT")) {
        (Some(p), _) => p,
        (None, Some(p)) => p.parse::<u16>().map_err(|_| {
            invalid(
                "OTEL_EXPORTER_PROMETHEUS_PORT",
                format!("`{p}` is not a port number (0 to 65535)"),
            )
        })?,
        (None, None) => DEFAULT_PROMETHEUS_PORT,
    };
    Ok(PrometheusConfig { host, port })
}

fn set_header(headers: &mut Vec<(String, String)>, k: String, v: String) {
    let k = k.to_ascii_lowercase();
    headers.retain(|(old, _)| *old != k);
    headers.push((k, v));
}

pub(crate) fn positive(key: &str, n: usize) -> Result<usize, ConfigError> {
    if n == 0 {
        Err(invalid(key, "must be at least 1"))
    } else {
        Ok(n)
    }
}

pub(crate) fn parse_duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        invalid(
            key,
            format!("`{s}` is not a duration like 10s or 500ms ({e})"),
        )
    })
}

fn parse_millis(key: &str, s: &str) -> Result<Duration, ConfigError> {
    s.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| invalid(key, format!("`{s}` is not a whole number of milliseconds")))
}

fn parse_protocol(key: &str, s: &str) -> Result<Protocol, ConfigError> {
    match s {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Err(invalid(
            key,
            "http/json is not supported yet: use `grpc` or `http/protobuf`",
        )),
        other => Err(invalid(
            key,
            format!("`{other}` is not a protocol: use `grpc` or `http/protobuf`"),
        )),
    }
}

fn parse_compression(key: &str, s: &str) -> Result<Compression, ConfigError> {
    match s {
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        other => Err(invalid(key, format!("`{other}` is not `gzip` or `none`"))),
    }
}

fn parse_temporality(key: &str, s: &str) -> Result<Temporality, ConfigError> {
    match s.to_ascii_lowercase().as_str() {
        "cumulative" => Ok(Temporality::Cumulative),
        "delta" => Ok(Temporality::Delta),
        "lowmemory" => Ok(Temporality::LowMemory),
        other => Err(invalid(
            key,
            format!("`{other}` is not `cumulative`, `delta` or `lowmemory`"),
        )),
    }
}

fn parse_histogram_aggregation(key: &str, s: &str) -> Result<HistogramAggregation, ConfigError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "explicit_bucket_histogram" => Ok(HistogramAggregation::Explicit),
        "base2_exponential_bucket_histogram" => Ok(HistogramAggregation::Base2Exponential),
        other => Err(invalid(
            key,
            format!(
                "`{other}` is not `explicit_bucket_histogram` or \
                 `base2_exponential_bucket_histogram`"
            ),
        )),
    }
}

fn check_url(key: &str, s: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(s).map_err(|e| {
        invalid(
            key,
            format!("`{s}` is not a URL ({e}); write it like http://collector:4318"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            key,
            format!("`{s}`: the scheme must be http or https"),
        ));
    }
    Ok(url)
}

/// A base endpoint as the generic variable gives it: HTTP gets the signal's path
/// (`/v1/metrics`, `/v1/traces`) appended (spec: "relative to the base"), gRPC uses it as
/// it is.
fn signal_endpoint(
    key: &str,
    base: &str,
    protocol: Protocol,
    signal: &Signal,
) -> Result<String, ConfigError> {
    check_url(key, base)?;
    Ok(match protocol {
        Protocol::Grpc => base.to_owned(),
        Protocol::HttpProtobuf => format!("{}{}", base.trim_end_matches('/'), signal.path),
    })
}

#[cfg(test)]
mod tests;
