//! End to end: the real `sonde` binary with its real process probes, exporting to a real
//! OTLP receiver over a loopback socket, against workloads with a known ground truth.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, AggregationTemporality};

const WAIT: Duration = Duration::from_secs(30);

/// A copy of a system binary under a name no other process on the machine uses, so the
/// exec series for that name has an exact ground truth.
struct Workload {
    _dir: TempDir,
    ok_name: String,
    fail_name: String,
    kill_name: String,
}

const N_OK: usize = 40;
const N_FAIL: usize = 7;
const N_KILL: usize = 3;

/// Runs N_OK successful, N_FAIL failing and N_KILL SIGKILLed processes.
fn run_workload() -> Workload {
    let dir = TempDir::new("workload");
    let (ok, ok_name) = unique_exe(dir.path(), "sok", "/bin/true");
    let (fail, fail_name) = unique_exe(dir.path(), "sfail", "/bin/false");
    let (sleep, kill_name) = unique_exe(dir.path(), "skill", "/bin/sleep");
    for _ in 0..N_OK {
        assert!(Command::new(&ok).status().expect("run").success());
    }
    for _ in 0..N_FAIL {
        assert!(!Command::new(&fail).status().expect("run").success());
    }
    for _ in 0..N_KILL {
        let mut child = Command::new(&sleep).arg("30").spawn().expect("spawn sleep");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    Workload {
        _dir: dir,
        ok_name,
        fail_name,
        kill_name,
    }
}

fn exec_count(e: &[Export], name: &str) -> Option<f64> {
    latest(
        e,
        "sonde.process.exec",
        &[("process.executable.name", name)],
    )
}

fn exit_count(e: &[Export], kind: &str) -> f64 {
    latest(
        e,
        "sonde.process.exit",
        &[("sonde.process.exit.kind", kind)],
    )
    .unwrap_or(0.0)
}

fn with_interval(mut env: Vec<(&'static str, String)>, ms: u32) -> Vec<(&'static str, String)> {
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", ms.to_string()));
    env
}

#[test]
fn grpc_export_carries_exact_process_counts_with_contract_names_units_and_resource() {
    require_root();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut env = with_interval(rx.env(), 300);
    env.push((
        "OTEL_RESOURCE_ATTRIBUTES",
        "deployment.environment.name=e2e,team=sre%20core".into(),
    ));
    let mut sonde = Sonde::start(&env, None);
    sonde.wait_started();

    let before = rx.wait_for("a first export with process metrics", WAIT, |e| {
        latest(e, "system.process.created", &[]).is_some()
    });
    let created0 = latest(&before, "system.process.created", &[]).expect("created");
    let (ok0, fail0, sig0) = (
        exit_count(&before, "success"),
        exit_count(&before, "failure"),
        exit_count(&before, "signal"),
    );

    let w = run_workload();
    let after = rx.wait_for("exec counts of the workload's executables", WAIT, |e| {
        exec_count(e, &w.ok_name) >= Some(N_OK as f64)
            && exec_count(e, &w.fail_name) >= Some(N_FAIL as f64)
            && exec_count(e, &w.kill_name) >= Some(N_KILL as f64)
    });
    // Two more exports: the counts must stay exactly at the ground truth.
    let n = after.len();
    let after = rx.wait_for("two more exports", WAIT, |e| e.len() >= n + 2);
    assert_eq!(exec_count(&after, &w.ok_name), Some(N_OK as f64));
    assert_eq!(exec_count(&after, &w.fail_name), Some(N_FAIL as f64));
    assert_eq!(exec_count(&after, &w.kill_name), Some(N_KILL as f64));

    // Machine-wide counters: at least the workload (other processes may run too).
    let created = latest(&after, "system.process.created", &[]).expect("created") - created0;
    assert!(
        created >= (N_OK + N_FAIL + N_KILL) as f64,
        "created rose by {created}"
    );
    assert!(exit_count(&after, "success") - ok0 >= N_OK as f64);
    assert!(exit_count(&after, "failure") - fail0 >= N_FAIL as f64);
    assert!(exit_count(&after, "signal") - sig0 >= N_KILL as f64);
    drop(w);

    // The contract: names, units, instrument types.
    let expect = [
        ("system.process.created", "{process}", true),
        ("sonde.process.exec", "{exec}", true),
        ("sonde.process.exit", "{process}", true),
        ("system.process.count", "{process}", false),
    ];
    for (name, unit, monotonic) in expect {
        let m = metrics(&after, name)
            .last()
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(m.unit, unit, "{name}");
        assert!(!m.description.is_empty(), "{name} has a description");
        let Some(Data::Sum(s)) = &m.data else {
            panic!("{name} is a sum")
        };
        assert_eq!(s.is_monotonic, monotonic, "{name}");
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
    }
    let states: Vec<String> = num_points(&after, "system.process.count")
        .into_iter()
        .filter_map(|p| p.attrs.get("process.state").cloned())
        .collect();
    for s in ["running", "sleeping", "stopped", "defunct"] {
        assert!(states.iter().any(|x| x == s), "process.state={s} missing");
    }
    assert!(
        latest(
            &after,
            "system.process.count",
            &[("process.state", "sleeping")]
        ) > Some(0.0)
    );
    assert!(
        latest(
            &after,
            "sonde.probe.status",
            &[
                ("sonde.probe", "process.exec"),
                ("sonde.probe.state", "attached")
            ]
        ) == Some(1.0)
    );

    let last = after.last().expect("an export");
    let rm = &last.req.resource_metrics[0];
    assert_eq!(rm.schema_url, "https://opentelemetry.io/schemas/1.44.0");
    let res = resource(last);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("release");
    assert_eq!(res["service.name"], "sonde");
    assert_eq!(res["service.version"], env!("CARGO_PKG_VERSION"));
    assert!(res.contains_key("service.instance.id"));
    assert_eq!(res["host.name"], hostname.trim());
    if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
        assert_eq!(res["host.id"], id.trim());
    }
    assert_eq!(res["host.arch"], "amd64");
    assert_eq!(res["os.type"], "linux");
    assert_eq!(res["os.version"], release.trim());
    assert_eq!(res["sonde.mode"], "ebpf");
    assert_eq!(res["deployment.environment.name"], "e2e");
    assert_eq!(res["team"], "sre core");

    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
}

#[test]
fn http_protobuf_export_honours_gzip_headers_service_name_and_delta_temporality() {
    require_root();
    let rx = OtlpReceiver::start(Proto::Http);
    let mut env = with_interval(rx.env(), 300);
    env.extend([
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_string()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-sonde-test=abc%20def".into(),
        ),
        ("OTEL_SERVICE_NAME", "sonde-e2e".into()),
        (
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "delta".into(),
        ),
    ]);
    let mut sonde = Sonde::start(&env, None);
    sonde.wait_started();
    rx.wait_for("a first export", WAIT, |e| !e.is_empty());

    let w = run_workload();
    let got = rx.wait_for("delta exec counts summing to the workload", WAIT, |e| {
        delta_total(
            e,
            "sonde.process.exec",
            &[("process.executable.name", &w.ok_name)],
        ) >= N_OK as f64
    });
    let n = got.len();
    let got = rx.wait_for("two more exports", WAIT, |e| e.len() >= n + 2);
    let total = |name: &str| {
        delta_total(
            &got,
            "sonde.process.exec",
            &[("process.executable.name", name)],
        )
    };
    assert_eq!(
        total(&w.ok_name),
        N_OK as f64,
        "deltas sum to the ground truth"
    );
    assert_eq!(total(&w.fail_name), N_FAIL as f64);

    let first = &got[0];
    assert_eq!(
        first.headers.get("x-sonde-test").map(String::as_str),
        Some("abc def")
    );
    assert_eq!(
        first.headers.get("content-encoding").map(String::as_str),
        Some("gzip")
    );
    assert_eq!(
        first.headers.get("content-type").map(String::as_str),
        Some("application/x-protobuf")
    );
    assert_eq!(resource(first)["service.name"], "sonde-e2e");

    let temporality = |name: &str| match &metrics(&got, name).last().expect(name).data {
        Some(Data::Sum(s)) => s.aggregation_temporality,
        _ => panic!("{name} is a sum"),
    };
    assert_eq!(
        temporality("sonde.process.exec"),
        AggregationTemporality::Delta as i32
    );
    assert_eq!(
        temporality("system.process.count"),
        AggregationTemporality::Cumulative as i32,
        "up-down counters stay cumulative under delta preference"
    );
    // Consecutive delta points tile time: each starts where the previous ended.
    let pts: Vec<NumPoint> = num_points(&got, "system.process.created");
    for pair in pts.windows(2) {
        assert_eq!(
            pair[1].start, pair[0].time,
            "delta windows must be contiguous"
        );
    }
    sonde.signal(libc::SIGINT);
    assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
}

