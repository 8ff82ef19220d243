//! Sonde's own metrics: probe status and cost, losses, export outcomes, CPU and memory.

use std::time::Duration;

use sonde_semconv::attr::{self, cpu_mode, export_outcome, loss_reason};
use sonde_semconv::metric as m;

use crate::collect::agent_self::SelfUsage;
use crate::model::{numbers, Attributes, Metric, Number};
use crate::probe::ProbeReport;

/// Export outcomes since start, in data points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportCounts {
    pub sent: u64,
    pub retried: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SelfInputs<'a> {
    pub reports: &'a [ProbeReport],
    /// (probe, kernel run time, run count)
    pub run_stats: &'a [(&'static str, Duration, u64)],
    /// (probe, reason label, count)
    pub lost: &'a [(&'static str, &'static str, u64)],
    pub export: ExportCounts,
    pub usage: SelfUsage,
}

fn int(v: u64) -> Number {
    Number::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn probe(p: &'static str) -> Attributes {
    Attributes::new().with(attr::SONDE_PROBE, p)
}

pub fn metrics(i: &SelfInputs<'_>, start: u64) -> Vec<Metric> {
    let mut out = vec![numbers(
        m::SONDE_PROBE_STATUS,
        start,
        i.reports.iter().map(|r| {
            (
                probe(r.probe).with(attr::SONDE_PROBE_STATE, r.state.label()),
                Number::Int(1),
            )
        }),
    )];
    if !i.run_stats.is_empty() {
        out.push(numbers(
            m::SONDE_PROBE_RUN_DURATION,
            start,
            i.run_stats
                .iter()
                .map(|(p, t, _)| (probe(p), Number::Double(t.as_secs_f64()))),
        ));
        out.push(numbers(
            m::SONDE_PROBE_RUN_COUNT,
            start,
            i.run_stats.iter().map(|(p, _, n)| (probe(p), int(*n))),
        ));
    }
    out.push(numbers(
        m::SONDE_PROBE_EVENTS_LOST,
        start,
        i.lost.iter().map(|(p, reason, n)| {
            debug_assert!([
                loss_reason::RINGBUF_FULL,
                loss_reason::MAP_FULL,
                loss_reason::CARDINALITY
            ]
            .contains(reason));
            (probe(p).with(attr::SONDE_LOSS_REASON, *reason), int(*n))
        }),
    ));
    let outcome = |o: &str, n: u64| {
        (
            Attributes::new().with(attr::SONDE_EXPORT_OUTCOME, o),
            int(n),
        )
    };
    out.push(numbers(
        m::SONDE_EXPORT_POINTS,
        start,
        [
            outcome(export_outcome::SENT, i.export.sent),
            outcome(export_outcome::RETRIED, i.export.retried),
            outcome(export_outcome::DROPPED, i.export.dropped),
        ],
    ));
    let mode = |mo: &str, d: Duration| {
        (
            Attributes::new().with(attr::CPU_MODE, mo),
            Number::Double(d.as_secs_f64()),
        )
    };
    out.push(numbers(
        m::SONDE_AGENT_CPU_TIME,
        start,
        [
            mode(cpu_mode::USER, i.usage.user),
            mode(cpu_mode::SYSTEM, i.usage.system),
        ],
    ));
    out.push(numbers(
        m::SONDE_AGENT_MEMORY_RSS,
        start,
        [(Attributes::new(), int(i.usage.rss_bytes))],
    ));
    out
}
