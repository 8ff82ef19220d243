//! The per-executable totals the process probe keeps in the kernel: CPU of processes that
//! ended (`sonde.process.exited.cpu.time`) and OOM kills (`sonde.process.oom_kills`), by
//! executable name and container. The process family is loaded in-process and its totals
//! folded as the agent folds them, with the host's cgroup resolver. The workloads run under
//! names of their own (a symlink to python3 named with the test's unique suffix: the
//! kernel's comm is the name exec was given), so other processes on this shared machine
//! cannot add to what is checked, and in a cgroup v2 of the test's own shaped as Docker
//! names its containers (`.../docker-<64 hex>.scope`): no runtime runs here, but the kernel
//! and Sonde see exactly what they would see for a Docker container.
//!
//! Needs root (eBPF, cgroups) and python3.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// A cgroup v2 shaped as Docker names a container's, under a directory of the test's own;
/// removed on drop (after killing whatever is left in it).
struct DockerScope {
    parent: PathBuf,
    dir: PathBuf,
    id: String,
}

impl DockerScope {
    fn new() -> Self {
        let root = sonde::cgroup::Resolver::for_host()
            .expect("a cgroup v2 hierarchy in /proc/self/mountinfo")
            .root()
            .to_path_buf();
        let suffix = common::unique_suffix();
        let id = format!("{suffix:0>64}");
        let parent = root.join(format!("sonde-test-{suffix}"));
        let dir = parent.join(format!("docker-{id}.scope"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Self { parent, dir, id }
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for DockerScope {
    fn drop(&mut self) {
        empty_and_remove(&self.dir);
        let _ = std::fs::remove_dir(&self.parent);
    }
}

/// Kills what is left in the cgroup `dir` and removes it (retrying while the tasks die).
fn empty_and_remove(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill has no memory preconditions; these are our workload's pids.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let scope = DockerScope::new();
    let mut charged = 0.0;
    let mut reported = 0.0;
    for _ in 0..N {
        // The shell joins the container's cgroup, then execs the burner (same process).
        let script = format!(
            "echo $$ > {} && exec {} -c \"$0\" {EACH_S}",
            scope.procs().display(),
            exe.display()
        );
        let mut child = Command::new("/bin/sh")
            .args(["-c", &script, BURN])
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
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
    let ours = in_container(&points, &name, &scope.id)
        .unwrap_or_else(|| panic!("no series for {name} in container {}", scope.id));
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

/// A memory cgroup of the test's own with a small limit: v2 `memory.max` where the v2
/// tree has the memory controller, else v1 `memory.limit_in_bytes` (hybrid hosts like
/// this one). Removed on drop, after killing whatever is left in it.
struct MemoryCgroup {
    dir: PathBuf,
}

impl MemoryCgroup {
    fn new(limit: u64) -> Self {
        let tag = format!("sonde-oom-{}", common::unique_suffix());
        let v2 = Path::new("/sys/fs/cgroup");
        let unified = std::fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
        let (dir, limit_file) = if unified {
            (v2.join(&tag), "memory.max")
        } else {
            (
                Path::new("/sys/fs/cgroup/memory").join(&tag),
                "memory.limit_in_bytes",
            )
        };
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let cg = Self { dir };
        std::fs::write(cg.dir.join(limit_file), limit.to_string())
            .unwrap_or_else(|e| panic!("{limit_file}: {e}"));
        cg
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        empty_and_remove(&self.dir);
    }
}

/// A process that outgrows its memory cgroup is killed by the OOM killer and counted
/// once under its executable name.
#[test]
fn an_oom_kill_is_counted_once_under_the_victims_name() {
    let (_rt, _loaded, mut collector) = load();
    let dir = common::TempDir::new("oom");
    let (exe, name) = named_python(dir.path(), "oom");
    let cg = MemoryCgroup::new(64 << 20);
    let scope = DockerScope::new();
    // The shell moves itself into the container's cgroup and the memory cgroup (on a
    // hybrid host two hierarchies; on a pure v2 host the memory cgroup, written last, is
    // its one cgroup: no container), then execs the workload (same process), which
    // touches 1 GiB.
    let script = format!(
        "echo $$ > {} && echo $$ > {} && exec {} -c \"x = b'x' * (1 << 30)\"",
        scope.procs().display(),
        cg.procs().display(),
        exe.display()
    );
    let child = Command::new("/bin/sh")
        .args(["-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .expect("sh");
    let (status, _) = wait_with_usage(child);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "the workload was not OOM-killed (wait status {status:#x})"
    );

    let unified = !cg.dir.starts_with("/sys/fs/cgroup/memory");
    let count = |c: &mut ProcessCollector| {
        let t = c.exited(sonde::unix_nanos()).expect("totals");
        let points = t.oom_points().0;
        if unified {
            points
                .iter()
                .find(|p| p.key.as_ref().is_some_and(|k| k.executable == name))
                .map_or(0, |p| p.value)
        } else {
            in_container(&points, &name, &scope.id).unwrap_or(0)
        }
    };
    assert_eq!(count(&mut collector), 1, "one OOM kill of {name}");
    // Nothing counts it again later (the victim's exit is not a second kill).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&mut collector), 1);
    drop(cg);
    drop(scope);
}
