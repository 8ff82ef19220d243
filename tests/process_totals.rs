//! The per-executable totals the process probe keeps in the kernel: CPU of processes that
//! ended (`sonde.process.exited.cpu.time`) and OOM kills (`sonde.process.oom_kills`), by
//! executable name and container. The process family is loaded in-process and its totals
//! folded as the agent folds them, with the host's cgroup resolver. The workloads run under
//! names of their own (a symlink to python3 named with the test's unique suffix: the
//! kernel's comm is the name exec was given), so other processes on this shared machine
//! cannot add to what is checked, and in a container as the kernel sees one
//! (`common::cgroup::FakeContainer`: Docker's cgroup path shape, no runtime).
//!
//! Needs root (eBPF, cgroups) and python3.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cgroup::FakeContainer;
use sonde::family::process::collect::ProcessCollector;

fn load() -> (
    tokio::runtime::Runtime,
    sonde::probe::LoadedFamily,
    ProcessCollector,
) {
    let (rt, loaded, collector) = common::process_family(10_000);
    let collector = collector.with_attribution(sonde::cgroup::Attribution::for_host(false));
    for r in &loaded.reports {
        assert!(
            matches!(r.state, sonde::probe::ProbeState::Attached),
            "{}: {:?}",
            r.probe,
            r.state
        );
    }
    (rt, loaded, collector)
}

/// python3 under the name `prefix` + a unique suffix (a symlink: comm is the name exec
/// was given).
fn named_python(dir: &Path, prefix: &str) -> (PathBuf, String) {
    let name = format!("{prefix}{}", common::unique_suffix());
    assert!(name.len() <= 15, "{name} would be truncated in comm");
    let path = dir.join(&name);
    std::os::unix::fs::symlink("/usr/bin/python3", &path).expect("symlink python3");
    (path, name)
}

/// Busy-loops until the process's own CPU (getrusage) reaches the argument, in seconds.
const BURN: &str = "import resource, sys\n\
    def used():\n    r = resource.getrusage(resource.RUSAGE_SELF)\n    return r.ru_utime + r.ru_stime\n\
    while used() < float(sys.argv[1]):\n    sum(range(10000))\n\
    print(used())\n";

/// Reaps `child` and returns its wait status and the CPU the kernel charged it for its
/// whole life (wait4's rusage: user + system, seconds; std's wait gives no rusage).
fn wait_with_usage(child: std::process::Child) -> (i32, f64) {
    let pid = child.id();
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value for wait4 to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unwaited child; status and ru are valid for writes.
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
    assert_eq!(
        r,
        pid as libc::pid_t,
        "wait4: {}",
        std::io::Error::last_os_error()
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (status, secs(ru.ru_utime) + secs(ru.ru_stime))
}

type Key = Option<sonde::aggregate::process::ProcessKey>;

/// The series of `name` in container `id`.
fn in_container<V: Clone>(
    points: &[sonde::aggregate::bounded::SeriesPoint<Key, V>],
    name: &str,
    id: &str,
) -> Option<V> {
    points
        .iter()
        .find(|p| {
            p.key
                .as_ref()
                .is_some_and(|k| k.executable == name && k.container_id() == Some(id))
        })
        .map(|p| p.value.clone())
}

/// A job of short processes that each burn a known CPU time: the kernel's per-executable
/// total of their CPU, taken at each exit, matches what the kernel charged them (wait4)
/// within 5 %, though each lived far less than one collection interval.
#[test]
fn cpu_of_exited_processes_is_counted_per_executable() {
    const N: usize = 10;
    const EACH_S: f64 = 0.2;
    let (_rt, _loaded, mut collector) = load();
    let dir = common::TempDir::new("exitcpu");
    let (exe, name) = named_python(dir.path(), "cpu");
    let container = FakeContainer::docker();
    let mut charged = 0.0;
    let mut reported = 0.0;
    for _ in 0..N {
        let mut child = container.spawn(&exe, &["-c", BURN, &EACH_S.to_string()]);
        let mut s = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().expect("stdout"), &mut s)
            .expect("read");
        let (status, cpu) = wait_with_usage(child);
        assert_eq!(status, 0, "the burner failed");
        reported += s.trim().parse::<f64>().expect("the burner's own CPU");
        charged += cpu;
    }
    assert!(reported >= N as f64 * EACH_S, "{reported} s burned");

    let totals = collector.exited(sonde::unix_nanos()).expect("totals");
    let (points, _) = totals.cpu_points();
    let ours = in_container(&points, &name, &container.id)
        .unwrap_or_else(|| panic!("no series for {name} in container {}", container.id));
    let sonde_s = (ours.user_ns + ours.system_ns) as f64 / 1e9;
    let err = (sonde_s - charged).abs() / charged;
    eprintln!(
        "{N} processes: kernel charged {charged:.4} s (their own getrusage: {reported:.4} s), \
         sonde {sonde_s:.4} s (user {:.4}, system {:.4}): {:.2} % apart",
        ours.user_ns as f64 / 1e9,
        ours.system_ns as f64 / 1e9,
        err * 100.0
    );
    assert!(err <= 0.05, "{sonde_s} s vs {charged} s charged");
}

