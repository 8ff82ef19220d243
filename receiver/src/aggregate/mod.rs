//! Pure aggregation: bounded per-attribute state, the per-process series key and
//! temporality conversion. No I/O, no aya, no tokio here.

pub mod bounded;
pub mod process;
pub mod temporality;
