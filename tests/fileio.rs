//! The fileio probe end to end: the real `sonde` binary, real workloads with known
//! ground truth, and what arrives at a real OTLP receiver.
//!
//! - Bytes and operations on a regular file are exact for the file system and the
//!   process (a private tmpfs, so nothing else touches it); pipe and socket I/O in the
//!   same process does not count. They stay exact when threads on every CPU start on a
//!   new file system at once (the kernel numbers it on first use, see fileio.bpf.c).
//! - Sonde in a mount namespace of its own names a file system mounted only on the host
//!   by the host's mount point.
//! - File systems that come and go (more of them over time than the kernel numbers at
//!   once, each left idle for the series TTL) give their numbers back: every one counts
//!   exactly, none is lost.
//! - O_DIRECT I/O on a loop device (with ext4 made on it) is exact in that device's
//!   block metrics.
//! - A FUSE file system of the test's own that delays every read by D puts the
//!   file-latency histogram's mass in D's bucket of the grid (`sonde_probes::grid`, as
//!   exported at OTLP exponential scale 2), and a second Sonde exporting the default
//!   explicit form carries the same counts per doubling; a loop device backed by a file
//!   on it does the same for the block-latency histogram.
//!
//! Needs root (eBPF, mount, losetup).

mod common;

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

const WAIT: Duration = Duration::from_secs(60);
/// Large enough that every process on a busy machine gets its own series; the tests tell
/// processes apart by pid.
const CONFIG: &str =
    "attributes:\n  process_pid: true\nprobes:\n  fileio:\n    process_limit: 100000\n";

fn start_sonde(rx: &OtlpReceiver) -> Sonde {
    start_sonde_with(rx, &[])
}

