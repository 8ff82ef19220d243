//! Per-process and per-container resources against workloads of known size: the netio
//! probe's exact bytes over TCP and UDP on loopback, and the containers family's CPU,
//! memory and block I/O, with a container made as a runtime makes it (a cgroup of a real
//! runtime's path shape in the v2 tree and the v1 hierarchies, `common::cgroup`).
//!
//! The workloads are Python programs copied under unique names, so each test finds its
//! own series among the host's; the container id is random.
//!
//! Needs root (eBPF, cgroups), python3 and dd.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::cgroup::{FakeContainer, RemoveOnDrop};
use common::*;

const WAIT: Duration = Duration::from_secs(60);

/// Listens on TCP and UDP, prints its ports, then: TCP, peeks (MSG_PEEK: not counted)
/// and reads `n_tcp` bytes, answers `m_tcp`; UDP, peeks, reads `count` datagrams,
/// answers one of `r_udp` bytes. Prints what it read.
const SERVER: &str = r#"
import socket, sys
n_tcp, m_tcp, count, r_udp = map(int, sys.argv[1:5])
t = socket.socket(); t.bind(("127.0.0.1", 0)); t.listen(1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
print(t.getsockname()[1], u.getsockname()[1], flush=True)
c, _ = t.accept()
c.recv(100, socket.MSG_PEEK)
got = 0
while got < n_tcp:
    b = c.recv(65536)
    if not b:
        break
    got += len(b)
c.sendall(b"r" * m_tcp)
c.close()
u.recvfrom(65536, socket.MSG_PEEK)
n = 0
for _ in range(count):
    d, peer = u.recvfrom(65536)
    n += len(d)
u.sendto(b"u" * r_udp, peer)
print(got, n, flush=True)
"#;

/// Waits for a line on stdin (the test moves it into a container meanwhile), then sends
/// `n_tcp` bytes over TCP and reads the answer, sends `count` datagrams of `size` bytes
/// and reads the answer, writes 64 KiB with O_DIRECT through dd (a child: it inherits the
/// cgroup) if given a path, burns `burn` s of CPU, and prints the CPU time it had used
/// when the line came, and what it read.
const CLIENT: &str = r#"
import os, socket, subprocess, sys, time
tport, uport, n_tcp, m_tcp, count, size, r_udp = map(int, sys.argv[1:8])
burn, dd_path = float(sys.argv[8]), sys.argv[9]
sys.stdin.readline()
def cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
t0 = cpu()
s = socket.create_connection(("127.0.0.1", tport))
s.sendall(b"x" * n_tcp)
got = 0
while got < m_tcp:
    b = s.recv(65536)
    if not b:
        break
    got += len(b)
s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(count):
    u.sendto(b"y" * size, ("127.0.0.1", uport))
d, _ = u.recvfrom(65536)
if dd_path != "-":
    subprocess.run(["dd", "if=/dev/zero", "of=" + dd_path, "bs=4096", "count=16",
                    "oflag=direct"], check=True, stderr=subprocess.DEVNULL)
end = time.process_time() + burn
x = 0
while time.process_time() < end:
    x += 1
print(t0, got, len(d), flush=True)
"#;

struct Sizes {
    n_tcp: u64,
    m_tcp: u64,
    count: u64,
    size: u64,
    r_udp: u64,
}

const SIZES: Sizes = Sizes {
    n_tcp: 1_000_003,
    m_tcp: 70_001,
    count: 25,
    size: 1_201,
    r_udp: 333,
};

fn spawn_python(exe: &std::path::Path, script: &str, args: &[String]) -> Child {
    Command::new(exe)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 (Debian's python3 package): {e}"))
}

fn line(out: &mut BufReader<ChildStdout>) -> Vec<String> {
    let mut l = String::new();
    out.read_line(&mut l).expect("read the workload's line");
    l.split_whitespace().map(str::to_owned).collect()
}

/// A server outside any container and a client, started but held until `go`.
struct Exchange {
    server: Child,
    server_out: BufReader<ChildStdout>,
    client: Child,
    client_in: Option<ChildStdin>,
    client_out: BufReader<ChildStdout>,
    server_name: String,
    client_name: String,
    /// Reaped by `go` through wait4: its pid may belong to another process since.
    client_reaped: bool,
    _dir: TempDir,
}

impl Exchange {
    fn start(burn_s: f64, dd_path: &str) -> Self {
        let dir = TempDir::new("netio");
        let (server_exe, server_name) = unique_exe(dir.path(), "snsv", "/usr/bin/python3");
        let (client_exe, client_name) = unique_exe(dir.path(), "sncl", "/usr/bin/python3");
        let s = &SIZES;
        let mut server = spawn_python(
            &server_exe,
            SERVER,
            &[s.n_tcp, s.m_tcp, s.count, s.r_udp].map(|v| v.to_string()),
        );
        let mut server_out = BufReader::new(server.stdout.take().expect("stdout"));
        let ports = line(&mut server_out);
        let mut args: Vec<String> = ports.clone();
        args.extend([s.n_tcp, s.m_tcp, s.count, s.size, s.r_udp].map(|v| v.to_string()));
        args.push(burn_s.to_string());
        args.push(dd_path.to_owned());
        let mut client = spawn_python(&client_exe, CLIENT, &args);
        let client_in = client.stdin.take();
        let client_out = BufReader::new(client.stdout.take().expect("stdout"));
        Self {
            server,
            server_out,
            client,
            client_in,
            client_out,
            server_name,
            client_name,
            client_reaped: false,
            _dir: dir,
        }
    }

    /// Lets the client run; returns the CPU seconds it (and its children) used from the
    /// go to its exit (its rusage at exit, from wait4, less what it had used before),
    /// after checking both ends got every byte.
    fn go(&mut self) -> f64 {
        let mut stdin = self.client_in.take().expect("not started twice");
        stdin.write_all(b"go\n").expect("start the client");
        drop(stdin);
        let c = line(&mut self.client_out);
        let s = line(&mut self.server_out);
        let s_got: Vec<u64> = s.iter().map(|v| v.parse().expect("number")).collect();
        assert_eq!(
            s_got,
            [SIZES.n_tcp, SIZES.count * SIZES.size],
            "server read"
        );
        assert_eq!(c[1..], [SIZES.m_tcp.to_string(), SIZES.r_udp.to_string()]);
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value to be overwritten.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = self.client.id() as i32;
        // SAFETY: the pointers are to live locals; the pid is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
        self.client_reaped = true;
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(self.server.wait().expect("server").success());
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let before: f64 = c[0].parse().expect("cpu seconds");
        secs(ru.ru_utime) + secs(ru.ru_stime) - before
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.client_reaped {
            let _ = self.client.kill();
            let _ = self.client.wait();
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn io(e: &[Export], metric: &str, who: (&str, &str), dir: &str) -> Option<f64> {
    latest(e, metric, &[who, ("network.io.direction", dir)])
}

/// What the client sent and received (the server the other way round).
fn client_tx() -> f64 {
    (SIZES.n_tcp + SIZES.count * SIZES.size) as f64
}

fn client_rx() -> f64 {
    (SIZES.m_tcp + SIZES.r_udp) as f64
}

fn start_sonde(rx: &OtlpReceiver) -> Sonde {
    let mut env = rx.env();
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "300".into()));
    let mut sonde = Sonde::start(&env, None);
    sonde.wait_started();
    sonde
}

#[test]
fn process_network_io_counts_exact_tcp_and_udp_bytes_by_executable_name() {
    require_root();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let sonde = start_sonde(&rx);
    let mut x = Exchange::start(0.0, "-");
    x.go();
    let (srv, cli) = (x.server_name.clone(), x.client_name.clone());
    let name = "process.executable.name";
    rx.wait_for("exact bytes per executable and direction", WAIT, |e| {
        io(e, "process.network.io", (name, &cli), "transmit") == Some(client_tx())
            && io(e, "process.network.io", (name, &cli), "receive") == Some(client_rx())
            && io(e, "process.network.io", (name, &srv), "receive") == Some(client_tx())
            && io(e, "process.network.io", (name, &srv), "transmit") == Some(client_rx())
    });
    let pts = num_points(&rx.exports(), "process.network.io");
    let mine: Vec<_> = pts
        .iter()
        .filter(|p| p.attrs.get(name) == Some(&cli))
        .collect();
    assert!(
        mine.iter()
            .all(|p| !p.attrs.contains_key("container.id") && !p.attrs.contains_key("process.pid")),
        "outside a container: executable name and direction only: {mine:?}"
    );
    drop(sonde);
}

#[test]
fn a_container_cgroup_gets_its_network_bytes_cpu_memory_and_disk_writes() {
    require_root();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let sonde = start_sonde(&rx);
    let container = FakeContainer::docker();
    // Block I/O on the disk of /var/tmp (a file system on a block device; /tmp may not be).
    let scratch =
        std::path::PathBuf::from("/var/tmp").join(format!("sonde-dd-{}", unique_suffix()));
    let _scratch = RemoveOnDrop(scratch.clone());
    let disk_name = container.count_writes_to_disk_of(std::path::Path::new("/var/tmp"));

    let mut x = Exchange::start(1.5, scratch.to_str().expect("utf-8 path"));
    container.enter(x.client.id());
    let burned = x.go();
    let id = container.id.clone();
    let (srv, cli) = (x.server_name.clone(), x.client_name.clone());
    let cid = ("container.id", id.as_str());
    let cpu = |e: &[Export]| latest(e, "container.cpu.time", &[cid]);
    let written = |e: &[Export]| {
        latest(
            e,
            "container.disk.io",
            &[
                cid,
                ("system.device", disk_name.as_str()),
                ("disk.io.direction", "write"),
            ],
        )
    };
    rx.wait_for(
        "the container's exact bytes, CPU and disk writes",
        WAIT,
        |e| {
            let name = "process.executable.name";
            io(e, "container.network.io", cid, "transmit") == Some(client_tx())
                && io(e, "container.network.io", cid, "receive") == Some(client_rx())
                && latest(
                    e,
                    "process.network.io",
                    &[(name, &cli), cid, ("network.io.direction", "transmit")],
                ) == Some(client_tx())
                && latest(
                    e,
                    "process.network.io",
                    &[(name, &srv), ("network.io.direction", "receive")],
                ) == Some(client_tx())
                && cpu(e).is_some_and(|c| (c - burned).abs() <= 0.05 * burned)
                && written(e) == Some(65536.0)
        },
    );
    let e = rx.exports();
    // The server is outside the container: its series carries no container.id.
    assert!(num_points(&e, "process.network.io")
        .iter()
        .filter(|p| p.attrs.get("process.executable.name") == Some(&srv))
        .all(|p| !p.attrs.contains_key("container.id")));
    let modes: std::collections::BTreeSet<String> = num_points(&e, "container.cpu.time")
        .into_iter()
        .filter(|p| p.attrs.get("container.id") == Some(&id))
        .filter_map(|p| p.attrs.get("cpu.mode").cloned())
        .collect();
    assert_eq!(modes, ["system".to_owned(), "user".to_owned()].into());
    let usage = latest(&e, "container.memory.usage", &[cid]).expect("memory usage");
    let ws = latest(&e, "container.memory.working_set", &[cid]).expect("working set");
    assert!(
        usage > 0.0 && ws <= usage,
        "usage {usage}, working set {ws}"
    );
    eprintln!(
        "burned {burned:.3} s, container.cpu.time {:.3} s",
        cpu(&e).unwrap_or(f64::NAN)
    );
    drop(x);
    drop(container);
    drop(sonde);
}

#[test]
fn without_the_sock_tracepoints_netio_reports_itself_skipped_and_exports_nothing() {
    require_root();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut env = rx.env();
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "300".into()));
    // Treated as missing, as on a kernel before 6.3 (probe::needs).
    env.push((
        "SONDE_KERNEL_FEATURES_OFF",
        "sock_length_tracepoints".into(),
    ));
    let mut sonde = Sonde::start(&env, None);
    sonde.wait_started();
    let mut x = Exchange::start(0.0, "-");
    x.go();
    let status = |e: &[Export], probe: &str, state: &str| {
        latest(
            e,
            "sonde.probe.status",
            &[("sonde.probe", probe), ("sonde.probe.state", state)],
        )
    };
    let n = rx.exports().len();
    let e = rx.wait_for("five exports after the exchange", WAIT, |e| {
        e.len() >= n + 5
            && status(e, "netio.send", "skipped") == Some(1.0)
            && status(e, "netio.recv", "skipped") == Some(1.0)
    });
    assert!(
        num_points(&e, "process.network.io").is_empty()
            && num_points(&e, "container.network.io").is_empty(),
        "nothing is exported for the skipped family"
    );
    assert!(
        sonde.stderr().contains("sock_send_length"),
        "the log says which tracepoint is missing:\n{}",
        sonde.stderr()
    );
    // The other families run on.
    assert!(latest(&e, "sonde.process.exec", &[]).is_some());
}

/// Hybrid hosts with a runtime on the cgroupfs driver keep a container in the v1
/// hierarchies only: its CPU comes from v1 cpuacct (`cpuacct.usage`, split by
/// `cpuacct.usage_user` / `_sys`) and
/// its memory from v1 memory. Its tasks stay in the v2 root, so the probes' per-process
/// series carry no container.id for it (README says so).
#[test]
fn a_v1_only_container_gets_its_cpu_from_cpuacct_and_its_memory() {
    require_root();
    let Some(container) = FakeContainer::docker_cgroupfs_v1() else {
        panic!("this test needs cgroup v1 hierarchies (the hybrid lab machines have them)");
    };
    let rx = OtlpReceiver::start(Proto::Grpc);
    let sonde = start_sonde(&rx);
    let mut x = Exchange::start(1.0, "-");
    container.enter(x.client.id());
    let burned = x.go();
    let cid = ("container.id", container.id.as_str());
    let cli = x.client_name.clone();
    rx.wait_for("the v1 container's CPU and memory", WAIT, |e| {
        latest(e, "container.cpu.time", &[cid]).is_some_and(|c| (c - burned).abs() <= 0.05 * burned)
            && latest(e, "container.memory.usage", &[cid]).is_some_and(|m| m > 0.0)
            && io(
                e,
                "process.network.io",
                ("process.executable.name", &cli),
                "transmit",
            ) == Some(client_tx())
    });
    assert!(
        num_points(&rx.exports(), "container.network.io")
            .iter()
            .all(|p| p.attrs.get("container.id").map(String::as_str) != Some(cid.1)),
        "no v2 cgroup, no network bytes by container"
    );
    drop(x);
    drop(container);
    drop(sonde);
}
