//! The OTLP exporter: encodes snapshots, holds a bounded backlog while the collector is
//! unreachable, retries with exponential backoff, and counts every point it sends,
//! retries or drops.

pub mod disk_queue;
pub mod encode;
pub mod traces;
pub mod transport;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::aggregate::temporality::DeltaConverter;
use crate::config::{OtlpConfig, Temporality};
use crate::model::Snapshot;

use super::ExportStats;
pub use transport::TransportError;
use transport::{SendError, Transport};

const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Batch {
    seq: u64,
    points: u64,
    req: Arc<ExportMetricsServiceRequest>,
}

/// Batches waiting to be sent, oldest first, bounded in data points.
#[derive(Debug, Default)]
struct Queue {
    batches: VecDeque<Batch>,
    points: u64,
    next_seq: u64,
    /// The batch being sent: never dropped for room, so a success is never also
    /// counted as a drop.
    in_flight: Option<u64>,
    closed: bool,
}

#[derive(Debug)]
struct Backlog {
    queue: Mutex<Queue>,
    max_points: u64,
    wake: Notify,
    stats: Arc<ExportStats>,
}

impl Backlog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, req: ExportMetricsServiceRequest, points: u64) {
        let mut q = self.lock();
        let seq = q.next_seq;
        q.next_seq += 1;
        q.points += points;
        q.batches.push_back(Batch {
            seq,
            points,
            req: Arc::new(req),
        });
        // Make room by dropping the oldest batches that are not in flight.
        while q.points > self.max_points && q.batches.len() > 1 {
            let idx = match q.in_flight {
                Some(s) if q.batches.front().map(|b| b.seq) == Some(s) => 1,
                _ => 0,
            };
            if idx >= q.batches.len() - 1 {
                break; // only the in-flight and the newest remain
            }
            if let Some(old) = q.batches.remove(idx) {
                q.points -= old.points;
                self.stats.dropped(old.points);
                tracing::warn!(
                    points = old.points,
                    "OTLP backlog is full ({} points): dropped the oldest batch; \
                     raise exporters.otlp.backlog_max_points or check the collector",
                    self.max_points
                );
            }
        }
        drop(q);
        self.wake.notify_one();
    }

    fn front(&self) -> Option<(u64, u64, Arc<ExportMetricsServiceRequest>)> {
        let mut q = self.lock();
        let b = q.batches.front()?;
        let out = (b.seq, b.points, b.req.clone());
        q.in_flight = Some(out.0);
        Some(out)
    }

    fn remove(&self, seq: u64) {
        let mut q = self.lock();
        q.in_flight = None;
        if let Some(i) = q.batches.iter().position(|b| b.seq == seq) {
            if let Some(b) = q.batches.remove(i) {
                q.points -= b.points;
            }
        }
    }

    fn release(&self) {
        self.lock().in_flight = None;
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Drops everything left (at the end of shutdown), counting it.
    fn drop_all(&self) -> u64 {
        let mut q = self.lock();
        let n = q.points;
        q.batches.clear();
        q.points = 0;
        self.stats.dropped(n);
        n
    }
}

#[derive(Debug)]
pub struct OtlpExporter {
    backlog: Arc<Backlog>,
    task: JoinHandle<()>,
    delta: Option<DeltaConverter>,
    resource: Resource,
    timeout: Duration,
    endpoint: String,
}

impl OtlpExporter {
    /// Starts the sender task. Connection happens lazily: a collector that is down at
    /// start-up is retried like one that goes down later.
    pub fn start(
        cfg: &OtlpConfig,
        resource: Resource,
        stats: Arc<ExportStats>,
    ) -> Result<Self, TransportError> {
        let transport = Transport::new(cfg)?;
        let backlog = Arc::new(Backlog {
            queue: Mutex::new(Queue::default()),
            max_points: cfg.backlog_max_points as u64,
            wake: Notify::new(),
            stats,
        });
        let task = tokio::spawn(send_loop(backlog.clone(), transport, cfg.endpoint.clone()));
        Ok(Self {
            backlog,
            task,
            delta: match cfg.temporality {
                Temporality::Cumulative => None,
                Temporality::Delta | Temporality::LowMemory => Some(DeltaConverter::default()),
            },
            resource,
            timeout: cfg.timeout,
            endpoint: cfg.endpoint.clone(),
        })
    }