fn start_sonde_with(rx: &OtlpReceiver, extra: &[(&'static str, &str)]) -> Sonde {
    start_sonde_config(rx, extra, CONFIG)
}

fn start_sonde_config(rx: &OtlpReceiver, extra: &[(&'static str, &str)], config: &str) -> Sonde {
    let mut env = rx.env();
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "300".into()));
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let mut sonde = Sonde::start(&env, Some(config));
    sonde.wait_started();
    rx.wait_for("a first export", WAIT, |e| !e.is_empty());
    sonde
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("path without NUL")
}

/// A mount of the test's own, unmounted (lazily, so a stuck user cannot block it) on drop.
struct Mount {
    path: PathBuf,
}

impl Mount {
    fn tmpfs(dir: &Path) -> Self {
        Self::tmpfs_at(dir.join("tmpfs"))
    }

    fn tmpfs_at(path: PathBuf) -> Self {
        std::fs::create_dir_all(&path).expect("mkdir");
        let (src, ty, opts) = (c"sonde-test", c"tmpfs", c"size=16m");
        // SAFETY: every pointer is a valid NUL-terminated string for the call's duration.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                cstr(&path).as_ptr(),
                ty.as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        Self { path }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(cstr(&self.path).as_ptr(), libc::MNT_DETACH) };
    }
}

/// `path` opened for reading and writing, made if missing.
fn open_rw(path: &Path) -> OwnedFd {
    let path = cstr(path);
    // SAFETY: a valid path; the fd is owned right away.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o600) };
    assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just opened and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn check(rc: isize, n: usize, what: &str) {
    assert_eq!(
        rc,
        n as isize,
        "{what}: {}",
        std::io::Error::last_os_error()
    );
}

/// Whether a point with these attributes, taken at `t`, matches `filter` and is at least
/// as new as the best so far.
fn newer<T>(
    best: &Option<(u64, T)>,
    filter: &[(&str, &str)],
    attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    t: u64,
) -> bool {
    let ok = filter.iter().all(|(k, v)| {
        attrs
            .iter()
            .any(|kv| kv.key == *k && any_to_string(&kv.value) == *v)
    });
    ok && best.as_ref().is_none_or(|(b, _)| t >= *b)
}

/// The newest histogram point of `name` whose attributes include `filter`.
/// Explicit bounds, bucket counts, count.
type Hist = (Vec<f64>, Vec<u64>, u64);

fn histogram(exports: &[Export], name: &str, filter: &[(&str, &str)]) -> Option<Hist> {
    let mut best: Option<(u64, Hist)> = None;
    for m in metrics(exports, name) {
        let Some(Data::Histogram(h)) = &m.data else {
            continue;
        };
        for p in &h.data_points {
            if newer(&best, filter, &p.attributes, p.time_unix_nano) {
                best = Some((
                    p.time_unix_nano,
                    (p.explicit_bounds.clone(), p.bucket_counts.clone(), p.count),
                ));
            }
        }
    }
    best.map(|(_, h)| h)
}

/// OTLP exponential histograms: this Sonde exports the kernel's grid as it is.
const EXPONENTIAL: (&str, &str) = (
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
    "base2_exponential_bucket_histogram",
);

/// The newest exponential point of `name` whose attributes include `filter`: scale, zero
/// count, (bucket index, count) of the non-empty buckets, count.
type ExpHist = (i32, u64, Vec<(i32, u64)>, u64);

fn exp_histogram(exports: &[Export], name: &str, filter: &[(&str, &str)]) -> Option<ExpHist> {
    let mut best: Option<(u64, ExpHist)> = None;
    for m in metrics(exports, name) {
        let Some(Data::ExponentialHistogram(h)) = &m.data else {
            continue;
        };
        for p in &h.data_points {
            if newer(&best, filter, &p.attributes, p.time_unix_nano) {
                let pos = p.positive.clone().unwrap_or_default();
                let buckets = pos
                    .bucket_counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(i, c)| (pos.offset + i as i32, *c))
                    .collect();
                best = Some((p.time_unix_nano, (p.scale, p.zero_count, buckets, p.count)));
            }
        }
    }
    best.map(|(_, h)| h)
}

/// The grid bucket index of a duration, as the probe computes it for its nanoseconds.
fn grid_index(d: Duration) -> i32 {
    use sonde_probes::grid;
    let ns = u64::try_from(d.as_nanos()).expect("a duration in u64 ns");
    grid::index_of_slot(grid::slot_of(ns, &grid::upper_bounds_ns()))
}

/// Reads that this thread saw take no longer than D's bucket allows were measured by the
/// kernel within [D, seen], so they must be in D's bucket.
fn reads_seen_in_d_are_there(d_index: i32, buckets: &[(i32, u64)], seen: &[Duration]) {
    let in_d = seen.iter().filter(|d| grid_index(**d) == d_index).count() as u64;
    let got_d = buckets
        .iter()
        .find(|(i, _)| *i == d_index)
        .map_or(0, |b| b.1);
    assert!(
        got_d >= in_d,
        "reads seen within D's bucket are there: {buckets:?} (seen {seen:?})"
    );
}

/// The tests share one process id, and each asserts on that pid's series (for example
/// "every series of this process has a mount point"): run in parallel, one test's raw
/// block-device I/O is another's stray series. Run them one at a time.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn regular_file_bytes_are_exact_per_process_and_file_system_and_pipes_and_sockets_do_not_count() {
    let _serial = one_at_a_time();
    require_root();
    let dir = TempDir::new("fileio");
    let mnt = Mount::tmpfs(dir.path());
    let mountpoint = mnt.path.canonicalize().expect("canonical mountpoint");
    let mountpoint = mountpoint.to_string_lossy().into_owned();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut sonde = start_sonde(&rx);

    const B: usize = 12_345;
    let data: Vec<u8> = (0..B).map(|i| (i % 251) as u8).collect();
    let file = open_rw(&mnt.path.join("data"));
    let fd = file.as_raw_fd();

    // Three writes, one per syscall kind: write [0, 4096), writev [4096, 7096), pwrite the rest.
    check(
        // SAFETY: buffers are live and at least as long as the lengths passed.
        unsafe { libc::write(fd, data.as_ptr().cast(), 4096) },
        4096,
        "write",
    );
    let iov = [
        libc::iovec {
            iov_base: data[4096..].as_ptr() as *mut _,
            iov_len: 1000,
        },
        libc::iovec {
            iov_base: data[5096..].as_ptr() as *mut _,
            iov_len: 2000,
        },
    ];
    // SAFETY: see above.
    check(unsafe { libc::writev(fd, iov.as_ptr(), 2) }, 3000, "writev");
    // SAFETY: see above.
    check(
        // SAFETY: buffers are live and at least as long as the lengths passed.
        unsafe { libc::pwrite(fd, data[7096..].as_ptr().cast(), B - 7096, 7096) },
        B - 7096,
        "pwrite",
    );
    // Three reads back: pread [0, 5000), read [5000, 9000), readv the rest.
    let mut back = vec![0u8; B];
    // SAFETY: see above.
    check(
        // SAFETY: buffers are live and at least as long as the lengths passed.
        unsafe { libc::pread(fd, back.as_mut_ptr().cast(), 5000, 0) },
        5000,
        "pread",
    );
    // SAFETY: no memory involved.
    assert_eq!(unsafe { libc::lseek(fd, 5000, libc::SEEK_SET) }, 5000);
    // SAFETY: see above.
    check(
        // SAFETY: buffers are live and at least as long as the lengths passed.
        unsafe { libc::read(fd, back[5000..].as_mut_ptr().cast(), 4000) },
        4000,
        "read",
    );
    let (a, b) = back[9000..].split_at_mut(1000);
    let iov = [
        libc::iovec {
            iov_base: a.as_mut_ptr().cast(),
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        },
    ];
    // SAFETY: see above.
    check(
        // SAFETY: buffers are live and at least as long as the lengths passed.
        unsafe { libc::readv(fd, iov.as_ptr(), 2) },
        B - 9000,
        "readv",
    );
    assert_eq!(back, data, "the file reads back what was written");

    // Pipe and socket traffic through the same syscalls: none of it may count. Closing
    // the file first lets the pipe take its fd number (the lowest free one, unless
    // another thread took it), which the probe's per-task fd memo must not be fooled by.
    drop(file);
    let mut p = [0i32; 2];
    // SAFETY: p has room for the two fds.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    let mut s = [0i32; 2];
    // SAFETY: s has room for the two fds.
    assert_eq!(
        // SAFETY: buffers are live and at least as long as the lengths passed.
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, s.as_mut_ptr()) },
        0
    );
    for (w, r) in [(p[1], p[0]), (s[0], s[1])] {
        let mut buf = [0u8; 3000];
        for _ in 0..5 {
            // SAFETY: see above.
            check(
                // SAFETY: buffers are live and at least as long as the lengths passed.
                unsafe { libc::write(w, data.as_ptr().cast(), 3000) },
                3000,
                "write to pipe/socket",
            );
            // SAFETY: see above.
            check(
                // SAFETY: buffers are live and at least as long as the lengths passed.
                unsafe { libc::read(r, buf.as_mut_ptr().cast(), 3000) },
                3000,
                "read from pipe/socket",
            );
        }
    }
    for fd in p.into_iter().chain(s) {
        // SAFETY: fds we created and close once.
        unsafe { libc::close(fd) };
    }

    let pid = std::process::id().to_string();
    let mine = |dir: &'static str| {
        [
            ("process.pid", pid.clone()),
            ("system.filesystem.mountpoint", mountpoint.clone()),
            ("disk.io.direction", dir.to_owned()),
        ]
    };
    let value = |e: &[Export], f: &[(&str, String)]| {
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        latest(e, "sonde.file.io", &f)
    };
    let got = rx.wait_for("the test's bytes on its tmpfs", WAIT, |e| {
        value(e, &mine("write")) >= Some(B as f64) && value(e, &mine("read")) >= Some(B as f64)
    });
    let n = got.len();
    let got = rx.wait_for("two more exports", WAIT, |e| e.len() >= n + 2);
    assert_eq!(value(&got, &mine("write")), Some(B as f64), "bytes written");
    assert_eq!(value(&got, &mine("read")), Some(B as f64), "bytes read");
    for dir in ["read", "write"] {
        let f = [
            ("system.filesystem.mountpoint", mountpoint.as_str()),
            ("disk.io.direction", dir),
        ];
        assert_eq!(
            latest(&got, "sonde.file.operations", &f),
            Some(3.0),
            "{dir} operations"
        );
        let (bounds, counts, count) =
            histogram(&got, "sonde.file.io.duration", &f).expect("a latency histogram");
        assert_eq!(count, 3, "{dir}: one latency per operation");
        assert_eq!(counts.len(), bounds.len() + 1);
        assert_eq!(
            bounds[0],
            2f64.powi(-30),
            "bounds at powers of two of seconds"
        );
    }
    // Pipe and socket I/O would show up under a kernel-internal file system (pipefs,
    // sockfs), which has no mount point: every series of this process must have one.
    for p in num_points(&got, "sonde.file.io") {
        if p.attrs.get("process.pid") == Some(&pid) {
            let m = &p.attrs["system.filesystem.mountpoint"];
            assert!(m.starts_with('/'), "non-file I/O counted: {p:?}");
        }
    }
    let m = metrics(&got, "sonde.file.io")
        .last()
        .expect("sonde.file.io");
    assert_eq!(m.unit, "By");
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below the number of CPUs, which fits a cpu_set_t here.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// The kernel gives a file system its place in the per-CPU counters and the shared
/// histograms the first time one of its files is used, and two CPUs can get there at
/// once: threads pinned to every CPU start on a fresh tmpfs together, and its operations,
/// bytes and latency count still come out exact, under one series per direction.
#[test]
fn a_new_file_system_used_from_every_cpu_at_once_counts_exactly() {
    let _serial = one_at_a_time();
    require_root();
    let dir = TempDir::new("fileio-cpus");
    let mnt = Mount::tmpfs(dir.path());
    let mountpoint = mnt.path.canonicalize().expect("canonical mountpoint");
    let mountpoint = mountpoint.to_string_lossy().into_owned();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut sonde = start_sonde(&rx);

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = 2 * cpus;
    const CALLS: usize = 500;
    const SIZE: usize = 100;
    let start = std::sync::Barrier::new(threads);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (start, root) = (&start, &mnt.path);
            scope.spawn(move || {
                pin_to(t % cpus);
                let data = [t as u8; SIZE];
                let mut back = [0u8; SIZE];
                let file = open_rw(&root.join(format!("data-{t}")));
                start.wait();
                for i in 0..CALLS {
                    let off = (i * SIZE) as libc::off_t;
                    check(
                        // SAFETY: the buffer is live and SIZE bytes long.
                        unsafe { libc::pwrite(file.as_raw_fd(), data.as_ptr().cast(), SIZE, off) },
                        SIZE,
                        "pwrite",
                    );
                    check(
                        // SAFETY: the buffer is live and SIZE bytes long.
                        unsafe {
                            libc::pread(file.as_raw_fd(), back.as_mut_ptr().cast(), SIZE, off)
                        },
                        SIZE,
                        "pread",
                    );
                    assert_eq!(back, data);
                }
            });
        }
    });

    let ops = (threads * CALLS) as f64;
    let bytes = ops * SIZE as f64;
    let pid = std::process::id().to_string();
    let on_mnt = |dir: &'static str| {
        [
            ("system.filesystem.mountpoint", mountpoint.clone()),
            ("disk.io.direction", dir.to_owned()),
        ]
    };
    let value = |e: &[Export], name: &str, f: &[(&str, String)]| {
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        latest(e, name, &f)
    };
    let got = rx.wait_for("the threads' operations on the tmpfs", WAIT, |e| {
        ["read", "write"]
            .iter()
            .all(|d| value(e, "sonde.file.operations", &on_mnt(d)) >= Some(ops))
    });
    let n = got.len();
    let got = rx.wait_for("two more exports", WAIT, |e| e.len() >= n + 2);
    for dir in ["read", "write"] {
        let f = on_mnt(dir);
        assert_eq!(
            value(&got, "sonde.file.operations", &f),
            Some(ops),
            "{dir} operations"
        );
        let mut mine = f.to_vec();
        mine.push(("process.pid", pid.clone()));
        assert_eq!(
            value(&got, "sonde.file.io", &mine),
            Some(bytes),
            "{dir} bytes"
        );
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (_, counts, count) =
            histogram(&got, "sonde.file.io.duration", &f).expect("a latency histogram");
        assert_eq!(count, ops as u64, "{dir}: one latency per operation");
        assert_eq!(
            counts.iter().sum::<u64>(),
            count,
            "{dir}: buckets add up to the count"
        );
    }
    let on_tmpfs: Vec<NumPoint> = num_points(&got, "sonde.file.operations")
        .into_iter()
        .filter(|p| p.attrs.get("system.filesystem.mountpoint") == Some(&mountpoint))
        .collect();
    let last = on_tmpfs.iter().map(|p| p.time).max();
    let series = on_tmpfs.iter().filter(|p| Some(p.time) == last).count();
    assert_eq!(series, 2, "one series per direction: {on_tmpfs:?}");
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
}

