//! The OTLP exporter: encodes snapshots, holds a bounded backlog while the collector is
//! unreachable, retries as the OTLP spec says (backoff with jitter, the server's delay
//! when it gives one, never what it refused), and counts every point it sends, retries
//! or drops.

pub mod disk_queue;
pub mod encode;
pub mod retry;
pub mod trace_export;
pub mod traces;
pub mod transport;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::bytes::Bytes;
use prost::Message;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::aggregate::temporality::DeltaConverter;
use crate::config::{HistogramAggregation, OtlpConfig, Temporality};
use crate::model::Snapshot;

use super::ExportStats;
use disk_queue::DiskQueue;
use retry::Backoff;
pub use transport::TransportError;
use transport::{Failure, SendError, Transport};

/// Where a waiting batch's request is.
#[derive(Debug)]
enum Body {
    /// Encoded: about 120 bytes a data point, a third of the request as prost structs
    /// (whose strings and bucket vectors are each an allocation of their own).
    Memory(Bytes),
    /// In the durable queue under this record number.
    Disk(u64),
}

#[derive(Debug)]
struct Batch {
    seq: u64,
    points: u64,
    /// When the batch was made (Unix ns).
    created: u64,
    body: Body,
}

/// Batches waiting to be sent, oldest first. Memory batches are bounded in data points
/// and in encoded bytes, disk batches by the durable queue's bytes.
#[derive(Debug, Default)]
struct Queue {
    batches: VecDeque<Batch>,
    /// Data points of the memory batches.
    points: u64,
    /// Encoded bytes of the memory batches.
    bytes: u64,
    next_seq: u64,
    /// The batch being sent and its request: never dropped for room, so a success is
    /// never also counted as a drop.
    in_flight: Option<(u64, Bytes)>,
    closed: bool,
    disk: Option<DiskQueue>,
    /// The last append to the durable queue failed (warned once until it works again).
    disk_failing: bool,
    /// A durable queue was configured but could not be opened: every batch held in
    /// memory instead is counted.
    disk_unavailable: bool,
}

#[derive(Debug)]
struct Backlog {
    queue: Mutex<Queue>,
    max_points: u64,
    max_bytes: u64,
    /// A batch was queued, or shutdown began.
    wake: Notify,
    /// Shutdown began: cuts a backoff wait short.
    shutdown: Notify,
    stats: Arc<ExportStats>,
}