#[test]
fn collector_down_then_up_receives_the_backlog_and_nothing_is_lost() {
    require_root();
    let port = free_port();
    let env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "250".into()),
    ];
    let mut sonde = Sonde::start(&env, None);
    sonde.wait_started();
    let down_since = sonde::unix_nanos();
    let w = run_workload();
    // Let several snapshots pile up while nobody listens.
    sonde.wait_log("OTLP export failed", WAIT);
    std::thread::sleep(Duration::from_secs(2));
    let up_at = sonde::unix_nanos();

    let rx = OtlpReceiver::start_on(Proto::Grpc, port);
    // The backlog goes out oldest first: once a snapshot taken after the collector came
    // up has arrived, everything before it has too.
    let got = rx.wait_for(
        "the backlog, then a fresh snapshot",
        Duration::from_secs(60),
        |e| {
            num_points(e, "system.process.created")
                .iter()
                .any(|p| p.time > up_at)
        },
    );
    assert!(
        latest(
            &got,
            "sonde.export.points",
            &[("sonde.export.outcome", "retried")]
        ) > Some(0.0),
        "failed attempts are counted as retried"
    );
    // Snapshots taken while the collector was down arrived after it came up.
    let mut times: Vec<u64> = num_points(&got, "system.process.created")
        .iter()
        .map(|p| p.time)
        .filter(|t| (down_since..up_at).contains(t))
        .collect();
    times.dedup();
    assert!(
        times.len() >= 4,
        "expected the snapshots of the down period to be delivered, got {}",
        times.len()
    );
    assert_eq!(exec_count(&got, &w.ok_name), Some(N_OK as f64));
    assert_eq!(
        latest(
            &got,
            "sonde.export.points",
            &[("sonde.export.outcome", "dropped")]
        ),
        Some(0.0),
        "nothing dropped within the backlog bound"
    );
    // Logged after the send returns, so possibly after the receiver saw the data.
    sonde.wait_log("OTLP export recovered", WAIT);
}