/// Sonde in a mount namespace of its own (as in a DaemonSet's container) names a file
/// system mounted on the host after it started, which its own namespace never sees, by
/// the host's mount point (PID 1's table), not by its device number.
#[test]
fn a_file_system_mounted_only_on_the_host_is_named_by_its_host_mount_point() {
    let _serial = one_at_a_time();
    require_root();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut env = rx.env();
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "300".into()));
    let mut sonde = Sonde::start_wrapped(
        &["unshare", "--mount", "--propagation", "private"],
        &env,
        Some(CONFIG),
    );
    sonde.wait_started();
    rx.wait_for("a first export", WAIT, |e| !e.is_empty());
    let dir = TempDir::new("fileio-hostns");
    let mnt = Mount::tmpfs(dir.path());
    let mountpoint = mnt.path.canonicalize().expect("canonical mountpoint");
    let mountpoint = mountpoint.to_string_lossy().into_owned();
    let in_table = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(mountpoint.as_str()))
    };
    assert!(
        !in_table(&sonde.pid().to_string()),
        "the mount reached Sonde's own namespace: the test shows nothing"
    );
    if !in_table("1") {
        eprintln!(
            "skipped: PID 1 is in another mount namespace than this test, so no host \
             table can show the test's mount here"
        );
        return;
    }
    let file = open_rw(&mnt.path.join("data"));
    let buf = [1u8; 64];
    for k in 0..7 {
        // SAFETY: the buffer is live and 64 bytes long.
        let rc = unsafe { libc::pwrite(file.as_raw_fd(), buf.as_ptr().cast(), 64, k * 64) };
        check(rc, 64, "pwrite");
    }
    let f = [
        ("system.filesystem.mountpoint", mountpoint.as_str()),
        ("disk.io.direction", "write"),
    ];
    rx.wait_until(
        "the writes under the host's mount point",
        WAIT,
        |e| match latest(e, "sonde.file.operations", &f) {
            Some(7.0) => Ok(()),
            other => {
                let named: Vec<String> = num_points(e, "sonde.file.operations")
                    .into_iter()
                    .filter_map(|p| p.attrs.get("system.filesystem.mountpoint").cloned())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                Err(format!(
                    "{other:?} writes under {mountpoint}; file systems named: {named:?}"
                ))
            }
        },
    );
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
}

