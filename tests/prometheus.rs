//! The Prometheus endpoint end to end: the real `sonde` binary serving `/metrics`, the
//! real `promtool` linting what it serves, and Debian's real Prometheus scraping it while
//! a workload of known ground truth runs (N execs, K TCP connections on loopback, Q DNS
//! queries to a dnsmasq of the test's own on a loopback address).
//!
//! Needs root (eBPF, port 53 on a test loopback address), Debian's `prometheus` (with
//! `promtool`) and `dnsmasq-base`. Sonde sees the whole host, so every ground-truth
//! assertion filters on the workload's own executable name, port or resolver address.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cgroup::busy_docker_container;
use common::dns::{addresses, query, wait_ready, Dnsmasq};
use common::*;
use sonde_semconv::{host, tcp, MetricDef};

const WAIT: Duration = Duration::from_secs(90);
const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// Sonde with its Prometheus endpoint on a port the kernel picks (read back from its log),
/// and OTLP too when `otlp` gives a receiver's variables.
fn start_sonde(config: &str, otlp: Vec<(&'static str, String)>) -> (Sonde, SocketAddr) {
    let exporters = if otlp.is_empty() {
        "prometheus"
    } else {
        "otlp,prometheus"
    };
    let mut env = vec![
        ("OTEL_METRICS_EXPORTER", exporters.to_owned()),
        ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1".to_owned()),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "0".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500".to_owned()),
    ];
    env.extend(otlp);
    let mut sonde = Sonde::start(&env, Some(config));
    let addr = prometheus_addr(&mut sonde);
    (sonde, addr)
}

/// What the workload did: the ground truth.
struct Truth {
    _dir: TempDir,
    exe: String,
    n_exec: usize,
    tcp_port: u16,
    k_tcp: usize,
    resolver: Ipv4Addr,
    q_dns: usize,
}

const N_EXEC: usize = 25;
const K_TCP: usize = 12;
const Q_DNS: usize = 9;

/// Runs every kind of event the contract describes that this machine can produce on
/// loopback: execs (successful, failing, killed), TCP connections with data and one
/// refused connect, DNS queries answered locally (cache hits) and refused ones, and file
/// and direct block I/O.
fn workload(resolver: Ipv4Addr) -> Truth {
    let dir = TempDir::new("prom-workload");
    let (ok, exe) = unique_exe(dir.path(), "sptrue", "/bin/true");
    for _ in 0..N_EXEC {
        assert!(Command::new(&ok).status().expect("run").success());
    }
    let (fail, _) = unique_exe(dir.path(), "spfalse", "/bin/false");
    assert!(!Command::new(&fail).status().expect("run").success());
    let mut sleeper = Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    sleeper.kill().expect("SIGKILL");
    sleeper.wait().expect("reap");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let tcp_port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        for _ in 0..K_TCP {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).expect("server read");
            s.write_all(b"ok").expect("server write");
        }
    });
    for _ in 0..K_TCP {
        let mut c = TcpStream::connect(("127.0.0.1", tcp_port)).expect("connect");
        c.write_all(&[7u8; 2048]).expect("write");
        c.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut reply = Vec::new();
        c.read_to_end(&mut reply).expect("read");
    }
    server.join().expect("server");
    // A refused connect: failed{refused} and a received reset.
    let closed = free_port();
    assert!(TcpStream::connect(("127.0.0.1", closed)).is_err());

    for i in 0..Q_DNS {
        let name = if i % 3 == 2 {
            "missing.invalid" // no upstream: refused, a failure
        } else {
            "host.sonde.test" // answered from dnsmasq's own --address: a cache hit
        };
        assert!(
            query(resolver, name, Duration::from_secs(5)).is_some(),
            "the test resolver answers"
        );
    }

    // File I/O, and block I/O that bypasses the page cache.
    let data = dir.path().join("data");
    std::fs::write(&data, vec![1u8; 1 << 16]).expect("write file");
    let _ = std::fs::read(&data).expect("read file");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(dir.path().join("direct"))
            .expect("O_DIRECT open");
        let mut buf = vec![0u8; 2 * 4096 + 4096];
        let off = buf.as_ptr().align_offset(4096);
        buf[off..off + 8192].fill(3);
        f.write_all(&buf[off..off + 8192]).expect("direct write");
        f.sync_all().expect("fsync");
    }
    Truth {
        _dir: dir,
        exe,
        n_exec: N_EXEC,
        tcp_port,
        k_tcp: K_TCP,
        resolver,
        q_dns: Q_DNS,
    }
}