impl Backlog {
    /// `disk`: the durable queue, `Some(Err(()))` when one is configured but could not be
    /// opened.
    fn new(
        max_points: u64,
        max_bytes: u64,
        disk: Option<Result<DiskQueue, ()>>,
        stats: Arc<ExportStats>,
    ) -> Self {
        let mut q = Queue {
            disk_unavailable: matches!(disk, Some(Err(()))),
            disk: disk.and_then(Result::ok),
            ..Queue::default()
        };
        // What a previous run queued goes first.
        if let Some(d) = &q.disk {
            let replay: Vec<Batch> = d
                .pending()
                .enumerate()
                .map(|(i, p)| Batch {
                    seq: i as u64,
                    points: p.points,
                    created: p.created_unix_ns,
                    body: Body::Disk(p.seq),
                })
                .collect();
            if !replay.is_empty() {
                tracing::info!(
                    batches = replay.len(),
                    points = replay.iter().map(|b| b.points).sum::<u64>(),
                    "the export queue holds batches from a previous run: sending them first"
                );
            }
            q.next_seq = replay.len() as u64;
            q.batches.extend(replay);
            stats.queue_corrupt(d.corrupt_records());
        }
        let b = Self {
            queue: Mutex::new(q),
            max_points,
            max_bytes,
            wake: Notify::new(),
            shutdown: Notify::new(),
            stats,
        };
        b.publish(&b.lock());
        b
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Self-telemetry: bytes on disk and the age of the oldest unsent data.
    fn publish(&self, q: &Queue) {
        self.stats.set_queue(
            q.disk.as_ref().map(DiskQueue::bytes),
            q.batches.front().map(|b| b.created),
        );
    }

    /// Queues one encoded request of `points` data points.
    fn push(&self, req: Bytes, points: u64) {
        let created = crate::unix_nanos();
        let mut q = self.lock();
        let seq = q.next_seq;
        q.next_seq += 1;
        let body = match self.append_to_disk(&mut q, &req, points, created) {
            Some(record) => Body::Disk(record),
            None => {
                q.points += points;
                q.bytes += req.len() as u64;
                Body::Memory(req)
            }
        };
        q.batches.push_back(Batch {
            seq,
            points,
            created,
            body,
        });
        self.make_memory_room(&mut q);
        self.publish(&q);
        drop(q);
        self.wake.notify_one();
    }

    /// Writes the batch to the durable queue, if there is one; `None` keeps it in memory.
    fn append_to_disk(&self, q: &mut Queue, req: &[u8], points: u64, created: u64) -> Option<u64> {
        let Some(disk) = q.disk.as_mut() else {
            if q.disk_unavailable {
                self.stats.queue_write_failed();
            }
            return None;
        };
        let appended = disk.append(points, created, req);
        let corrupt = disk.corrupt_records();
        match appended {
            Ok((record, dropped)) => {
                if q.disk_failing {
                    tracing::info!("the export queue is writable again");
                    q.disk_failing = false;
                }
                for gone in dropped {
                    self.dropped_from_disk(q, gone.seq);
                }
                self.stats.queue_corrupt(corrupt);
                tracing::debug!(record, points, "batch written to the export queue");
                Some(record)
            }
            Err(e) => {
                self.stats.queue_write_failed();
                if !q.disk_failing {
                    tracing::warn!(
                        "{e}: holding batches in memory (up to exporters.otlp.backlog_max_points \
                         and backlog_max_bytes) until the queue can be written again"
                    );
                    q.disk_failing = true;
                }
                None
            }
        }
    }

    /// The durable queue dropped a record for room: count it, unless it is being sent,
    /// in which case the send decides (it continues from the copy in memory).
    fn dropped_from_disk(&self, q: &mut Queue, record: u64) {
        let Some(i) = q
            .batches
            .iter()
            .position(|b| matches!(b.body, Body::Disk(r) if r == record))
        else {
            return;
        };
        match &q.in_flight {
            Some((seq, req)) if *seq == q.batches[i].seq => {
                let req = req.clone();
                q.points += q.batches[i].points;
                q.bytes += req.len() as u64;
                q.batches[i].body = Body::Memory(req);
            }
            _ => {
                if let Some(old) = q.batches.remove(i) {
                    self.stats.dropped(old.points);
                    tracing::warn!(
                        points = old.points,
                        "the export queue is full (exporters.otlp.queue.max_bytes): dropped \
                         its oldest batch; raise the bound or check the collector"
                    );
                }
            }
        }
    }

    /// Drops the oldest memory batches that are not in flight while over either bound.
    fn make_memory_room(&self, q: &mut Queue) {
        while q.points > self.max_points || q.bytes > self.max_bytes {
            let in_flight = q.in_flight.as_ref().map(|(s, _)| *s);
            let last = q.batches.len().saturating_sub(1);
            let Some(i) = q
                .batches
                .iter()
                .position(|b| matches!(b.body, Body::Memory(_)) && Some(b.seq) != in_flight)
            else {
                break;
            };
            if i >= last {
                break; // only the in-flight and the newest remain
            }
            if let Some(old) = q.batches.remove(i) {
                q.points -= old.points;
                if let Body::Memory(req) = &old.body {
                    q.bytes -= req.len() as u64;
                }
                self.stats.dropped(old.points);
                tracing::warn!(
                    points = old.points,
                    "OTLP backlog is full ({} points or {} bytes): dropped the oldest batch; \
                     raise exporters.otlp.backlog_max_points or backlog_max_bytes, set \
                     exporters.otlp.queue, or check the collector",
                    self.max_points,
                    self.max_bytes
                );
            }
        }
    }

    /// The oldest batch, marked in flight. A disk record that no longer reads back is
    /// skipped (counted as corrupt, its points as dropped).
    fn front(&self) -> Option<(u64, u64, Bytes)> {
        let mut q = self.lock();
        loop {
            let b = q.batches.front()?;
            let (seq, points) = (b.seq, b.points);
            let req = match b.body {
                Body::Memory(ref req) => Some(req.clone()),
                Body::Disk(record) => Self::read_disk(&mut q, record),
            };
            if let Some(req) = req {
                q.in_flight = Some((seq, req.clone()));
                return Some((seq, points, req));
            }
            q.batches.pop_front();
            self.stats.dropped(points);
            if let Some(d) = &q.disk {
                self.stats.queue_corrupt(d.corrupt_records());
            }
            self.publish(&q);
        }
    }

    /// The newest batch (at shutdown, the final snapshot), marked in flight; `None` when
    /// there is none or it no longer reads back.
    fn newest(&self) -> Option<(u64, u64, Bytes)> {
        let mut q = self.lock();
        let b = q.batches.back()?;
        let (seq, points) = (b.seq, b.points);
        let req = match b.body {
            Body::Memory(ref req) => req.clone(),
            Body::Disk(record) => Self::read_disk(&mut q, record)?,
        };
        q.in_flight = Some((seq, req.clone()));
        Some((seq, points, req))
    }

    fn newest_seq(&self) -> Option<u64> {
        self.lock().batches.back().map(|b| b.seq)
    }

    fn read_disk(q: &mut Queue, record: u64) -> Option<Bytes> {
        let disk = q.disk.as_mut()?;
        let bytes = match disk.read(record) {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!("{e}: skipping export queue record {record}");
                disk.ack(record);
                return None;
            }
        };
        match ExportMetricsServiceRequest::decode(bytes.as_slice()) {
            Ok(_) => Some(bytes.into()),
            Err(e) => {
                // The checksum matched, so this is a record from another version.
                tracing::warn!(
                    "export queue record {record} is not an OTLP request ({e}): skipped"
                );
                disk.ack(record);
                None
            }
        }
    }