/// 200 tmpfs file systems, mounted in batches of 50 and all kept mounted (so the kernel
/// cannot hand a freed dev_t to the next, and each is a file system of its own), each
/// with its own count of writes and reads; the series TTL is 1 s. Each batch is counted
/// exactly, then left idle until its series leave the export (their numbers taken
/// back), before the next. The kernel numbers at most 128 file systems at once
/// (SONDE_FILEIO_FS_MAX): without numbers given back the last batches would be lost.
#[test]
fn file_systems_left_idle_give_their_numbers_back_and_none_is_lost() {
    let _serial = one_at_a_time();
    require_root();
    let dir = TempDir::new("fileio-churn");
    let rx = OtlpReceiver::start(Proto::Grpc);
    let config = format!("{CONFIG}collection:\n  series_ttl: 1s\n");
    let mut sonde = start_sonde_config(&rx, &[], &config);
    const BATCHES: usize = 4;
    const BATCH: usize = 50;
    let mut mounts = Vec::new();
    for b in 0..BATCHES {
        let mut names = Vec::new();
        for i in 0..BATCH {
            let m = Mount::tmpfs_at(dir.path().join(format!("{b}-{i}")));
            let file = open_rw(&m.path.join("data"));
            let mut buf = [7u8; 10];
            for k in 0..=i {
                let off = (k * buf.len()) as libc::off_t;
                // SAFETY: the buffer is live and 10 bytes long.
                let rc = unsafe { libc::pwrite(file.as_raw_fd(), buf.as_ptr().cast(), 10, off) };
                check(rc, 10, "pwrite");
                // SAFETY: as above.
                let rc = unsafe { libc::pread(file.as_raw_fd(), buf.as_mut_ptr().cast(), 10, off) };
                check(rc, 10, "pread");
            }
            let canonical = m.path.canonicalize().expect("canonical mountpoint");
            names.push(canonical.to_string_lossy().into_owned());
            mounts.push(m);
        }
        rx.wait_until(&format!("batch {b}'s operations, exact"), WAIT, |e| {
            // The newest value per (mountpoint, direction): one pass over the points.
            let mut newest: std::collections::HashMap<(String, String), (u64, f64)> =
                Default::default();
            for p in num_points(e, "sonde.file.operations") {
                let (Some(m), Some(d)) = (
                    p.attrs.get("system.filesystem.mountpoint"),
                    p.attrs.get("disk.io.direction"),
                ) else {
                    continue;
                };
                let slot = newest.entry((m.clone(), d.clone())).or_insert((0, 0.0));
                if p.time >= slot.0 {
                    *slot = (p.time, p.value);
                }
            }
            for (i, mnt) in names.iter().enumerate() {
                for d in ["read", "write"] {
                    let got = newest.get(&(mnt.clone(), d.to_owned())).map(|v| v.1);
                    if got != Some((i + 1) as f64) {
                        return Err(format!("{mnt} {d}: {got:?} operations, not {}", i + 1));
                    }
                }
            }
            Ok(())
        });
        // Idle from here: once its numbers are taken back, the batch's series are gone
        // from the newest export.
        rx.wait_until(&format!("batch {b}'s numbers taken back"), WAIT, |e| {
            let points = num_points(e, "sonde.file.operations");
            let newest = points.iter().map(|p| p.time).max().unwrap_or(0);
            let left: Vec<&String> = points
                .iter()
                .filter(|p| p.time == newest)
                .filter_map(|p| p.attrs.get("system.filesystem.mountpoint"))
                .filter(|m| names.contains(m))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} series of the batch still exported, e.g. {}",
                    left.len(),
                    left[0]
                ))
            }
        });
    }
    let got = rx.wait_for("one more export", WAIT, |e| !e.is_empty());
    let lost = latest(
        &got,
        "sonde.probe.events.lost",
        &[("sonde.probe", "fileio.file")],
    );
    assert_eq!(lost.unwrap_or(0.0), 0.0, "fileio.file events lost");
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
    drop(mounts);
}

