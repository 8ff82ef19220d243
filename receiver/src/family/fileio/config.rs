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
    /// Count file I/O on proc, sysfs, cgroupfs, tracefs and debugfs too.
    pub pseudo_filesystems: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileIoProbeConfig {
    pub enabled: bool,
    /// Per-process series of sonde.file.io and of process.disk.io before overflow.
    pub process_limit: usize,
    /// Whether reads and writes of files on pseudo file systems (proc, sysfs, cgroup v1 and
    /// v2, tracefs, debugfs) count. Off by default: they render kernel state on read, and
    /// monitoring agents (Sonde among them) would fill the figures with their own reads.
    pub pseudo_filesystems: bool,
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
            pseudo_filesystems: raw.pseudo_filesystems.unwrap_or(false),
        })
    }
}
