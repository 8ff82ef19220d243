//! Collection on a thread of its own. Taking a snapshot walks BPF maps, /proc and /sys and
//! can block (a `statvfs` on a dead network mount, a large TCP table): on the async
//! runtime's workers that would stall the exporters, the health endpoint and the signal
//! handlers. The collection thread ticks, snapshots, and hands each snapshot over a
//! bounded channel; the runtime side fans it out to the exporters. A consumer that falls
//! behind makes the thread skip snapshots (counted), never queue them without bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc as async_mpsc;

use crate::model::Snapshot;

/// Snapshots waiting for the consumer: one in hand and one ready keeps the exporters
/// busy without holding stale data.
pub const HANDOVER_CAPACITY: usize = 2;

/// The running collection thread. `stop` ends it and gives back what it collected from.
#[derive(Debug)]
pub struct Ticker<T> {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<(T, Snapshot)>,
    skipped: Arc<AtomicU64>,
}

/// Starts the thread: every `interval` (the first after one interval) it calls
/// `snapshot(&mut source)` and sends the result on `out`. If `out` is full the snapshot is
/// dropped and counted; if `out` is closed the thread waits for `stop`.
pub fn spawn<T, F>(
    mut source: T,
    mut snapshot: F,
    interval: Duration,
    out: async_mpsc::Sender<Arc<Snapshot>>,
) -> std::io::Result<Ticker<T>>
where
    T: Send + 'static,
    F: FnMut(&mut T) -> Snapshot + Send + 'static,
{
    let (stop, stopped) = mpsc::channel::<()>();
    let skipped = Arc::new(AtomicU64::new(0));
    let skipped_in = skipped.clone();
    let thread = std::thread::Builder::new()
        .name("sonde-collect".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            loop {
                let wait = next.saturating_duration_since(Instant::now());
                match stopped.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => {}
                    // Stop asked, or the handle dropped: a last snapshot for the caller.
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
                let began = Instant::now();
                let snap = Arc::new(snapshot(&mut source));
                // What a tick costs, for bench/tick_connections.py and for a reader of
                // debug logs wondering why exports lag.
                tracing::debug!(
                    took_us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX),
                    "snapshot taken"
                );
                // A slow snapshot delays the next tick rather than bunching ticks up.
                next = (next + interval).max(Instant::now());
                match out.try_send(snap) {
                    Ok(()) => {}
                    Err(async_mpsc::error::TrySendError::Full(_)) => {
                        let n = skipped_in.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::warn!(
                            skipped = n,
                            "the exporters are behind: a snapshot was skipped"
                        );
                    }
                    Err(async_mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            let last = snapshot(&mut source);
            (source, last)
        })?;
    Ok(Ticker {
        stop,
        thread,
        skipped,
    })
}

impl<T: Send + 'static> Ticker<T> {
    /// Snapshots dropped because the consumer had not taken the previous ones.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Stops ticking and returns the source and a last snapshot taken after the stop. The
    /// join runs on the runtime's blocking pool, so a snapshot in progress does not block
    /// an async worker.
    pub async fn stop(self) -> std::io::Result<(T, Snapshot)> {
        let _ = self.stop.send(());
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| std::io::Error::other("the collection thread panicked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(t: u64) -> Snapshot {
        Snapshot {
            time_unix_nano: t,
            metrics: Vec::new(),
        }
    }

    #[tokio::test]
    async fn ticks_hand_snapshots_over_and_stop_returns_the_source_with_a_last_one() {
        let (tx, mut rx) = async_mpsc::channel(HANDOVER_CAPACITY);
        let ticker = spawn(
            0u64,
            |n: &mut u64| {
                *n += 1;
                snap(*n)
            },
            Duration::from_millis(10),
            tx,
        )
        .expect("spawn");
        for want in 1..=3 {
            let got = rx.recv().await.expect("a snapshot");
            assert_eq!(got.time_unix_nano, want);
        }
        let (n, last) = ticker.stop().await.expect("stop");
        assert_eq!(last.time_unix_nano, n, "the last snapshot is taken at stop");
        assert!(n >= 4);
    }

    #[tokio::test]
    async fn a_consumer_that_does_not_keep_up_makes_the_thread_skip_not_queue() {
        let (tx, mut rx) = async_mpsc::channel(HANDOVER_CAPACITY);
        let ticker = spawn(
            0u64,
            |n: &mut u64| {
                *n += 1;
                snap(*n)
            },
            Duration::from_millis(1),
            tx,
        )
        .expect("spawn");
        // Nobody reads for a while: at most HANDOVER_CAPACITY wait, the rest are skipped.
        while ticker.skipped() < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut waiting = 0;
        while rx.try_recv().is_ok() {
            waiting += 1;
        }
        assert!(waiting <= HANDOVER_CAPACITY + 1, "{waiting} queued");
        let (n, _) = ticker.stop().await.expect("stop");
        assert!(n as usize >= 5 + waiting);
    }
}
