//! TCP from the tcp probe: collector (counters, live connections, events), TIME_WAIT
//! from /proc/net/sockstat, mapping.

pub mod collect;
pub mod config;
pub mod mapping;
pub mod probe;
pub mod sock_diag;
pub mod spans;

use collect::TcpSpans;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sonde_semconv::attr::loss_reason;

use crate::family::tcp::collect::{parse_sockstat_tw, TcpCollector};
use crate::family::{Family, ProbesConfig, Started};
use crate::probe::{LoadError, ProgramSpec};
use crate::source::{Output, Source};

#[derive(Debug)]
pub struct TcpSource {
    pub collector: TcpCollector,
    proc_root: PathBuf,
    last_reconcile: Instant,
}

/// How often the connection-state counts are reconciled against the kernel's socket
/// table: a dump costs about as much as reading /proc/net/tcp, so not every tick.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(60);

impl TcpSource {
    pub fn new(collector: TcpCollector) -> Self {
        Self {
            collector,
            proc_root: PathBuf::from("/proc"),
            last_reconcile: Instant::now(),
        }
    }
}

impl Source for TcpSource {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn collect(&mut self, start: u64, out: &mut Output) {
        self.collector.walk();
        self.collector.drain_events();
        if self.last_reconcile.elapsed() >= RECONCILE_EVERY {
            self.last_reconcile = Instant::now();
            match self
                .collector
                .reconcile(&sock_diag::tcp_state_counts, false)
            {
                Ok(r) if r.corrected > 0 => tracing::info!(
                    corrected = r.corrected,
                    "connection-state counts corrected against the kernel's socket table"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("reconciling the tcp probe's state counts: {e}"),
            }
        }
        let counts = match self.collector.read() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("reading the tcp probe's maps failed: {e}");
                return;
            }
        };
        let time_wait = std::fs::read_to_string(self.proc_root.join("net/sockstat"))
            .ok()
            .and_then(|t| parse_sockstat_tw(&t));
        let ledger = self.collector.ledger(crate::unix_nanos());
        out.metrics
            .extend(mapping::metrics(&counts, &ledger, time_wait, start));
        out.lost
            .push(("tcp.state", loss_reason::RINGBUF_FULL, counts.lost_ringbuf));
        // Both maps are written by tcp.state: connections untracked and listeners whose
        // inbound connections go unattributed.
        out.lost.push((
            "tcp.state",
            loss_reason::MAP_FULL,
            counts.lost_conns + counts.lost_listeners,
        ));
        if let Some(why) = self.collector.ring_failure() {
            out.failed.push((collect::RING_PROBE, why.to_owned()));
        }
    }

    fn stop(&mut self) -> Vec<crate::collect::ring::DrainTask> {
        self.collector.stop().into_iter().collect()
    }
}

/// Inode of the calling thread's network namespace (the one sock_diag, which seeds and
/// reconciles the counts, then describes), for the probe's `sonde_netns_ino`; 0 (count
/// every namespace) if it cannot be read.
pub fn own_netns_ino(proc_root: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(proc_root.join("thread-self/ns/net"))
        .ok()
        .and_then(|m| u32::try_from(m.ino()).ok())
        .unwrap_or(0)
}

/// Loads the tcp family with its namespace filter set, attaches it, seeds the
/// connection count and starts the collector. Must run inside a tokio runtime.
pub fn load(
    series: crate::aggregate::bounded::SeriesPolicy,
    spans: Option<&crate::spans::Spans>,
    processes: &crate::cgroup::Attribution,
) -> Result<(crate::probe::LoadedFamily, Option<TcpSource>), crate::probe::LoadError> {
    load_sized(series, spans, processes, &[])
}

/// As [`load`], with other bounds for the maps in `map_sizes` (name, max_entries).
pub fn load_sized(
    series: crate::aggregate::bounded::SeriesPolicy,
    spans: Option<&crate::spans::Spans>,
    processes: &crate::cgroup::Attribution,
    map_sizes: &[(&str, u32)],
) -> Result<(crate::probe::LoadedFamily, Option<TcpSource>), crate::probe::LoadError> {
    let proc_root = Path::new("/proc");
    let ino = own_netns_ino(proc_root);
    let mut loaded = crate::probe::load_family_needing(
        sonde_probes::Family::Tcp,
        crate::family::tcp::probe::PROGRAMS,
        crate::family::tcp::probe::NEEDS,
        true,
        &[(sonde_probes::names::tcp::GLOBAL_NETNS_INO, ino)],
        map_sizes,
    )?;
    let source = super::collector(
        "tcp",
        TcpCollector::start(
            &mut loaded,
            series,
            processes.clone(),
            sock_diag::tcp_state_counts,
            spans.filter(|s| s.config.tcp).map(|s| TcpSpans {
                sink: s.sink.clone(),
                rule: spans::TcpSpanRule {
                    longer_than_ns: s
                        .config
                        .tcp_longer_than
                        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                },
            }),
        ),
    )
    .map(TcpSource::new);
    Ok((loaded, source))
}

/// The tcp family: connection states, lifecycle, bytes, RTT and retransmits from the
/// sock and tcp tracepoints.
#[derive(Debug)]
pub struct Tcp;

impl Family for Tcp {
    fn kind(&self) -> sonde_probes::Family {
        sonde_probes::Family::Tcp
    }

    fn procfs_twins(&self) -> &'static [crate::family::ProcfsTwin] {
        &[crate::family::ProcfsTwin {
            metric: sonde_semconv::tcp::SYSTEM_NETWORK_CONNECTION_COUNT.name,
            probes: &["tcp.state"],
        }]
    }

    fn programs(&self) -> &'static [ProgramSpec] {
        probe::PROGRAMS
    }

    fn needs(&self) -> &'static [crate::probe::needs::Need] {
        probe::NEEDS
    }

    fn enabled(&self, config: &ProbesConfig) -> bool {
        config.tcp.enabled
    }

    fn start(
        &self,
        config: &ProbesConfig,
        series: crate::aggregate::bounded::SeriesPolicy,
        spans: Option<&crate::spans::Spans>,
        processes: &crate::cgroup::Attribution,
    ) -> Result<Started, LoadError> {
        let (loaded, source) = load(series.with_limit(config.tcp.series_limit), spans, processes)?;
        Ok(Started::new(loaded, source))
    }
}
