//! Containers as the kernel sees them, without a runtime: cgroups with a real runtime's
//! path shape (`system.slice/docker-<64 hex>.scope`, as Docker's systemd driver makes
//! them) in the v2 tree and, on hybrid hosts, in the v1 cpuacct, memory and blkio
//! hierarchies, removed on drop even when the test fails (their tasks are killed first:
//! a cgroup with tasks cannot be removed).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sonde::family::containers::collect::Hierarchies;

pub struct FakeContainer {
    pub id: String,
    /// The container's directory in each hierarchy, v2 first.
    dirs: Vec<PathBuf>,
    /// Parent directories (`system.slice`, `docker`) this guard made (removed after, if
    /// nobody else uses them).
    made_parents: Vec<PathBuf>,
}

fn random_id() -> String {
    hex(&random_bytes::<32>())
}

impl FakeContainer {
    /// A Docker container (systemd cgroup driver) in every hierarchy the host mounts.
    pub fn docker() -> Self {
        let h = Hierarchies::read().expect("/proc/self/mountinfo");
        let roots: Vec<PathBuf> = [h.v2, h.cpuacct, h.memory, h.blkio]
            .into_iter()
            .flatten()
            .collect();
        Self::make(roots, "system.slice", |id| format!("docker-{id}.scope"))
    }

    /// A Docker container with the cgroupfs driver on a v1 host: `/docker/<id>` in the v1
    /// cpuacct and memory hierarchies, nothing in v2 (None where the host has no v1).
    pub fn docker_cgroupfs_v1() -> Option<Self> {
        let h = Hierarchies::read().expect("/proc/self/mountinfo");
        let roots: Vec<PathBuf> = [h.cpuacct, h.memory].into_iter().flatten().collect();
        (!roots.is_empty()).then(|| Self::make(roots, "docker", |id| id.to_owned()))
    }

    fn make(roots: Vec<PathBuf>, parent: &str, name: impl Fn(&str) -> String) -> Self {
        assert!(!roots.is_empty(), "no cgroup hierarchy is mounted");
        let mut c = Self {
            id: random_id(),
            dirs: Vec::new(),
            made_parents: Vec::new(),
        };
        for root in roots {
            let parent = root.join(parent);
            if !parent.exists() && std::fs::create_dir(&parent).is_ok() {
                c.made_parents.push(parent.clone());
            }
            let dir = parent.join(name(&c.id));
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            c.dirs.push(dir);
        }
        c
    }

    /// Moves `pid` into the container in every hierarchy (its children follow it).
    pub fn enter(&self, pid: u32) {
        for d in &self.dirs {
            std::fs::write(d.join("cgroup.procs"), pid.to_string())
                .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", d.display()));
        }
    }

    /// Starts `program` with `args` inside the container (moved in before it execs: one
    /// process), stdout and stderr piped.
    pub fn spawn(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Child {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "read _ && exec \"$@\"", "sh"])
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn /bin/sh");
        self.enter(child.id());
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("release the command");
        child
    }

    /// Runs `program` with `args` inside the container and waits for it.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let out = self.spawn(program, args).wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{program} {args:?} in the container: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Makes the container's writes to the disk of `path` show in its block statistics.
    /// cgroup v1 accounts block I/O only for cgroups with a throttle rule on current
    /// kernels: one far above anything reached is set, as `docker run --device-write-bps`
    /// would. Returns the disk's name. (v2 accounts every cgroup in io.stat.)
    pub fn count_writes_to_disk_of(&self, path: &Path) -> String {
        let (disk, name) = disk_of(path);
        let h = Hierarchies::read().expect("/proc/self/mountinfo");
        if let Some(dir) = h.blkio.as_deref().and_then(|b| self.dir_under(b)) {
            std::fs::write(
                dir.join("blkio.throttle.write_bps_device"),
                format!("{disk} 1099511627776"),
            )
            .expect("throttle rule");
        }
        name
    }

    /// Limits the container's memory to `bytes`: v1 `memory.limit_in_bytes` in its memory
    /// hierarchy (hybrid hosts), else v2 `memory.max`. Past it the kernel's OOM killer
    /// picks a victim inside the container.
    pub fn limit_memory(&self, bytes: u64) {
        let h = Hierarchies::read().expect("/proc/self/mountinfo");
        let (dir, file) = match h.memory.as_deref().and_then(|m| self.dir_under(m)) {
            Some(d) => (d, "memory.limit_in_bytes"),
            None => (
                h.v2.as_deref()
                    .and_then(|v2| self.dir_under(v2))
                    .expect("the container's v2 cgroup"),
                "memory.max",
            ),
        };
        std::fs::write(dir.join(file), bytes.to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()));
    }

    /// The container's directory in the hierarchy mounted at `root`, if it has one.
    pub fn dir_under(&self, root: &Path) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.starts_with(root))
            .map(PathBuf::as_path)
    }

    fn tasks(&self) -> Vec<i32> {
        self.dirs
            .iter()
            .flat_map(|d| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect()
    }
}

