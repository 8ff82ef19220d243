//! What Sonde exports, pinned: the real `sonde` binary with every family on, a workload
//! that touches each family, and a real OTLP receiver. Each metric is written as one line
//! (`name kind unit: attribute keys`, the keys being the union over its points) and the
//! sorted lines must equal the golden file `tests/golden/exported-<metric_names>.txt`, in
//! both `metric_names` modes.
//!
//! This is the guard for refactors that must not change behaviour (issue 9 moved every
//! family's code and had to leave this set alone). A change that means to alter the
//! exported set (a new metric, an attribute dropped by default) regenerates the golden
//! files with `SONDE_BLESS=1 cargo test -p sonde --test exported_set` and commits the diff,
//! which then shows the change for review.
//!
//! Values are not compared (the family tests check them against ground truth), and the
//! keys are a union per metric because Sonde sees the whole host: another process's
//! traffic may add a series without, say, `process.pid`, but never a key of its own. Limits
//! are set far above what the host produces so that overflow series appear only where the
//! workload forces them (the top-N processes). The host side depends on the machine (its
//! disks, interfaces, file systems): the golden describes the lab machines (test-lab.md).
//!
//! Needs root (eBPF, dnsmasq on port 53, an nftables table), dnsmasq-base and nftables.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use common::cgroup::busy_docker_container;
use common::dns::{addresses, query, wait_ready, Dnsmasq};
use common::*;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

const WAIT: Duration = Duration::from_secs(60);

fn golden_path(mode: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(format!("exported-{mode}.txt"))
}

/// One line per metric: name, kind, unit and the union of its points' attribute keys.
fn exported_set(exports: &[Export]) -> BTreeSet<String> {
    let mut by_metric: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    let keys = |attrs: &[KeyValue]| attrs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
    for m in exports
        .iter()
        .flat_map(|e| &e.req.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
    {
        let (kind, attrs): (String, Vec<String>) = match &m.data {
            Some(Data::Sum(s)) => (
                format!("sum(monotonic={})", s.is_monotonic),
                s.data_points
                    .iter()
                    .flat_map(|p| keys(&p.attributes))
                    .collect(),
            ),
            Some(Data::Gauge(g)) => (
                "gauge".into(),
                g.data_points
                    .iter()
                    .flat_map(|p| keys(&p.attributes))
                    .collect(),
            ),
            Some(Data::Histogram(h)) => (
                "histogram".into(),
                h.data_points
                    .iter()
                    .flat_map(|p| keys(&p.attributes))
                    .collect(),
            ),
            other => (format!("{other:?}"), Vec::new()),
        };
        by_metric
            .entry((m.name.clone(), kind, m.unit.clone()))
            .or_default()
            .extend(attrs);
    }
    by_metric
        .into_iter()
        .map(|((name, kind, unit), keys)| {
            let keys: Vec<String> = keys.into_iter().collect();
            format!("{name} {kind} {unit}: {}", keys.join(","))
        })
        .collect()
}

/// An nftables table of the test's own, deleted on drop.
struct NftTable(String);

impl NftTable {
    /// Drops every packet to loopback port `port` on input while it exists: the segment
    /// left the sender (dropped on output it would only be queued again, not
    /// retransmitted), so the sender's retransmission timer fires.
    fn drop_to_port(port: u16) -> Self {
        let name = format!("sonde_golden_{}", unique_suffix());
        run("nft", &["add", "table", "inet", &name]);
        run(
            "nft",
            &[
                "add",
                "chain",
                "inet",
                &name,
                "in",
                "{ type filter hook input priority 0 ; }",
            ],
        );
        run(
            "nft",
            &[
                "add",
                "rule",
                "inet",
                &name,
                "in",
                "iif",
                "lo",
                "tcp",
                "dport",
                &port.to_string(),
                "drop",
            ],
        );
        Self(name)
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "inet", &self.0])
            .status();
    }
}

/// Executables, file reads and writes (with an fsync, so the block layer sees them), TCP
/// (a connection, a refused connect, a retransmit) and DNS (an answer, a failure, a
/// timeout).
fn workload(resolver: Ipv4Addr, silent: Ipv4Addr, zone: &str) {
    for _ in 0..3 {
        run("true", &[]);
    }
    run("sh", &["-c", "exit 0"]);

    let dir = TempDir::new("golden");
    let path = dir.path().join("data");
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(&vec![7u8; 1 << 20]).expect("write");
    f.sync_all().expect("fsync");
    let mut back = Vec::new();
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut back))
        .expect("read back");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).expect("server read");
        s.write_all(b"ok").expect("server write");
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    {
        let _lossy = NftTable::drop_to_port(port);
        c.write_all(&[1u8; 4096]).expect("write");
        // Past the minimum retransmission timeout (200 ms): at least one retransmit; a
        // later one delivers the data once the table is gone.
        std::thread::sleep(Duration::from_millis(500));
    }
    c.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).expect("read");
    server.join().expect("server");
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    assert!(TcpStream::connect(("127.0.0.1", closed)).is_err());

    assert_eq!(
        query(resolver, &format!("a.{zone}"), Duration::from_secs(10)),
        Some(0)
    );
    assert_eq!(
        query(resolver, &format!("nx.{zone}"), Duration::from_secs(10)),
        Some(3)
    );
    assert_eq!(
        query(silent, &format!("a.{zone}"), Duration::from_millis(200)),
        None
    );
}