    pub fn submit(&mut self, snap: &Snapshot) {
        let mut snap = snap.clone();
        if let Some(d) = &mut self.delta {
            d.apply(&mut snap);
        }
        let points = snap.point_count() as u64;
        let req = encode::encode(&self.resource, &snap, self.delta.is_some());
        self.backlog.push(req, points);
    }

    /// Flushes what it can within the export timeout, then stops. What could not be
    /// sent is counted as dropped and logged.
    pub async fn shutdown(self) {
        self.backlog.lock().closed = true;
        self.backlog.wake.notify_one();
        let mut task = self.task;
        if tokio::time::timeout(self.timeout, &mut task).await.is_err() {
            task.abort();
        }
        let lost = self.backlog.drop_all();
        if lost > 0 {
            tracing::warn!(
                points = lost,
                endpoint = %self.endpoint,
                "could not deliver {lost} points before exit"
            );
        }
    }
}

async fn send_loop(backlog: Arc<Backlog>, mut transport: Transport, endpoint: String) {
    let mut backoff = BACKOFF_INITIAL;
    let mut failing = false;
    loop {
        let Some((seq, points, req)) = backlog.front() else {
            if backlog.is_closed() {
                return;
            }
            backlog.wake.notified().await;
            continue;
        };
        match transport.send(&req).await {
            Ok(rejected) => {
                backlog.remove(seq);
                backlog.stats.sent(points.saturating_sub(rejected));
                if rejected > 0 {
                    backlog.stats.dropped(rejected);
                    tracing::warn!(
                        rejected,
                        "the collector rejected {rejected} points (partial success)"
                    );
                }
                if failing {
                    tracing::info!(%endpoint, "OTLP export recovered");
                    failing = false;
                }
                backoff = BACKOFF_INITIAL;
            }
            Err(SendError {
                retryable: true,
                message,
                retry_after,
            }) => {
                backlog.release();
                backlog.stats.retried(points);
                if !failing {
                    tracing::warn!(
                        %endpoint,
                        "OTLP export failed, will retry with backoff and hold up to the \
                         backlog limit: {message}"
                    );
                    failing = true;
                }
                if backlog.is_closed() {
                    return; // shutting down: do not wait out a backoff
                }
                let wait = retry_after.unwrap_or(backoff).min(BACKOFF_MAX);
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(SendError { message, .. }) => {
                backlog.remove(seq);
                backlog.stats.dropped(points);
                tracing::error!(
                    %endpoint,
                    points,
                    "OTLP export rejected and not retryable, batch dropped: {message}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(max: u64) -> (Backlog, Arc<ExportStats>) {
        let stats = ExportStats::new();
        (
            Backlog {
                queue: Mutex::new(Queue::default()),
                max_points: max,
                wake: Notify::new(),
                stats: stats.clone(),
            },
            stats,
        )
    }

    #[test]
    fn full_backlog_drops_oldest_and_counts_it() {
        let (b, stats) = backlog(10);
        for _ in 0..4 {
            b.push(ExportMetricsServiceRequest::default(), 4);
        }
        assert_eq!(stats.counts().dropped, 8, "two oldest batches of 4 dropped");
        assert_eq!(b.lock().points, 8);
        let seqs: Vec<u64> = b.lock().batches.iter().map(|x| x.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
    }

    #[test]
    fn in_flight_batch_is_never_dropped_for_room() {
        let (b, stats) = backlog(5);
        b.push(ExportMetricsServiceRequest::default(), 4);
        let (seq, _, _) = b.front().expect("one batch");
        b.push(ExportMetricsServiceRequest::default(), 4);
        b.push(ExportMetricsServiceRequest::default(), 4);
        let seqs: Vec<u64> = b.lock().batches.iter().map(|x| x.seq).collect();
        assert_eq!(seqs, vec![0, 2], "in-flight 0 kept, 1 dropped");
        assert_eq!(stats.counts().dropped, 4);
        b.remove(seq);
        assert_eq!(b.lock().points, 4);
    }
}
