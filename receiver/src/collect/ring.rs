//! Ring-buffer drains, one machinery for every family. A family's ring and the state it
//! feeds (its [`Sink`]) sit behind one lock; two paths drain through it:
//! - a task on the runtime, woken by the kernel (the probe wakes it only past a fill
//!   threshold) or by a timer, that takes at most [`BATCH`] records per pass and yields
//!   between passes, so a flood of events cannot hold a worker or the lock for long;
//! - the snapshot, which drains what the ring holds before it reads the sink (bounded
//!   too, by [`SNAPSHOT_MAX`]), so counts are exact as of the snapshot.
//!
//! The task belongs to the family's collector: [`Ring::stop`] hands it over so the agent
//! can join it before the probes are released, and a poll error is recorded
//! ([`Ring::failure`]) for `sonde.probe.status` instead of freezing the counts: the ring
//! is then drained on the timer and at each snapshot only.

use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::collect::CollectError;

/// Records handled per pass of the drain task before it yields.
pub const BATCH: usize = 1024;

/// Records one snapshot drains at most; what is left waits for the task (a flood must
/// not stall the snapshot).
pub const SNAPSHOT_MAX: usize = 64 * BATCH;

/// Where records come from: the BPF ring buffer, or a queue in tests.
pub trait Records: Send + 'static {
    /// Hands the next record to `f`; `false` when the ring is empty.
    fn next_record(&mut self, f: &mut dyn FnMut(&[u8])) -> bool;
}

impl Records for RingBuf<MapData> {
    fn next_record(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        match self.next() {
            Some(item) => {
                f(&item);
                true
            }
            None => false,
        }
    }
}

/// What a family does with its records.
pub trait Sink: Send + 'static {
    fn record(&mut self, bytes: &[u8]);
    /// After each batch (a matcher's events folded, spans offered).
    fn end_batch(&mut self) {}
}

/// What wakes the drain task besides its timer.
pub trait Wake: Send + 'static {
    /// Returns when the ring may hold records or `period` has passed; an error means
    /// readiness can no longer be watched.
    fn wait(&mut self, period: Duration) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl Wake for AsyncFd<OwnedFd> {
    async fn wait(&mut self, period: Duration) -> std::io::Result<()> {
        match tokio::time::timeout(period, self.readable()).await {
            Ok(Ok(mut guard)) => {
                // Cleared before draining: records that arrive after this wake us again.
                guard.clear_ready();
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_elapsed) => Ok(()),
        }
    }
}

struct Inner<R, S> {
    ring: R,
    sink: S,
}

/// A family's ring, its sink and the task that drains it.
pub struct Ring<R, S> {
    inner: Arc<Mutex<Inner<R, S>>>,
    failure: Arc<OnceLock<String>>,
    task: Option<DrainTask>,
}

impl<R, S> std::fmt::Debug for Ring<R, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("failure", &self.failure.get())
            .finish_non_exhaustive()
    }
}

/// The drain task, owned by its family until shutdown joins it.
#[derive(Debug)]
pub struct DrainTask {
    stop: Arc<Notify>,
    handle: tokio::task::JoinHandle<()>,
}

impl DrainTask {
    /// Stops the task and waits until it has ended (and dropped what it held).
    pub async fn join(self) {
        self.stop.notify_one();
        if let Err(e) = self.handle.await {
            tracing::warn!("a ring drain task ended abnormally: {e}");
        }
    }
}

impl<S: Sink> Ring<RingBuf<MapData>, S> {
    /// Starts draining a BPF ring: the task watches a duplicate of the ring's fd, so
    /// the ring itself can sit behind the lock the snapshot also drains through. Must
    /// run inside a tokio runtime.
    pub fn start_bpf(
        ring: RingBuf<MapData>,
        sink: S,
        period: Duration,
    ) -> Result<Self, CollectError> {
        let fd = ring
            .as_fd()
            .try_clone_to_owned()
            .map_err(CollectError::Poll)?;
        // SAFETY: the AsyncFd owns `fd` for its whole life, and OwnedFd::as_raw_fd always
        // returns that same open descriptor.
        let wake = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| CollectError::Poll(e.into()))?;
        Ok(Self::start(ring, sink, wake, period))
    }
}

impl<R: Records, S: Sink> Ring<R, S> {
    /// Starts the drain task on the current runtime.
    pub fn start<W: Wake>(ring: R, sink: S, wake: W, period: Duration) -> Self {
        let inner = Arc::new(Mutex::new(Inner { ring, sink }));
        let failure = Arc::new(OnceLock::new());
        let stop = Arc::new(Notify::new());
        let handle = tokio::spawn(run(
            inner.clone(),
            wake,
            period,
            stop.clone(),
            failure.clone(),
        ));
        Self {
            inner,
            failure,
            task: Some(DrainTask { stop, handle }),
        }
    }

    /// Drains what the ring holds now, at most [`SNAPSHOT_MAX`] records, on the
    /// caller's thread. Returns how many records it took.
    pub fn drain_now(&self) -> usize {
        let mut n = 0;
        while n < SNAPSHOT_MAX {
            let got = drain_batch(&self.inner, BATCH);
            n += got;
            if got < BATCH {
                break;
            }
        }
        n
    }

    /// Runs `f` on the sink under the lock (short: no system call should run here).
    pub fn with<T>(&self, f: impl FnOnce(&mut S) -> T) -> T {
        f(&mut lock(&self.inner).sink)
    }

    /// Why the task can no longer be woken by the kernel, if it cannot.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Hands the drain task over for joining (once).
    pub fn stop(&mut self) -> Option<DrainTask> {
        self.task.take()
    }
}

