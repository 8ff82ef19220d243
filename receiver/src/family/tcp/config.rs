//! `probes.tcp`: the section as written and its validated form.

use serde::Deserialize;

use crate::config::{positive, ConfigError, DEFAULT_NAME_LIMIT};
use crate::family::Section;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcpProbe {
    pub enabled: Option<bool>,
    /// (process, peer) series of each sonde.tcp.* metric kept before the overflow series.
    pub series_limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TcpProbeConfig {
    pub enabled: bool,
    /// (process, peer) series of each sonde.tcp.* metric (per direction, network type or
    /// error) before the overflow series.
    pub series_limit: usize,
}

impl Section for TcpProbeConfig {
    type Raw = RawTcpProbe;

    fn validate(raw: RawTcpProbe) -> Result<Self, ConfigError> {
        Ok(Self {
            enabled: raw.enabled.unwrap_or(true),
            series_limit: positive(
                "probes.tcp.series_limit",
                raw.series_limit.unwrap_or(DEFAULT_NAME_LIMIT),
            )?,
        })
    }
}
