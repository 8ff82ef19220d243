//! `host:` (a top-level key, not under `probes:`): the section as written and its
//! validated form.

use serde::Deserialize;

use crate::config::ConfigError;
use crate::family::Section;

/// Default N of `host.top_processes`: hostmetrics-like detail for the busiest
/// processes without a series per process on a host running thousands.
pub const DEFAULT_TOP_PROCESSES: usize = 10;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub enabled: Option<bool>,
    /// `cpu.logical_number` on system.cpu.* (one series per CPU and mode).
    pub per_cpu: Option<bool>,
    /// Processes reported by CPU and by memory each (process.* metrics).
    pub top_processes: Option<usize>,
}

/// /proc and /sys host metrics (`host:`).
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    pub enabled: bool,
    pub per_cpu: bool,
    /// N of the top-N processes by CPU and by memory.
    pub top_processes: usize,
}

impl Section for HostConfig {
    type Raw = RawHost;

    fn validate(raw: RawHost) -> Result<Self, ConfigError> {
        Ok(Self {
            enabled: raw.enabled.unwrap_or(true),
            per_cpu: raw.per_cpu.unwrap_or(false),
            top_processes: raw.top_processes.unwrap_or(DEFAULT_TOP_PROCESSES),
        })
    }
}
