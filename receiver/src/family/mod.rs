//! Probe families, one folder each: `probe.rs` (where its programs attach), `collect.rs`
//! (maps and rings), `mapping.rs` (pure, semconv names), `aggregate.rs` where it has pure
//! state of its own, `config.rs` (its `probes.<name>` section) and `mod.rs` (its
//! [`Source`] and its [`Family`]). `host/` is the /proc and /sys source, shaped alike but
//! loading no probe.
//!
//! A family is registered by one line in `families!` below: from it come the list the
//! agent, `sonde check` and self-telemetry iterate ([`FAMILIES`]), the raw `probes:`
//! section ([`RawProbes`]) and its validated form ([`ProbesConfig`]). A family that loads
//! nothing into the kernel (it reads files, such as cgroup statistics) implements
//! [`FileFamily`] and is registered under `files`: it runs in both modes, eBPF and
//! fallback ([`FILE_FAMILIES`], [`file_sources`]).

pub mod containers;
pub mod dns;
pub mod fileio;
pub mod host;
pub mod netio;
pub mod process;
pub mod tcp;

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::aggregate::bounded::SeriesPolicy;
use crate::cgroup::Attribution;
use crate::config::ConfigError;
use crate::probe::{self, LoadError, LoadedFamily, ProgramSpec};
use crate::source::Source;

/// A config section: the YAML as written (every key optional, unknown keys rejected)
/// and its validated form.
pub trait Section: Sized {
    type Raw: DeserializeOwned + Default;
    /// Errors name the key path (`probes.<family>.<key>`).
    fn validate(raw: Self::Raw) -> Result<Self, ConfigError>;
}

/// A family loaded into the kernel, with its source when the collector started.
pub struct Started {
    pub loaded: LoadedFamily,
    pub source: Option<Box<dyn Source>>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("loaded", &self.loaded)
            .field("source", &self.source.as_ref().map(|s| s.name()))
            .finish()
    }
}

impl Started {
    pub fn new<S: Source + 'static>(loaded: LoadedFamily, source: Option<S>) -> Self {
        Self {
            loaded,
            source: source.map(|s| Box::new(s) as Box<dyn Source>),
        }
    }
}

/// One probe family, as the agent, `sonde check` and self-telemetry see it.
pub trait Family: Sync {
    /// Its object in `sonde_probes` (and its name in config keys, logs and `sonde.probe`).
    fn kind(&self) -> sonde_probes::Family;

    /// Its programs and where each attaches.
    fn programs(&self) -> &'static [ProgramSpec];

    /// Whether its config section turns it on.
    fn enabled(&self, config: &ProbesConfig) -> bool;

    /// Loads and attaches its programs and starts its collector from its config section.
    /// `series` carries the expiry and start every bounded series shares (its limit is
    /// the family's own key). The family comes back even when the collector fails (its
    /// reports say what attached); the source is then `None` and the failure is logged.
    /// `spans`: where the family hands spans of its notable events, when they are
    /// exported (`None`: the family never looks at events for spans). `processes` keys
    /// its per-process series (executable name, container; pid if asked) with the one
    /// cgroup resolver the agent shares among families.
    fn start(
        &self,
        config: &ProbesConfig,
        series: SeriesPolicy,
        spans: Option<&crate::spans::Spans>,
        processes: &Attribution,
    ) -> Result<Started, LoadError>;

    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// What its programs need of the kernel beyond the family's baseline, and what runs
    /// without it (`probe::needs`).
    fn needs(&self) -> &'static [probe::needs::Need] {
        &[]
    }

    /// Loads its object and attaches every program (each program's outcome reported).
    fn load(&self) -> Result<LoadedFamily, LoadError> {
        probe::load_family_needing(self.kind(), self.programs(), self.needs(), true, &[], &[])
    }

    /// For `sonde check`: loads (relocation and verification) without attaching.
    fn check(&self) -> Result<LoadedFamily, LoadError> {
        probe::load_family_needing(self.kind(), self.programs(), self.needs(), false, &[], &[])
    }

    /// Metrics its probes export that /proc also supplies (`host::merge`), each with the
    /// probes it needs: where one of those is not attached the probe side's metric is
    /// left out, so the /proc side's is exported instead of an empty series.
    fn procfs_twins(&self) -> &'static [ProcfsTwin] {
        &[]
    }

    /// Kernel run time and run count per probe (zero unless statistics are switched on).
    fn run_stats(&self, loaded: &LoadedFamily) -> Vec<(&'static str, Duration, u64)> {
        loaded.run_stats(self.programs())
    }
}

