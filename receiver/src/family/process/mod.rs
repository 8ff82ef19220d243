//! Process lifecycle from the process probe, and process counts by state from /proc.

pub mod aggregate;
pub mod collect;
pub mod config;
pub mod mapping;
pub mod probe;
pub mod procfs;

use std::path::PathBuf;

use sonde_semconv::attr::loss_reason;

use crate::family::process::collect::ProcessCollector;
use crate::family::{Family, ProbesConfig, Started};
use crate::probe::{LoadError, ProgramSpec};
use crate::source::{Output, Source};

/// The eBPF half: exact creation/exec/exit counts.
#[derive(Debug)]
pub struct ProcessSource {
    pub collector: ProcessCollector,
}

impl Source for ProcessSource {
    fn name(&self) -> &'static str {
        "process"
    }

    fn collect(&mut self, start: u64, out: &mut Output) {
        match self.collector.read() {
            Ok(counts) => {
                let (names, overflow) = self.collector.exec_names(crate::unix_nanos());
                out.metrics.extend(mapping::lifecycle(
                    &counts,
                    &names,
                    overflow.as_ref(),
                    start,
                ));
                out.lost.push((
                    "process.exec",
                    loss_reason::RINGBUF_FULL,
                    counts.lost_ringbuf,
                ));
                out.lost
                    .push(("process.exit", loss_reason::RINGBUF_FULL, counts.lost_exits));
            }
            Err(e) => tracing::warn!("reading the process probe's counters failed: {e}"),
        }
        match self.collector.exited(crate::unix_nanos()) {
            Ok(totals) => out.metrics.extend(mapping::exited(totals)),
            Err(e) => {
                tracing::warn!("reading the process probe's per-executable totals failed: {e}")
            }
        }
        if let Some(why) = self.collector.ring_failure() {
            out.failed.push((collect::EXEC_PROBE, why.to_owned()));
        }
    }

    fn stop(&mut self) -> Vec<crate::collect::ring::DrainTask> {
        self.collector.stop().into_iter().collect()
    }
}

/// `system.process.count` by state, from /proc (available in every mode).
#[derive(Debug)]
pub struct ProcessStateSource {
    pub proc_root: PathBuf,
}

impl Default for ProcessStateSource {
    fn default() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
        }
    }
}

impl Source for ProcessStateSource {
    fn name(&self) -> &'static str {
        "process_states"
    }

    fn collect(&mut self, start: u64, out: &mut Output) {
        match procfs::process_states(&self.proc_root) {
            Ok(states) => out.metrics.push(mapping::count(&states, start)),
            Err(e) => tracing::warn!("reading /proc for process states failed: {e}"),
        }
    }
}

/// The process family: fork, exec and exit from scheduler tracepoints.
#[derive(Debug)]
pub struct Process;

impl Family for Process {
    fn kind(&self) -> sonde_probes::Family {
        sonde_probes::Family::Process
    }

    fn programs(&self) -> &'static [ProgramSpec] {
        probe::PROGRAMS
    }

    fn enabled(&self, config: &ProbesConfig) -> bool {
        config.process.enabled
    }

    fn start(
        &self,
        config: &ProbesConfig,
        series: crate::aggregate::bounded::SeriesPolicy,
        _spans: Option<&crate::spans::Spans>,
        _processes: &crate::cgroup::Attribution,
    ) -> Result<Started, LoadError> {
        let mut loaded = self.load()?;
        let limit = series.with_limit(config.process.executable_name_limit);
        let source = super::collector("process", ProcessCollector::start(&mut loaded, limit))
            .map(|collector| ProcessSource { collector });
        Ok(Started::new(loaded, source))
    }
}
