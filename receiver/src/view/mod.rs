//! What a person at the terminal reads: per-second rates, latency quantiles and rankings
//! computed from consecutive cumulative snapshots. It feeds the compact console summary
//! (`sonde run` with no collector) and `sonde top`, so both say the same thing.
//!
//! Pure: no I/O, no aya, no tokio. A snapshot goes in, a [`frame::Frame`] comes out.

pub mod frame;
pub mod quantile;
pub mod rank;
pub mod rate;
pub mod text;
