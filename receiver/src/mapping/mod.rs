//! Pure mapping from collected counts to metrics with the contract's names, units and
//! attributes (all spelled in `sonde_semconv`). No I/O here.

pub mod self_telemetry;

/// A kernel log2 histogram (`probes/include/sonde_log2.h`: slot i counts values in
/// (2^(i-1), 2^i] ns, the last slot everything above) as an explicit-bucket histogram with
/// exactly those bounds, in seconds: the kernel's buckets, not re-bucketed.
pub fn log2_histogram(slots: &[u64], sum_ns: u64) -> crate::model::Histogram {
    crate::model::Histogram {
        bounds: log2_bounds_seconds(slots.len()),
        counts: slots.to_vec(),
        sum: sum_ns as f64 / 1e9,
        count: slots.iter().sum(),
    }
}

/// The explicit bounds of a log2 histogram of `slots` slots: 2^0 .. 2^(slots-2) ns.
pub fn log2_bounds_seconds(slots: usize) -> Vec<f64> {
    (0..slots.saturating_sub(1))
        .map(|i| (1u64 << i) as f64 / 1e9)
        .collect()
}