const BURN_IN_CONTAINER: &str = "\
import hashlib, threading, time
x = b'x' * (300 << 20)
end = time.time() + 3
def burn():
    while time.time() < end:
        hashlib.sha256(memoryview(x)[: 16 << 20]).digest()
threads = [threading.Thread(target=burn) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
";

fn check(mode: &str) {
    require_root();
    let [resolver, silent, _, _] = addresses();
    let zone = format!("g{}.test", unique_suffix());
    let _dnsmasq = Dnsmasq::start(
        resolver,
        &[
            format!("--auth-zone={zone}"),
            format!("--auth-server=ns.{zone}"),
            format!("--host-record=a.{zone},10.9.9.9"),
        ],
    );
    wait_ready(resolver, &format!("a.{zone}"));
    // A resolver that never answers: a bound socket that nobody reads.
    let _silent = std::net::UdpSocket::bind((silent, 53)).expect("bind the silent resolver");

    let rx = OtlpReceiver::start(Proto::Grpc);
    let yaml = format!(
        "metric_names: {mode}\n\
         collection:\n  interval: 300ms\n\
         self_telemetry:\n  probe_run_stats: true\n\
         host:\n  per_cpu: true\n  top_processes: 2\n\
         probes:\n\
         \x20 process:\n    executable_name_limit: 100000\n\
         \x20 fileio:\n    process_limit: 100000\n\
         \x20 tcp:\n    series_limit: 100000\n\
         \x20 dns:\n    timeout: 300ms\n    question_name_limit: 100000\n\
         \x20 netio:\n    series_limit: 100000\n\
         \x20 containers:\n    series_limit: 100000\n"
    );
    let mut sonde = Sonde::start(&rx.env(), Some(&yaml));
    sonde.wait_started();
    rx.wait_for("a first export", WAIT, |e| !e.is_empty());
    workload(resolver, silent, &zone);
    let container = busy_docker_container();
    // The host's top processes carry the container of theirs that is in one: a process
    // in the container that is among the host's largest (300 MiB touched) and, with two
    // threads hashing at nice -20 (hashlib lets go of the GIL), its busiest for 3 s is in
    // the top 2 (`top_processes: 2`) of some interval even beside a busy build.
    container.run("nice", &["-n", "-20", "python3", "-c", BURN_IN_CONTAINER]);
    // sonde.process.oom_kills needs an OOM kill: one in the container, after its work.
    common::cgroup::oom_kill_in(&container);

    let path = golden_path(mode);
    let got = if std::env::var_os("SONDE_BLESS").is_some() {
        // Everything the workload caused has been exported after a few more intervals.
        let n = rx.exports().len();
        let got = exported_set(&rx.wait_for("ten more exports", WAIT, |e| e.len() >= n + 10));
        let text: String = got.iter().map(|l| format!("{l}\n")).collect();
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("golden dir");
        std::fs::write(&path, text).expect("write the golden file");
        eprintln!("blessed {}", path.display());
        got
    } else {
        let want: BTreeSet<String> = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e}: generate it with SONDE_BLESS=1 cargo test -p sonde --test exported_set",
                    path.display()
                )
            })
            .lines()
            .map(str::to_owned)
            .collect();
        // Wait until everything expected has arrived (or the deadline), then compare.
        let deadline = std::time::Instant::now() + WAIT;
        let exports = loop {
            let exports = rx.exports();
            if want.is_subset(&exported_set(&exports)) || std::time::Instant::now() > deadline {
                break exports;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let got = exported_set(&exports);
        let missing: Vec<&String> = want.difference(&got).collect();
        let extra: Vec<&String> = got.difference(&want).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "the exported set differs from {} (SONDE_BLESS=1 regenerates it if the change \
             is meant):\nmissing: {missing:#?}\nextra: {extra:#?}",
            path.display()
        );
        got
    };
    assert!(!got.is_empty());
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
}

#[test]
fn semconv_names_export_the_golden_set() {
    check("semconv");
}

#[test]
fn hostmetrics_v0_names_export_the_golden_set() {
    check("hostmetrics_v0");
}