/// A family that loads nothing into the kernel: it reads files (cgroup statistics under
/// /sys/fs/cgroup), so it needs no capability beyond reading them and runs whether or not
/// the probes load.
pub trait FileFamily: Sync {
    /// Its name in config keys (`probes.<name>`) and logs.
    fn name(&self) -> &'static str;

    /// Whether its config section turns it on.
    fn enabled(&self, config: &ProbesConfig) -> bool;

    /// Its source. `series` carries the expiry and start every bounded series shares (its
    /// limit is the family's own key). `None` (and a log line saying why) when what it
    /// reads is not on this host.
    fn start(&self, config: &ProbesConfig, series: SeriesPolicy) -> Option<Box<dyn Source>>;

    /// For `sonde check`: what it would read on this host, or why it cannot.
    fn check(&self) -> String;
}

/// The sources of the enabled file families, in registration order.
pub fn file_sources(config: &ProbesConfig, series: SeriesPolicy) -> Vec<Box<dyn Source>> {
    FILE_FAMILIES
        .iter()
        .filter(|f| f.enabled(config))
        .filter_map(|f| f.start(config, series))
        .collect()
}

/// A metric a family's probes and /proc both supply, and the probes it needs.
#[derive(Debug, Clone, Copy)]
pub struct ProcfsTwin {
    pub metric: &'static str,
    pub probes: &'static [&'static str],
}

/// Names of the probe metrics that cannot be trusted as of `reports`: a probe they need
/// is not attached (or has failed since).
pub fn unavailable_twins(
    families: impl IntoIterator<Item = &'static dyn Family>,
    reports: &[probe::ProbeReport],
) -> Vec<&'static str> {
    let attached = |p: &str| {
        reports
            .iter()
            .any(|r| r.probe == p && r.state == probe::ProbeState::Attached)
    };
    families
        .into_iter()
        .flat_map(|f| f.procfs_twins())
        .filter(|t| !t.probes.iter().all(|p| attached(p)))
        .map(|t| t.metric)
        .collect()
}

/// A collector's outcome as the family's source: a failure is logged and leaves the
/// family loaded without a source.
pub fn collector<S, E: std::fmt::Display>(what: &str, started: Result<S, E>) -> Option<S> {
    started
        .map_err(|e| tracing::error!("{what} probe collector failed: {e}"))
        .ok()
}

/// Registers the families: `key: family value => its validated config section`, in
/// load order, probe families under `probes`, families that only read files under `files`.
/// The key is the family's `probes.<key>` config section.
macro_rules! families {
    (
        probes { $($key:ident: $family:expr => $section:ty,)* }
        files { $($fkey:ident: $ffamily:expr => $fsection:ty,)* }
    ) => {
        /// The `probes:` section as written.
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawProbes {
            $(pub $key: Option<<$section as Section>::Raw>,)*
            $(pub $fkey: Option<<$fsection as Section>::Raw>,)*
        }

        /// Every family's validated section.
        #[derive(Debug, Clone, PartialEq)]
        pub struct ProbesConfig {
            $(pub $key: $section,)*
            $(pub $fkey: $fsection,)*
        }

        impl ProbesConfig {
            pub fn validate(raw: RawProbes) -> Result<Self, ConfigError> {
                Ok(Self {
                    $($key: <$section as Section>::validate(raw.$key.unwrap_or_default())?,)*
                    $($fkey: <$fsection as Section>::validate(raw.$fkey.unwrap_or_default())?,)*
                })
            }
        }

        /// Every probe family, in load order.
        pub static FAMILIES: &[&dyn Family] = &[$(&$family,)*];

        /// Every family that only reads files, in registration order.
        pub static FILE_FAMILIES: &[&dyn FileFamily] = &[$(&$ffamily,)*];
    };
}

families! {
    probes {
        process: process::Process => process::config::ProcessProbeConfig,
        fileio: fileio::FileIo => fileio::config::FileIoProbeConfig,
        tcp: tcp::Tcp => tcp::config::TcpProbeConfig,
        dns: dns::Dns => dns::config::DnsProbeConfig,
        netio: netio::NetIo => netio::config::NetIoConfig,
    }
    files {
        containers: containers::Containers => containers::config::ContainersConfig,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_is_registered_once_under_its_own_name() {
        let names: Vec<&str> = FAMILIES.iter().map(|f| f.name()).collect();
        let all: Vec<&str> = sonde_probes::Family::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names, all, "every embedded object has its family, in order");
        for f in FAMILIES {
            assert!(
                f.programs().iter().all(|p| p.probe.starts_with(f.name())),
                "{}: probe names start with the family's name",
                f.name()
            );
        }
        for f in FILE_FAMILIES {
            assert!(
                !names.contains(&f.name()),
                "{}: a file family's name is not a probe family's",
                f.name()
            );
        }
    }
}
