//! The DNS family: drains the probe's ring buffer of DNS packets, parses them
//! ([`wire`]), and matches queries to responses ([`matcher`]). `wire` and `matcher` are
//! pure (no aya, no tokio) and unit-tested with tables and proptest.

pub mod matcher;
pub mod wire;
