//! Sources: one per probe family (or /proc area), each chaining its collector,
//! aggregation and mapping, so the agent loop only asks every source for its metrics.
//!
//! To add a probe family: a C file in probes/src/bpf, its `ProgramSpec`s in `probe/`,
//! a collector in `collect/`, a pure mapping in `mapping/`, and a `Source` here that the
//! agent registers (receiver/src/agent.rs, `Probes::load`).

use crate::model::Metric;

/// What one source contributes to a snapshot.
#[derive(Debug, Default)]
pub struct Output {
    pub metrics: Vec<Metric>,
    /// (probe, `sonde.loss.reason` value, cumulative count) for `sonde.probe.events.lost`.
    pub lost: Vec<(&'static str, &'static str, u64)>,
}

pub trait Source: Send {
    /// For logs: which source failed.
    fn name(&self) -> &'static str;
    /// Appends this source's metrics at one snapshot. `start` is the agent's start time
    /// (start of every cumulative series). Errors are logged by the source and the
    /// snapshot goes on without its metrics.
    fn collect(&mut self, start: u64, out: &mut Output);
}