/// A loop device over a file in a temp dir, with ext4 on it, mounted; all undone on drop.
struct LoopExt4 {
    device: String,
    mnt: PathBuf,
    _dir: TempDir,
}

impl LoopExt4 {
    fn new() -> Self {
        let dir = TempDir::new("loop");
        let backing = dir.path().join("backing.img");
        std::fs::File::create(&backing)
            .and_then(|f| f.set_len(64 << 20))
            .expect("create the backing file");
        let device = run("losetup", &["--find", "--show", &backing.to_string_lossy()]);
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).expect("mkdir");
        let me = Self {
            device,
            mnt,
            _dir: dir,
        };
        // Initialise inode tables and journal now: lazy init would write to the device
        // from a kernel thread while the test measures it.
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                &me.device,
            ],
        );
        // noatime, lazytime: reads and overwrites change no on-disk metadata.
        run(
            "mount",
            &[
                "-o",
                "noatime,lazytime",
                &me.device,
                &me.mnt.to_string_lossy(),
            ],
        );
        me
    }

    fn name(&self) -> &str {
        self.device.trim_start_matches("/dev/")
    }

    fn unmount(&self) {
        run("umount", &[&self.mnt.to_string_lossy()]);
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        // Already unmounted by the test unless it failed first.
        let _ = Command::new("umount").arg(&self.mnt).output();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// A buffer aligned for O_DIRECT.
struct Aligned {
    ptr: *mut u8,
    len: usize,
}

impl Aligned {
    fn new(len: usize, fill: u8) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 4096).expect("layout");
        // SAFETY: len > 0 and the layout is valid.
        let ptr = unsafe { std::alloc::alloc(layout) };
        assert!(!ptr.is_null());
        // SAFETY: ptr points to len writable bytes.
        unsafe { std::ptr::write_bytes(ptr, fill, len) };
        Self { ptr, len }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len, 4096).expect("layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}

#[test]
fn o_direct_io_on_a_loop_device_is_exact_in_its_block_metrics() {
    let _serial = one_at_a_time();
    require_root();
    let lo = LoopExt4::new();
    const B: usize = 1 << 20;
    // A file system with a file on it, then unmounted: from here on nothing but the test
    // touches the device (a mounted ext4 may commit its journal at any time).
    std::fs::write(lo.mnt.join("data"), vec![1u8; B]).expect("write a file");
    lo.unmount();
    // udev may probe the device after mkfs and umount (blkid reads it): let that finish.
    let _ = Command::new("udevadm").arg("settle").status();

    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut sonde = start_sonde(&rx);

    // Raw O_DIRECT I/O on the device, 16 MiB in. The fd stays open until the assertions
    // are done: closing a block device opened for writing makes udev probe it again.
    let path = PathBuf::from(&lo.device);
    let c = cstr(&path);
    // SAFETY: a valid path; owned right away.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_DIRECT | libc::O_EXCL) };
    assert!(
        fd >= 0,
        "open O_DIRECT: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: just opened, owned by nobody else.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let buf = Aligned::new(B, 7);
    // SAFETY: buf holds B bytes, aligned for O_DIRECT.
    check(
        // SAFETY: buffers are live and at least as long as the lengths passed.
        unsafe { libc::pwrite(file.as_raw_fd(), buf.ptr.cast(), B, 16 << 20) },
        B,
        "O_DIRECT pwrite",
    );
    // SAFETY: as above.
    check(
        // SAFETY: buffers are live and at least as long as the lengths passed.
        unsafe { libc::pread(file.as_raw_fd(), buf.ptr.cast(), B, 16 << 20) },
        B,
        "O_DIRECT pread",
    );

    let dev = lo.name().to_owned();
    let f = |dir: &'static str| {
        [
            ("system.device", dev.clone()),
            ("disk.io.direction", dir.into()),
        ]
    };
    let value = |e: &[Export], name: &str, dir: &'static str| {
        let f = f(dir);
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        latest(e, name, &f)
    };
    let got = rx.wait_for("the O_DIRECT bytes on the loop device", WAIT, |e| {
        value(e, "system.disk.io", "write") >= Some(B as f64)
            && value(e, "system.disk.io", "read") >= Some(B as f64)
    });
    let n = got.len();
    let got = rx.wait_for("two more exports", WAIT, |e| e.len() >= n + 2);
    for dir in ["read", "write"] {
        assert_eq!(
            value(&got, "system.disk.io", dir),
            Some(B as f64),
            "{dir} bytes on {dev}"
        );
        let ops = value(&got, "system.disk.operations", dir).expect("operations");
        assert!(ops >= 1.0, "{dir}: {ops} operations");
        assert!(value(&got, "system.disk.operation_time", dir) > Some(0.0));
        let ff = f(dir);
        let ff: Vec<(&str, &str)> = ff.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (bounds, counts, count) =
            histogram(&got, "sonde.disk.io.duration", &ff).expect("a block latency histogram");
        assert_eq!(
            count as f64, ops,
            "{dir}: one latency per completed request"
        );
        assert_eq!(counts.len(), bounds.len() + 1);
    }
    // Direct I/O is issued in the caller's context (blk-mq dispatches the plugged
    // requests when the syscall unplugs), so the test process is known as the issuer of
    // all of it. More can be attributed to it: other threads of this test binary page in
    // its code from the root disk.
    let pid = std::process::id().to_string();
    for dir in ["read", "write"] {
        let mine = latest(
            &got,
            "process.disk.io",
            &[("process.pid", pid.as_str()), ("disk.io.direction", dir)],
        );
        assert!(
            mine >= Some(B as f64),
            "{dir}: {mine:?} attributed to the test"
        );
    }
    drop(file);
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
}