    /// The batch was delivered or given up on.
    fn remove(&self, seq: u64) {
        let mut q = self.lock();
        q.in_flight = None;
        if let Some(i) = q.batches.iter().position(|b| b.seq == seq) {
            if let Some(b) = q.batches.remove(i) {
                match b.body {
                    Body::Memory(req) => {
                        q.points -= b.points;
                        q.bytes -= req.len() as u64;
                    }
                    Body::Disk(record) => {
                        if let Some(d) = q.disk.as_mut() {
                            d.ack(record);
                        }
                    }
                }
            }
        }
        self.publish(&q);
    }

    fn release(&self) {
        self.lock().in_flight = None;
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// At the end of shutdown: memory batches are lost (counted); disk batches stay for
    /// the next start. Returns (points lost, points kept on disk).
    fn drop_all(&self) -> (u64, u64) {
        let mut q = self.lock();
        let lost = q.points;
        let kept = q
            .batches
            .iter()
            .filter(|b| matches!(b.body, Body::Disk(_)))
            .map(|b| b.points)
            .sum();
        q.batches.clear();
        q.points = 0;
        q.bytes = 0;
        if let Some(d) = q.disk.as_mut() {
            d.sync();
        }
        self.stats.dropped(lost);
        (lost, kept)
    }
}

#[derive(Debug)]
pub struct OtlpExporter {
    backlog: Arc<Backlog>,
    task: JoinHandle<()>,
    temporality: Temporality,
    delta: Option<DeltaConverter>,
    resource: Resource,
    histograms: HistogramAggregation,
    timeout: Duration,
    endpoint: String,
}

impl OtlpExporter {
    /// Starts the sender task. Connection happens lazily: a collector that is down at
    /// start-up is retried like one that goes down later. `since`: when collection began
    /// (the first delta interval starts there).
    pub fn start(
        cfg: &OtlpConfig,
        resource: Resource,
        stats: Arc<ExportStats>,
        since: u64,
    ) -> Result<Self, TransportError> {
        let transport = Transport::new(cfg)?;
        // A queue that cannot be opened (read-only disk, no permission, another agent on it)
        // leaves the agent running on the memory backlog: it is counted and said once.
        let disk = cfg.queue.as_ref().map(|qc| {
            DiskQueue::open(&qc.directory, qc.max_bytes)
                .inspect(|_| {
                    tracing::info!(
                        directory = %qc.directory.display(),
                        max_bytes = qc.max_bytes,
                        "durable export queue open"
                    );
                })
                .map_err(|e| tracing::warn!("{e}: holding unsent batches in memory only"))
        });
        let backlog = Arc::new(Backlog::new(
            cfg.backlog_max_points as u64,
            cfg.backlog_max_bytes,
            disk,
            stats,
        ));
        let task = tokio::spawn(send_loop(backlog.clone(), transport, cfg.endpoint.clone()));
        Ok(Self {
            backlog,
            task,
            temporality: cfg.temporality,
            delta: match cfg.temporality {
                Temporality::Cumulative => None,
                t @ (Temporality::Delta | Temporality::LowMemory) => {
                    Some(DeltaConverter::new(t, since))
                }
            },
            resource,
            histograms: cfg.histogram_aggregation,
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
        let req = encode::encode(&self.resource, &snap, self.temporality, self.histograms);
        // Encoded once, here: what the backlog holds, the disk queue writes and HTTP sends.
        self.backlog.push(req.encode_to_vec().into(), points);
    }

    /// Flushes what it can within the export timeout, then stops: a backoff wait is cut
    /// short, each batch left is tried once, and the newest (the final snapshot) is tried
    /// even when an older one fails. What could not be sent is counted as dropped and
    /// logged (or stays in the durable queue).
    pub async fn shutdown(self) {
        self.backlog.lock().closed = true;
        self.backlog.wake.notify_one();
        self.backlog.shutdown.notify_one();
        let mut task = self.task;
        if tokio::time::timeout(self.timeout, &mut task).await.is_err() {
            task.abort();
        }
        let (lost, kept) = self.backlog.drop_all();
        if lost > 0 {
            tracing::warn!(
                points = lost,
                endpoint = %self.endpoint,
                "could not deliver {lost} points before exit"
            );
        }
        if kept > 0 {
            tracing::info!(
                points = kept,
                "{kept} unsent points stay in the export queue for the next start"
            );
        }
    }
}

/// How an attempt ended, for the loop's next step.
enum Attempt {
    /// Sent, or dropped for good (refused, or no attempt can succeed): next batch.
    Done,
    /// Kept for a retry after this wait.
    Retry(Duration),
}

/// One sender per exporter: tries the oldest batch, and on a failure that can heal waits
/// (backoff with jitter, or the server's delay) before trying it again.
async fn send_loop(backlog: Arc<Backlog>, mut transport: Transport, endpoint: String) {
    let mut sender = Sender {
        backlog,
        endpoint,
        backoff: Backoff::default(),
        failing: false,
        last_error_log: None,
    };
    loop {
        if sender.backlog.is_closed() {
            return sender.flush(&mut transport).await;
        }
        let Some((seq, points, req)) = sender.backlog.front() else {
            sender.backlog.wake.notified().await;
            continue;
        };
        if let Attempt::Retry(wait) = sender.attempt(&mut transport, seq, points, &req).await {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = sender.backlog.shutdown.notified() => {}
            }
        }
    }
}

struct Sender {
    backlog: Arc<Backlog>,
    endpoint: String,
    backoff: Backoff,
    /// Set by a retryable failure, cleared (with a log line) by the next success.
    failing: bool,
    /// The last error logged and when: the same error again within a minute is logged at
    /// debug level, so a collector that refuses every batch does not flood the log.
    last_error_log: Option<(String, Instant)>,
}

impl Sender {
    async fn attempt(
        &mut self,
        transport: &mut Transport,
        seq: u64,
        points: u64,
        req: &Bytes,
    ) -> Attempt {
        let endpoint = self.endpoint.clone();
        match transport.send(req).await {
            Ok(accepted) => {
                self.backlog.remove(seq);
                let rejected = accepted.rejected.min(points);
                self.backlog.stats.sent(points - rejected);
                self.backlog.stats.dropped(rejected);
                match (rejected, accepted.message) {
                    (0, None) => {}
                    (0, Some(message)) => {
                        tracing::warn!(%endpoint, "the collector accepted every point and warns: {message}")
                    }
                    (_, message) => tracing::warn!(
                        %endpoint,
                        rejected,
                        "the collector rejected {rejected} of {points} points (partial \
                         success, not retried): {}",
                        message.as_deref().unwrap_or("it gave no reason")
                    ),
                }
                if self.failing {
                    tracing::info!(%endpoint, "OTLP export recovered");
                    self.failing = false;
                }
                self.backoff.reset();
                Attempt::Done
            }
            Err(SendError {
                failure: Failure::Retryable { hint },
                message,
            }) => {
                self.backlog.release();
                self.backlog.stats.retried(points);
                let wait = self.backoff.next(hint, retry::random_unit());
                if !self.failing {
                    tracing::warn!(
                        %endpoint,
                        "OTLP export failed, will retry in {wait:.1?} with backoff and hold \
                         up to the backlog limit: {message}"
                    );
                    self.failing = true;
                } else {
                    tracing::debug!(%endpoint, "OTLP export failed again, retry in {wait:.1?}: {message}");
                }
                Attempt::Retry(wait)
            }
            Err(SendError { failure, message }) => {
                self.backlog.remove(seq);
                self.backlog.stats.dropped(points);
                let repeat = self.repeated(&message);
                let line = match failure {
                    Failure::Permanent => format!(
                        "OTLP export to {endpoint} cannot succeed as configured: {points} \
                         points dropped, not retried ({message}); check the endpoint's \
                         scheme (http/https) and host, and the collector's TLS certificate"
                    ),
                    _ => format!(
                        "the collector at {endpoint} refused {points} points; dropped, as \
                         the OTLP spec says, not retried: {message}"
                    ),
                };
                if repeat {
                    tracing::debug!("{line}");
                } else {
                    tracing::error!("{line}");
                }
                Attempt::Done
            }
        }
    }

