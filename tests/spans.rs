//! Spans end to end: the real `sonde` binary with its probes, a DNS responder of the
//! test's own on loopback (it answers after a known delay, or NXDOMAIN at once), a refused
//! loopback connect, and a real OTLP receiver decoding traces and metrics with the
//! official protobuf definitions.

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use common::{latest, metrics, require_root, OtlpReceiver, Proto, Sonde};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{exemplar, HistogramDataPoint};
use opentelemetry_proto::tonic::trace::v1::{span, status, Span};

/// The slow answers' delay: far above the 100 ms threshold and any loopback jitter.
const DELAY: Duration = Duration::from_millis(300);

/// A DNS query for `name` (type A) with id `id`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Answers every query on `sock`: names starting with `slow` after DELAY with NOERROR,
/// `fast` at once with NOERROR, the rest at once with NXDOMAIN (the question echoed, no
/// answer records).
fn responder(sock: UdpSocket, until: Instant) {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut buf = [0u8; 512];
    while Instant::now() < until {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let mut r = buf[..n].to_vec();
        let slow = n > 13 && r[13..].starts_with(b"slow");
        let fast = n > 13 && r[13..].starts_with(b"fast");
        r[2] = 0x81; // QR, RD
        r[3] = if slow || fast { 0x80 } else { 0x83 }; // RA; rcode 0 or 3 (NXDOMAIN)
        if slow {
            let reply = sock.try_clone().expect("clone");
            std::thread::spawn(move || {
                std::thread::sleep(DELAY);
                let _ = reply.send_to(&r, from);
            });
        } else {
            let _ = sock.send_to(&r, from);
        }
    }
}

/// Starts [`responder`] on a free loopback port for a minute; Sonde's config that
/// watches that port, with spans of every kind at up to 1000 a second.
fn start_responder() -> (u16, String) {
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind responder");
    let port = server.local_addr().expect("addr").port();
    let until = Instant::now() + Duration::from_secs(60);
    std::thread::spawn(move || responder(server, until));
    let config = format!(
        "collection: {{interval: 1s}}\nprobes:\n  dns: {{ports: [{port}], question_names: all}}\n\
         spans: {{max_per_second: 1000}}\n"
    );
    (port, config)
}

/// A symlink to `target` in `dir` under a unique name starting with `prefix`: a process
/// exec'd through it has that name as comm.
fn named_link(dir: &std::path::Path, prefix: &str, target: &str) -> (std::path::PathBuf, String) {
    let name = format!("{prefix}{}", common::unique_suffix());
    assert!(name.len() <= 15, "{name} would be truncated in comm");
    let path = dir.join(&name);
    std::os::unix::fs::symlink(target, &path).expect("symlink");
    (path, name)
}

