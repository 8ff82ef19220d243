//! Process lifecycle from the process probe, and process counts by state from /proc.

pub mod aggregate;
pub mod collect;
pub mod config;
pub mod mapping;
pub mod probe;
pub mod procfs;
pub mod spans;

use std::path::PathBuf;

use sonde_semconv::attr::loss_reason;

use sonde_probes::names::process as n;

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
                out.lost.push((
                    "process.exec",
                    loss_reason::MAP_FULL,
                    counts.lost_exec_starts,
                ));
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
        if let Some(why) = self.collector.exit_ring_failure() {
            out.failed.push((collect::EXIT_PROBE, why.to_owned()));
        }
    }

    fn stop(&mut self) -> Vec<crate::collect::ring::DrainTask> {
        self.collector.stop()
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

    fn procfs_twins(&self) -> &'static [crate::family::ProcfsTwin] {
        &[crate::family::ProcfsTwin {
            metric: sonde_semconv::metric::SYSTEM_PROCESS_CREATED.name,
            probes: &["process.fork"],
        }]
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
        spans: Option<&crate::spans::Spans>,
        processes: &crate::cgroup::Attribution,
    ) -> Result<Started, LoadError> {
        let spans = spans.filter(|s| s.config.process);
        // The kernel writes exit records only when process spans are on (nothing is read
        // or queued otherwise) and applies the long-running threshold itself.
        let min_ms = spans
            .and_then(|s| s.config.process_longer_than)
            .map_or(0, |d| {
                u32::try_from(d.as_millis().max(1)).unwrap_or(u32::MAX)
            });
        let mut loaded = crate::probe::load_family_with(
            self.kind(),
            self.programs(),
            true,
            &[
                (n::GLOBAL_EXIT_SPANS, u32::from(spans.is_some())),
                (n::GLOBAL_EXIT_SPAN_MIN_MS, min_ms),
            ],
        )?;
        let limit = series.with_limit(config.process.executable_name_limit);
        let started = ProcessCollector::start(&mut loaded, limit)
            .map(|c| c.with_attribution(processes.clone()))
            .and_then(|c| match spans {
                Some(s) => c.with_exit_spans(
                    &mut loaded,
                    collect::ExitSpans {
                        sink: s.sink.clone(),
                        attribution: processes.clone(),
                    },
                ),
                None => Ok(c),
            });
        let source =
            super::collector("process", started).map(|collector| ProcessSource { collector });
        Ok(Started::new(loaded, source))
    }
}
