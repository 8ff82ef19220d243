//! Probe families (and the /proc host source), one folder each: program table, collector,
//! pure aggregation and mapping, and the source that chains them.

pub mod dns;
pub mod fileio;
pub mod host;
pub mod process;
pub mod tcp;
