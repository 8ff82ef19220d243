//! Pure aggregation: bounded per-attribute state and temporality conversion.
//! No I/O, no aya, no tokio here.

pub mod bounded;
pub mod temporality;