/// What `found` picks out of the spans received, once it does (within 20 s; else the
/// test fails showing what arrived and Sonde's log).
fn wait_for_spans<T>(
    rx: &OtlpReceiver,
    sonde: &Sonde,
    what: &str,
    found: impl Fn(&[Span]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = rx.spans();
        if let Some(t) = found(&spans) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not arrive; got {:?}\n{}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>(),
            sonde.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of the exemplar pointing at `span` on a point of histogram `metric` that
/// `point` picks, once one arrives (within 10 s).
fn exemplar_of(
    rx: &OtlpReceiver,
    metric: &str,
    point: impl Fn(&HistogramDataPoint) -> bool,
    span: &Span,
) -> f64 {
    let find = |e: &[common::Export]| {
        metrics(e, metric)
            .filter_map(|m| match &m.data {
                Some(Data::Histogram(h)) => Some(h),
                _ => None,
            })
            .flat_map(|h| &h.data_points)
            .filter(|p| point(p))
            .flat_map(|p| p.exemplars.clone())
            .find(|x| x.trace_id == span.trace_id)
    };
    let exports = rx.wait_for(
        &format!("an exemplar of span {} on {metric}", span.name),
        Duration::from_secs(10),
        |e| find(e).is_some(),
    );
    let ex = find(&exports).expect("exemplar");
    assert_eq!(ex.span_id, span.span_id);
    match ex.value {
        Some(exemplar::Value::AsDouble(v)) => v,
        other => panic!("exemplar value {other:?}"),
    }
}

fn attr(s: &Span, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            any_value::Value::StringValue(s) => s.clone(),
            any_value::Value::IntValue(i) => i.to_string(),
            any_value::Value::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
}

/// One test, both transports: gRPC here, HTTP/protobuf in the second.
fn spans_for_slow_and_failed_lookups_and_refused_connects(proto: Proto) {
    require_root();
    let rx = OtlpReceiver::start(proto);
    let (port, config) = start_responder();
    let mut sonde = Sonde::start(&rx.env(), Some(&config));
    sonde.wait_started();

    let tag = common::unique_suffix();
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut buf = [0u8; 512];
    for (id, name) in [
        (1u16, format!("slow{tag}.test")),
        (2, format!("missing{tag}.test")),
        (3, format!("fast{tag}.test")),
    ] {
        client.send_to(&query(id, &name), to).expect("send");
        client.recv_from(&mut buf).expect("an answer");
    }
    // A refused connect: a port that was free a moment ago, nothing listening.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let refused = std::net::TcpStream::connect(("127.0.0.1", closed));
    assert!(refused.is_err(), "port {closed} should refuse");

    let wanted = |s: &Span, name: &str| attr(s, "dns.question.name").as_deref() == Some(name);
    let spans = wait_for_spans(&rx, &sonde, "DNS and TCP spans", |spans| {
        let have = |n: &str| spans.iter().any(|s| wanted(s, n));
        let refused_seen = spans.iter().any(|s| {
            s.name == "TCP connect" && attr(s, "network.peer.port") == Some(closed.to_string())
        });
        (have(&format!("slow{tag}.test")) && have(&format!("missing{tag}.test")) && refused_seen)
            .then(|| spans.to_vec())
    });

    let slow = spans
        .iter()
        .find(|s| wanted(s, &format!("slow{tag}.test")))
        .expect("slow span");
    assert_eq!(slow.name, "DNS A");
    assert_eq!(slow.kind, span::SpanKind::Client as i32);
    let took = Duration::from_nanos(slow.end_time_unix_nano - slow.start_time_unix_nano);
    // Kernel timestamps at the query and at the answer: the delay plus loopback and
    // scheduling time, never less than the delay.
    assert!(
        took >= DELAY && took < DELAY + Duration::from_millis(150),
        "slow lookup span took {took:?}"
    );
    assert_eq!(
        slow.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Unset as i32)
    );
    assert_eq!(
        attr(slow, "network.peer.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(attr(slow, "sonde.dns.question.type").as_deref(), Some("A"));
    let now = sonde::unix_nanos();
    assert!(
        slow.start_time_unix_nano.abs_diff(now) < 60_000_000_000,
        "wall-clock times, not boot-relative"
    );

    let missing = spans
        .iter()
        .find(|s| wanted(s, &format!("missing{tag}.test")))
        .expect("nxdomain span");
    assert_eq!(
        missing.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );
    assert_eq!(attr(missing, "error.type").as_deref(), Some("nxdomain"));
    assert!(
        !spans.iter().any(|s| wanted(s, &format!("fast{tag}.test"))),
        "a fast successful lookup is no span"
    );

    let conn = spans
        .iter()
        .find(|s| {
            s.name == "TCP connect" && attr(s, "network.peer.port") == Some(closed.to_string())
        })
        .expect("refused connect span");
    assert_eq!(attr(conn, "error.type").as_deref(), Some("refused"));
    assert_eq!(
        conn.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );

    // The slow lookup's latency sample points at its span.
    let exports = rx.wait_for(
        "an exemplar on dns.lookup.duration",
        Duration::from_secs(10),
        |e| {
            metrics(e, "dns.lookup.duration").any(|m| match &m.data {
                Some(Data::Histogram(h)) => h
                    .data_points
                    .iter()
                    .any(|p| p.exemplars.iter().any(|x| x.trace_id == slow.trace_id)),
                _ => false,
            })
        },
    );
    let ex = metrics(&exports, "dns.lookup.duration")
        .filter_map(|m| match &m.data {
            Some(Data::Histogram(h)) => Some(h),
            _ => None,
        })
        .flat_map(|h| &h.data_points)
        .flat_map(|p| &p.exemplars)
        .find(|x| x.trace_id == slow.trace_id)
        .expect("exemplar");
    assert_eq!(ex.span_id, slow.span_id);

    // The counter reaches the collector with the snapshot after the spans were sent.
    let sent = |e: &[common::Export]| {
        latest(e, "sonde.export.spans", &[("sonde.export.outcome", "sent")]).unwrap_or(0.0)
    };
    let exports = rx.wait_for(
        "sonde.export.spans{sent} >= the 3 spans received",
        Duration::from_secs(10),
        |e| sent(e) >= 3.0,
    );
    // Spans and metrics describe the same resource.
    let resource = exports
        .last()
        .and_then(|e| e.req.resource_metrics.first())
        .and_then(|r| r.resource.clone())
        .expect("the metrics' resource");
    for req in rx.trace_requests() {
        for rs in &req.resource_spans {
            assert_eq!(rs.resource.as_ref(), Some(&resource));
        }
    }
    sonde.signal(libc::SIGTERM);
    sonde.wait_exit(Duration::from_secs(20));
}

#[test]
fn spans_over_grpc() {
    spans_for_slow_and_failed_lookups_and_refused_connects(Proto::Grpc);
}

#[test]
fn spans_over_http() {
    spans_for_slow_and_failed_lookups_and_refused_connects(Proto::Http);
}

/// A burst of 10 000 failing lookups is held to `spans.max_per_second`, and every span
/// the limit refused is counted: exported + refused = qualifying lookups, exactly (the
/// probe lost no packet: checked, so the equation has no hidden term). Queries go out 32
/// at a time, paced to 4 000 a second (each is four packets for the probe, two copies of
/// the query and of the answer, and a debug build of the agent parses them slower than
/// loopback makes them), so the burst takes two and a half seconds.
#[test]
fn a_burst_of_failures_is_held_to_the_rate_limit_and_counted() {
    require_root();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind responder");
    let port = server.local_addr().expect("addr").port();
    std::thread::spawn(move || responder(server, Instant::now() + Duration::from_secs(90)));
    let config = format!(
        "collection: {{interval: 1s}}\nprobes:\n  dns: {{ports: [{port}], question_names: all}}\n\
         spans: {{max_per_second: 20, tcp: {{enabled: false}}, process: {{enabled: false}}}}\n"
    );
    let mut sonde = Sonde::start(&rx.env(), Some(&config));
    sonde.wait_started();
    const N: u16 = 10_000;
    const WINDOW: u16 = 32;
    const PER_SECOND: u32 = 4_000;
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut buf = [0u8; 512];
    let tag = common::unique_suffix();
    let began = Instant::now();
    let (mut sent, mut answered) = (0u16, 0u16);
    while answered < N {
        while sent < N && sent - answered < WINDOW {
            client
                .send_to(&query(sent, &format!("burst{sent}x{tag}.test")), to)
                .expect("send");
            sent += 1;
        }
        client.recv_from(&mut buf).expect("an answer");
        answered += 1;
        let due = Duration::from_secs(1) * u32::from(answered) / PER_SECOND;
        if let Some(wait) = due.checked_sub(began.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let took = began.elapsed();
    let ours = |rx: &OtlpReceiver| {
        rx.spans()
            .iter()
            .filter(|s| {
                attr(s, "dns.question.name").is_some_and(|n| n.ends_with(&format!("x{tag}.test")))
            })
            .count() as f64
    };
    // Wait until every lookup is accounted for: exported or refused by the limit.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let exports = rx.exports();
        let refused = latest(
            &exports,
            "sonde.export.spans",
            &[
                ("sonde.export.outcome", "dropped"),
                ("sonde.loss.reason", "rate_limit"),
            ],
        )
        .unwrap_or(0.0);
        let exported = ours(&rx);
        let lost = latest(
            &exports,
            "sonde.probe.events.lost",
            &[("sonde.probe", "dns")],
        )
        .unwrap_or(0.0);
        assert_eq!(
            lost, 0.0,
            "the DNS probe lost packets (its ring overflowed): the count cannot be exact"
        );
        if exported + refused >= f64::from(N) {
            assert_eq!(
                exported + refused,
                f64::from(N),
                "each failed lookup is exported or counted once"
            );
            // 20 a second after a burst of 20: what the bucket allows over the run, with
            // a second of slack for the first export's timing.
            let allowed = 20.0 + 20.0 * (took.as_secs_f64() + 1.0);
            assert!(
                refused > 0.0 && exported <= allowed,
                "the limit held: {exported} exported (at most {allowed:.0}), {refused} refused \
                 in {took:?}"
            );
            eprintln!("{N} failed lookups in {took:?}: {exported} spans, {refused} refused");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{exported} exported + {refused} refused < {N}\n{}",
            sonde.stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    sonde.signal(libc::SIGTERM);
    sonde.wait_exit(Duration::from_secs(20));
}

/// A process killed by SIGKILL and one that exits 3 become ERROR spans; one that ran
/// longer than `spans.process.longer_than` becomes a span without error; a quick success
/// does not. Start and end are the kernel's (exec to the last thread's exit).
#[test]
fn failed_killed_and_long_processes_become_spans() {
    require_root();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let config = "collection: {interval: 1s}\n\
                  spans: {tcp: {enabled: false}, process: {longer_than: 300ms}}\n";
    let mut sonde = Sonde::start(&rx.env(), Some(config));
    sonde.wait_started();
    let dir = common::TempDir::new("procspans");
    let named = |prefix: &str, target: &str| named_link(dir.path(), prefix, target);
    let (sleep, killed_name) = named("kill", "/bin/sleep");
    let (sh, failed_name) = named("fail", "/bin/sh");
    let (long, long_name) = named("long", "/bin/sleep");
    let (quick, quick_name) = named("quick", "/bin/true");

    let t0 = Instant::now();
    let mut victim = std::process::Command::new(&sleep)
        .arg("30")
        .spawn()
        .expect("sleep");
    let victim_pid = victim.id();
    // spawn() returns when exec closes the status pipe, which is before the kernel's exec
    // tracepoint: under load the span's start can be after this point. Asleep in
    // nanosleep, the program is past its exec, so 200 ms from here is inside the span.
    let wchan = format!("/proc/{victim_pid}/wchan");
    let asleep = Instant::now();
    while !std::fs::read_to_string(&wchan).is_ok_and(|w| w.contains("nanosleep")) {
        assert!(
            asleep.elapsed() < Duration::from_secs(30),
            "the victim never went to sleep"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
    unsafe { libc::kill(victim_pid as libc::pid_t, libc::SIGKILL) };
    victim.wait().expect("wait");
    let lived = t0.elapsed();
    let failed = std::process::Command::new(&sh)
        .args(["-c", "exit 3"])
        .status()
        .expect("sh");
    assert_eq!(failed.code(), Some(3));
    std::process::Command::new(&long)
        .arg("0.5")
        .status()
        .expect("sleep");
    std::process::Command::new(&quick).status().expect("true");

    let exe = |s: &Span| attr(s, "process.executable.name");
    let spans = wait_for_spans(&rx, &sonde, "process spans", |spans| {
        let has = |n: &str| spans.iter().any(|s| exe(s).as_deref() == Some(n));
        (has(&killed_name) && has(&failed_name) && has(&long_name)).then(|| spans.to_vec())
    });
    let find = |n: &str| {
        spans
            .iter()
            .find(|s| exe(s).as_deref() == Some(n))
            .expect("span")
    };
    let code = |s: &Span| s.status.as_ref().map(|s| s.code);

    let k = find(&killed_name);
    assert_eq!(k.name, format!("process {killed_name}"));
    assert_eq!(k.kind, span::SpanKind::Internal as i32);
    assert_eq!(code(k), Some(status::StatusCode::Error as i32));
    assert_eq!(attr(k, "error.type").as_deref(), Some("SIGKILL"));
    assert_eq!(attr(k, "sonde.process.exit.signal").as_deref(), Some("9"));
    assert_eq!(attr(k, "process.pid"), Some(victim_pid.to_string()));
    assert_eq!(
        attr(k, "process.parent_pid"),
        Some(std::process::id().to_string())
    );
    let took = Duration::from_nanos(k.end_time_unix_nano - k.start_time_unix_nano);
    assert!(
        took >= Duration::from_millis(200) && took <= lived,
        "from exec to death: {took:?} (the test saw {lived:?} from before the fork)"
    );

    let f = find(&failed_name);
    assert_eq!(code(f), Some(status::StatusCode::Error as i32));
    assert_eq!(attr(f, "process.exit.code").as_deref(), Some("3"));
    assert_eq!(attr(f, "error.type").as_deref(), Some("3"));

    let l = find(&long_name);
    assert_eq!(code(l), Some(status::StatusCode::Unset as i32));
    assert_eq!(attr(l, "process.exit.code").as_deref(), Some("0"));
    assert!(l.end_time_unix_nano - l.start_time_unix_nano >= 500_000_000);

    assert!(
        !spans
            .iter()
            .any(|s| exe(s).as_deref() == Some(quick_name.as_str())),
        "a quick success is no span"
    );
    sonde.signal(libc::SIGTERM);
    sonde.wait_exit(Duration::from_secs(20));
}

/// A connection reset by its peer becomes a span, and its duration sample in the kernel's
/// `sonde.tcp.connection.duration` histogram carries that span as an exemplar: on the
/// OTLP point and in OpenMetrics on the Prometheus endpoint; its srtt-at-close sample in
/// `sonde.tcp.rtt` too. With `spans.tcp.longer_than`, a clean connection that lived
/// longer is a span without error and a short one is none.
#[test]
fn a_reset_connection_is_an_exemplar_on_the_duration_histogram() {
    require_root();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut env = rx.env();
    env.extend([
        ("OTEL_METRICS_EXPORTER", "otlp,prometheus".to_owned()),
        ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1".to_owned()),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "0".to_owned()),
    ]);
    let config = "collection: {interval: 1s}\n\
                  spans: {dns: {enabled: false}, tcp: {longer_than: 400ms}}\n";
    let mut sonde = Sonde::start(&env, Some(config));
    let prom = common::prometheus_addr(&mut sonde);

    // The server accepts, holds the connection for LIVED, then aborts it (SO_LINGER 0
    // sends a reset): the client's side ends with ECONNRESET. LIVED puts the sample in
    // the (0.5, 1] s bucket, where other tests' resets rarely land.
    const LIVED: Duration = Duration::from_millis(700);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        std::thread::sleep(LIVED);
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket fd and a linger struct of the size passed.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&conn),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "SO_LINGER");
    });
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    server.join().expect("server");
    let mut buf = [0u8; 16];
    let read = std::io::Read::read(&mut client, &mut buf);
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "the peer's reset"
    );
    drop(client);

    let reset = wait_for_spans(&rx, &sonde, "the reset connection's span", |spans| {
        spans
            .iter()
            .find(|s| {
                s.name == "TCP connection" && attr(s, "network.peer.port") == Some(port.to_string())
            })
            .cloned()
    });
    assert_eq!(attr(&reset, "error.type").as_deref(), Some("reset"));

    let outbound = |p: &HistogramDataPoint| {
        p.attributes.iter().any(|a| {
            a.key == "sonde.connection.direction"
                && a.value.as_ref().and_then(|v| v.value.as_ref())
                    == Some(&any_value::Value::StringValue("outbound".into()))
        })
    };
    let value = exemplar_of(&rx, "sonde.tcp.connection.duration", outbound, &reset);
    let span_s = (reset.end_time_unix_nano - reset.start_time_unix_nano) as f64 / 1e9;
    assert!(
        (value - span_s).abs() < 1e-6 && value >= LIVED.as_secs_f64(),
        "the exemplar is the connection's duration: {value} s, span {span_s} s"
    );

    // Its srtt at close is a sample of sonde.tcp.rtt (IPv4): the same span, the span's
    // srtt attribute as the value.
    let v = exemplar_of(&rx, "sonde.tcp.rtt", |_| true, &reset);
    let srtt: f64 = attr(&reset, "sonde.tcp.srtt")
        .expect("srtt on the span")
        .parse()
        .expect("a number");
    assert!(
        (v - srtt).abs() < 1e-6,
        "rtt exemplar {v} s, span srtt {srtt} s"
    );

    // OpenMetrics: the bucket line that holds the sample names the span.
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let needle = format!("trace_id=\"{}\"", hex(&reset.trace_id));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, om) = common::http_get(
            prom,
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0"),
        );
        assert_eq!(status, 200);
        let line = om.lines().find(|l| {
            l.starts_with("sonde_tcp_connection_duration_seconds_bucket")
                && l.contains("outbound")
                && l.contains(&needle)
        });
        if let Some(line) = line {
            assert!(line.contains(&format!("span_id=\"{}\"", hex(&reset.span_id))));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no OpenMetrics exemplar for the reset:\n{}",
            om.lines()
                .filter(|l| l.starts_with("sonde_tcp_connection_duration_seconds_bucket"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // spans.tcp.longer_than: 400ms. A short clean connection first, then one that lives
    // 600 ms; both closed by the client, with no error.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 16];
            while std::io::Read::read(&mut conn, &mut buf).is_ok_and(|n| n > 0) {}
        }
    });
    let local_port = |c: &std::net::TcpStream| c.local_addr().expect("addr").port();
    let short = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let short_port = local_port(&short);
    drop(short);
    let long = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let long_port = local_port(&long);
    std::thread::sleep(Duration::from_millis(600));
    drop(long);
    server.join().expect("server");
    let client_span = |spans: &[Span], local: u16| {
        spans
            .iter()
            .find(|s| {
                attr(s, "network.peer.port") == Some(port.to_string())
                    && attr(s, "network.local.port") == Some(local.to_string())
            })
            .cloned()
    };
    let long = wait_for_spans(&rx, &sonde, "the long connection's span", |spans| {
        client_span(spans, long_port)
    });
    assert_eq!(long.name, "TCP connection");
    assert_eq!(long.kind, span::SpanKind::Client as i32);
    assert_eq!(
        long.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Unset as i32)
    );
    assert_eq!(attr(&long, "error.type"), None);
    assert!(long.end_time_unix_nano - long.start_time_unix_nano >= 600_000_000);
    // The short one closed before the long one: its span would have come first.
    assert!(
        client_span(&rx.spans(), short_port).is_none(),
        "a short clean connection is no span"
    );
    sonde.signal(libc::SIGTERM);
    sonde.wait_exit(Duration::from_secs(20));
}

/// A process's span runs from its last exec to its exit: one that waits WAIT before
/// exec'ing a program that fails starts after the wait, not at its fork. Inside a
/// (fake, docker-shaped) container made after Sonde started, that span, a refused
/// connect's and a failed lookup's carry the container's id.
#[test]
fn spans_start_at_exec_and_carry_the_container() {
    const WAIT: Duration = Duration::from_millis(600);
    require_root();
    let rx = OtlpReceiver::start(Proto::Http);
    let (port, config) = start_responder();
    let mut sonde = Sonde::start(&rx.env(), Some(&config));
    sonde.wait_started();

    let container = common::cgroup::FakeContainer::docker();
    let dir = common::TempDir::new("execspans");
    let (late, late_name) = named_link(dir.path(), "late", "/bin/sh");
    let (client, client_name) = named_link(dir.path(), "cli", "/bin/bash");

    // Forked (and moved into the container) now, exec'd after WAIT, fails at once.
    let forked = sonde::unix_nanos();
    let out = container
        .spawn(
            "/bin/sh",
            &[
                "-c",
                &format!("sleep {} && exec \"$0\" -c 'exit 3'", WAIT.as_secs_f64()),
                late.to_str().expect("utf-8 path"),
            ],
        )
        .wait_with_output()
        .expect("wait");
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // A refused connect and an NXDOMAIN lookup from inside the container (bash's
    // /dev/tcp and /dev/udp; the socket stays open while the answer arrives).
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let tag = common::unique_suffix();
    let missing = format!("missing{tag}.test");
    let q: String = query(9, &missing)
        .iter()
        .map(|b| format!("\\x{b:02x}"))
        .collect();
    let script = format!(
        ": </dev/tcp/127.0.0.1/{closed}; exec 3<>/dev/udp/127.0.0.1/{port}; \
         printf '{q}' >&3; sleep 0.5"
    );
    let out = container
        .spawn(&client, &["-c", &script])
        .wait_with_output()
        .expect("wait");
    assert!(out.status.success(), "{out:?}");

    let exe = |s: &Span| attr(s, "process.executable.name");
    let (process, connect, lookup) = wait_for_spans(&rx, &sonde, "spans", |spans| {
        let process = spans
            .iter()
            .find(|s| exe(s).as_deref() == Some(late_name.as_str()))
            .cloned();
        let connect = spans
            .iter()
            .find(|s| {
                s.name == "TCP connect" && attr(s, "network.peer.port") == Some(closed.to_string())
            })
            .cloned();
        let lookup = spans
            .iter()
            .find(|s| attr(s, "dns.question.name").as_deref() == Some(missing.as_str()))
            .cloned();
        Some((process?, connect?, lookup?))
    });

    assert_eq!(attr(&process, "process.exit.code").as_deref(), Some("3"));
    assert_eq!(
        attr(&process, "sonde.process.span.start").as_deref(),
        Some("exec")
    );
    // Kernel times converted with one offset measured at Sonde's start: allow a few
    // milliseconds of drift between the monotonic and the wall clock.
    let earliest = forked + WAIT.as_nanos() as u64 - 5_000_000;
    assert!(
        process.start_time_unix_nano >= earliest,
        "the span starts at the exec, {} ms after the fork (at least {} ms expected)",
        (process.start_time_unix_nano as i64 - forked as i64) / 1_000_000,
        WAIT.as_millis()
    );
    assert!(process.end_time_unix_nano >= process.start_time_unix_nano);

    for (what, s) in [
        ("process", &process),
        ("refused connect", &connect),
        ("lookup", &lookup),
    ] {
        assert_eq!(
            attr(s, "container.id").as_deref(),
            Some(container.id.as_str()),
            "{what} span: {:?}",
            s.attributes
        );
    }
    assert_eq!(attr(&connect, "error.type").as_deref(), Some("refused"));
    assert_eq!(exe(&connect).as_deref(), Some(client_name.as_str()));
    assert_eq!(attr(&lookup, "error.type").as_deref(), Some("nxdomain"));
    sonde.signal(libc::SIGTERM);
    sonde.wait_exit(Duration::from_secs(20));
}
