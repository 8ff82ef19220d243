//! Issue 13, operating safely: config errors that fail `sonde check`, the durable export
//! queue across a SIGKILL, health endpoints, capabilities after attach, hostile DNS input.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// `sonde check --config FILE` on an invalid file: exit code 2 (not 0, not the "no eBPF
/// here" 1), the key path in the message, no Rust type name. Runs as any user.
#[test]
fn check_fails_on_an_invalid_config_with_the_key_path() {
    let dir = TempDir::new("check");
    for (yaml, key) in [
        ("probes: [1]\n", "probes"),
        ("probes:\n  procss: {}\n", "probes.procss"),
        (
            "exporters:\n  otlp:\n    backlog_max_points: -3\n",
            "exporters.otlp.backlog_max_points",
        ),
        (
            "collection:\n  interval: 1 fortnight\n",
            "collection.interval",
        ),
        ("probes: [\n", "probes"),
    ] {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, yaml).expect("write config");
        let out = Command::new(env!("CARGO_BIN_EXE_sonde"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("run sonde check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {stdout}");
        assert!(stdout.contains("INVALID"), "{yaml}: {stdout}");
        assert!(
            stdout.contains(key),
            "{yaml}: `{key}` not named in {stdout}"
        );
        for rust in ["Raw", "struct ", "usize"] {
            assert!(!stdout.contains(rust), "{yaml}: `{rust}` in {stdout}");
        }
    }

    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "collection:\n  interval: 5s\n").expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_sonde"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .expect("run sonde check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("is valid"), "{stdout}");
}

const WAIT: Duration = Duration::from_secs(60);

fn queue_config(port: u16, queue: &Path) -> String {
    format!(
        "collection:\n  interval: 200ms\n\
         probes:\n  fileio: {{enabled: false}}\n  tcp: {{enabled: false}}\n  dns: {{enabled: false}}\n\
         host:\n  enabled: false\n\
         exporters:\n  otlp:\n    endpoint: http://127.0.0.1:{port}\n    protocol: grpc\n\
         \x20   temporality_preference: delta\n    queue:\n      directory: {}\n",
        queue.display()
    )
}