/// Each bound of the memory backlog in turn (points, then encoded bytes, with the other
/// out of the way): while nobody listens the oldest batches are dropped and counted, and
/// what the collector gets as the backlog, once it is up, is within the bound and fills
/// it (to within two batches: a batch is dropped or kept whole, and a snapshot taken just
/// before the first delivery may join the queue just after it).
#[test]
fn a_full_backlog_drops_the_oldest_and_counts_what_it_dropped() {
    require_root();
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use prost::Message;
    // Several snapshots of every family each (a few hundred points, some tens of KB).
    const POINTS: u64 = 4_000;
    const BYTES: u64 = 256 << 10;
    let points: fn(&ExportMetricsServiceRequest) -> u64 = point_count;
    let bytes: fn(&ExportMetricsServiceRequest) -> u64 = |r| r.encoded_len() as u64;
    for (bounds, bound, size) in [
        (format!("backlog_max_points: {POINTS}"), POINTS, points),
        (
            format!("backlog_max_points: 100000000\n    backlog_max_bytes: {BYTES}"),
            BYTES,
            bytes,
        ),
    ] {
        let port = free_port();
        let yaml = format!(
            "collection:\n  interval: 200ms\nexporters:\n  otlp:\n    endpoint: http://127.0.0.1:{port}\n    protocol: grpc\n    {bounds}\n"
        );
        let mut sonde = Sonde::start(&[], Some(&yaml));
        sonde.wait_started();
        sonde.wait_log("OTLP backlog is full", WAIT);
        let (up_unix, up) = (sonde::unix_nanos(), Instant::now());
        let rx = OtlpReceiver::start_on(Proto::Grpc, port);
        // The backlog is what the first delivery found queued: every batch made before
        // it arrived (they go oldest first, and a batch made later comes after them).
        let first_arrival = |e: &[Export]| {
            e.first()
                .map(|x| up_unix + x.at.duration_since(up).as_nanos() as u64)
        };
        let got = rx.wait_for(
            "the backlog, then a later batch",
            Duration::from_secs(90),
            |e| {
                let Some(first) = first_arrival(e) else {
                    return false;
                };
                latest(
                    e,
                    "sonde.export.points",
                    &[("sonde.export.outcome", "dropped")],
                ) > Some(0.0)
                    && e.iter().any(|x| snapshot_time(&x.req) > first)
            },
        );
        assert!(latest(&got, "system.process.created", &[]).is_some());
        let first = first_arrival(&got).expect("an export");
        let held: Vec<u64> = got
            .iter()
            .take_while(|x| snapshot_time(&x.req) <= first)
            .map(|x| size(&x.req))
            .collect();
        let largest = held.iter().copied().max().unwrap_or(0);
        let total: u64 = held.iter().sum();
        assert!(
            total <= bound + 2 * largest,
            "{bounds}: the backlog the collector got is {total} in {} batches",
            held.len()
        );
        assert!(
            total + 2 * largest > bound,
            "{bounds}: the backlog held only {total} (largest batch {largest}): more was \
             dropped than the bound asks"
        );
        sonde.signal(libc::SIGTERM);
        sonde.wait_exit(WAIT);
    }
}

