//! `spans:`: which kernel-observed events become spans, and how many a second.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, parse_duration, ConfigError};

/// Spans a second when `spans.max_per_second` is not set: enough for every notable
/// event on a healthy host, small enough that an outage cannot flood a collector.
pub const DEFAULT_MAX_PER_SECOND: u32 = 100;
/// `spans.dns.slower_than` default.
pub const DEFAULT_DNS_SLOWER_THAN: Duration = Duration::from_millis(100);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpans {
    pub enabled: Option<bool>,
    pub max_per_second: Option<u32>,
    pub dns: Option<RawDnsSpans>,
    pub tcp: Option<RawTcpSpans>,
    pub process: Option<RawProcessSpans>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsSpans {
    pub enabled: Option<bool>,
    /// Lookups slower than this get a span (failed ones always do).
    pub slower_than: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcpSpans {
    pub enabled: Option<bool>,
    /// Connections that lived longer than this get a span too (`off` by default).
    pub longer_than: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcessSpans {
    pub enabled: Option<bool>,
    /// Processes that ran longer than this get a span too (`off` by default).
    pub longer_than: Option<String>,
}

/// Validated `spans:`. A kind that is off costs nothing: its events are never looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct SpansConfig {
    pub max_per_second: u32,
    /// `Some(threshold)`: slow (and every failed) DNS lookups become spans.
    pub dns_slower_than: Option<Duration>,
    /// Failed connects and resets become spans.
    pub tcp: bool,
    /// With `tcp`: connections that lived longer than this too.
    pub tcp_longer_than: Option<Duration>,
    /// Processes that exit with a failure code or a signal.
    pub process: bool,
    /// With `process`: processes that ran longer than this too.
    pub process_longer_than: Option<Duration>,
}

impl SpansConfig {
    pub fn any(&self) -> bool {
        self.max_per_second > 0 && (self.dns_slower_than.is_some() || self.tcp || self.process)
    }
}

impl Default for SpansConfig {
    fn default() -> Self {
        Self {
            max_per_second: DEFAULT_MAX_PER_SECOND,
            dns_slower_than: Some(DEFAULT_DNS_SLOWER_THAN),
            tcp: true,
            tcp_longer_than: None,
            process: true,
            process_longer_than: None,
        }
    }
}

pub fn validate(raw: RawSpans) -> Result<SpansConfig, ConfigError> {
    let on = raw.enabled.unwrap_or(true);
    let dns = raw.dns.unwrap_or_default();
    let tcp = raw.tcp.unwrap_or_default();
    let process = raw.process.unwrap_or_default();
    let dns_slower_than = match (on && dns.enabled.unwrap_or(true), dns.slower_than) {
        (false, _) => None,
        (true, None) => Some(DEFAULT_DNS_SLOWER_THAN),
        (true, Some(s)) => Some(parse_duration("spans.dns.slower_than", &s)?),
    };
    let tcp_longer_than = longer_than("spans.tcp.longer_than", "connection", tcp.longer_than)?;
    let process_longer_than =
        longer_than("spans.process.longer_than", "process", process.longer_than)?;
    Ok(SpansConfig {
        max_per_second: raw.max_per_second.unwrap_or(DEFAULT_MAX_PER_SECOND),
        dns_slower_than,
        tcp: on && tcp.enabled.unwrap_or(true),
        tcp_longer_than,
        process: on && process.enabled.unwrap_or(true),
        process_longer_than,
    })
}

/// A `longer_than` threshold: `off` (the default) or a positive duration.
fn longer_than(
    key: &str,
    what: &str,
    raw: Option<String>,
) -> Result<Option<Duration>, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None | Some("off") => Ok(None),
        Some(s) => {
            let d = parse_duration(key, s)?;
            if d.is_zero() {
                return Err(invalid(
                    key,
                    format!("0 would make every {what} a span: use a duration such as 1h, or off"),
                ));
            }
            Ok(Some(d))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, OtelEnv};

    fn load(yaml: &str) -> Result<SpansConfig, String> {
        Config::from_yaml(yaml, &OtelEnv::default())
            .map(|c| c.spans)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(load("").expect("empty"), SpansConfig::default());
        let c = load(
            "spans:\n  max_per_second: 5\n  dns: {slower_than: 250ms}\n  tcp: {longer_than: 1h}\n  process: {enabled: false, longer_than: 10m}\n",
        )
        .expect("valid");
        assert_eq!(c.max_per_second, 5);
        assert_eq!(c.dns_slower_than, Some(Duration::from_millis(250)));
        assert_eq!(c.tcp_longer_than, Some(Duration::from_secs(3600)));
        assert!(c.tcp && !c.process);
        assert_eq!(c.process_longer_than, Some(Duration::from_secs(600)));
        let off = load("spans: {enabled: false}").expect("valid");
        assert!(!off.any());
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("spans: {dns: {slower_than: soon}}").expect_err("bad duration");
        assert!(e.contains("spans.dns.slower_than"), "{e}");
        let e = load("spans: {tcp: {longer_than: 0s}}").expect_err("zero");
        assert!(e.contains("spans.tcp.longer_than"), "{e}");
        let e = load("spans: {process: {longer_than: 0ms}}").expect_err("zero");
        assert!(e.contains("spans.process.longer_than"), "{e}");
        let e = load("spans: {dsn: {}}").expect_err("typo");
        assert!(e.contains("spans"), "{e}");
    }
}
