//! Configuration: the YAML file and the OTEL_* environment, validated into one typed
//! [`Config`] that the rest of the agent sees.
//!
//! Precedence for each setting: a key written in the config file, then the standard
//! OTEL_* variable, then Sonde's default. Every key is optional; unknown keys are
//! rejected with their path so a typo never silently falls back to a default.

mod env;
mod raw;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use env::OtelEnv;
use raw::RawConfig;

pub use crate::mapping::host::MetricNames;

/// Default snapshot/export interval. The OTel SDK's 60 s is too coarse for a host agent
/// whose users watch connection churn; 10 s matches the Collector's scrape habits.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BACKLOG_MAX_POINTS: usize = 200_000;
pub const DEFAULT_NAME_LIMIT: usize = 100;

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

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
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

#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The full URL requests go to (for HTTP, including `/v1/metrics`).
    pub endpoint: String,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub compression: Compression,
    pub temporality: Temporality,
    pub backlog_max_points: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessProbeConfig {
    pub enabled: bool,
    pub executable_name_limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileIoProbeConfig {
    pub enabled: bool,
    /// Per-process series of sonde.file.io and of process.disk.io before overflow.
    pub process_limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TcpProbeConfig {
    pub enabled: bool,
    /// (process, peer) series of each sonde.tcp.* metric (per direction, network type or
    /// error) before the overflow series.
    pub series_limit: usize,
}

/// Default DNS query timeout (issue 4): past it a query counts as failed with
/// error.type=timeout. Resolver libraries retry after 1-5 s; 5 s covers their first try.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct DnsProbeConfig {
    pub enabled: bool,
    /// Watched ports (1 to 8 of them); default 53.
    pub ports: Vec<u16>,
    pub timeout: Duration,
    /// Whether and how dns.question.name is exported; default top-N with N = 100.
    pub question_names: crate::aggregate::dns::NamePolicy,
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

/// Default N of `host.top_processes`: hostmetrics-like detail for the busiest
/// processes without a series per process on a host running thousands.
pub const DEFAULT_TOP_PROCESSES: usize = 10;

/// /proc and /sys host metrics (`host:`).
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    pub enabled: bool,
    pub per_cpu: bool,
    /// N of the top-N processes by CPU and by memory.
    pub top_processes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub ebpf_enabled: bool,
    pub interval: Duration,
    pub process: ProcessProbeConfig,
    pub fileio: FileIoProbeConfig,
    pub tcp: TcpProbeConfig,
    pub dns: DnsProbeConfig,
    /// `None` when no collector is configured (neither in the file nor OTEL_* endpoints).
    pub otlp: Option<OtlpConfig>,
    pub console: bool,
    pub resource: ResourceConfig,
    pub probe_run_stats: bool,
    pub log_level: String,
    /// Name set of the host metrics (`metric_names`).
    pub metric_names: MetricNames,
    pub host: HostConfig,
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
        ConfigError::Parse {
            path: path.to_owned(),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message: e.into_inner().to_string(),
        }
    })
}

fn validate(raw: RawConfig, env: &OtelEnv) -> Result<Config, ConfigError> {
    let collection = raw.collection.unwrap_or_default();
    let interval = match (&collection.interval, env.get("OTEL_METRIC_EXPORT_INTERVAL")) {
        (Some(s), _) => parse_duration("collection.interval", s)?,
        (None, Some(ms)) => parse_millis("OTEL_METRIC_EXPORT_INTERVAL", ms)?,
        (None, None) => DEFAULT_INTERVAL,
    };
    if interval < Duration::from_millis(100) {
        return Err(invalid(
            "collection.interval",
            format!("{interval:?} is too short: use at least 100ms"),
        ));
    }

    let probes = raw.probes.unwrap_or_default();
    let process = probes.process.unwrap_or_default();
    let process = ProcessProbeConfig {
        enabled: process.enabled.unwrap_or(true),
        executable_name_limit: positive(
            "probes.process.executable_name_limit",
            process.executable_name_limit.unwrap_or(DEFAULT_NAME_LIMIT),
        )?,
    };

    let fileio = probes.fileio.unwrap_or_default();
    let fileio = FileIoProbeConfig {
        enabled: fileio.enabled.unwrap_or(true),
        process_limit: positive(
            "probes.fileio.process_limit",
            fileio.process_limit.unwrap_or(DEFAULT_NAME_LIMIT),
        )?,
    };

    let tcp = probes.tcp.unwrap_or_default();
    let tcp = TcpProbeConfig {
        enabled: tcp.enabled.unwrap_or(true),
        series_limit: positive(
            "probes.tcp.series_limit",
            tcp.series_limit.unwrap_or(DEFAULT_NAME_LIMIT),
        )?,
    };

    let dns = validate_dns(probes.dns.unwrap_or_default())?;

    let exporters = raw.exporters.unwrap_or_default();
    let otlp_configured = exporters.otlp.is_some()
        || env
            .first_of(&[
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ])
            .is_some();
    let otlp = if otlp_configured {
        Some(validate_otlp(exporters.otlp.unwrap_or_default(), env)?)
    } else {
        None
    };
    let console = exporters
        .console
        .and_then(|c| c.enabled)
        .unwrap_or(otlp.is_none());

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
    let raw_host = raw.host.unwrap_or_default();
    let host = HostConfig {
        enabled: raw_host.enabled.unwrap_or(true),
        per_cpu: raw_host.per_cpu.unwrap_or(false),
        top_processes: raw_host.top_processes.unwrap_or(DEFAULT_TOP_PROCESSES),
    };

    Ok(Config {
        ebpf_enabled: collection.ebpf_enabled.unwrap_or(true),
        interval,
        process,
        fileio,
        tcp,
        dns,
        otlp,
        console,
        resource,
        probe_run_stats: raw
            .self_telemetry
            .and_then(|s| s.probe_run_stats)
            .unwrap_or(false),
        log_level,
        metric_names,
        host,
    })
}

