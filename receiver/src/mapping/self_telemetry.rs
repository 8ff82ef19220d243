//! Sonde's own metrics: probe status and cost, losses, export outcomes, CPU and memory.

use std::time::Duration;

use sonde_semconv::attr::{self, cpu_mode, export_outcome, loss_reason, queue_error};
use sonde_semconv::metric as m;

use crate::collect::agent_self::SelfUsage;
use crate::model::{numbers, Attributes, Metric, Number};
use crate::probe::ProbeReport;

/// Export outcomes since start, in data points, and the state of what waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportCounts {
    pub sent: u64,
    pub retried: u64,
    pub dropped: u64,
    /// An OTLP exporter runs (so there is an export lag to report).
    pub otlp: bool,
    /// Bytes of the durable queue; `None` when none is configured.
    pub queue_bytes: Option<u64>,
    /// When the oldest unsent batch was made (Unix ns); `None` when nothing waits.
    pub oldest_unsent_unix_ns: Option<u64>,
    pub queue_corrupt: u64,
    pub queue_write_failed: u64,
}

impl ExportCounts {
    /// Age of the oldest unsent data at `now` (zero when nothing waits).
    pub fn lag(&self, now_unix_ns: u64) -> Duration {
        Duration::from_nanos(
            self.oldest_unsent_unix_ns
                .map_or(0, |t| now_unix_ns.saturating_sub(t)),
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct SelfInputs<'a> {
    pub reports: &'a [ProbeReport],
    /// (probe, kernel run time, run count)
    pub run_stats: &'a [(&'static str, Duration, u64)],
    /// (probe, reason label, count)
    pub lost: &'a [(&'static str, &'static str, u64)],
    pub export: ExportCounts,
    /// The agent's own CPU and memory; `None` when /proc/self could not be read this
    /// time (then nothing is exported rather than a false zero).
    pub usage: Option<SelfUsage>,
    /// Span outcomes, when spans are exported.
    pub spans: Option<crate::spans::sink::SpanCounts>,
    /// Bytes pinned by Sonde's BPF maps (none in fallback mode).
    pub map_memory: Option<u64>,
}

fn int(v: u64) -> Number {
    Number::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn probe(p: &'static str) -> Attributes {
    Attributes::new().with(attr::SONDE_PROBE, p)
}

/// `now`: the snapshot's time, for the age of the oldest unsent data.
pub fn metrics(i: &SelfInputs<'_>, start: u64, now: u64) -> Vec<Metric> {
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
                loss_reason::CARDINALITY,
                loss_reason::RECURSION,
                loss_reason::COPY_FAILED
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
    if let Some(c) = i.spans {
        let dropped = |reason: &'static str, n: u64| {
            let (a, n) = outcome(export_outcome::DROPPED, n);
            (a.with(attr::SONDE_LOSS_REASON, reason), n)
        };
        out.push(numbers(
            m::SONDE_EXPORT_SPANS,
            start,
            [
                outcome(export_outcome::SENT, c.sent),
                outcome(export_outcome::RETRIED, c.retried),
                dropped(loss_reason::RATE_LIMIT, c.dropped_rate_limit),
                dropped(loss_reason::QUEUE_FULL, c.dropped_queue_full),
                dropped(loss_reason::REJECTED, c.dropped_rejected),
            ],
        ));
    }
    if i.export.otlp {
        out.push(numbers(
            m::SONDE_EXPORT_LAG,
            start,
            [(
                Attributes::new(),
                Number::Double(i.export.lag(now).as_secs_f64()),
            )],
        ));
    }
    if let Some(bytes) = i.export.queue_bytes {
        out.push(numbers(
            m::SONDE_EXPORT_QUEUE_USAGE,
            start,
            [(Attributes::new(), int(bytes))],
        ));
        let error = |e: &str, n: u64| (Attributes::new().with(attr::ERROR_TYPE, e), int(n));
        out.push(numbers(
            m::SONDE_EXPORT_QUEUE_ERRORS,
            start,
            [
                error(queue_error::CORRUPT, i.export.queue_corrupt),
                error(queue_error::WRITE_FAILED, i.export.queue_write_failed),
            ],
        ));
    }
    let mode = |mo: &str, d: Duration| {
        (
            Attributes::new().with(attr::CPU_MODE, mo),
            Number::Double(d.as_secs_f64()),
        )
    };
    if let Some(usage) = i.usage {
        out.push(numbers(
            m::SONDE_AGENT_CPU_TIME,
            start,
            [
                mode(cpu_mode::USER, usage.user),
                mode(cpu_mode::SYSTEM, usage.system),
            ],
        ));
    }
    if let Some(bytes) = i.map_memory {
        out.push(numbers(
            m::SONDE_PROBE_MAP_MEMORY,
            start,
            [(Attributes::new(), int(bytes))],
        ));
    }
    if let Some(usage) = i.usage {
        out.push(numbers(
            m::SONDE_AGENT_MEMORY_RSS,
            start,
            [(Attributes::new(), int(usage.rss_bytes))],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_self_usage_is_left_out_not_exported_as_zero() {
        let names = |i: &SelfInputs<'_>| -> Vec<&'static str> {
            metrics(i, 1, 2).iter().map(|m| m.def.name).collect()
        };
        let missing = names(&SelfInputs::default());
        assert!(!missing.contains(&m::SONDE_AGENT_CPU_TIME.name));
        assert!(!missing.contains(&m::SONDE_AGENT_MEMORY_RSS.name));
        let read = names(&SelfInputs {
            usage: Some(SelfUsage::default()),
            ..SelfInputs::default()
        });
        assert!(read.contains(&m::SONDE_AGENT_CPU_TIME.name));
        assert!(read.contains(&m::SONDE_AGENT_MEMORY_RSS.name));
    }
}
