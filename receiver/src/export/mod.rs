//! Export: snapshots out to OTLP collectors (gRPC, HTTP/protobuf) and the console.
//!
//! The OTel SDK cannot carry pre-aggregated histograms (kernel buckets) in 0.33 and drops
//! a batch after a few retries, so Sonde builds OTLP requests itself from the official
//! protobuf types (`opentelemetry-proto`) and owns retry and backlog. The SDK is used for
//! what it does well: Resource detection and merging (see `resource`).

pub mod console;
pub mod otlp;
pub mod resource;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::mapping::self_telemetry::ExportCounts;

/// Export outcomes, shared between exporters and self-telemetry.
#[derive(Debug, Default)]
pub struct ExportStats {
    sent: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
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
    pub fn counts(&self) -> ExportCounts {
        ExportCounts {
            sent: self.sent.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}
