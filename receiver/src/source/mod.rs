//! Sources: one per probe family (or /proc area), each chaining its collector,
//! aggregation and mapping, so the agent loop only asks every source for its metrics.
//! A family's source lives in its folder (`family/<name>/mod.rs`); see `family` for how
//! a family is registered.

use crate::model::Metric;

/// What one source contributes to a snapshot.
#[derive(Debug, Default)]
pub struct Output {
    pub metrics: Vec<Metric>,
    /// (probe, `sonde.loss.reason` value, cumulative count) for `sonde.probe.events.lost`.
    pub lost: Vec<(&'static str, &'static str, u64)>,
    /// (probe, why) for probes that attached but stopped working since (a ring that can
    /// no longer be polled): shown as failed in `sonde.probe.status`.
    pub failed: Vec<(&'static str, String)>,
}

pub trait Source: Send {
    /// For logs: which source failed.
    fn name(&self) -> &'static str;
    /// Appends this source's metrics at one snapshot. `start` is the agent's start time
    /// (start of every cumulative series). Errors are logged by the source and the
    /// snapshot goes on without its metrics.
    fn collect(&mut self, start: u64, out: &mut Output);
    /// Hands over the source's background tasks (ring drains) so shutdown can join them
    /// before the probes are released.
    fn stop(&mut self) -> Vec<crate::collect::ring::DrainTask> {
        Vec::new()
    }
}
