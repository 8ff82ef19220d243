//! `probes.fileio`: the section as written and its validated form.

use serde::Deserialize;

use crate::config::{positive, ConfigError, DEFAULT_NAME_LIMIT};
use crate::family::Section;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileIoProbe {
    pub enabled: Option<bool>,
    /// Per-process series of sonde.file.io and process.disk.io kept before the overflow series.
    pub process_limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileIoProbeConfig {
    pub enabled: bool,
    /// Per-process series of sonde.file.io and of process.disk.io before overflow.
    pub process_limit: usize,
}

impl Section for FileIoProbeConfig {
    type Raw = RawFileIoProbe;

    fn validate(raw: RawFileIoProbe) -> Result<Self, ConfigError> {
        Ok(Self {
            enabled: raw.enabled.unwrap_or(true),
            process_limit: positive(
                "probes.fileio.process_limit",
                raw.process_limit.unwrap_or(DEFAULT_NAME_LIMIT),
            )?,
        })
    }
}