    /// True if the same error was logged less than a minute ago (then it is logged at
    /// debug level only); otherwise remembers it.
    fn repeated(&mut self, message: &str) -> bool {
        let now = Instant::now();
        let repeat = self.last_error_log.as_ref().is_some_and(|(last, at)| {
            last == message && now.duration_since(*at) < Duration::from_secs(60)
        });
        if !repeat {
            self.last_error_log = Some((message.to_owned(), now));
        }
        repeat
    }

    /// At shutdown: each batch left is tried once, oldest first; the first one that fails
    /// for a reason that could heal ends the flush, after the newest batch (the final
    /// snapshot, the one that matters most for cumulative series) has had its one try.
    async fn flush(&mut self, transport: &mut Transport) {
        while let Some((seq, points, req)) = self.backlog.front() {
            let was_newest = self.backlog.newest_seq() == Some(seq);
            if let Attempt::Retry(_) = self.attempt(transport, seq, points, &req).await {
                if !was_newest {
                    if let Some((seq, points, req)) = self.backlog.newest() {
                        self.attempt(transport, seq, points, &req).await;
                    }
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(max: u64) -> (Backlog, Arc<ExportStats>) {
        let stats = ExportStats::new();
        (Backlog::new(max, u64::MAX, None, stats.clone()), stats)
    }

    /// An encoded request, as the backlog holds them.
    fn request(tag: &str) -> Bytes {
        request_struct(tag).encode_to_vec().into()
    }

    fn decoded(b: &Bytes) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest::decode(b.as_ref()).expect("an OTLP request")
    }

    fn request_struct(tag: &str) -> ExportMetricsServiceRequest {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        ExportMetricsServiceRequest {
            resource_metrics: vec![opentelemetry_proto::tonic::metrics::v1::ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                        key: tag.to_owned(),
                        ..Default::default()
                    }],
                    ..Resource::default()
                }),
                ..Default::default()
            }],
        }
    }

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("sonde-backlog-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Dir(p)
    }