/// The resolver: dnsmasq answering `sonde.test` itself, with no upstream.
fn start_resolver() -> (Dnsmasq, Ipv4Addr) {
    let [resolver, ..] = addresses();
    let dnsmasq = Dnsmasq::start(resolver, &["--address=/sonde.test/192.0.2.7".to_owned()]);
    wait_ready(resolver, "ready.sonde.test");
    (dnsmasq, resolver)
}

/// Every metric family a scrape carries, by name (`# TYPE` lines of the text format).
fn families(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn prom_name(def: &MetricDef) -> String {
    sonde::export::prometheus::names::family(def).sample_name()
}

/// Runs `promtool check metrics` on a scrape: no parse error, and the only lint findings
/// are the `_count` suffix the contract itself puts on gauge names (e.g.
/// `system.network.connection.count`, metrics.md's own example).
fn promtool_accepts(body: &str, contract: &[MetricDef]) {
    assert!(
        Path::new(PROMTOOL).exists(),
        "this test needs promtool: apt-get install prometheus"
    );
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool exits 1 on a parse error, 3 on lint findings only.
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "promtool rejects the scrape ({:?}):\n{text}",
        out.status
    );
    let count_gauges: BTreeSet<String> = contract
        .iter()
        .filter(|d| {
            d.name.ends_with(".count") && d.instrument != sonde_semconv::Instrument::Counter
        })
        .map(prom_name)
        .collect();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (name, finding) = line.split_once(' ').unwrap_or((line, ""));
        assert!(
            finding == "non-histogram and non-summary metrics should not have \"_count\" suffix"
                && count_gauges.contains(name),
            "promtool finding not mandated by the contract: {line}"
        );
    }
}

fn semconv_contract() -> Vec<MetricDef> {
    sonde_semconv::contract()
}

/// Metrics this machine cannot produce in a test, each with the reason.
fn cannot_appear_here(def: &MetricDef) -> Option<&'static str> {
    let no_swap = std::fs::read_to_string("/proc/swaps")
        .map(|s| s.lines().count() <= 1)
        .unwrap_or(true);
    match def.name {
        n if n == sonde_semconv::metric::SONDE_PROCESS_OOM_KILLS.name => Some(
            "needs an OOM kill; tests/process_totals.rs makes one in a memory cgroup of its own",
        ),
        n if n == sonde_semconv::metric::SONDE_COLLECT_SKIPPED.name => Some(
            "needs a file system whose statvfs hangs; tests/slow_statvfs.rs mounts one (FUSE)",
        ),
        n if n == tcp::SONDE_TCP_RETRANSMITS.name => Some(
            "needs a lost segment; loopback loses none (tests/tcp.rs checks it under nftables loss)",
        ),
        n if no_swap
            && (n == host::SYSTEM_PAGING_USAGE.name || n == host::SYSTEM_PAGING_UTILIZATION.name) =>
        {
            Some("exported per swap device; /proc/swaps lists none on this machine")
        }
        _ => None,
    }
}

const CONTRACT_CONFIG: &str = "\
self_telemetry:
  probe_run_stats: true
probes:
  tcp:
    series_limit: 100000
";