/// Waits until Sonde has written `n` more batches to its queue than `since`.
fn wait_queued(sonde: &mut Sonde, since: usize, n: usize) -> usize {
    let needle = "batch written to the export queue";
    let deadline = Instant::now() + WAIT;
    loop {
        let count = sonde.stderr().matches(needle).count();
        if count >= since + n {
            return count;
        }
        assert!(
            Instant::now() < deadline,
            "no batches queued:\n{}",
            sonde.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("queue dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// Issue 13 point 2: the collector is down, N execs happen, Sonde is SIGKILLed; after a
/// restart with the collector up exactly N arrive (delta temporality: a lost or doubled
/// batch would show). The newest record is torn on purpose before the restart: it is
/// skipped and counted, and Sonde neither crashes nor loses the records before it.
#[test]
fn queued_batches_survive_sigkill_and_arrive_exactly_once() {
    require_root();
    const N: usize = 25;
    let dir = TempDir::new("queue");
    let queue = dir.path().join("queue");
    let port = free_port();
    let yaml = queue_config(port, &queue);

    let mut first = Sonde::start(&[], Some(&yaml));
    first.wait_started();
    first.wait_log("OTLP export failed", WAIT);
    let (exe, name) = unique_exe(dir.path(), "sq", "/bin/true");
    for _ in 0..N {
        assert!(Command::new(&exe).status().expect("run").success());
    }
    // Snapshots taken after the last exec carry every count (exec names come through a
    // ring buffer drained at every snapshot), then a few more to tear one.
    let seen = sonde_queued(&mut first);
    wait_queued(&mut first, seen, 4);
    first.signal(libc::SIGKILL);
    assert!(!first.wait_exit(WAIT).success());

    // The newest record loses its last bytes, as a crash in the middle of a write would.
    let newest = segments(&queue).pop().expect("a segment on disk");
    let len = std::fs::metadata(&newest).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .and_then(|f| f.set_len(len - 10))
        .expect("tear the newest record");

    let rx = OtlpReceiver::start_on(Proto::Grpc, port);
    let mut second = Sonde::start(&[], Some(&yaml));
    second.wait_started();
    second.wait_log("sending them first", WAIT);
    let filter = [("process.executable.name", name.as_str())];
    rx.wait_for("the queued execs", WAIT, |e| {
        delta_total(e, "sonde.process.exec", &filter) >= N as f64
    });
    // Everything queued is sent before anything new; give the rest time to arrive.
    rx.wait_for("the queue drained", WAIT, |e| {
        latest(e, "sonde.export.queue.usage", &[]) == Some(0.0)
    });
    let got = rx.exports();
    assert_eq!(delta_total(&got, "sonde.process.exec", &filter), N as f64);
    // Delta temporality: counters are summed over the exports.
    assert_eq!(
        delta_total(
            &got,
            "sonde.export.queue.errors",
            &[("error.type", "corrupt")]
        ),
        1.0,
        "the torn record is counted once"
    );
    assert_eq!(
        delta_total(
            &got,
            "sonde.export.points",
            &[("sonde.export.outcome", "dropped")]
        ),
        0.0
    );
    assert!(
        second.child.try_wait().expect("try_wait").is_none(),
        "still running"
    );
}

fn sonde_queued(sonde: &mut Sonde) -> usize {
    sonde
        .stderr()
        .matches("batch written to the export queue")
        .count()
}

/// One plain HTTP/1.1 GET over a fresh connection: (status code, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect health");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: sonde\r\n\r\n").expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {out:?}"));
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

fn wait_http(port: u16, path: &str, code: u16) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            drop(s);
            let (got, body) = http_get(port, path);
            if got == code {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: still {got}, want {code}: {body}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "{path}: nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue 13 point 3: /healthz is 200 while the loop runs; /readyz is 503 with the reason
/// while the collector is unreachable past health.max_export_lag, and 200 once it has
/// caught up; every probe attached meanwhile.
#[test]
fn health_endpoints_follow_the_agent_and_the_export_lag() {
    require_root();
    let port = free_port();
    let health = free_port();
    let yaml = format!(
        "collection:\n  interval: 200ms\n\
         exporters:\n  otlp:\n    endpoint: http://127.0.0.1:{port}\n    protocol: grpc\n\
         health:\n  listen: 127.0.0.1:{health}\n  max_export_lag: 2s\n"
    );
    let mut sonde = Sonde::start(&[], Some(&yaml));
    sonde.wait_started();
    assert_eq!(wait_http(health, "/healthz", 200), "ok\n");
    let body = wait_http(health, "/readyz", 503);
    assert!(body.contains("export: the oldest unsent data is"), "{body}");
    assert!(body.contains("health.max_export_lag"), "{body}");
    assert!(!body.contains("probe "), "every probe attached: {body}");
    assert_eq!(http_get(health, "/metrics").0, 404);

    let _rx = OtlpReceiver::start_on(Proto::Grpc, port);
    assert_eq!(wait_http(health, "/readyz", 200), "ok\n");
    assert_eq!(http_get(health, "/healthz"), (200, "ok\n".to_owned()));

    // A stalled loop (503 on /healthz) is covered by the pure table in health.rs.
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success());
    assert!(std::net::TcpStream::connect(("127.0.0.1", health)).is_err());
}

/// The set `sonde run` keeps after attach with its default config on this kernel, as the
/// `/proc/<pid>/status` hex mask.
fn default_keep_mask() -> u64 {
    let config = sonde::config::Config::from_yaml(
        "",
        &sonde::config::OtelEnv::from_pairs(std::iter::empty::<(&str, &str)>()),
    )
    .expect("defaults");
    let plan = sonde::privilege::plan(&sonde::privilege::Inputs::of(&config));
    plan.keep_set().bits()
}

/// Every thread of `pid` holds exactly `mask` as effective, permitted and bounding set,
/// nothing inheritable or ambient, and no_new_privs.
fn assert_caps(pid: i32, mask: u64) {
    let tasks: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
        .map(|e| e.path().join("status"))
        .collect();
    assert!(
        tasks.len() >= 3,
        "the runtime's threads are there too: {tasks:?}"
    );
    for status in tasks {
        let text = std::fs::read_to_string(&status).expect("status");
        let field = |name: &str| {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .unwrap_or_else(|| panic!("{name} in {}", status.display()));
            u64::from_str_radix(line.trim(), 16).unwrap_or_else(|_| panic!("{name}: {line}"))
        };
        for (name, want) in [
            ("CapEff", mask),
            ("CapPrm", mask),
            ("CapBnd", mask),
            ("CapInh", 0),
            ("CapAmb", 0),
            ("NoNewPrivs", 1),
        ] {
            assert_eq!(field(name), want, "{name} of {}: {text}", status.display());
        }
    }
}

/// Runs `n` execs of a uniquely named /bin/true and checks the exported count is exactly
/// `n`, read after the capability drop.
fn assert_exact_execs(rx: &OtlpReceiver, dir: &Path, n: usize) {
    let (exe, name) = unique_exe(dir, "scap", "/bin/true");
    for _ in 0..n {
        assert!(Command::new(&exe).status().expect("run").success());
    }
    let filter = [("process.executable.name", name.as_str())];
    rx.wait_for("every exec counted", WAIT, |e| {
        latest(e, "sonde.process.exec", &filter) == Some(n as f64)
    });
    // A few more exports: still exact, nothing late or doubled.
    let seen = rx.exports().len();
    let got = rx.wait_for("more exports", WAIT, |e| e.len() >= seen + 3);
    assert_eq!(latest(&got, "sonde.process.exec", &filter), Some(n as f64));
}

/// Issue 13 point 1: after attach every thread of a root-started Sonde holds only the
/// stated set (on kernels >= 5.19 no BPF capability), and the probes still count exactly.
#[test]
fn capabilities_are_dropped_after_attach_and_counts_stay_exact() {
    require_root();
    let mask = default_keep_mask();
    if sonde::probe::support::kernel_version().is_some_and(|v| v >= (5, 19)) {
        assert_eq!(
            mask & (1 << 39 | 1 << 38 | 1 << 21),
            0,
            "no CAP_BPF/PERFMON/SYS_ADMIN kept"
        );
    }
    let dir = TempDir::new("caps");
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut sonde = Sonde::start(&rx.env(), Some("collection:\n  interval: 200ms\n"));
    sonde.wait_log("capabilities after attach", WAIT);
    assert_caps(sonde.pid(), mask);
    assert_exact_execs(&rx, dir.path(), 30);
    assert!(
        !sonde.stderr().contains("cannot drop capabilities"),
        "{}",
        sonde.stderr()
    );
}

/// Issue 13 point 1: a non-root user with only the ambient capabilities `sonde check`
/// states (as the systemd unit and the DaemonSet grant them) attaches every probe, counts
/// exactly, and ends with the same kept set.
#[test]
fn runs_as_nobody_with_only_the_stated_ambient_capabilities() {
    require_root();
    let caps = "+bpf,+perfmon,+net_admin,+dac_read_search,+sys_ptrace,+setpcap";
    let inh = format!("--inh-caps={caps}");
    let amb = format!("--ambient-caps={caps}");
    let wrapper = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        inh.as_str(),
        amb.as_str(),
    ];
    let dir = TempDir::new("nobody");
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut sonde = Sonde::start_wrapped(
        &wrapper,
        &rx.env(),
        Some("collection:\n  interval: 200ms\n"),
    );
    sonde.wait_log("capabilities after attach", WAIT);
    let log = sonde.stderr();
    assert!(
        !log.contains("failed"),
        "every probe attaches as nobody: {log}"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", sonde.pid())).expect("status");
    assert!(status.contains("Uid:\t65534"), "{status}");
    assert_caps(sonde.pid(), default_keep_mask());
    assert_exact_execs(&rx, dir.path(), 30);
}

/// Issue 13 point 5: with `question_names: redacted` a name leaves Sonde only as the
/// keyed hash of the host's key (stable, so repetition shows), names under a
/// never-export suffix not at all, and the lookups are still all counted.
#[test]
fn dns_question_names_are_redacted_and_secret_suffixes_never_exported() {
    use common::dns::{addresses, query, wait_ready, Dnsmasq};
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use std::os::unix::fs::PermissionsExt;
    require_root();
    let [srv, ..] = addresses();
    let zone = format!("r{}.test", unique_suffix());
    let _dns = Dnsmasq::start(
        srv,
        &[
            format!("--auth-zone={zone}"),
            format!("--auth-server=ns.{zone}"),
            format!("--host-record=ready.{zone},10.9.9.9"),
            format!("--host-record=www.{zone},10.0.0.1"),
            format!("--host-record=db.secret.{zone},10.0.0.2"),
        ],
    );
    wait_ready(srv, &format!("ready.{zone}"));
    let dir = TempDir::new("redact");
    let key_file = dir.path().join("state/dns-names.key");
    let rx = OtlpReceiver::start(Proto::Grpc);
    let yaml = format!(
        "collection:\n  interval: 300ms\nhost:\n  enabled: false\n\
         probes:\n  process: {{enabled: false}}\n  fileio: {{enabled: false}}\n  tcp: {{enabled: false}}\n\
         \x20 dns:\n    question_names: redacted\n    never_export_suffixes: [secret.{zone}]\n\
         \x20   redaction_key_file: {}\n",
        key_file.display()
    );
    let mut sonde = Sonde::start(&rx.env(), Some(&yaml));
    sonde.wait_started();
    for name in [&format!("www.{zone}"); 3]
        .into_iter()
        .chain([&format!("db.secret.{zone}"); 2])
    {
        assert_eq!(query(srv, name, Duration::from_secs(10)), Some(0), "{name}");
    }
    let key = std::fs::read(&key_file).expect("the key was made on first use");
    assert_eq!(
        std::fs::metadata(&key_file)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let hash = sonde::family::dns::privacy::NamePrivacy::new(Some(&key), &[])
        .exported(&format!("www.{zone}"))
        .expect("a hash");
    let server = srv.to_string();
    // Latest cumulative count per question name of lookups answered by our resolver.
    let by_name = |e: &[Export]| {
        let mut out = std::collections::BTreeMap::<String, (u64, u64)>::new();
        for m in metrics(e, "dns.lookup.duration") {
            let Some(Data::Histogram(h)) = &m.data else {
                continue;
            };
            for p in &h.data_points {
                let attr = |k: &str| {
                    p.attributes
                        .iter()
                        .find(|kv| kv.key == k)
                        .map(|kv| any_to_string(&kv.value))
                };
                if attr("network.peer.address").as_deref() != Some(server.as_str()) {
                    continue;
                }
                let name = attr("dns.question.name").unwrap_or_else(|| "(none)".into());
                let slot = out.entry(name).or_default();
                if p.time_unix_nano >= slot.0 {
                    *slot = (p.time_unix_nano, p.count);
                }
            }
        }
        out.into_iter()
            .map(|(k, (_, c))| (k, c))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let got = rx.wait_for("all five lookups", WAIT, |e| {
        by_name(e).values().sum::<u64>() >= 5
    });
    let counts = by_name(&got);
    assert_eq!(counts.get(&hash), Some(&3), "{counts:?}");
    assert_eq!(counts.get("(none)"), Some(&2), "{counts:?}");
    assert_eq!(counts.len(), 2, "{counts:?}");
    let everything = format!("{:?}", got.iter().map(|e| &e.req).collect::<Vec<_>>());
    assert!(
        !everything.contains(&zone),
        "the zone's names never leave Sonde in clear"
    );
}

/// DNS messages that the parser must refuse, each for a different reason; all are queries
/// (QR=0) to port 53, as an attacker on the host or the network could send.
fn malformed_dns(i: usize) -> Vec<u8> {
    let id = (i as u16).to_be_bytes();
    let header = |qd: u16| {
        let mut h = vec![id[0], id[1], 0x01, 0x00];
        h.extend_from_slice(&qd.to_be_bytes());
        h.extend_from_slice(&[0; 6]);
        h
    };
    let mut m = match i % 8 {
        0 => vec![0xab; i % 12],                         // shorter than a header
        1 => header(0),                                  // no question
        2 => [header(1), vec![63, b'a', b'b']].concat(), // label runs past the end
        3 => [header(1), vec![0x45, b'x', 0]].concat(),  // reserved label type 0x40
        4 => [header(1), vec![0xc0, 0xff]].concat(),     // pointer forwards
        5 => [header(1), vec![0xc0, 12]].concat(),       // pointer to itself
        6 => {
            let mut m = header(1); // a name longer than 255 bytes
            for _ in 0..5 {
                m.push(63);
                m.extend_from_slice(&[b'z'; 63]);
            }
            m.extend_from_slice(&[0, 0, 1, 0, 1]);
            m
        }
        _ => [header(1), vec![3, b'w', b'w', b'w', 0, 0]].concat(), // no qtype/qclass
    };
    m.truncate(512);
    m
}

/// Issue 13 point 6: a flood of malformed DNS queries (to a socket of the test's own and
/// to its resolver) while Sonde runs: Sonde stays up, its memory stays bounded, none of
/// the garbage counts as a query, and well-formed queries sent afterwards are counted
/// exactly. The DNS port is one of the test's own, not 53: the probe's counts are per
/// Sonde but cover every watched packet on the host, and other sessions' DNS on port 53
/// (their floods, their ring losses) would otherwise pad them.
#[test]
fn a_malformed_dns_flood_neither_crashes_nor_miscounts() {
    use common::dns::{addresses, query_on, wait_ready_on, Dnsmasq};
    require_root();
    const FLOOD: usize = 60_000;
    const GOOD: usize = 20;
    let [srv, sink, ..] = addresses();
    // The other target: a socket that takes the garbage and never answers; the resolver
    // listens on the same port on its own address. The port is below the ephemeral range
    // (32768 up), so no other session's client socket gets it as its source port.
    let port = 20_000 + (std::process::id() % 12_000) as u16;
    let target = std::net::UdpSocket::bind((sink, port)).expect("bind the sink");
    let zone = format!("f{}.test", unique_suffix());
    let _dns = Dnsmasq::start_on(
        srv,
        port,
        &[
            format!("--auth-zone={zone}"),
            format!("--auth-server=ns.{zone}"),
            format!("--host-record=ready.{zone},10.9.9.9"),
            format!("--host-record=good.{zone},10.0.0.1"),
        ],
    );
    wait_ready_on(srv, port, &format!("ready.{zone}"));
    let rx = OtlpReceiver::start(Proto::Grpc);
    let yaml = format!(
        "collection:\n  interval: 300ms\nhost:\n  enabled: false\n\
         probes:\n  process: {{enabled: false}}\n  fileio: {{enabled: false}}\n  tcp: {{enabled: false}}\n  dns: {{ports: [{port}]}}\n"
    );
    let mut sonde = Sonde::start(&rx.env(), Some(&yaml));
    sonde.wait_started();
    rx.wait_for("a few exports", WAIT, |e| e.len() >= 3);
    let before = rss_kib(sonde.pid());

    let senders: Vec<std::net::UdpSocket> = (0..4)
        .map(|_| std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)).expect("bind"))
        .collect();
    // What the probe must see: every datagram that left with a payload. A send refused
    // for a full socket buffer never reaches the wire, and an empty datagram carries no
    // DNS message (the probe skips packets without payload, as TCP's bare ACKs).
    let mut sent = 0u64;
    for i in 0..FLOOD {
        let to = if i % 4 == 0 { srv } else { sink };
        let m = malformed_dns(i);
        if senders[i % senders.len()].send_to(&m, (to, port)).is_ok() && !m.is_empty() {
            sent += 1;
        }
    }
    drop(target);
    // The probe saw the garbage: every packet is either refused by the parser or counted
    // as lost in the kernel (each is seen on egress; loopback's ingress copy is not kept).
    // The counts are logged at each collection; on a busy machine the flood outlasts a
    // few of them, so the check waits for a collection that has drained it all (the
    // kernel counted every packet when its send returned) and fails with the last one.
    let counts = |line: &str, k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {line}"))
    };
    let accounted =
        |line: &str| counts(line, "unparsed") + counts(line, "lost") + counts(line, "lost_copy");
    let deadline = Instant::now() + WAIT;
    let last = loop {
        let log = sonde.stderr();
        let last = log
            .lines()
            .rev()
            .find(|l| l.contains("dns packet counts"))
            .expect("the DNS source logs its counts at debug level")
            .to_owned();
        if accounted(&last) >= sent || Instant::now() >= deadline {
            break last;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        accounted(&last) >= sent,
        "every malformed packet sent with a payload was seen ({sent} of {FLOOD}): {last}"
    );
    assert!(
        sonde.child.try_wait().expect("try_wait").is_none(),
        "Sonde is up:\n{}",
        sonde.stderr()
    );
    let after = rss_kib(sonde.pid());
    assert!(
        after < before + 32 * 1024,
        "memory stays bounded: {before} KiB before the flood, {after} KiB after"
    );

    for _ in 0..GOOD {
        assert_eq!(
            query_on(srv, port, &format!("good.{zone}"), Duration::from_secs(10)),
            Some(0)
        );
    }
    let (srv_s, sink_s) = (srv.to_string(), sink.to_string());
    let queries = |e: &[Export], peer: &str| {
        latest(e, "sonde.dns.queries", &[("network.peer.address", peer)]).unwrap_or(0.0)
    };
    rx.wait_for("the good queries", WAIT, |e| {
        queries(e, &srv_s) >= GOOD as f64
    });
    let seen = rx.exports().len();
    let got = rx.wait_for("a few more exports", WAIT, |e| e.len() >= seen + 3);
    assert_eq!(
        queries(&got, &srv_s),
        GOOD as f64,
        "only the well-formed queries count"
    );
    assert_eq!(queries(&got, &sink_s), 0.0, "garbage is never a query");
    assert!(sonde.child.try_wait().expect("try_wait").is_none());
}

/// A tmpfs of the test's own, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&at).expect("mount point");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                &at.to_string_lossy(),
            ],
        );
        Self(at)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Issue 13 point 2: a full disk under the queue does not stop export: batches are held
/// in memory (warned once, counted as write_failed) and arrive once the collector is up.
#[test]
fn a_full_disk_falls_back_to_the_memory_backlog() {
    require_root();
    let dir = TempDir::new("fulldisk");
    let fs = Tmpfs::mount(dir.path().join("fs"), "1m");
    let queue = fs.0.join("queue");
    std::fs::create_dir_all(&queue).expect("queue dir");
    // Fill the file system: the queue can open (lock and ack files are empty) but no
    // record fits.
    let filler = std::fs::File::create(fs.0.join("filler")).expect("filler");
    let _ = std::io::copy(&mut std::io::repeat(0).take(2 << 20), &mut &filler);
    let port = free_port();
    let mut sonde = Sonde::start(&[], Some(&queue_config(port, &queue)));
    sonde.wait_started();
    sonde.wait_log("holding batches in memory", WAIT);
    let rx = OtlpReceiver::start_on(Proto::Grpc, port);
    // Delta temporality (queue_config): counters arrive as per-interval deltas.
    // A batch reports the sends before it, so wait for both counts.
    let got = rx.wait_for("write failures counted, memory batches sent", WAIT, |e| {
        delta_total(
            e,
            "sonde.export.queue.errors",
            &[("error.type", "write_failed")],
        ) >= 3.0
            && delta_total(
                e,
                "sonde.export.points",
                &[("sonde.export.outcome", "sent")],
            ) > 0.0
    });
    assert_eq!(
        delta_total(
            &got,
            "sonde.export.points",
            &[("sonde.export.outcome", "dropped")]
        ),
        0.0
    );
    assert_eq!(
        sonde.stderr().matches("holding batches in memory").count(),
        1,
        "warned once, not per batch"
    );
}
