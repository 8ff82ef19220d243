//! Where families hand their spans: the rate limit first (before anything is built), then
//! a bounded queue the trace exporter takes batches from. Every refusal is counted.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::clock::MonotonicToWall;
use super::limit::TokenBucket;
use super::{IdGenerator, Span, SpanContext};

/// Spans waiting for the exporter: a few seconds of the default rate limit, about a
/// megabyte, so a collector outage bounds memory and the excess is counted.
pub const MAX_QUEUED: usize = 2048;

/// Span outcomes since start, for `sonde.export.spans`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanCounts {
    pub sent: u64,
    pub retried: u64,
    pub dropped_rate_limit: u64,
    pub dropped_queue_full: u64,
    pub dropped_rejected: u64,
}

#[derive(Debug)]
struct Inner {
    bucket: TokenBucket,
    ids: IdGenerator,
    queue: VecDeque<Span>,
    counts: SpanCounts,
}

#[derive(Debug)]
pub struct SpanSink {
    inner: Mutex<Inner>,
    max_queued: usize,
    /// Kernel times to wall-clock time, measured once.
    pub clock: MonotonicToWall,
}

impl SpanSink {
    pub fn new(max_per_second: u32, clock: MonotonicToWall) -> Self {
        Self::with_bound(max_per_second, MAX_QUEUED, clock)
    }

    pub fn with_bound(max_per_second: u32, max_queued: usize, clock: MonotonicToWall) -> Self {
        Self {
            inner: Mutex::new(Inner {
                // A burst of one second's worth: a short storm passes whole, a long one
                // is held to the rate.
                bucket: TokenBucket::new(max_per_second, max_per_second),
                ids: IdGenerator::new(),
                queue: VecDeque::new(),
                counts: SpanCounts::default(),
            }),
            max_queued,
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers an event that qualifies for a span at kernel time `ktime_ns`: if the rate
    /// limit and the queue allow it, `build` makes the span (only then is anything
    /// allocated) and its context comes back, for an exemplar.
    pub fn offer(
        &self,
        ktime_ns: u64,
        build: impl FnOnce(SpanContext) -> Span,
    ) -> Option<SpanContext> {
        let mut inner = self.lock();
        if !inner.bucket.try_take(Duration::from_nanos(ktime_ns)) {
            inner.counts.dropped_rate_limit += 1;
            return None;
        }
        if inner.queue.len() >= self.max_queued {
            inner.counts.dropped_queue_full += 1;
            return None;
        }
        let context = inner.ids.root();
        inner.queue.push_back(build(context));
        Some(context)
    }

    /// Up to `max` spans, oldest first, for one export request.
    pub fn take(&self, max: usize) -> Vec<Span> {
        let mut inner = self.lock();
        let n = inner.queue.len().min(max);
        inner.queue.drain(..n).collect()
    }

    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn counts(&self) -> SpanCounts {
        self.lock().counts
    }

    pub fn sent(&self, n: u64) {
        self.lock().counts.sent += n;
    }
    pub fn retried(&self, n: u64) {
        self.lock().counts.retried += n;
    }
    pub fn rejected(&self, n: u64) {
        self.lock().counts.dropped_rejected += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Attributes;
    use crate::spans::{SpanKind, Status};

    fn span(context: SpanContext) -> Span {
        Span {
            context,
            name: "t".into(),
            kind: SpanKind::Internal,
            start_unix_nano: 1,
            end_unix_nano: 2,
            attributes: Attributes::new(),
            status: Status::Unset,
        }
    }

    #[test]
    fn rate_limit_then_queue_bound_every_refusal_counted() {
        let sink = SpanSink::with_bound(10, 15, MonotonicToWall::from_offset(0));
        let mut built = 0;
        // 100 offers at one instant: the burst (10) passes.
        for _ in 0..100 {
            sink.offer(0, |c| {
                built += 1;
                span(c)
            });
        }
        assert_eq!(built, 10, "nothing built for refused events");
        // One second later 10 more tokens, but only 5 places in the queue.
        for _ in 0..10 {
            sink.offer(1_000_000_000, span);
        }
        let c = sink.counts();
        assert_eq!(sink.queued(), 15);
        assert_eq!((c.dropped_rate_limit, c.dropped_queue_full), (90, 5));
        assert_eq!(sink.take(4).len(), 4);
        assert_eq!(sink.take(100).len(), 11);
        assert_eq!(sink.queued(), 0);
    }
}