    #[test]
    fn disk_batches_come_back_after_a_restart_in_order() {
        let d = dir("restart");
        let stats = ExportStats::new();
        let b = Backlog::new(
            10,
            u64::MAX,
            Some(Ok(DiskQueue::open(&d.0, 1 << 20).expect("open"))),
            stats.clone(),
        );
        for tag in ["a", "b", "c"] {
            b.push(request(tag), 100);
        }
        assert_eq!(
            stats.counts().dropped,
            0,
            "the memory bound does not apply to disk batches"
        );
        let (seq, _, req) = b.front().expect("a");
        assert_eq!(req, request("a"));
        b.remove(seq);
        drop(b); // a crash: nothing flushed on purpose

        let b = Backlog::new(
            10,
            u64::MAX,
            Some(Ok(DiskQueue::open(&d.0, 1 << 20).expect("reopen"))),
            stats.clone(),
        );
        let mut got = Vec::new();
        while let Some((seq, points, req)) = b.front() {
            assert_eq!(points, 100);
            got.push(req);
            b.remove(seq);
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], request("b"));
        assert_eq!(got[1], request("c"));
        assert!(stats.counts().queue_bytes == Some(0));
    }

    #[test]
    fn a_disk_batch_dropped_while_in_flight_is_sent_from_memory_not_counted_twice() {
        let d = dir("inflight");
        let stats = ExportStats::new();
        let b = Backlog::new(
            1_000_000,
            u64::MAX,
            Some(Ok(DiskQueue::open(&d.0, 1 << 20).expect("open"))),
            stats.clone(),
        );
        let big = |i: usize| -> Bytes {
            let mut r = request_struct(&"x".repeat(100_000));
            r.resource_metrics[0].schema_url = i.to_string();
            r.encode_to_vec().into()
        };
        b.push(big(0), 7);
        let (seq, _, first) = b.front().expect("first");
        for i in 1..20 {
            b.push(big(i), 1);
        }
        // The disk bound (1 MiB) forced drops, the in-flight batch among them.
        let dropped = stats.counts().dropped;
        assert!(dropped > 0);
        b.remove(seq);
        assert_eq!(
            stats.counts().dropped,
            dropped,
            "the sent batch is not also dropped"
        );
        let (_, _, next) = b.front().expect("next");
        let (next, first) = (decoded(&next), decoded(&first));
        assert_ne!(
            next.resource_metrics[0].schema_url,
            first.resource_metrics[0].schema_url
        );
        assert_eq!(
            dropped,
            next.resource_metrics[0]
                .schema_url
                .parse::<u64>()
                .expect("n")
                - 1
        );
    }

    #[test]
    fn a_queue_that_cannot_be_written_falls_back_to_memory_and_counts_it() {
        let d = dir("gone");
        let stats = ExportStats::new();
        let b = Backlog::new(
            1000,
            u64::MAX,
            Some(Ok(DiskQueue::open(&d.0, 1 << 20).expect("open"))),
            stats.clone(),
        );
        std::fs::remove_dir_all(&d.0).expect("take the directory away");
        b.push(request("a"), 5);
        b.push(request("b"), 5);
        assert_eq!(stats.counts().queue_write_failed, 2);
        let (seq, points, req) = b.front().expect("held in memory");
        assert_eq!((points, &req), (5, &request("a")));
        b.remove(seq);
        assert_eq!(stats.counts().dropped, 0);
    }

    #[test]
    fn full_backlog_drops_oldest_and_counts_it() {
        let (b, stats) = backlog(10);
        for _ in 0..4 {
            b.push(Bytes::new(), 4);
        }
        assert_eq!(stats.counts().dropped, 8, "two oldest batches of 4 dropped");
        assert_eq!(b.lock().points, 8);
        let seqs: Vec<u64> = b.lock().batches.iter().map(|x| x.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
    }

    #[test]
    fn a_backlog_over_its_bytes_drops_oldest_and_counts_it() {
        let stats = ExportStats::new();
        let b = Backlog::new(1_000_000, 250, None, stats.clone());
        for _ in 0..4 {
            b.push(Bytes::from(vec![0u8; 100]), 3);
        }
        assert_eq!(
            stats.counts().dropped,
            6,
            "two oldest batches of 3 points dropped"
        );
        let held = |b: &Backlog| {
            let q = b.lock();
            (q.points, q.bytes)
        };
        assert_eq!(held(&b), (6, 200));
        let seqs: Vec<u64> = b.lock().batches.iter().map(|x| x.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
        while let Some((seq, _, _)) = b.front() {
            b.remove(seq);
        }
        assert_eq!(held(&b), (0, 0));
    }

    #[test]
    fn in_flight_batch_is_never_dropped_for_room() {
        let (b, stats) = backlog(5);
        b.push(Bytes::new(), 4);
        let (seq, _, _) = b.front().expect("one batch");
        b.push(Bytes::new(), 4);
        b.push(Bytes::new(), 4);
        let seqs: Vec<u64> = b.lock().batches.iter().map(|x| x.seq).collect();
        assert_eq!(seqs, vec![0, 2], "in-flight 0 kept, 1 dropped");
        assert_eq!(stats.counts().dropped, 4);
        b.remove(seq);
        assert_eq!(b.lock().points, 4);
    }
}