/// A Docker-shaped container whose process writes to disk (O_DIRECT) and sends over TCP:
/// every container.* metric and container.id on per-process series. The container stays
/// until the export is checked (its counters are exported while it exists).
pub fn busy_docker_container() -> FakeContainer {
    let c = FakeContainer::docker();
    let file = PathBuf::from("/var/tmp").join(format!("sonde-cg-{}", super::unique_suffix()));
    let _file = RemoveOnDrop(file.clone());
    c.count_writes_to_disk_of(&file.with_file_name(""));
    let of = format!("of={}", file.display());
    c.run(
        "dd",
        &["if=/dev/zero", &of, "bs=4096", "count=4", "oflag=direct"],
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).expect("read");
    });
    let send = format!(
        "import socket; s = socket.create_connection(('127.0.0.1', {port})); s.sendall(b'x' * 100)"
    );
    c.run("python3", &["-c", &send]);
    server.join().expect("server");
    c
}

/// A process that outgrows the container's memory limit (64 MiB here) and is killed by the
/// OOM killer: one `sonde.process.oom_kills` under python3's name and the container's id.
pub fn oom_kill_in(c: &FakeContainer) {
    c.limit_memory(64 << 20);
    let status = c
        .spawn("python3", &["-c", "x = b'x' * (1 << 30)"])
        .wait()
        .expect("wait");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "not OOM-killed: {status}"
    );
}

/// The disk holding `path` (the whole disk when it is on a partition): its
/// "major:minor" and its name.
pub fn disk_of(path: &Path) -> (String, String) {
    let dev = std::fs::metadata(path).expect("stat").dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let sys = format!("/sys/dev/block/{maj}:{min}");
    let disk = if Path::new(&format!("{sys}/partition")).exists() {
        std::fs::read_to_string(format!("{sys}/../dev"))
            .expect("the partition's disk")
            .trim()
            .to_owned()
    } else {
        format!("{maj}:{min}")
    };
    let name = std::fs::read_link(format!("/sys/dev/block/{disk}"))
        .expect("sysfs link")
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    (disk, name)
}

/// A file removed on drop.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tasks = self.tasks();
            if tasks.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in tasks {
                // SAFETY: kill has no memory-safety preconditions; these tasks were put
                // into this test's own cgroup by the test.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for d in self.dirs.iter().rev() {
            if let Err(e) = std::fs::remove_dir(d) {
                eprintln!("warning: cannot remove {}: {e}", d.display());
            }
        }
        for p in &self.made_parents {
            // Another test may have put its own cgroup there meanwhile: then it stays.
            let _ = std::fs::remove_dir(p);
        }
    }
}

// ---- cgroups of any runtime's path shape (the v2 hierarchy only) ----------------------

/// Directories a test made (cgroups, kubelet log entries), removed deepest first on
/// drop, even when the test fails; tasks still in a cgroup are moved to the root first.
pub struct Made {
    cgroup_root: PathBuf,
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Made {
    pub fn new(cgroup_root: PathBuf) -> Self {
        Self {
            cgroup_root,
            dirs: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Makes every missing component of `path`, remembering the ones made here.
    pub fn mkdirs(&mut self, path: &Path) {
        let mut missing = Vec::new();
        let mut p = path.to_path_buf();
        while !p.exists() {
            missing.push(p.clone());
            if !p.pop() {
                break;
            }
        }
        for d in missing.into_iter().rev() {
            std::fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            self.dirs.push(d);
        }
    }

    pub fn file(&mut self, path: &Path) {
        std::fs::write(path, b"").unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        self.files.push(path.to_path_buf());
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        for d in self.dirs.iter().rev() {
            if d.starts_with(&self.cgroup_root) {
                if let Ok(pids) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    for pid in pids.lines() {
                        let _ = std::fs::write(self.cgroup_root.join("cgroup.procs"), pid);
                    }
                }
            }
            // rmdir, not a recursive removal: a directory someone else also uses stays.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A workload killed on drop.
pub struct Workload(pub Child);

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("read /dev/urandom");
    b
}

/// Starts `exe -c script` waiting on its stdin, moves it into `cgroup` (as a runtime
/// moves a container's first task before it runs), then lets it run.
pub fn run_in(cgroup: &Path, exe: &Path, script: &str) -> Workload {
    let child = Command::new(exe)
        .args(["-c", &format!("read -r go; {script}")])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn a workload");
    let pid = child.id().to_string();
    let w = Workload(child);
    std::fs::write(cgroup.join("cgroup.procs"), &pid)
        .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", cgroup.display()));
    let mut w = w;
    let stdin = w.0.stdin.as_mut().expect("stdin");
    stdin.write_all(b"go\n").expect("start the workload");
    w
}