// ---- FUSE: a file system whose reads take D -------------------------------------------

mod slowfs {
    use std::ffi::OsStr;
    use std::time::{Duration, UNIX_EPOCH};

    use fuser::{
        Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
        LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyEntry, ReplyOpen, Request,
    };

    pub const NAME: &str = "slow";
    pub const SIZE: u64 = 1 << 20;

    /// One file, `slow`, whose every read sleeps `delay` before answering.
    pub struct SlowFs {
        pub delay: Duration,
    }

    fn attr(ino: u64, kind: FileType) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: if kind == FileType::RegularFile {
                SIZE
            } else {
                0
            },
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm: 0o755,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    const TTL: Duration = Duration::from_secs(60);

    impl Filesystem for SlowFs {
        fn lookup(&self, _r: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
            if u64::from(parent) == 1 && name == NAME {
                reply.entry(&TTL, &attr(2, FileType::RegularFile), Generation(0));
            } else {
                reply.error(Errno::ENOENT);
            }
        }

        fn getattr(&self, _r: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
            match u64::from(ino) {
                1 => reply.attr(&TTL, &attr(1, FileType::Directory)),
                2 => reply.attr(&TTL, &attr(2, FileType::RegularFile)),
                _ => reply.error(Errno::ENOENT),
            }
        }

        fn open(&self, _r: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
            // Direct I/O: every read(2) becomes one READ here, none served from cache.
            reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
        }

        fn read(
            &self,
            _r: &Request,
            _ino: INodeNo,
            _fh: FileHandle,
            offset: u64,
            size: u32,
            _flags: OpenFlags,
            _lock: Option<LockOwner>,
            reply: ReplyData,
        ) {
            std::thread::sleep(self.delay);
            let n = (SIZE.saturating_sub(offset)).min(u64::from(size)) as usize;
            reply.data(&vec![0x5a; n]);
        }
    }
}

/// Mounts the test's slow FUSE file system (every read takes `delay`) at `mnt`,
/// read-only; unmounted when the session drops.
fn mount_slowfs(mnt: &Path, delay: Duration) -> fuser::BackgroundSession {
    std::fs::create_dir_all(mnt).expect("mkdir");
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("sonde-slowfs".into()),
        fuser::MountOption::RO,
    ];
    fuser::spawn_mount(slowfs::SlowFs { delay }, mnt, &config)
        .expect("mount the FUSE file system (needs /dev/fuse and root)")
}

