//! Sonde's agent library. Data flows one way:
//!
//! `probe` (load/attach) -> `collect` (read maps, drain rings, read /proc) ->
//! `aggregate` (pure) -> `mapping` (pure, semconv names) -> `model` -> `export`.
//!
//! `config` turns the YAML file and OTEL_* variables into one typed `Config` first.

pub mod aggregate;
pub mod cgroup;
pub mod collect;
pub mod config;
pub mod export;
pub mod family;
pub mod health;
pub mod mapping;
pub mod model;
pub mod privilege;
pub mod probe;
pub mod source;
pub mod spans;
pub mod tick;
pub mod view;

/// Now, as OTLP timestamps want it.
pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
