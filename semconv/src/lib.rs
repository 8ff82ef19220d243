//! Every metric name, unit, description and attribute key that Sonde exports, spelled once.
//!
//! The contract is `../shared/reference/metrics.md` (OpenTelemetry semantic conventions
//! 1.44.0 where a name exists there, `sonde.*` otherwise). Dashboards depend on these exact
//! strings: a change here is a breaking change and belongs in the changelog.
//!
//! Nothing else in the workspace may spell a metric or attribute name; the `names_*` test
//! in `receiver` checks that no exported name escapes this crate.

pub mod attr;
pub mod dns;
pub mod fileio;
pub mod host;
pub mod metric;
pub mod tcp;

/// The semantic-conventions schema every export carries.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.44.0";

/// Instrument kinds as the OTel API names them; the OTLP data type follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Instrument {
    /// Monotonic sum.
    Counter,
    /// Non-monotonic sum.
    UpDownCounter,
    Gauge,
    Histogram,
}

/// One metric of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricDef {
    pub name: &'static str,
    pub instrument: Instrument,
    /// UCUM unit as OTel uses it (`s`, `By`, `{process}`).
    pub unit: &'static str,
    pub description: &'static str,
}