#[test]
fn a_fuse_read_delay_puts_the_file_latency_mass_in_its_grid_bucket_in_both_otlp_forms() {
    let _serial = one_at_a_time();
    require_root();
    // 63 ms lies in the grid bucket (2^-4, 2^-3.75] s = (62.5 ms, 74.3 ms], index -16:
    // sleep never returns early, and 11 ms of headroom absorb most scheduling delays on
    // a busy 2-core machine (the test allows for the rest: see `seen`).
    const D: Duration = Duration::from_millis(63);
    const N: usize = 5;
    let d_index = grid_index(D);
    assert_eq!(d_index, -16);
    let dir = TempDir::new("fuse");
    let mnt = dir.path().join("mnt");
    let session = mount_slowfs(&mnt, D);
    let mountpoint = mnt
        .canonicalize()
        .expect("canonical")
        .to_string_lossy()
        .into_owned();

    // Two agents on the same reads: one exports exponential histograms, one explicit.
    let rx_exp = OtlpReceiver::start(Proto::Grpc);
    let mut sonde_exp = start_sonde_with(&rx_exp, &[EXPONENTIAL]);
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut sonde = start_sonde(&rx);

    let c = cstr(&mnt.join(slowfs::NAME));
    // SAFETY: a valid path; owned right away.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
    // SAFETY: just opened, owned by nobody else.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut buf = vec![0u8; 4096];
    // Each read's duration as this thread saw it: the kernel's measurement lies within
    // it, so each read's bucket is between D's and that of what was seen here.
    let mut seen = Vec::new();
    for _ in 0..N {
        let t = Instant::now();
        check(
            // SAFETY: buf holds 4096 bytes.
            unsafe { libc::read(file.as_raw_fd(), buf.as_mut_ptr().cast(), 4096) },
            4096,
            "read from the FUSE file",
        );
        seen.push(t.elapsed());
    }
    assert!(
        seen.iter().all(|d| *d >= D),
        "the file system delays reads: {seen:?}"
    );
    drop(file);

    let f = [
        ("system.filesystem.mountpoint", mountpoint.as_str()),
        ("disk.io.direction", "read"),
    ];
    let got = rx_exp.wait_for("the FUSE reads' exponential histogram", WAIT, |e| {
        exp_histogram(e, "sonde.file.io.duration", &f).is_some_and(|h| h.3 >= N as u64)
    });
    let (scale, zero, buckets, count) =
        exp_histogram(&got, "sonde.file.io.duration", &f).expect("histogram");
    assert_eq!((scale, zero, count), (2, 0, N as u64));
    let highest = seen.iter().map(|d| grid_index(*d)).max().unwrap_or(d_index);
    assert!(
        buckets.iter().all(|(i, _)| (d_index..=highest).contains(i)),
        "every read between D's bucket {d_index} and {highest}: {buckets:?} (seen {seen:?})"
    );
    reads_seen_in_d_are_there(d_index, &buckets, &seen);

    // The explicit form: the same reads, whole grid buckets summed per doubling (2^j s).
    let got = rx.wait_for("the FUSE reads' explicit histogram", WAIT, |e| {
        histogram(e, "sonde.file.io.duration", &f).is_some_and(|(_, _, n)| n >= N as u64)
    });
    let (bounds, counts, count) = histogram(&got, "sonde.file.io.duration", &f).expect("histogram");
    assert_eq!(count, N as u64, "the same reads");
    assert!(
        bounds.windows(2).all(|w| w[1] == 2.0 * w[0]),
        "one bound per doubling"
    );
    let mut want = vec![0u64; counts.len()];
    for (i, c) in &buckets {
        // Index i is in the doubling (2^(j-1), 2^j], j = floor(i / 4) + 1.
        let top = 2f64.powi(i.div_euclid(4) + 1);
        want[bounds.partition_point(|b| *b < top)] += c;
    }
    assert_eq!(
        counts, want,
        "explicit buckets are the grid's, summed per doubling"
    );
    for s in [&mut sonde_exp, &mut sonde] {
        s.signal(libc::SIGTERM);
        assert!(s.wait_exit(WAIT).success(), "{}", s.stderr());
    }
    drop(session);
}

/// A loop device over a given file, detached on drop.
struct LoopDevice(String);

