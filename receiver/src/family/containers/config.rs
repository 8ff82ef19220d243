//! `probes.containers`: the section as written and its validated form.

use serde::Deserialize;

use crate::config::{positive, ConfigError, DEFAULT_NAME_LIMIT};
use crate::family::Section;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContainers {
    pub enabled: Option<bool>,
    /// Containers with series of their own before the overflow series.
    pub series_limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainersConfig {
    pub enabled: bool,
    pub series_limit: usize,
}

impl Section for ContainersConfig {
    type Raw = RawContainers;

    fn validate(raw: RawContainers) -> Result<Self, ConfigError> {
        Ok(Self {
            enabled: raw.enabled.unwrap_or(true),
            series_limit: positive(
                "probes.containers.series_limit",
                raw.series_limit.unwrap_or(DEFAULT_NAME_LIMIT),
            )?,
        })
    }
}
