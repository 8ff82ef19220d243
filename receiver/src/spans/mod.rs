//! Spans for the events worth a look: a slow or failed DNS lookup, a failed or reset TCP
//! connection, a process that ended with a failure or a signal.
//!
//! A family decides which of its events qualify (a pure predicate on what it already
//! holds, so events that do not qualify cost no allocation) and hands a [`Span`] to the
//! span pipeline: the rate limit ([`limit::TokenBucket`]), then the bounded export queue.
//! Times come from the kernel's monotonic clock and are converted to wall-clock time once,
//! with the offset [`clock::MonotonicToWall`] measured at start-up, so spans line up with
//! the metrics exported at the same moment.
//!
//! Everything here is pure data and arithmetic: no I/O, no aya, no tokio (the one clock
//! reading at start-up lives in `clock::MonotonicToWall::measure`).

pub mod clock;
pub mod limit;
pub mod sink;

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

use crate::model::Attributes;

/// What the span describes, as OTLP's `SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// This host's side of a request to another (a DNS lookup, an outbound connection).
    Client,
    /// This host's side of a request from another (an inbound connection).
    Server,
    /// Work that is neither (a process's life).
    Internal,
}

/// OTLP span status. Sonde only emits spans for notable events, so "unset" means the
/// event was notable for another reason (slow, long-lived) rather than a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Unset,
    Error { description: String },
}

/// W3C trace context identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// One finished span, ready to export.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub context: SpanContext,
    pub name: String,
    pub kind: SpanKind,
    /// Unix nanoseconds (wall clock, already converted from the kernel's clock).
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Attributes,
    pub status: Status,
}

pub use crate::model::Exemplar;

/// Exemplars kept per histogram series: enough to point at recent notable events, a fixed
/// cost.
pub const EXEMPLARS: usize = 4;

/// The newest [`EXEMPLARS`] exemplars of one histogram series, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentExemplars(std::collections::VecDeque<Exemplar>);

impl RecentExemplars {
    pub fn push(&mut self, e: Exemplar) {
        if self.0.len() == EXEMPLARS {
            self.0.pop_front();
        }
        self.0.push_back(e);
    }

    pub fn to_vec(&self) -> Vec<Exemplar> {
        self.0.iter().copied().collect()
    }
}

/// What the agent lends the families when spans are exported: where to hand them and
/// which events qualify.
#[derive(Debug, Clone)]
pub struct Spans {
    pub sink: std::sync::Arc<sink::SpanSink>,
    pub config: crate::config::SpansConfig,
}

impl SpanContext {
    /// An exemplar of `value` at `time_unix_nano` pointing at this span.
    pub fn exemplar(&self, value: f64, time_unix_nano: u64) -> Exemplar {
        Exemplar {
            trace_id: self.trace_id,
            span_id: self.span_id,
            value,
            time_unix_nano,
        }
    }
}

/// Generates trace and span ids: random per agent start, unique within a run.
///
/// Ids need to be unique and unpredictable enough not to collide across hosts, not
/// secret: a SplitMix64 stream seeded from the standard library's per-process random
/// keys does that without a dependency or a syscall per id.
#[derive(Debug)]
pub struct IdGenerator {
    state: Cell<u64>,
}

impl IdGenerator {
    pub fn new() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(crate::unix_nanos());
        Self::with_seed(h.finish())
    }

    pub fn with_seed(seed: u64) -> Self {
        Self {
            state: Cell::new(seed),
        }
    }

    fn next_u64(&self) -> u64 {
        // SplitMix64: a full-period sequence whose outputs are well mixed; zero is
        // skipped because an all-zero id is invalid in OTLP.
        loop {
            let s = self.state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.state.set(s);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            if z != 0 {
                return z;
            }
        }
    }

    /// A new root span's context (each notable event is its own trace).
    pub fn root(&self) -> SpanContext {
        let hi = self.next_u64().to_be_bytes();
        let lo = self.next_u64().to_be_bytes();
        let mut trace_id = [0; 16];
        trace_id[..8].copy_from_slice(&hi);
        trace_id[8..].copy_from_slice(&lo);
        SpanContext {
            trace_id,
            span_id: self.next_u64().to_be_bytes(),
        }
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_and_distinct() {
        let ids = IdGenerator::with_seed(0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let c = ids.root();
            assert_ne!(c.trace_id, [0; 16]);
            assert_ne!(c.span_id, [0; 8]);
            assert!(seen.insert(c.trace_id), "trace ids repeat");
        }
    }

    #[test]
    fn recent_exemplars_keep_the_newest() {
        let mut r = RecentExemplars::default();
        for i in 0..6u64 {
            r.push(
                SpanContext {
                    trace_id: [1; 16],
                    span_id: [2; 8],
                }
                .exemplar(i as f64, i),
            );
        }
        let kept: Vec<u64> = r.to_vec().iter().map(|e| e.time_unix_nano).collect();
        assert_eq!(kept, [2, 3, 4, 5]);
    }

    #[test]
    fn different_seeds_give_different_streams() {
        assert_ne!(
            IdGenerator::with_seed(1).root(),
            IdGenerator::with_seed(2).root()
        );
    }
}