impl LoopDevice {
    fn read_only(file: &Path) -> Self {
        Self(run(
            "losetup",
            &["--find", "--show", "--read-only", &file.to_string_lossy()],
        ))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn a_loop_device_over_a_slow_fuse_file_puts_the_block_latency_mass_in_its_grid_bucket() {
    let _serial = one_at_a_time();
    require_root();
    // As in the file-latency test: 63 ms is in the grid bucket (62.5 ms, 74.3 ms].
    const D: Duration = Duration::from_millis(63);
    const N: usize = 3;
    let d_index = grid_index(D);
    let dir = TempDir::new("fuseloop");
    let mnt = dir.path().join("mnt");
    let _session = mount_slowfs(&mnt, D);
    // Declared after the session so it is detached before the file system is unmounted.
    let lo = LoopDevice::read_only(&mnt.join(slowfs::NAME));
    let dev = lo.0.trim_start_matches("/dev/").to_owned();

    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut sonde = start_sonde_with(&rx, &[EXPONENTIAL]);

    // O_DIRECT: each read is a block request, none served from the page cache; the loop
    // driver serves each by reading its backing file, which takes D.
    let c = cstr(Path::new(&lo.0));
    // SAFETY: a valid path; owned right away.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECT) };
    assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
    // SAFETY: just opened, owned by nobody else.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let buf = Aligned::new(4096, 0);
    let mut seen = Vec::new();
    for i in 0..N {
        let t = Instant::now();
        check(
            // SAFETY: buf holds 4096 bytes, aligned for O_DIRECT.
            unsafe {
                libc::pread(
                    file.as_raw_fd(),
                    buf.ptr.cast(),
                    4096,
                    (i as libc::off_t) << 16,
                )
            },
            4096,
            "O_DIRECT read from the loop device",
        );
        seen.push(t.elapsed());
    }
    drop(file);

    let f = [
        ("system.device", dev.as_str()),
        ("disk.io.direction", "read"),
    ];
    let got = rx.wait_for("the loop device's latency histogram", WAIT, |e| {
        exp_histogram(e, "sonde.disk.io.duration", &f).is_some_and(|h| h.3 >= N as u64)
    });
    let (_, zero, buckets, _) =
        exp_histogram(&got, "sonde.disk.io.duration", &f).expect("histogram");
    // Every read of this device goes through the slow file, whoever issued it (udev may
    // probe it too): nothing can be faster than D.
    assert!(
        zero == 0 && buckets.iter().all(|(i, _)| *i >= d_index),
        "a block read faster than D: {buckets:?}"
    );
    reads_seen_in_d_are_there(d_index, &buckets, &seen);
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
}

/// The `sonde.file.io` points of one process (by pid) on one mount point and direction.
fn proc_bytes(e: &[Export], pid: &str, name: &str, mountpoint: &str, dir: &str) -> Option<f64> {
    latest(
        e,
        "sonde.file.io",
        &[
            ("process.pid", pid),
            ("process.executable.name", name),
            ("system.filesystem.mountpoint", mountpoint),
            ("disk.io.direction", dir),
        ],
    )
}

#[test]
fn bytes_written_after_an_exec_count_under_the_new_executable_name() {
    let _serial = one_at_a_time();
    require_root();
    let dir = TempDir::new("fileio-exec");
    let mnt = Mount::tmpfs(dir.path());
    let mountpoint = mnt.path.canonicalize().expect("canonical mountpoint");
    let mountpoint = mountpoint.to_string_lossy().into_owned();
    // Two copies of the shell under names of their own: the first writes 5000 bytes with
    // its printf builtin, then execs the second in the same process, which writes 7000.
    let (first, first_name) = unique_exe(dir.path(), "sxa", "/bin/sh");
    let (second, second_name) = unique_exe(dir.path(), "sxb", "/bin/sh");
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut sonde = start_sonde(&rx);

    let out = mnt.path.join("out");
    let script = format!(
        "printf '%05000d' 0 > {out}; exec {second} -c \"printf '%07000d' 0 >> {out}\"",
        out = out.display(),
        second = second.display()
    );
    let child = Command::new(&first)
        .arg("-c")
        .arg(&script)
        .spawn()
        .expect("spawn the shell");
    let pid = child.id().to_string();
    let status = child.wait_with_output().expect("wait").status;
    assert!(status.success(), "the workload failed: {status}");
    assert_eq!(std::fs::metadata(&out).expect("out").len(), 12_000);

    let got = rx.wait_for("both names' bytes", WAIT, |e| {
        proc_bytes(e, &pid, &first_name, &mountpoint, "write").is_some()
            && proc_bytes(e, &pid, &second_name, &mountpoint, "write").is_some()
    });
    let n = got.len();
    // Two more exports: the process has exited, its entries are folded and gone.
    let got = rx.wait_for("two more exports", WAIT, |e| e.len() >= n + 2);
    assert_eq!(
        proc_bytes(&got, &pid, &first_name, &mountpoint, "write"),
        Some(5000.0),
        "bytes before the exec, under the first name"
    );
    assert_eq!(
        proc_bytes(&got, &pid, &second_name, &mountpoint, "write"),
        Some(7000.0),
        "bytes after the exec, under the new name"
    );
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
}

/// `dd` copying `file` to /dev/null in 64-byte reads: its pid and the bytes it read, as
/// it reports them.
fn dd_read(file: &str) -> (String, f64) {
    let child = Command::new("dd")
        .args([&format!("if={file}"), "of=/dev/null", "bs=64"])
        .env("LC_ALL", "C")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn dd");
    let pid = child.id().to_string();
    let out = child.wait_with_output().expect("wait for dd");
    assert!(out.status.success(), "dd {file} failed");
    let text = String::from_utf8_lossy(&out.stderr);
    let bytes = text
        .lines()
        .find_map(|l| l.split_once(" bytes")?.0.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("dd reported no byte count: {text}"));
    assert!(bytes > 0, "{file} read empty");
    (pid, bytes as f64)
}

#[test]
fn pseudo_file_system_reads_count_only_when_asked_for() {
    let _serial = one_at_a_time();
    require_root();
    // Two Sondes side by side see the same reads: one with its defaults, one counting
    // pseudo file systems too.
    let rx_default = OtlpReceiver::start(Proto::Grpc);
    let rx_pseudo = OtlpReceiver::start(Proto::Grpc);
    let mut default = start_sonde(&rx_default);
    let mut pseudo = start_sonde_config(
        &rx_pseudo,
        &[],
        &format!("{CONFIG}    pseudo_filesystems: true\n"),
    );

    let reads = [
        ("/proc", dd_read("/proc/self/stat")),
        ("/sys", dd_read("/sys/devices/system/cpu/online")),
    ];
    let of = |e: &[Export], pid: &str, mnt: &str| {
        latest(
            e,
            "sonde.file.io",
            &[
                ("process.pid", pid),
                ("process.executable.name", "dd"),
                ("system.filesystem.mountpoint", mnt),
                ("disk.io.direction", "read"),
            ],
        )
    };
    let got = rx_pseudo.wait_for("dd's reads of /proc and /sys", WAIT, |e| {
        reads
            .iter()
            .all(|(mnt, (pid, _))| of(e, pid, mnt).is_some())
    });
    let n = got.len();
    let got = rx_pseudo.wait_for("two more exports", WAIT, |e| e.len() >= n + 2);
    for (mnt, (pid, bytes)) in &reads {
        assert_eq!(of(&got, pid, mnt), Some(*bytes), "{mnt}: bytes dd read");
    }

    // The default Sonde saw the same processes (the loader's reads of their libraries
    // on the root file system count) but none of their pseudo file system reads.
    let n = rx_default.exports().len();
    let got = rx_default.wait_for("dd's library reads", WAIT, |e| {
        e.len() >= n + 2
            && reads.iter().all(|(_, (pid, _))| {
                num_points(e, "sonde.file.io")
                    .iter()
                    .any(|p| p.attrs.get("process.pid") == Some(pid))
            })
    });
    for (mnt, (pid, _)) in &reads {
        assert_eq!(of(&got, pid, mnt), None, "{mnt} counted without the switch");
    }
    for p in num_points(&got, "sonde.file.io") {
        let m = p
            .attrs
            .get("system.filesystem.mountpoint")
            .map(String::as_str);
        assert!(
            !matches!(m, Some("/proc" | "/sys")),
            "a pseudo file system counted by default: {p:?}"
        );
    }
    for s in [&mut default, &mut pseudo] {
        s.signal(libc::SIGTERM);
        assert!(s.wait_exit(WAIT).success(), "{}", s.stderr());
    }
}
