//! Export: snapshots out to OTLP collectors (gRPC, HTTP/protobuf), a Prometheus endpoint
//! and the console.
//!
//! The OTel SDK cannot carry pre-aggregated histograms (kernel buckets) in 0.33 and drops
//! a batch after a few retries, so Sonde builds OTLP requests itself from the official
//! protobuf types (`opentelemetry-proto`) and owns retry and backlog. The SDK is used for
//! what it does well: Resource detection and merging (see `resource`).

pub mod console;
pub mod otlp;
pub mod prometheus;
pub mod resource;

/// The instrumentation scope of everything Sonde exports (OTLP scope, `otel_scope_name`).
pub const SCOPE_NAME: &str = "sonde";
/// The scope's version: Sonde's.
pub const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::mapping::self_telemetry::ExportCounts;

/// Export outcomes, shared between exporters and self-telemetry.
#[derive(Debug, Default)]
pub struct ExportStats {
    sent: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
    /// Durable queue: 0 = none configured, else bytes + 1.
    queue_bytes_plus_one: AtomicU64,
    /// When the oldest unsent batch was made (Unix ns); 0 when nothing waits.
    oldest_unsent: AtomicU64,
    queue_corrupt: AtomicU64,
    queue_write_failed: AtomicU64,
    otlp: std::sync::atomic::AtomicBool,
}

impl ExportStats {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }
    pub fn retried(&self, n: u64) {
        self.retried.fetch_add(n, Ordering::Relaxed);
    }
    pub fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
    /// The backlog's state after a change: the durable queue's bytes (if there is one)
    /// and when its oldest unsent batch was made.
    pub fn set_queue(&self, bytes: Option<u64>, oldest_unix_ns: Option<u64>) {
        self.otlp.store(true, Ordering::Relaxed);
        self.queue_bytes_plus_one
            .store(bytes.map_or(0, |b| b.saturating_add(1)), Ordering::Relaxed);
        self.oldest_unsent
            .store(oldest_unix_ns.unwrap_or(0), Ordering::Relaxed);
    }
    /// The durable queue's count of corrupt records skipped (it only grows).
    pub fn queue_corrupt(&self, total: u64) {
        self.queue_corrupt.fetch_max(total, Ordering::Relaxed);
    }
    /// A batch kept in memory because the durable queue could not be opened or written.
    pub fn queue_write_failed(&self) {
        self.queue_write_failed.fetch_add(1, Ordering::Relaxed);
    }
    pub fn counts(&self) -> ExportCounts {
        let oldest = self.oldest_unsent.load(Ordering::Relaxed);
        ExportCounts {
            sent: self.sent.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            otlp: self.otlp.load(Ordering::Relaxed),
            queue_bytes: self
                .queue_bytes_plus_one
                .load(Ordering::Relaxed)
                .checked_sub(1),
            oldest_unsent_unix_ns: (oldest != 0).then_some(oldest),
            queue_corrupt: self.queue_corrupt.load(Ordering::Relaxed),
            queue_write_failed: self.queue_write_failed.load(Ordering::Relaxed),
        }
    }
}