fn validate_dns(raw: raw::RawDnsProbe) -> Result<DnsProbeConfig, ConfigError> {
    use crate::aggregate::dns::NamePolicy;
    let max_ports = sonde_probes::abi::SONDE_DNS_MAX_PORTS as usize;
    let ports = raw.ports.unwrap_or_else(|| vec![53]);
    if ports.is_empty() || ports.len() > max_ports || ports.contains(&0) {
        return Err(invalid(
            "probes.dns.ports",
            format!("list 1 to {max_ports} ports between 1 and 65535, e.g. [53]"),
        ));
    }
    let timeout = match raw.timeout.as_deref() {
        Some(s) => parse_duration("probes.dns.timeout", s)?,
        None => DEFAULT_DNS_TIMEOUT,
    };
    if timeout < Duration::from_millis(10) {
        return Err(invalid(
            "probes.dns.timeout",
            format!("{timeout:?} is too short: use at least 10ms"),
        ));
    }
    let limit = positive(
        "probes.dns.question_name_limit",
        raw.question_name_limit.unwrap_or(DEFAULT_NAME_LIMIT),
    )?;
    let question_names = match raw.question_names.as_deref() {
        None | Some("top_n") => NamePolicy::TopN(limit),
        Some("off") => NamePolicy::Off,
        Some("all") => NamePolicy::All,
        Some(other) => {
            return Err(invalid(
                "probes.dns.question_names",
                format!("`{other}` is not `off`, `top_n` or `all`"),
            ))
        }
    };
    Ok(DnsProbeConfig {
        enabled: raw.enabled.unwrap_or(true),
        ports,
        timeout,
        question_names,
    })
}

fn validate_otlp(raw: raw::RawOtlp, env: &OtelEnv) -> Result<OtlpConfig, ConfigError> {
    let protocol = match raw.protocol.as_deref() {
        Some(p) => parse_protocol("exporters.otlp.protocol", p)?,
        None => match env.first_of(&[
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]) {
            Some((key, p)) => parse_protocol(key, p)?,
            // The OTLP exporter spec's default transport.
            None => Protocol::HttpProtobuf,
        },
    };

    let endpoint = match (
        raw.endpoint.as_deref(),
        env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(base), _, _) => signal_endpoint("exporters.otlp.endpoint", base, protocol)?,
        (None, Some(full), _) => {
            check_url("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", full)?;
            full.to_owned()
        }
        (None, None, Some(base)) => signal_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", base, protocol)?,
        (None, None, None) => match protocol {
            Protocol::Grpc => "http://localhost:4317".to_owned(),
            Protocol::HttpProtobuf => "http://localhost:4318/v1/metrics".to_owned(),
        },
    };

    // Headers merge per key: generic, then metrics-specific, then the file.
    let mut headers: Vec<(String, String)> = Vec::new();
    for key in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    ] {
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

    let timeout = match raw.timeout.as_deref() {
        Some(s) => parse_duration("exporters.otlp.timeout", s)?,
        None => match env.first_of(&[
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]) {
            Some((key, ms)) => parse_millis(key, ms)?,
            None => DEFAULT_TIMEOUT,
        },
    };

    let compression = match raw.compression.as_deref() {
        Some(c) => parse_compression("exporters.otlp.compression", c)?,
        None => match env.first_of(&[
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ]) {
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

    Ok(OtlpConfig {
        endpoint,
        protocol,
        headers,
        timeout,
        compression,
        temporality,
        backlog_max_points: positive(
            "exporters.otlp.backlog_max_points",
            raw.backlog_max_points.unwrap_or(DEFAULT_BACKLOG_MAX_POINTS),
        )?,
    })
}

fn set_header(headers: &mut Vec<(String, String)>, k: String, v: String) {
    let k = k.to_ascii_lowercase();
    headers.retain(|(old, _)| *old != k);
    headers.push((k, v));
}

fn positive(key: &str, n: usize) -> Result<usize, ConfigError> {
    if n == 0 {
        Err(invalid(key, "must be at least 1"))
    } else {
        Ok(n)
    }
}

fn parse_duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
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

/// A base endpoint as the generic variable gives it: HTTP gets `/v1/metrics` appended
/// (spec: "relative to the base"), gRPC uses it as it is.
fn signal_endpoint(key: &str, base: &str, protocol: Protocol) -> Result<String, ConfigError> {
    check_url(key, base)?;
    Ok(match protocol {
        Protocol::Grpc => base.to_owned(),
        Protocol::HttpProtobuf => format!("{}/v1/metrics", base.trim_end_matches('/')),
    })
}

#[cfg(test)]
mod tests;
