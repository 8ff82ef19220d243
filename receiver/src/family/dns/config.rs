//! `probes.dns`: the section as written and its validated form.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::aggregate::NamePolicy;
use crate::config::{invalid, parse_duration, positive, ConfigError, DEFAULT_NAME_LIMIT};
use crate::family::Section;

/// Default DNS query timeout (issue 4): past it a query counts as failed with
/// error.type=timeout. Resolver libraries retry after 1-5 s; 5 s covers their first try.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsProbe {
    pub enabled: Option<bool>,
    /// UDP/TCP ports watched at either end, e.g. `[53, 5353]`.
    pub ports: Option<Vec<u16>>,
    /// A query with no response after this long is a failure with error.type=timeout.
    pub timeout: Option<String>,
    /// `off`, `top_n`, `redacted` or `all`: whether and how dns.question.name is exported.
    pub question_names: Option<String>,
    /// Under `top_n` and `redacted`: distinct names with their own series.
    pub question_name_limit: Option<usize>,
    /// Names under these suffixes are never exported.
    pub never_export_suffixes: Option<Vec<String>>,
    /// Where the host's key for `redacted` names is kept (made on first use).
    pub redaction_key_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsProbeConfig {
    pub enabled: bool,
    /// Watched ports (1 to 8 of them); default 53.
    pub ports: Vec<u16>,
    pub timeout: Duration,
    /// Whether and how dns.question.name is exported; default top-N with N = 100.
    pub question_names: NamePolicy,
    /// `question_names: redacted`: names are exported as keyed hashes.
    pub redact_names: bool,
    /// Names under these suffixes are never exported (metrics and spans).
    pub never_export_suffixes: Vec<String>,
    /// The host's redaction key (`probes.dns.redaction_key_file`).
    pub redaction_key_file: PathBuf,
}

/// Default `probes.dns.redaction_key_file`.
pub const DEFAULT_REDACTION_KEY_FILE: &str = "/var/lib/sonde/dns-names.key";

impl Section for DnsProbeConfig {
    type Raw = RawDnsProbe;

    fn validate(raw: RawDnsProbe) -> Result<Self, ConfigError> {
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
            None | Some("top_n") | Some("redacted") => NamePolicy::TopN(limit),
            Some("off") => NamePolicy::Off,
            Some("all") => NamePolicy::All,
            Some(other) => {
                return Err(invalid(
                    "probes.dns.question_names",
                    format!("`{other}` is not `off`, `top_n`, `redacted` or `all`"),
                ))
            }
        };
        let never_export_suffixes = raw.never_export_suffixes.unwrap_or_default();
        if let Some(bad) = never_export_suffixes
            .iter()
            .find(|s| s.trim_matches('.').is_empty() || s.contains(char::is_whitespace))
        {
            return Err(invalid(
                "probes.dns.never_export_suffixes",
                format!("`{bad}` is not a domain suffix such as corp.example"),
            ));
        }
        let redaction_key_file = PathBuf::from(
            raw.redaction_key_file
                .unwrap_or_else(|| DEFAULT_REDACTION_KEY_FILE.to_owned()),
        );
        if !redaction_key_file.is_absolute() {
            return Err(invalid(
                "probes.dns.redaction_key_file",
                "give an absolute path such as /var/lib/sonde/dns-names.key",
            ));
        }
        Ok(Self {
            enabled: raw.enabled.unwrap_or(true),
            ports,
            timeout,
            question_names,
            redact_names: raw.question_names.as_deref() == Some("redacted"),
            never_export_suffixes,
            redaction_key_file,
        })
    }
}
