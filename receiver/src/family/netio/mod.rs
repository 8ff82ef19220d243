//! Network I/O per process (executable name and container) and per container from the
//! netio probe: bytes that send and receive calls on TCP and UDP sockets returned
//! (the raw tracepoints sock_send_length / sock_recv_length, kernel 6.3+).

pub mod aggregate;
pub mod collect;
pub mod config;
pub mod mapping;
pub mod probe;

use sonde_semconv::attr::loss_reason;

use crate::aggregate::bounded::SeriesPolicy;
use crate::cgroup::Attribution;
use crate::family::netio::collect::NetIoCollector;
use crate::family::{Family, ProbesConfig, Started};
use crate::probe::{LoadError, ProbeState, ProgramSpec};
use crate::source::{Output, Source};

#[derive(Debug)]
pub struct NetIoSource {
    pub collector: NetIoCollector,
}

impl Source for NetIoSource {
    fn name(&self) -> &'static str {
        "netio"
    }

    fn collect(&mut self, start: u64, out: &mut Output) {
        match self.collector.collect(crate::unix_nanos()) {
            Ok(lost) => {
                let t = &self.collector.totals;
                out.metrics.extend(mapping::metrics(
                    &t.processes(),
                    &t.containers(),
                    t.unkeyed_totals(),
                    start,
                ));
                out.lost.push(("netio", loss_reason::MAP_FULL, lost.keys));
            }
            Err(e) => tracing::warn!("reading the netio probe's maps failed: {e}"),
        }
    }
}

/// The netio family: sock_send_length and sock_recv_length.
#[derive(Debug)]
pub struct NetIo;

impl Family for NetIo {
    fn kind(&self) -> sonde_probes::Family {
        sonde_probes::Family::NetIo
    }

    fn programs(&self) -> &'static [ProgramSpec] {
        probe::PROGRAMS
    }

    fn enabled(&self, config: &ProbesConfig) -> bool {
        config.netio.enabled
    }

    fn needs(&self) -> &'static [crate::probe::needs::Need] {
        probe::NEEDS
    }

    fn start(
        &self,
        config: &ProbesConfig,
        series: SeriesPolicy,
        _spans: Option<&crate::spans::Spans>,
        processes: &Attribution,
    ) -> Result<Started, LoadError> {
        let mut loaded = self.load()?;
        if !loaded
            .reports
            .iter()
            .any(|r| r.state == ProbeState::Attached)
        {
            tracing::warn!(
                "netio: no program attached: no process.network.io or container.network.io"
            );
            return Ok(Started::new(loaded, None::<NetIoSource>));
        }
        let limit = series.with_limit(config.netio.series_limit);
        let source = super::collector(
            "netio",
            NetIoCollector::start(&mut loaded, limit, processes.clone()),
        )
        .map(|collector| NetIoSource { collector });
        Ok(Started::new(loaded, source))
    }
}
