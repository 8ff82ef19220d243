//! End to end: the real `sonde` binary with its DNS probe, a real caching resolver
//! (dnsmasq) on loopback forwarding through a delay line of the test's own to a second
//! dnsmasq that is authoritative for a test zone, and a real OTLP receiver.
//!
//! A second test asks a resolver the probes cannot see, as one on another host: Sonde
//! sees only the client's two copies, the query leaving and the response arriving.
//!
//! Needs root (eBPF, binding port 53, network namespaces) and Debian's dnsmasq-base
//! (/usr/sbin/dnsmasq).
//! Every address is a loopback address unique to the test run: the machine's own
//! resolver is never queried. Sonde sees all DNS on the host, so every assertion filters
//! on the test's resolver addresses.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::dns::*;
use common::netns::{packet_socket, recv_frame, send_frame, NetnsPair};
use common::*;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, HistogramDataPoint};

const WAIT: Duration = Duration::from_secs(60);
/// The delay the test's delay line adds on the upstream path: misses take at least
/// this long, hits do not wait for it. 1.2 s sits in the (1, 2.5] s bucket with 1.3 s of
/// room for the rest of a miss's path, however busy the machine.
const DELAY: Duration = Duration::from_millis(1200);

/// A UDP delay line: holds each query for DELAY, then relays it upstream and the answer
/// back. Netem is absent on this kernel (test-lab.md); this is the test's own.
struct DelayLine {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DelayLine {
    fn start(listen: Ipv4Addr, upstream: SocketAddr) -> Self {
        let sock = UdpSocket::bind((listen, 53)).expect("bind the delay line");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let query = buf[..n].to_vec();
                let reply_to = sock.try_clone().expect("clone socket");
                std::thread::spawn(move || {
                    std::thread::sleep(DELAY);
                    let up = UdpSocket::bind((listen, 0)).expect("bind upstream side");
                    up.set_read_timeout(Some(Duration::from_secs(5)))
                        .expect("timeout");
                    up.send_to(&query, upstream).expect("relay query");
                    let mut resp = [0u8; 4096];
                    if let Ok((m, _)) = up.recv_from(&mut resp) {
                        let _ = reply_to.send_to(&resp[..m], from);
                    }
                });
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends one A query over TCP (2-byte length prefix, RFC 1035 4.2.2); returns the rcode.
fn query_tcp(server: Ipv4Addr, name: &str) -> u8 {
    use std::io::{Read, Write};
    let msg = encode_query(0x7cb1, name);
    let mut s = std::net::TcpStream::connect((server, 53)).expect("connect over TCP");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&msg);
    s.write_all(&framed).expect("send over TCP");
    let mut head = [0u8; 2 + 12];
    s.read_exact(&mut head).expect("a TCP response");
    head[2 + 3] & 0x0f
}

fn histograms(exports: &[Export], name: &str) -> Vec<HistogramDataPoint> {
    // Cumulative: the newest export carries the totals.
    let Some(last) = metrics(exports, name)
        .filter_map(|m| match &m.data {
            Some(Data::Histogram(h)) => h.data_points.iter().map(|p| p.time_unix_nano).max(),
            _ => None,
        })
        .max()
    else {
        return Vec::new();
    };
    metrics(exports, name)
        .flat_map(|m| match &m.data {
            Some(Data::Histogram(h)) => h.data_points.clone(),
            _ => Vec::new(),
        })
        .filter(|p| p.time_unix_nano == last)
        .collect()
}

fn attr(p: &HistogramDataPoint, key: &str) -> Option<String> {
    p.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| any_to_string(&kv.value))
}

#[test]
fn dns_queries_failures_cache_hits_and_latency_through_a_real_resolver() {
    require_root();
    const K: usize = 6; // distinct existing names: the first query of each is a miss
    const REPEATS: usize = 3; // later queries of each name: cache hits
    const NX: usize = 4; // distinct names that do not exist: NXDOMAIN, misses

    let [fwd, delay, auth, silent] = addresses();
    let zone = format!("z{}.test", unique_suffix());
    let mut auth_args = vec![
        format!("--auth-zone={zone}"),
        format!("--auth-server=ns.{zone}"),
        format!("--host-record=ready.{zone},10.9.9.9"),
    ];
    for i in 0..K {
        auth_args.push(format!("--host-record=h{i}.{zone},10.0.0.{}", i + 1));
    }
    let _auth = Dnsmasq::start(auth, &auth_args);
    wait_ready(auth, &format!("ready.{zone}"));
    let _delay = DelayLine::start(delay, SocketAddr::from((auth, 53)));
    let _fwd = Dnsmasq::start(fwd, &[format!("--server={delay}#53")]);
    wait_ready(fwd, &format!("ready.{zone}"));
    // A resolver that never answers: a bound socket that nobody reads.
    let _silent = UdpSocket::bind((silent, 53)).expect("bind the silent resolver");

    let rx = OtlpReceiver::start(Proto::Grpc);
    let yaml = "attributes:\n  process_pid: true\ncollection:\n  interval: 300ms\nprobes:\n  dns:\n    timeout: 4s\n    question_names: all\n";
    let mut sonde = Sonde::start(&rx.env(), Some(yaml));
    sonde.wait_started();

    // Misses first (each through the delay line, all at once), then repeats (hits),
    // NXDOMAIN (misses too), silence.
    let concurrently = |names: Vec<String>, rcode: u8| {
        std::thread::scope(|s| {
            for name in &names {
                s.spawn(move || {
                    assert_eq!(
                        query(fwd, name, Duration::from_secs(20)),
                        Some(rcode),
                        "{name}"
                    )
                });
            }
        })
    };
    concurrently((0..K).map(|i| format!("h{i}.{zone}")).collect(), 0);
    for _ in 0..REPEATS {
        for i in 0..K {
            let name = format!("h{i}.{zone}");
            assert_eq!(
                query(fwd, &name, Duration::from_secs(10)),
                Some(0),
                "{name}"
            );
        }
    }
    // Over TCP, for a name the forwarder has cached: one more query and one more hit.
    assert_eq!(query_tcp(fwd, &format!("h1.{zone}")), 0);
    concurrently((0..NX).map(|i| format!("nx{i}.{zone}")).collect(), 3);
    assert_eq!(
        query(silent, &format!("h0.{zone}"), Duration::from_millis(200)),
        None
    );

    let fwd_s = fwd.to_string();
    let silent_s = silent.to_string();
    let queries_to = |e: &[Export], addr: &str| {
        latest(e, "sonde.dns.queries", &[("network.peer.address", addr)]).unwrap_or(0.0)
    };
    let failures = |e: &[Export], addr: &str, kind: &str| {
        latest(
            e,
            "sonde.dns.failures",
            &[("network.peer.address", addr), ("error.type", kind)],
        )
        .unwrap_or(0.0)
    };
    let hits = |e: &[Export]| {
        latest(
            e,
            "sonde.dns.cache_hits",
            &[("network.peer.address", &fwd_s)],
        )
        .unwrap_or(0.0)
    };
    let udp = (K * (1 + REPEATS) + NX) as f64;
    let total = udp + 1.0;
    let hits_want = (K * REPEATS + 1) as f64;
    let got = rx.wait_until("every query, failure and hit", WAIT, |e| {
        let seen = (
            queries_to(e, &fwd_s),
            hits(e),
            failures(e, &silent_s, "timeout"),
            failures(e, &fwd_s, "nxdomain"),
        );
        if seen.0 >= total && seen.1 >= hits_want && seen.2 >= 1.0 && seen.3 >= NX as f64 {
            Ok(())
        } else {
            Err(format!(
                "queries {}/{total}, cache hits {}/{hits_want}, timeouts {}/1, nxdomain {}/{NX}",
                seen.0, seen.1, seen.2, seen.3
            ))
        }
    });
    // Cumulative series: two more exports must still show exactly the ground truth.
    let n = got.len();
    let got = rx.wait_for("two more exports", WAIT, |e| e.len() >= n + 2);
    let ctx = sonde.stderr();
    assert_eq!(queries_to(&got, &fwd_s), total, "{ctx}");
    assert_eq!(queries_to(&got, &silent_s), 1.0);
    assert_eq!(
        hits(&got),
        hits_want,
        "repeats are cache hits, over UDP and TCP"
    );
    assert_eq!(failures(&got, &fwd_s, "nxdomain"), NX as f64);
    assert_eq!(failures(&got, &silent_s, "timeout"), 1.0);
    assert_eq!(failures(&got, &fwd_s, "timeout"), 0.0);
    assert_eq!(
        latest(
            &got,
            "sonde.dns.cache_hits",
            &[("network.peer.address", &silent_s)]
        ),
        None
    );
    // UDP queries carry the sending process (UDP egress runs in the sender's context);
    // the TCP one does not (TCP may transmit from softirq, so the probe does not guess).
    let pid = std::process::id().to_string();
    assert_eq!(
        latest(
            &got,
            "sonde.dns.queries",
            &[("network.peer.address", &fwd_s), ("process.pid", &pid)]
        ),
        Some(udp)
    );

    // Latency: misses waited for the delay line, hits did not.
    let points: Vec<HistogramDataPoint> = histograms(&got, "dns.lookup.duration")
        .into_iter()
        .filter(|p| attr(p, "network.peer.address").as_deref() == Some(fwd_s.as_str()))
        .collect();
    let count = |hit: &str, err: Option<&str>| -> u64 {
        points
            .iter()
            .filter(|p| {
                attr(p, "sonde.dns.cache_hit").as_deref() == Some(hit)
                    && attr(p, "error.type").as_deref() == err
            })
            .map(|p| p.count)
            .sum()
    };
    assert_eq!(count("false", None), K as u64, "misses");
    assert_eq!(count("true", None), (K * REPEATS + 1) as u64, "hits");
    assert_eq!(count("false", Some("nxdomain")), NX as u64);
    let d = DELAY.as_secs_f64();
    for p in points
        .iter()
        .filter(|p| attr(p, "sonde.dns.cache_hit").as_deref() == Some("false"))
    {
        // The bucket whose (lower, upper] holds D: every miss waited at least D, and the
        // rest of its path (two loopback dnsmasq hops) is far below the bucket's width.
        let i = p.explicit_bounds.partition_point(|b| *b < d);
        assert_eq!(
            p.bucket_counts[i], p.count,
            "misses in D's bucket (.., {}]: {p:?}",
            p.explicit_bounds[i]
        );
        let name = attr(p, "dns.question.name").expect("question_names: all");
        assert!(name.ends_with(&zone), "{name}");
    }
    for p in points
        .iter()
        .filter(|p| attr(p, "sonde.dns.cache_hit").as_deref() == Some("true"))
    {
        let i = p.explicit_bounds.partition_point(|b| *b < d);
        assert_eq!(
            p.bucket_counts[..i].iter().sum::<u64>(),
            p.count,
            "hits faster than D: {p:?}"
        );
    }
    assert_eq!(
        latest(
            &got,
            "sonde.probe.status",
            &[
                ("sonde.probe", "dns.egress"),
                ("sonde.probe.state", "attached")
            ]
        ),
        Some(1.0)
    );
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
}

/// How long the unseen resolver holds each answer: every lookup's latency is at least this.
const REMOTE_DELAY: Duration = Duration::from_millis(60);

/// Answers the DNS queries to `port` that arrive on `veth-b` of namespace `ns` from an
/// AF_PACKET socket, after REMOTE_DELAY: the query turned around (addresses and ports
/// swapped, QR and RA set, no answer records, NXDOMAIN for names whose first label starts
/// with "nx", NOERROR otherwise, no UDP checksum). No IP socket sends or receives these
/// packets, so no cgroup_skb program sees this side: to Sonde it is a remote resolver.
fn unseen_resolver(ns: &str, port: u16, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    NetnsPair::in_ns(ns, move || {
        let fd = packet_socket("veth-b");
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Some(n) = recv_frame(&fd, &mut buf) else {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            let f = &buf[..n];
            // Ethernet, IPv4, UDP to `port`, and a DNS header with a question.
            if n < 14 + 20 + 8 + 12 || f[12..14] != [0x08, 0x00] || f[23] != 17 {
                continue;
            }
            let udp = 14 + usize::from(f[14] & 0x0f) * 4;
            let dns = udp + 8;
            if n < dns + 13 || u16::from_be_bytes([f[udp + 2], f[udp + 3]]) != port {
                continue;
            }
            let mut r = f.to_vec();
            r[0..6].copy_from_slice(&f[6..12]);
            r[6..12].copy_from_slice(&f[0..6]);
            r[26..30].copy_from_slice(&f[30..34]); // the IP checksum does not change
            r[30..34].copy_from_slice(&f[26..30]);
            r[udp..udp + 2].copy_from_slice(&f[udp + 2..udp + 4]);
            r[udp + 2..udp + 4].copy_from_slice(&f[udp..udp + 2]);
            r[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
            let nx = f[dns + 13..].starts_with(b"nx");
            r[dns + 2] |= 0x80;
            r[dns + 3] = 0x80 | if nx { 3 } else { 0 };
            std::thread::sleep(REMOTE_DELAY);
            send_frame(&fd, &mut r);
        }
    })
}

#[test]
fn lookups_to_a_resolver_sonde_cannot_see_show_both_directions() {
    require_root();
    const OK: usize = 5;
    const NX: usize = 3;
    // A port of this run's own: Sonde counts no other session's DNS, and nobody else's
    // Sonde watches this traffic.
    let port = 20_000 + (std::process::id() % 30_000) as u16;
    let pair = NetnsPair::new("dns");
    let server = NetnsPair::ADDR_B;
    // Namespace B's own stack must neither answer nor refuse (an ICMP port unreachable
    // would end the client's wait): without an address it drops the queries, and A
    // reaches B's interface through a fixed neighbour entry instead of ARP.
    run("ip", &["-n", &pair.b, "addr", "flush", "dev", "veth-b"]);
    let link = run(
        "ip",
        &["-n", &pair.b, "-br", "link", "show", "dev", "veth-b"],
    );
    let mac = link
        .split_whitespace()
        .nth(2)
        .expect("veth-b's address")
        .to_owned();
    run(
        "ip",
        &[
            "-n",
            &pair.a,
            "neigh",
            "replace",
            &server.to_string(),
            "lladdr",
            &mac,
            "dev",
            "veth-a",
            "nud",
            "permanent",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let responder = unseen_resolver(&pair.b, port, stop.clone());
    let client_ns = pair.a.clone();
    let ask = |names: Vec<String>, wait: Duration| {
        NetnsPair::in_ns(&client_ns, move || {
            names
                .iter()
                .map(|n| query_on(server, port, n, wait))
                .collect::<Vec<_>>()
        })
        .join()
        .expect("the client thread")
    };
    // Before Sonde starts, so not counted: the path answers (once the responder's
    // socket is open).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ask(vec!["ready.remote.test".into()], Duration::from_secs(1)) != [Some(0)] {
        assert!(
            std::time::Instant::now() < deadline,
            "the unseen resolver did not answer within 20 s"
        );
    }

    let rx = OtlpReceiver::start(Proto::Grpc);
    let yaml = format!(
        "attributes:\n  process_pid: true\ncollection:\n  interval: 300ms\n\
         probes:\n  dns:\n    ports: [{port}]\n    question_names: all\n"
    );
    let mut sonde = Sonde::start(&rx.env(), Some(&yaml));
    sonde.wait_started();
    let names = (0..OK)
        .map(|i| format!("h{i}.remote.test"))
        .chain((0..NX).map(|i| format!("nx{i}.remote.test")))
        .collect();
    let want = [vec![Some(0); OK], vec![Some(3); NX]].concat();
    assert_eq!(ask(names, Duration::from_secs(10)), want);

    let peer = server.to_string();
    let pid = std::process::id().to_string();
    let queries = |e: &[Export]| {
        latest(
            e,
            "sonde.dns.queries",
            &[("network.peer.address", &peer), ("process.pid", &pid)],
        )
        .unwrap_or(0.0)
    };
    let failures = |e: &[Export], kind: &str| {
        latest(
            e,
            "sonde.dns.failures",
            &[("network.peer.address", &peer), ("error.type", kind)],
        )
        .unwrap_or(0.0)
    };
    let got = rx.wait_for("every query and its answer", WAIT, |e| {
        queries(e) >= (OK + NX) as f64 && failures(e, "nxdomain") >= NX as f64
    });
    let n = got.len();
    let got = rx.wait_for("two more exports", WAIT, |e| e.len() >= n + 2);
    stop.store(true, Ordering::Relaxed);
    responder.join().expect("the responder");
    let ctx = sonde.stderr();
    assert_eq!(queries(&got), (OK + NX) as f64, "each query once: {ctx}");
    assert_eq!(failures(&got, "nxdomain"), NX as f64);
    assert_eq!(
        failures(&got, "timeout"),
        0.0,
        "every response was seen arriving"
    );
    let points: Vec<HistogramDataPoint> = histograms(&got, "dns.lookup.duration")
        .into_iter()
        .filter(|p| attr(p, "network.peer.address").as_deref() == Some(peer.as_str()))
        .collect();
    assert_eq!(
        points.iter().map(|p| p.count).sum::<u64>(),
        (OK + NX) as u64,
        "a latency per lookup: {points:?}"
    );
    let d = REMOTE_DELAY.as_secs_f64();
    for p in &points {
        assert_eq!(
            attr(p, "sonde.dns.cache_hit"),
            None,
            "no cache-hit value for a resolver off this host"
        );
        let below = p.explicit_bounds.partition_point(|b| *b < d);
        assert_eq!(
            p.bucket_counts[..below].iter().sum::<u64>(),
            0,
            "every lookup waited for the resolver: {p:?}"
        );
        assert!(p.sum.unwrap_or(0.0) >= p.count as f64 * d, "{p:?}");
    }
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
}

/// A lookup whose response the probe could not hand over (its ring was full) is not
/// reported as a timeout: the response may have come, and here it did. Sonde is stopped
/// (SIGSTOP) so that nothing drains its ring; one query goes to a resolver that answers
/// after a second, and a flood of queries to a resolver that never answers fills the ring
/// before that answer leaves.
#[test]
fn a_lookup_whose_response_record_was_lost_is_not_reported_as_a_timeout() {
    require_root();
    const ANSWER_AFTER: Duration = Duration::from_secs(1);
    const FLOOD: u16 = 20_000; // several times what the 1 MiB ring holds

    let [slow, silent, marker, _] = addresses();
    // A DNS port of the test's own: the flood is not DNS to other tests' Sondes.
    let slow_sock = UdpSocket::bind((slow, 0)).expect("bind the slow resolver");
    let port = slow_sock.local_addr().expect("its port").port();
    let responder = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let (n, from) = slow_sock.recv_from(&mut buf).expect("the query");
        std::thread::sleep(ANSWER_AFTER);
        buf[2] |= 0x80; // QR: a response, NOERROR, no answers
        slow_sock.send_to(&buf[..n], from).expect("answer");
    });
    // Bound and never read: queries to them get no answer and no ICMP error.
    let _silent = UdpSocket::bind((silent, port)).expect("bind the silent resolver");
    let _marker = UdpSocket::bind((marker, port)).expect("bind the marker resolver");

    let rx = OtlpReceiver::start(Proto::Grpc);
    let yaml = format!(
        "collection:\n  interval: 300ms\nprobes:\n  dns:\n    timeout: 3s\n    ports: [{port}]\n"
    );
    let mut sonde = Sonde::start(&rx.env(), Some(&yaml));
    sonde.wait_started();

    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(sonde.pid(), libc::SIGSTOP) }, 0);
    let asked =
        std::thread::spawn(move || query_on(slow, port, "lost.test", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(100));
    // Past 96 bytes of payload each packet takes a full record (~400 bytes): the ring
    // holds ~2 500 of them, fewer than the 4 096 lookups the reader keeps open, so the
    // marker below is still tracked when it comes.
    let long = format!("{}.{}.flood.test", "a".repeat(60), "b".repeat(60));
    let flood = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the flood");
    for id in 0..FLOOD {
        flood
            .send_to(&encode_query(id, &long), (silent, port))
            .expect("flood");
    }
    assert_eq!(
        asked.join().expect("query thread"),
        Some(0),
        "the slow resolver answered"
    );
    responder.join().expect("responder");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(sonde.pid(), libc::SIGCONT) }, 0);

    let slow_s = slow.to_string();
    let marker_s = marker.to_string();
    let lost = |e: &[Export]| {
        latest(
            e,
            "sonde.probe.events.lost",
            &[
                ("sonde.probe", "dns"),
                ("sonde.loss.reason", "ringbuf_full"),
            ],
        )
        .unwrap_or(0.0)
    };
    rx.wait_until("the probe's losses exported", WAIT, |e| {
        (lost(e) > 0.0)
            .then_some(())
            .ok_or_else(|| "no ringbuf_full loss for dns yet".to_owned())
    });
    // Sent after the collection that saw the losses: its timeout is judged with no loss
    // in its window, and by the time it is reported the slow lookup has been judged too.
    assert_eq!(
        query_on(marker, port, "marker.test", Duration::from_millis(200)),
        None
    );
    let failures = |e: &[Export], addr: &str| {
        latest(
            e,
            "sonde.dns.failures",
            &[("network.peer.address", addr), ("error.type", "timeout")],
        )
        .unwrap_or(0.0)
    };
    let got = rx.wait_until("the marker's timeout", WAIT, |e| {
        (failures(e, &marker_s) >= 1.0)
            .then_some(())
            .ok_or_else(|| format!("marker timeouts {}", failures(e, &marker_s)))
    });
    let ctx = sonde.stderr();
    assert_eq!(
        latest(
            &got,
            "sonde.dns.queries",
            &[("network.peer.address", &slow_s)]
        ),
        Some(1.0),
        "the slow resolver's query was seen: {ctx}"
    );
    assert_eq!(
        failures(&got, &slow_s),
        0.0,
        "a lookup whose answer was lost with the ring's records is not a timeout: {ctx}"
    );
    assert_eq!(failures(&got, &marker_s), 1.0);
    assert!(
        ctx.contains("not reported as timeouts"),
        "the agent says why once: {ctx}"
    );
}
