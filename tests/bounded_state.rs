//! Issue 17, point 3: state kept between snapshots is bounded by one snapshot, however
//! many processes come and go. 10 000 real, short-lived processes pass through the host
//! source's top-N (each with a name of its own, so every one is a new series whatever the
//! per-process key is); every snapshot goes through the delta converter and both console
//! renderings, as `sonde run` would export it. The converter's streams and the console's
//! remembered series must never exceed the snapshot's own points, while the number of
//! distinct process series seen over the run is in the thousands. The test process's RSS
//! is printed and held to a small growth (no timing is involved).

mod common;

use std::collections::HashSet;
use std::io::PipeWriter;
use std::os::fd::AsRawFd;

use sonde::aggregate::temporality::DeltaConverter;
use sonde::config::{ConsoleDetail, Temporality};
use sonde::export::console::ConsoleExporter;
use sonde::family::host::config::HostConfig;
use sonde::family::host::mapping::MetricNames;
use sonde::family::host::HostSource;
use sonde::model::{Snapshot, Value};
use sonde::source::{Output, Source};

const ROUNDS: usize = 100;
const PER_ROUND: usize = 100;
/// Larger than the host's process count: every live process is in the top N, so each
/// of ours gets series of its own.
const TOP_N: usize = 2000;

/// `PER_ROUND` children that rename themselves and wait until the pipe closes.
struct Batch {
    pids: Vec<libc::pid_t>,
    release: Option<PipeWriter>,
}

impl Batch {
    fn spawn(round: usize) -> Self {
        let (read, write) = std::io::pipe().expect("pipe");
        let mut pids = Vec::with_capacity(PER_ROUND);
        for i in 0..PER_ROUND {
            // comm is at most 15 bytes: "sb" + 5 digits for the process number.
            let name =
                std::ffi::CString::new(format!("sb{:05}", round * PER_ROUND + i)).expect("name");
            // SAFETY: the child calls only async-signal-safe functions (prctl, close,
            // read, _exit) before it ends, as fork(2) in a threaded process requires; the
            // parent only records the pid.
            let pid = unsafe { libc::fork() };
            match pid {
                -1 => panic!("fork: {}", std::io::Error::last_os_error()),
                0 => {
                    // SAFETY: child side, see above; `name` was made before the fork.
                    unsafe {
                        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
                        // Its copy of the write end would keep its own read from ending.
                        libc::close(write.as_raw_fd());
                        let mut b = 0u8;
                        libc::read(read.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                        libc::_exit(0);
                    }
                }
                pid => pids.push(pid),
            }
        }
        drop(read);
        Self {
            pids,
            release: Some(write),
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // Closing the pipe ends every child's read: they exit and are reaped.
        drop(self.release.take());
        for pid in &self.pids {
            // SAFETY: waitpid on our own child with a valid status pointer.
            unsafe {
                let mut status = 0;
                libc::waitpid(*pid, &mut status, 0);
            }
        }
    }
}

fn rss_kib() -> u64 {
    common::rss_kib(std::process::id() as i32)
}

#[test]
fn ten_thousand_short_lived_processes_leave_the_exporters_state_flat() {
    let cfg = HostConfig {
        enabled: true,
        per_cpu: false,
        top_processes: TOP_N,
    };
    let start = sonde::unix_nanos();
    let mut host = HostSource::new(
        &cfg,
        MetricNames::Semconv,
        false,
        &sonde::cgroup::Attribution::for_host(false),
    );
    let mut delta = DeltaConverter::new(Temporality::Delta, start);
    let mut full = ConsoleExporter::new(ConsoleDetail::Full);
    let mut summary = ConsoleExporter::new(ConsoleDetail::Summary);
    let mut names_seen: HashSet<String> = HashSet::new();
    let mut rss_after_warmup = 0;
    let mut most_streams = 0;
    for round in 0..ROUNDS {
        let batch = Batch::spawn(round);
        let mut out = Output::default();
        host.collect(start, &mut out);
        let mut snap = Snapshot {
            time_unix_nano: sonde::unix_nanos(),
            metrics: out.metrics,
        };
        let points: usize = snap.metrics.iter().map(|m| m.points.len()).sum();
        for p in snap
            .metrics
            .iter()
            .filter(|m| m.def.name == "process.cpu.time")
            .flat_map(|m| &m.points)
        {
            if let Some(Value::Str(n)) = p.attributes.get("process.executable.name") {
                if n.starts_with("sb") {
                    names_seen.insert(n.clone());
                }
            }
        }
        let _ = full.render(&snap);
        let _ = summary.render(&snap);
        delta.apply(&mut snap);
        drop(batch);
        assert!(
            delta.streams() <= points,
            "round {round}: the converter remembers {} streams, the snapshot has {points} points",
            delta.streams()
        );
        assert!(
            full.series() <= points && summary.series() <= points,
            "round {round}: the console remembers {} / {} series, the snapshot has {points} points",
            full.series(),
            summary.series()
        );
        most_streams = most_streams.max(delta.streams());
        if round == ROUNDS / 4 {
            rss_after_warmup = rss_kib();
        }
    }
    let rss_end = rss_kib();
    println!(
        "{} processes, {} distinct process series seen; converter at most {most_streams} \
         streams; RSS {rss_after_warmup} KiB after {} rounds, {rss_end} KiB after {ROUNDS}",
        ROUNDS * PER_ROUND,
        names_seen.len(),
        ROUNDS / 4,
    );
    assert!(
        names_seen.len() >= ROUNDS * PER_ROUND * 9 / 10,
        "the workload went through the top N: {} of {} processes had series",
        names_seen.len(),
        ROUNDS * PER_ROUND
    );
    assert!(
        rss_end <= rss_after_warmup + 8 * 1024,
        "RSS grew from {rss_after_warmup} KiB to {rss_end} KiB over {} rounds",
        ROUNDS - ROUNDS / 4
    );
}
