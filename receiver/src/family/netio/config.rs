//! `probes.netio`: the section as written and its validated form.

use serde::Deserialize;

use crate::config::{positive, ConfigError, DEFAULT_NAME_LIMIT};
use crate::family::Section;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetIo {
    pub enabled: Option<bool>,
    /// (executable, container) series of process.network.io, and container series of
    /// container.network.io, each kept before the overflow series (per direction).
    pub series_limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetIoConfig {
    pub enabled: bool,
    pub series_limit: usize,
}

impl Section for NetIoConfig {
    type Raw = RawNetIo;

    fn validate(raw: RawNetIo) -> Result<Self, ConfigError> {
        Ok(Self {
            enabled: raw.enabled.unwrap_or(true),
            series_limit: positive(
                "probes.netio.series_limit",
                raw.series_limit.unwrap_or(DEFAULT_NAME_LIMIT),
            )?,
        })
    }
}
