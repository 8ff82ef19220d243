//! The span exporter: takes batches from the [`SpanSink`] and sends them to the
//! collector as OTLP traces, with the metrics exporter's transport, failure classes and
//! backoff. A batch that fails for a reason that can heal is kept and retried (the sink
//! goes on queueing up to its bound and counts what does not fit); a refused batch is
//! dropped and counted, as the OTLP spec says.
//!
//! Why not the OTel SDK's span exporter: kernel events carry their own start and end
//! times, which the SDK's span API takes, but its batch processor drops a batch after the
//! exporter's retries and does not count what it drops where Sonde's self-telemetry can
//! see it; the spans issue asks for the metrics exporter's retry and backlog rules and a
//! count of every dropped span. The SDK's Resource is still the one both signals carry.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::retry::{self, Backoff};
use super::traces;
use super::transport::{Failure, SendError, Transport, TransportError};
use crate::config::OtlpConfig;
use crate::spans::sink::SpanSink;
use crate::spans::Span;

/// Spans per request: well under any collector's default request size limit.
const BATCH: usize = 512;
/// How often the queue is looked at when nothing is failing.
const PERIOD: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct TraceExporter {
    task: JoinHandle<()>,
    stop: Arc<Notify>,
    timeout: Duration,
}

impl TraceExporter {
    pub fn start(
        cfg: &OtlpConfig,
        resource: Resource,
        sink: Arc<SpanSink>,
    ) -> Result<Self, TransportError> {
        let transport = Transport::new(cfg)?;
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(run(
            transport,
            resource,
            sink,
            stop.clone(),
            cfg.endpoint.clone(),
        ));
        Ok(Self {
            task,
            stop,
            timeout: cfg.timeout,
        })
    }

    /// Sends what is queued (one try each, within the export timeout), then stops.
    pub async fn shutdown(self) {
        self.stop.notify_one();
        let mut task = self.task;
        if tokio::time::timeout(self.timeout, &mut task).await.is_err() {
            task.abort();
        }
    }
}

async fn run(
    mut transport: Transport,
    resource: Resource,
    sink: Arc<SpanSink>,
    stop: Arc<Notify>,
    endpoint: String,
) {
    let mut pending: Vec<Span> = Vec::new();
    let mut backoff = Backoff::default();
    let mut failing = false;
    let mut wait = PERIOD;
    let mut stopping = false;
    loop {
        if !stopping {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.notified() => stopping = true,
            }
        }
        wait = PERIOD;
        if pending.is_empty() {
            pending = sink.take(BATCH);
        }
        if pending.is_empty() {
            if stopping {
                return;
            }
            continue;
        }
        let n = pending.len() as u64;
        let req = traces::encode(&resource, &pending);
        match transport.send_traces(&req).await {
            Ok(accepted) => {
                let rejected = accepted.rejected.min(n);
                sink.sent(n - rejected);
                sink.rejected(rejected);
                if rejected > 0 {
                    tracing::warn!(
                        %endpoint,
                        "the collector rejected {rejected} of {n} spans (partial success, not \
                         retried): {}",
                        accepted.message.as_deref().unwrap_or("it gave no reason")
                    );
                }
                if failing {
                    tracing::info!(%endpoint, "span export recovered");
                    failing = false;
                }
                backoff.reset();
                pending.clear();
                // More may be waiting: look again at once.
                wait = Duration::ZERO;
            }
            Err(SendError {
                failure: Failure::Retryable { hint },
                message,
            }) => {
                sink.retried(n);
                if stopping {
                    // The last snapshot is out already, so no counter could carry this:
                    // the log line is what says it.
                    tracing::warn!(%endpoint, "{n} spans not delivered before exit: {message}");
                    return;
                }
                wait = backoff.next(hint, retry::random_unit());
                if !failing {
                    tracing::warn!(
                        %endpoint,
                        "span export failed, will retry in {wait:.1?} (spans wait up to the \
                         queue bound, the rest are counted): {message}"
                    );
                    failing = true;
                }
            }
            Err(SendError { message, .. }) => {
                sink.rejected(n);
                tracing::error!(
                    %endpoint,
                    "the collector refused {n} spans; dropped, not retried: {message}"
                );
                pending.clear();
            }
        }
    }
}
