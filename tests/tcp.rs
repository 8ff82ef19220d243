//! The tcp probe against real workloads with known ground truth, at the collector level:
//! the family is loaded in-process (as `sonde run` loads it) and the test reads what the
//! collector attributes to the test's own ports, so other traffic on the machine cannot
//! disturb the counts.
//!
//! - K connections over loopback (IPv4 and IPv6): opened and closed rise by exactly K on
//!   each side, and the bytes per side equal what the test wrote.
//! - A connect to a closed port: one failed connect with `refused`, and a received reset.
//!
//! Needs root (eBPF).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sonde::collect::tcp::{Direction, PortAttr, TcpLedger, Who};
use sonde::source::tcp::TcpSource;

const WAIT: Duration = Duration::from_secs(60);
const K: usize = 20;
const REPLY: usize = 100;

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads eBPF programs and needs root (CAP_BPF + CAP_PERFMON): run it with sudo"
    );
}

struct Loaded {
    _rt: tokio::runtime::Runtime,
    _family: sonde::probe::LoadedFamily,
    source: TcpSource,
}

fn load() -> Loaded {
    require_root();
    if let Err(e) = sonde::probe::tracefs::ensure_mounted() {
        panic!("tracefs is needed for the tcp tracepoints and could not be mounted: {e}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let _enter = rt.enter();
    let (family, source) = sonde::source::tcp::load(1_000_000).expect("loading the tcp family");
    for r in &family.reports {
        assert_eq!(
            r.state,
            sonde::probe::ProbeState::Attached,
            "{} did not attach",
            r.probe
        );
    }
    let source = source.expect("tcp collector");
    Loaded {
        _rt: rt,
        _family: family,
        source,
    }
}

fn sum_where(
    c: Option<&sonde::aggregate::bounded::BoundedCounter<Who>>,
    f: impl Fn(&Who) -> bool,
) -> u64 {
    c.map(|c| {
        c.snapshot()
            .0
            .iter()
            .filter(|(w, _)| f(w))
            .map(|(_, v)| v)
            .sum()
    })
    .unwrap_or(0)
}

/// Polls the ledger until `done` holds (the ring buffer is drained asynchronously);
/// fails with `what` if it never does.
fn wait_ledger(src: &TcpSource, what: &str, done: impl Fn(&TcpLedger) -> bool) -> TcpLedger {
    let deadline = Instant::now() + WAIT;
    loop {
        src.collector.walk();
        let l = src.collector.ledger();
        if done(&l) {
            return l;
        }
        assert!(Instant::now() < deadline, "never saw {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_connections(ip: IpAddr) -> (u16, u64) {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind on loopback");
    let port = listener.local_addr().expect("local addr").port();
    let server = std::thread::spawn(move || {
        for _ in 0..K {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).expect("server read");
            s.write_all(&[7u8; REPLY]).expect("server write");
        }
    });
    let mut written = 0u64;
    for i in 0..K {
        let mut c = TcpStream::connect((ip, port)).expect("connect");
        let data = vec![1u8; 1000 + i];
        c.write_all(&data).expect("client write");
        written += data.len() as u64;
        c.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut reply = Vec::new();
        c.read_to_end(&mut reply).expect("client read");
        assert_eq!(reply.len(), REPLY);
    }
    server.join().expect("server thread");
    (port, written)
}

fn check_loopback(ip: IpAddr) {
    let loaded = load();
    let src = &loaded.source;
    let v6 = ip.is_ipv6();
    let (port, written) = run_connections(ip);
    let me = std::process::id();
    let outbound = move |w: &Who| w.port == PortAttr::Peer(port);
    let inbound = move |w: &Who| w.port == PortAttr::Server(port);
    let l = wait_ledger(src, "K closes on each side", |l| {
        sum_where(l.closed.get(&(Direction::Outbound, v6)), outbound) >= K as u64
            && sum_where(l.closed.get(&(Direction::Inbound, v6)), inbound) >= K as u64
    });
    let k = K as u64;
    assert_eq!(
        sum_where(l.opened.get(&(Direction::Outbound, v6)), outbound),
        k
    );
    assert_eq!(
        sum_where(l.opened.get(&(Direction::Inbound, v6)), inbound),
        k
    );
    assert_eq!(
        sum_where(l.closed.get(&(Direction::Outbound, v6)), outbound),
        k
    );
    assert_eq!(
        sum_where(l.closed.get(&(Direction::Inbound, v6)), inbound),
        k
    );
    // Attribution: both ends are this process (the listener's owner for inbound).
    let by_me = |w: &Who| w.pid == me && (outbound(w) || inbound(w));
    assert_eq!(
        sum_where(l.opened.get(&(Direction::Outbound, v6)), by_me)
            + sum_where(l.opened.get(&(Direction::Inbound, v6)), by_me),
        2 * k
    );
    // Bytes: what the client wrote is acked on the client and received on the server.
    assert_eq!(
        sum_where(Some(&l.transmitted), outbound),
        written,
        "client bytes acked"
    );
    assert_eq!(
        sum_where(Some(&l.received), inbound),
        written,
        "server bytes received"
    );
    assert_eq!(
        sum_where(Some(&l.transmitted), inbound),
        k * REPLY as u64,
        "server bytes acked"
    );
    assert_eq!(
        sum_where(Some(&l.received), outbound),
        k * REPLY as u64,
        "client bytes received"
    );
    let peer = if v6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    assert!(l.closed[&(Direction::Outbound, v6)]
        .snapshot()
        .0
        .iter()
        .any(|(w, _)| w.peer == peer && outbound(w)));
}

#[test]
fn loopback_ipv4_connections_are_counted_exactly() {
    check_loopback(IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn loopback_ipv6_connections_are_counted_exactly() {
    check_loopback(IpAddr::V6(Ipv6Addr::LOCALHOST));
}

#[test]
fn connect_to_a_closed_port_is_a_failed_connect_and_a_received_reset() {
    let loaded = load();
    let src = &loaded.source;
    // A port that was just free: bind, read the port, close.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let resets_before = src.collector.read().expect("read").rst_received;
    let err = TcpStream::connect(("127.0.0.1", port)).expect_err("nothing listens there");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let failed_here = move |w: &Who| w.port == PortAttr::Peer(port);
    let l = wait_ledger(src, "the failed connect", |l| {
        sum_where(l.failed.get(&111), failed_here) >= 1
    });
    assert_eq!(
        sum_where(l.failed.get(&111), failed_here),
        1,
        "one refused connect"
    );
    assert_eq!(
        l.opened
            .values()
            .map(|c| sum_where(Some(c), failed_here))
            .sum::<u64>(),
        0,
        "a refused connect never opened"
    );
    let resets_after = src.collector.read().expect("read").rst_received;
    assert!(
        resets_after > resets_before,
        "the RST that refused the connect was received ({resets_before} -> {resets_after})"
    );
}