impl<R, S> Drop for Ring<R, S> {
    fn drop(&mut self) {
        // Not joined (`sonde top`, a test): the task ends at its next poll.
        if let Some(t) = self.task.take() {
            t.stop.notify_one();
            t.handle.abort();
        }
    }
}

fn lock<R, S>(inner: &Mutex<Inner<R, S>>) -> MutexGuard<'_, Inner<R, S>> {
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes at most `max` records under one hold of the lock.
fn drain_batch<R: Records, S: Sink>(inner: &Mutex<Inner<R, S>>, max: usize) -> usize {
    let mut g = lock(inner);
    let Inner { ring, sink } = &mut *g;
    let mut n = 0;
    while n < max && ring.next_record(&mut |b| sink.record(b)) {
        n += 1;
    }
    if n > 0 {
        sink.end_batch();
    }
    n
}

async fn run<R: Records, S: Sink, W: Wake>(
    inner: Arc<Mutex<Inner<R, S>>>,
    wake: W,
    period: Duration,
    stop: Arc<Notify>,
    failure: Arc<OnceLock<String>>,
) {
    let mut wake = Some(wake);
    loop {
        let woke = tokio::select! {
            _ = stop.notified() => return,
            r = wait(&mut wake, period) => r,
        };
        if let Err(e) = woke {
            let why = format!("ring buffer poll failed ({e}); drained on a timer only");
            tracing::error!("{why}");
            let _ = failure.set(why);
            wake = None;
        }
        loop {
            if drain_batch(&inner, BATCH) < BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

async fn wait<W: Wake>(wake: &mut Option<W>, period: Duration) -> std::io::Result<()> {
    match wake {
        Some(w) => w.wait(period).await,
        None => {
            tokio::time::sleep(period).await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A ring of `len` records that counts how often it was read.
    struct Queue {
        left: usize,
        reads: Arc<AtomicUsize>,
    }

    impl Records for Queue {
        fn next_record(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
            if self.left == 0 {
                return false;
            }
            self.left -= 1;
            self.reads.fetch_add(1, Ordering::Relaxed);
            f(&[1]);
            true
        }
    }

    #[derive(Default)]
    struct Count {
        records: usize,
        batches: Vec<usize>,
        open: usize,
    }

    impl Sink for Count {
        fn record(&mut self, _: &[u8]) {
            self.records += 1;
            self.open += 1;
        }
        fn end_batch(&mut self) {
            self.batches.push(self.open);
            self.open = 0;
        }
    }

    /// Wakes on a script: `Ok` entries wake at once, `Err` fails the poll, then sleeps.
    struct Script(VecDeque<std::io::Result<()>>);

    impl Wake for Script {
        async fn wait(&mut self, period: Duration) -> std::io::Result<()> {
            match self.0.pop_front() {
                Some(r) => r,
                None => {
                    tokio::time::sleep(period).await;
                    Ok(())
                }
            }
        }
    }

    fn queue(left: usize) -> (Queue, Arc<AtomicUsize>) {
        let reads = Arc::new(AtomicUsize::new(0));
        (
            Queue {
                left,
                reads: reads.clone(),
            },
            reads,
        )
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_task_takes_bounded_batches_and_yields_between_them() {
        let (q, reads) = queue(3 * BATCH + 5);
        let ring = Ring::start(
            q,
            Count::default(),
            Script([Ok(())].into()),
            Duration::from_secs(60),
        );
        // On a current-thread runtime the task runs only when this test yields: after
        // one yield it can have done at most one batch.
        tokio::task::yield_now().await;
        assert!(reads.load(Ordering::Relaxed) <= BATCH, "one batch per pass");
        while reads.load(Ordering::Relaxed) < 3 * BATCH + 5 {
            tokio::task::yield_now().await;
        }
        ring.with(|c| {
            assert_eq!(c.records, 3 * BATCH + 5);
            assert_eq!(c.batches, [BATCH, BATCH, BATCH, 5]);
        });
        assert_eq!(ring.failure(), None);
    }

    #[tokio::test]
    async fn a_snapshot_drains_what_the_ring_holds_up_to_its_bound() {
        let (q, _) = queue(SNAPSHOT_MAX + 10);
        // The task sleeps (an hour): only the snapshot drains.
        let ring = Ring::start(
            q,
            Count::default(),
            Script(VecDeque::new()),
            Duration::from_secs(3600),
        );
        assert_eq!(ring.drain_now(), SNAPSHOT_MAX);
        assert_eq!(ring.drain_now(), 10);
        assert_eq!(ring.with(|c| c.records), SNAPSHOT_MAX + 10);
    }

    #[tokio::test]
    async fn a_poll_error_is_recorded_and_draining_goes_on_by_timer() {
        let (mut q, reads) = queue(0);
        q.left = 7;
        let err = std::io::Error::other("epoll gone");
        let ring = Ring::start(
            q,
            Count::default(),
            Script([Err(err)].into()),
            Duration::from_millis(5),
        );
        while ring.failure().is_none() || reads.load(Ordering::Relaxed) < 7 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let why = ring.failure().expect("recorded");
        assert!(why.contains("epoll gone") && why.contains("timer"), "{why}");
        assert_eq!(ring.with(|c| c.records), 7);
    }

    #[tokio::test]
    async fn stop_hands_the_task_over_and_join_releases_what_it_held() {
        let (q, _) = queue(0);
        let mut ring = Ring::start(
            q,
            Count::default(),
            Script(VecDeque::new()),
            Duration::from_secs(3600),
        );
        let held = Arc::strong_count(&ring.inner);
        assert_eq!(held, 2, "the task holds the ring");
        ring.stop().expect("a task").join().await;
        assert_eq!(
            Arc::strong_count(&ring.inner),
            1,
            "joined: the task's hold is gone"
        );
        assert!(ring.stop().is_none(), "handed over once");
    }
}