/// Every metric of the contract is served under its Prometheus name, nothing outside the
/// contract is, and promtool accepts the scrape.
fn contract_on_the_endpoint(v0: bool) {
    require_root();
    let (_resolver, resolver) = start_resolver();
    // OTLP beside the endpoint, with a durable queue: the export metrics exist only then,
    // and both exporters get the same snapshots.
    let rx = OtlpReceiver::start(Proto::Grpc);
    let queue = TempDir::new("prom-queue");
    let mut config = format!(
        "{CONTRACT_CONFIG}exporters:\n  otlp:\n    queue:\n      directory: {}\n",
        queue.path().display()
    );
    if v0 {
        config.push_str("metric_names: hostmetrics_v0\n");
    }
    let (mut sonde, addr) = start_sonde(&config, rx.env());
    let truth = workload(resolver);
    // A container whose process sends and writes: the container.* metrics.
    let _container = busy_docker_container();

    let all: Vec<MetricDef> = [semconv_contract(), host::v0::ALL.to_vec()].concat();
    let expected: Vec<MetricDef> = if v0 {
        // The v0 names, and Sonde's own metrics (no v0 twin). Host metrics without a v0
        // twin keep their semconv names: covered by "nothing outside the contract" below.
        host::v0::ALL
            .iter()
            .chain(
                semconv_contract()
                    .iter()
                    .filter(|d| d.name.starts_with("sonde.") || d.name.starts_with("dns.")),
            )
            .copied()
            .filter(|d| cannot_appear_here(d).is_none())
            .collect()
    } else {
        semconv_contract()
            .into_iter()
            .filter(|d| cannot_appear_here(d).is_none())
            .collect()
    };

    let deadline = Instant::now() + WAIT;
    let (body, served) = loop {
        let (status, body) = http_get(addr, "/metrics", Some("text/plain"));
        assert_eq!(status, 200, "{body}");
        let served = families(&body);
        let missing: Vec<String> = expected
            .iter()
            .map(prom_name)
            .filter(|n| !served.contains(n))
            .collect();
        if missing.is_empty() {
            break (body, served);
        }
        assert!(
            Instant::now() < deadline,
            "not served within {WAIT:?}: {missing:?}\nserved: {served:?}\nsonde log:\n{}",
            sonde.stderr()
        );
        if let Ok(Some(s)) = sonde.child.try_wait() {
            panic!("sonde exited ({s}):\n{}", sonde.stderr());
        }
        std::thread::sleep(Duration::from_millis(500));
    };

    let contract_names: BTreeSet<String> = all.iter().map(prom_name).collect();
    for name in &served {
        assert!(
            name == "target_info" || contract_names.contains(name),
            "{name} is served but is no contract metric"
        );
    }
    assert!(body.contains("target_info{"), "the resource as target_info");
    assert!(
        body.contains("otel_scope_name=\"sonde\""),
        "every point carries the scope"
    );
    promtool_accepts(&body, &all);

    // The OTLP exporter ran beside the endpoint and got the same counts.
    let exe = truth.exe.as_str();
    rx.wait_for("the workload's execs over OTLP", WAIT, |e| {
        latest(e, "sonde.process.exec", &[("process.executable.name", exe)])
            == Some(truth.n_exec as f64)
    });

    // The same content in OpenMetrics, as Prometheus asks for it.
    let (status, om) = http_get(
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(status, 200);
    assert!(om.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    assert!(om.contains("# TYPE target info\n"));
}

#[test]
fn every_contract_metric_is_served_under_its_prometheus_name() {
    contract_on_the_endpoint(false);
}

#[test]
fn every_contract_metric_is_served_under_its_prometheus_name_with_hostmetrics_v0_names() {
    contract_on_the_endpoint(true);
}

// ---- a real Prometheus ------------------------------------------------------------------

/// Debian's Prometheus with its own config and data directory, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Self {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "this test needs Prometheus: apt-get install prometheus"
        );
        let dir = TempDir::new("prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: sonde\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut p = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(s)) = p.child.try_wait() {
                panic!("prometheus exited ({s}):\n{}", p.log());
            }
            if TcpStream::connect(p.addr).is_ok() && http_get(p.addr, "/-/ready", None).0 == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// An instant query; the result vector (`data.result`) or the API's error.
    fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let q = percent_encoding::utf8_percent_encode(expr, percent_encoding::NON_ALPHANUMERIC);
        let (status, body) = http_get(self.addr, &format!("/api/v1/query?query={q}"), None);
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("HTTP {status}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{expr}: {}", v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The single value of a query that returns one series (None when it returns none).
    fn value(&self, expr: &str) -> Option<f64> {
        let r = self.query(expr).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.len() <= 1, "{expr} returned {} series", r.len());
        r.first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
    }

    fn wait_value(&self, expr: &str, want: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.value(expr);
            if got == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{expr} = {got:?}, want {want} (Prometheus log:\n{})",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_workloads_ground_truth() {
    require_root();
    let (_resolver, resolver) = start_resolver();
    // OTLP with a durable queue beside the endpoint, as in the demo (deploy/sonde.yaml):
    // the dashboards' export panels read metrics that exist only then.
    let rx = OtlpReceiver::start(Proto::Grpc);
    let queue = TempDir::new("prom-queue");
    let config = format!(
        "probes:\n  tcp:\n    series_limit: 100000\nexporters:\n  otlp:\n    queue:\n      directory: {}\n",
        queue.path().display()
    );
    let (_sonde, addr) = start_sonde(&config, rx.env());
    let prom = Prometheus::start(addr);
    prom.wait_value("up{job=\"sonde\"}", 1.0);

    let t = workload(resolver);
    let exe = &t.exe;
    let port = t.tcp_port;
    let res = t.resolver;
    prom.wait_value(
        &format!("sum(sonde_process_exec_total{{process_executable_name=\"{exe}\"}})"),
        t.n_exec as f64,
    );
    for (metric, dir, label) in [
        (
            "sonde_tcp_connection_opened_total",
            "outbound",
            "network_peer_port",
        ),
        (
            "sonde_tcp_connection_closed_total",
            "outbound",
            "network_peer_port",
        ),
        (
            "sonde_tcp_connection_opened_total",
            "inbound",
            "server_port",
        ),
        (
            "sonde_tcp_connection_closed_total",
            "inbound",
            "server_port",
        ),
    ] {
        prom.wait_value(
            &format!("sum({metric}{{{label}=\"{port}\",sonde_connection_direction=\"{dir}\"}})"),
            t.k_tcp as f64,
        );
    }
    prom.wait_value(
        &format!(
            "sum(sonde_tcp_io_bytes_total{{network_peer_port=\"{port}\",network_io_direction=\"transmit\"}})"
        ),
        (t.k_tcp * 2048) as f64,
    );
    prom.wait_value(
        &format!("sum(sonde_dns_queries_total{{network_peer_address=\"{res}\"}})"),
        t.q_dns as f64,
    );
    prom.wait_value(
        &format!("sum(dns_lookup_duration_seconds_count{{network_peer_address=\"{res}\"}})"),
        t.q_dns as f64,
    );
    prom.wait_value(
        &format!("sum(sonde_dns_failures_total{{network_peer_address=\"{res}\"}})"),
        (t.q_dns / 3) as f64,
    );
    // The scrape is healthy throughout and the resource is joinable.
    assert_eq!(prom.value("up{job=\"sonde\"}"), Some(1.0));
    assert_eq!(
        prom.value("count(target_info{job=\"sonde\",service_name=\"sonde\"})"),
        Some(1.0)
    );

    // A rate needs two samples of a series: the workload's new series (DNS has no
    // others) have them a scrape or two after the counts arrived.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let empty = dashboards_answer(&prom);
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "panels without data after the workload: {empty:#?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Panels that need an event this machine cannot make in a test, with the reason.
const PANELS_WITHOUT_DATA_HERE: &[(&str, &str)] = &[(
    "Retransmitted segments by process",
    "needs a lost segment; loopback loses none (tests/tcp.rs checks the metric under loss)",
)];

/// Runs every PromQL expression of every dashboard in the real Prometheus (each must
/// parse and run); returns the panels that returned no data and are not excused.
fn dashboards_answer(prom: &Prometheus) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("deploy/grafana/dashboards")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut empty = Vec::new();
    let mut checked = 0;
    for f in &files {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(f).expect("read")).expect("JSON");
        for panel in v["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().unwrap_or_default();
            let mut rows = 0;
            for t in panel["targets"].as_array().expect("targets") {
                // Grafana's variables as a dashboard opened on "All" over the last minutes.
                let expr = t["expr"]
                    .as_str()
                    .expect("expr")
                    .replace("$__rate_interval", "5m")
                    .replace("$instance", ".*");
                let r = prom
                    .query(&expr)
                    .unwrap_or_else(|e| panic!("{}: panel `{title}`: {e}", f.display()));
                rows += r.len();
                checked += 1;
            }
            let excused = PANELS_WITHOUT_DATA_HERE.iter().any(|(t, _)| *t == title);
            if rows == 0 && !excused {
                empty.push(format!("{}: {title}", f.display()));
            }
        }
    }
    assert!(checked >= 40, "only {checked} expressions found");
    empty
}