/// A process that outgrows its container's memory limit is killed by the OOM killer and
/// counted once under its executable name and container.
#[test]
fn an_oom_kill_is_counted_once_under_the_victims_name() {
    let (_rt, _loaded, mut collector) = load();
    let dir = common::TempDir::new("oom");
    let (exe, name) = named_python(dir.path(), "oom");
    let container = FakeContainer::docker();
    container.limit_memory(64 << 20);
    // The workload touches 1 GiB.
    let child = container.spawn(&exe, &["-c", "x = b'x' * (1 << 30)"]);
    let (status, _) = wait_with_usage(child);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "the workload was not OOM-killed (wait status {status:#x})"
    );

    let count = |c: &mut ProcessCollector| {
        let t = c.exited(sonde::unix_nanos()).expect("totals");
        in_container(&t.oom_points().0, &name, &container.id).unwrap_or(0)
    };
    assert_eq!(count(&mut collector), 1, "one OOM kill of {name}");
    // Nothing counts it again later (the victim's exit is not a second kill).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&mut collector), 1);
}

/// Issue 12: `sonde.process.exec` is keyed by executable name and container like the other
/// per-process series. One executable (a symlink to /bin/true under a unique name) is run
/// 3 times in one Docker-shaped container, 5 times in another and twice outside any: each
/// container's series counts exactly its own execs, and the host's series has no
/// container.id.
#[test]
fn exec_counts_are_exact_per_container() {
    let (_rt, _loaded, collector) = load();
    let dir = common::TempDir::new("exec");
    let name = format!("ex{}", common::unique_suffix());
    assert!(name.len() <= 15, "{name} would be truncated in comm");
    let exe = dir.path().join(&name);
    std::os::unix::fs::symlink("/bin/true", &exe).expect("symlink /bin/true");
    let exe = exe.to_str().expect("utf-8 path");
    let (a, b) = (FakeContainer::docker(), FakeContainer::docker());
    for (container, n) in [(&a, 3), (&b, 5)] {
        for _ in 0..n {
            container.run(exe, &[]);
        }
    }
    for _ in 0..2 {
        let status = std::process::Command::new(exe).status().expect("run");
        assert!(status.success());
    }

    let (series, _) = collector.exec_names(sonde::unix_nanos());
    let count = |id: Option<&str>| {
        series
            .iter()
            .filter(|p| p.key.executable == name && p.key.container_id() == id)
            .map(|p| p.value)
            .sum::<u64>()
    };
    let ours: Vec<_> = series
        .iter()
        .filter(|p| p.key.executable == name)
        .map(|p| (p.key.container_id().map(|c| c[..12].to_owned()), p.value))
        .collect();
    eprintln!("{name}: {ours:?}");
    assert_eq!(count(Some(&a.id)), 3, "execs in container {}", a.id);
    assert_eq!(count(Some(&b.id)), 5, "execs in container {}", b.id);
    assert_eq!(count(None), 2, "execs outside any container");
    assert_eq!(ours.len(), 3, "one series per container and one outside");
}

/// Issue 12: a container that ended before the family read its kernel map (once per
/// interval) still names what it did. The burner's exec is drained from the ring while
/// it runs (so the resolver has seen its cgroup); the cgroup is removed as soon as it
/// exits, two more containers come and go (each new cgroup makes the resolver walk the
/// tree again: the first container is gone from two walks), and only then are the
/// per-executable totals read: the exited CPU is still under the first container's id.
#[test]
fn a_container_removed_before_its_totals_are_read_keeps_its_id() {
    let (_rt, _loaded, mut collector) = load();
    let dir = common::TempDir::new("gone");
    let (exe, name) = named_python(dir.path(), "gone");
    let gone = FakeContainer::docker();
    let gone_id = gone.id.clone();
    let child = gone.spawn(&exe, &["-c", BURN, "0.6"]);
    // This test does not run the runtime the drain tasks live on: drain as they would,
    // while the burner runs (at least 0.6 s: the CPU time it burns).
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        collector.exec_names(sonde::unix_nanos());
    }
    let (status, cpu) = wait_with_usage(child);
    assert_eq!(status, 0, "the burner failed");
    drop(gone);
    for _ in 0..2 {
        let next = FakeContainer::docker();
        next.run("true", &[]);
        collector.exec_names(sonde::unix_nanos());
    }
    let totals = collector.exited(sonde::unix_nanos()).expect("totals");
    let (points, _) = totals.cpu_points();
    let ours = in_container(&points, &name, &gone_id).unwrap_or_else(|| {
        let mine: Vec<_> = points
            .iter()
            .filter(|p| p.key.as_ref().is_some_and(|k| k.executable == name))
            .map(|p| {
                p.key
                    .as_ref()
                    .and_then(|k| k.container_id().map(str::to_owned))
            })
            .collect();
        panic!("{name}: no series in the removed container {gone_id}; series: {mine:?}")
    });
    let sonde_s = (ours.user_ns + ours.system_ns) as f64 / 1e9;
    eprintln!("{name} in a removed container: sonde {sonde_s:.3} s, kernel charged {cpu:.3} s");
    assert!(sonde_s > 0.5 * cpu, "{sonde_s} s of {cpu} s");
}