/// The kernel objects a running Sonde holds are all gone once it exits, however it exits.
fn assert_released(mut sonde: Sonde, how: impl FnOnce(&mut Sonde) -> bool) {
    let ids = sonde.bpf_ids();
    assert!(ids.progs.len() >= 3, "sonde holds its programs: {ids:?}");
    let listed = bpftool_ids("prog");
    assert!(
        ids.progs.iter().all(|p| listed.contains(p)),
        "bpftool lists them while running"
    );
    let clean_exit = how(&mut sonde);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let progs = bpftool_ids("prog");
        let maps = bpftool_ids("map");
        let links = bpftool_ids("link");
        let left: Vec<u64> = ids
            .progs
            .iter()
            .filter(|p| progs.contains(p))
            .chain(ids.maps.iter().filter(|m| maps.contains(m)))
            .chain(ids.links.iter().filter(|l| links.contains(l)))
            .copied()
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kernel objects left behind after exit: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(clean_exit, "{}", sonde.stderr());
}

#[test]
fn every_program_map_and_link_is_released_on_sigterm_sigint_sigkill_and_error() {
    require_root();
    for (sig, expect_success) in [
        (libc::SIGTERM, true),
        (libc::SIGINT, true),
        (libc::SIGKILL, false),
    ] {
        let mut sonde = Sonde::start(&[], Some("exporters:\n  console:\n    enabled: false\n"));
        sonde.wait_started();
        assert_released(sonde, |s| {
            s.signal(sig);
            s.wait_exit(WAIT).success() == expect_success
        });
    }

    // An error after the probes are attached: a gRPC header that gRPC cannot carry
    // (`-bin` names binary metadata) fails exporter set-up, and Sonde exits non-zero.
    let yaml = "exporters:\n  otlp:\n    endpoint: http://127.0.0.1:9\n    protocol: grpc\n    headers:\n      x-bin: v\n";
    let mut sonde = Sonde::start(&[], Some(yaml));
    let status = sonde.wait_exit(WAIT);
    assert!(!status.success());
    assert!(sonde.stderr().contains("x-bin"), "{}", sonde.stderr());
    assert!(
        sonde.stderr().contains("attached"),
        "the error came after attaching"
    );
}

#[test]
fn ebpf_disabled_in_config_runs_in_fallback_mode_and_says_so() {
    require_root();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut sonde = Sonde::start(
        &with_interval(rx.env(), 300),
        Some("collection:\n  ebpf_enabled: false\n"),
    );
    sonde.wait_started();
    assert!(sonde.bpf_ids().progs.is_empty(), "no probe loaded");
    let got = rx.wait_for("an export", WAIT, |e| {
        latest(e, "system.process.count", &[]).is_some()
    });
    assert_eq!(resource(&got[0])["sonde.mode"], "fallback");
    assert!(latest(&got, "sonde.process.exec", &[]).is_none());
    assert!(sonde.stderr().contains("collection.ebpf_enabled: false"));
}

fn sonde_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sonde"))
        .args(args)
        .output()
        .expect("run sonde")
}

#[test]
fn cli_check_version_help_and_config_errors() {
    require_root();
    let out = sonde_cmd(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "check fails here:\n{text}");
    for probe in ["process.fork", "process.exec", "process.exit"] {
        assert!(
            text.lines().any(|l| l.contains(probe) && l.contains("ok")),
            "{probe} not reported ok:\n{text}"
        );
    }
    for line in ["BTF", "BPF ring buffer", "tracefs", "CAP_BPF yes"] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }

    let out = sonde_cmd(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = sonde_cmd(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("run") && help.contains("check"), "{help}");

    let dir = TempDir::new("cli");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "probes:\n  process:\n    enabeld: true\n").expect("write");
    let bad = bad.to_string_lossy().into_owned();
    for args in [
        vec!["check", "--config", &bad],
        vec!["run", "--config", &bad],
    ] {
        let out = sonde_cmd(&args);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{args:?} accepted a typo");
        assert!(
            all.contains("probes.process") && all.contains("enabeld"),
            "{all}"
        );
    }

    // Without capabilities, check says eBPF cannot run and why, and exits non-zero.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(env!("CARGO_BIN_EXE_sonde"))
        .arg("check")
        .output()
        .expect("setpriv (util-linux) runs sonde check without capabilities");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "check passed without capabilities:\n{text}"
    );
    assert!(
        text.contains("eBPF mode: unavailable") && text.contains("CAP_BPF"),
        "{text}"
    );

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/sonde.yaml");
    let out = sonde_cmd(&["check", "--config", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn check_into_a_closed_pipe_exits_without_a_panic() {
    // `sonde check | head -1`: the reader goes away before the report is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sonde"))
        .arg("check")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sonde check");
    drop(child.stdout.take()); // closed before the first line
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // 0 (eBPF available) or 1 (it is not), never 101 (a panic).
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{:?}: {stderr}",
        out.status
    );
}
