//! `probes.process`: the section as written and its validated form.

use serde::Deserialize;

use crate::config::{positive, ConfigError, DEFAULT_NAME_LIMIT};
use crate::family::Section;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcessProbe {
    pub enabled: Option<bool>,
    /// Distinct executable names kept as their own series before the overflow series.
    pub executable_name_limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessProbeConfig {
    pub enabled: bool,
    pub executable_name_limit: usize,
}

impl Section for ProcessProbeConfig {
    type Raw = RawProcessProbe;

    fn validate(raw: RawProcessProbe) -> Result<Self, ConfigError> {
        Ok(Self {
            enabled: raw.enabled.unwrap_or(true),
            executable_name_limit: positive(
                "probes.process.executable_name_limit",
                raw.executable_name_limit.unwrap_or(DEFAULT_NAME_LIMIT),
            )?,
        })
    }
}
