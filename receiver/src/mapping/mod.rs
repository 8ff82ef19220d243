//! Pure mapping from collected counts to metrics with the contract's names, units and
//! attributes (all spelled in `sonde_semconv`). No I/O here.

pub mod dns;
pub mod fileio;
pub mod host;
pub mod process;
pub mod self_telemetry;
pub mod tcp;
