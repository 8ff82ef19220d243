//! The tcp probe against real workloads with known ground truth, at the collector level:
//! the family is loaded in-process (as `sonde run` loads it) and the test reads what the
//! collector attributes to the test's own ports, so other traffic on the machine cannot
//! disturb the counts.
//!
//! - K connections over loopback (IPv4 and IPv6): opened and closed rise by exactly K on
//!   each side, and the bytes per side equal what the test wrote.
//! - A connect to a closed port: one failed connect with `refused`, and a received reset.
//! - An open connection's bytes are counted before it closes, and not again at close.
//! - 5% random loss (nftables `numgen random`) between two network namespaces of the
//!   test's own: retransmitted segments equal both namespaces' TcpRetransSegs delta.
//! - A delay line of the test's own (AF_PACKET bridge in a middle namespace holding
//!   client-to-server frames for D; this kernel has no netem): both ends' srtt land in
//!   D's bucket of the grid, and outbound durations hold the connections' known
//!   lifetimes; a connection held open across several intervals shows its srtt in D's
//!   bucket at every interval, before it closes.
//!
//! Needs root (eBPF, network namespaces).

mod common;

use common::netns::{packet_socket, recv_frame, send_frame, NetnsPair};
use common::run;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sonde::family::tcp::collect::{Direction, PortAttr, TcpLedger, Who};
use sonde::family::tcp::TcpSource;

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

/// The RTT and duration histograms and the retransmit counter are host-wide, so the two
/// tests that assert on their exact contents must not share the window with each other
/// (the loss test's retransmitted handshakes carry RTTs far above the delay test's D).
static HOSTWIDE_HISTOGRAMS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn hostwide() -> std::sync::MutexGuard<'static, ()> {
    HOSTWIDE_HISTOGRAMS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn load() -> Loaded {
    load_sized(&[])
}

/// As [`load`], with other bounds for the maps in `map_sizes` (name, max_entries).
fn load_sized(map_sizes: &[(&str, u32)]) -> Loaded {
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
    let series = sonde::aggregate::bounded::SeriesPolicy {
        limit: 1_000_000,
        ttl: Duration::ZERO,
        start_unix_nano: sonde::unix_nanos(),
    };
    let (family, source) = sonde::family::tcp::load_sized(
        series,
        None,
        // pids in the keys: these tests find their own connections by pid.
        &sonde::cgroup::Attribution::new(None, true),
        map_sizes,
    )
    .expect("loading the tcp family");
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

/// The pid of a series' process (the tests load with pids in the keys).
fn pid_of(w: &Who) -> Option<u32> {
    w.process.as_ref().and_then(|p| p.pid)
}

fn sum_where(
    c: Option<&sonde::aggregate::bounded::BoundedCounter<Who>>,
    f: impl Fn(&Who) -> bool,
) -> u64 {
    c.map(|c| {
        c.snapshot()
            .0
            .iter()
            .filter(|p| f(&p.key))
            .map(|p| p.value)
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
        let l = src.collector.ledger(sonde::unix_nanos());
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
    let by_me = |w: &Who| pid_of(w) == Some(me) && (outbound(w) || inbound(w));
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
        .any(|p| p.key.peer == peer && outbound(&p.key)));
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

#[test]
fn open_connections_count_their_bytes_before_they_close() {
    let loaded = load();
    let src = &loaded.source;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
    let port = listener.local_addr().expect("local addr").port();
    const N: usize = 50_000;
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(&vec![3u8; N]).expect("client write");
    let mut got = vec![0u8; N];
    server.read_exact(&mut got).expect("server read");
    // The reply proves the client's bytes were acked before the client's next receive,
    // where the probe reads its totals.
    server.write_all(b"k").expect("server write");
    let mut one = [0u8; 1];
    client.read_exact(&mut one).expect("client read");
    let outbound = move |w: &Who| w.port == PortAttr::Peer(port);
    let inbound = move |w: &Who| w.port == PortAttr::Server(port);
    let l = wait_ledger(src, "the open connection's bytes", |l| {
        sum_where(Some(&l.transmitted), outbound) >= N as u64
            && sum_where(Some(&l.received), inbound) >= N as u64
    });
    assert_eq!(sum_where(Some(&l.transmitted), outbound), N as u64);
    assert_eq!(sum_where(Some(&l.received), inbound), N as u64);
    assert_eq!(
        l.closed
            .values()
            .map(|c| sum_where(Some(c), |w| outbound(w) || inbound(w)))
            .sum::<u64>(),
        0,
        "still open"
    );
    drop(client);
    drop(server);
    // At close, nothing is counted twice.
    let l = wait_ledger(src, "both closes", |l| {
        l.closed
            .values()
            .map(|c| sum_where(Some(c), |w| outbound(w) || inbound(w)))
            .sum::<u64>()
            == 2
    });
    assert_eq!(sum_where(Some(&l.transmitted), outbound), N as u64);
    assert_eq!(sum_where(Some(&l.received), inbound), N as u64);
    assert_eq!(sum_where(Some(&l.transmitted), inbound), 1);
}

impl NetnsPair {
    /// Drops `percent`% of the TCP packets arriving in each namespace, at random.
    fn add_loss(&self, percent: u32) {
        let pct = percent.to_string();
        for ns in [&self.a, &self.b] {
            let nft = |args: &[&str]| {
                let mut all = vec!["netns", "exec", ns.as_str(), "nft"];
                all.extend_from_slice(args);
                run("ip", &all);
            };
            nft(&["add", "table", "inet", "sonde_loss"]);
            nft(&[
                "add",
                "chain",
                "inet",
                "sonde_loss",
                "input",
                "{",
                "type",
                "filter",
                "hook",
                "input",
                "priority",
                "0",
                ";",
                "}",
            ]);
            nft(&[
                "add",
                "rule",
                "inet",
                "sonde_loss",
                "input",
                "meta",
                "l4proto",
                "tcp",
                "numgen",
                "random",
                "mod",
                "100",
                "<",
                &pct,
                "drop",
            ]);
        }
    }
}

/// TcpRetransSegs of the calling thread's network namespace.
fn retrans_segs() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("read snmp");
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        panic!("no Tcp lines in /proc/net/snmp");
    };
    let i = names
        .split_whitespace()
        .position(|n| n == "RetransSegs")
        .expect("RetransSegs column");
    values
        .split_whitespace()
        .nth(i)
        .and_then(|v| v.parse().ok())
        .expect("RetransSegs value")
}

#[test]
fn retransmits_under_random_loss_equal_the_kernels_counter() {
    let _serial = hostwide();
    let loaded = load();
    let src = &loaded.source;
    let pair = NetnsPair::new("tcp");
    pair.add_loss(5);
    const CONNS: usize = 10;
    const BYTES: usize = 64 * 1024;

    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let server = NetnsPair::in_ns(&pair.b, move || {
        let before = retrans_segs();
        let listener =
            TcpListener::bind(SocketAddr::new(IpAddr::V4(NetnsPair::ADDR_B), 0)).expect("bind");
        port_tx
            .send(listener.local_addr().expect("addr").port())
            .expect("send port");
        for _ in 0..CONNS {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).expect("server read");
            assert_eq!(buf.len(), BYTES);
            s.write_all(&vec![5u8; BYTES]).expect("server write");
        }
        before
    });
    let port = port_rx.recv().expect("server port");
    let client = NetnsPair::in_ns(&pair.a, move || {
        let before = retrans_segs();
        for _ in 0..CONNS {
            let mut c = TcpStream::connect((NetnsPair::ADDR_B, port)).expect("connect");
            c.write_all(&vec![4u8; BYTES]).expect("client write");
            c.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut reply = Vec::new();
            c.read_to_end(&mut reply).expect("client read");
            assert_eq!(reply.len(), BYTES);
        }
        before
    });
    let client_before = client.join().expect("client thread");
    let server_before = server.join().expect("server thread");

    let ours = move |w: &Who| w.port == PortAttr::Peer(port) || w.port == PortAttr::Server(port);
    let l = wait_ledger(src, "every connection closed on both sides", |l| {
        l.closed
            .values()
            .map(|c| sum_where(Some(c), ours))
            .sum::<u64>()
            == 2 * CONNS as u64
    });
    // Every socket has reached CLOSE, so nothing more can be retransmitted: read the
    // kernel's counters of both namespaces now.
    let after = |ns: &str| {
        NetnsPair::in_ns(ns, retrans_segs)
            .join()
            .expect("snmp thread")
    };
    let kernel = (after(&pair.a) - client_before) + (after(&pair.b) - server_before);
    let probe = sum_where(Some(&l.retransmits), ours);
    eprintln!("retransmitted segments: probe {probe}, TcpRetransSegs {kernel}");
    // Inbound peers are the client's address, outbound ones the server's.
    let peer_is = |a: Ipv4Addr| move |w: &Who| ours(w) && w.peer == IpAddr::V4(a);
    assert_eq!(
        l.closed
            .values()
            .map(|c| sum_where(Some(c), peer_is(NetnsPair::ADDR_A)))
            .sum::<u64>(),
        CONNS as u64
    );
    assert_eq!(
        l.closed
            .values()
            .map(|c| sum_where(Some(c), peer_is(NetnsPair::ADDR_B)))
            .sum::<u64>(),
        CONNS as u64
    );
    assert!(
        kernel > 0,
        "5% loss caused no retransmit: the loss rule did not apply"
    );
    assert_eq!(
        probe, kernel,
        "retransmitted segments: probe vs TcpRetransSegs"
    );
    assert_eq!(
        sum_where(Some(&l.transmitted), ours),
        2 * (CONNS * BYTES) as u64,
        "bytes are exact under loss too"
    );
}

/// The client's namespace, a middle namespace and the server's, joined by two veth
/// pairs, with a delay line of the test's own in the middle: it bridges frames between
/// its two interfaces through AF_PACKET sockets and holds every client-to-server frame
/// for `delay` first (the kernel here has no netem). Deleted on drop.
struct DelayedPath {
    ends: NetnsPair,
    middle: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    line: Option<std::thread::JoinHandle<()>>,
}

impl DelayedPath {
    fn new(delay: Duration) -> Self {
        let tag = std::process::id();
        let ends = NetnsPair {
            a: format!("sonde-tcp-da-{tag}"),
            b: format!("sonde-tcp-db-{tag}"),
        };
        let middle = format!("sonde-tcp-dm-{tag}");
        for ns in [&ends.a, &ends.b, &middle] {
            run("ip", &["netns", "add", ns]);
        }
        run(
            "ip",
            &[
                "link", "add", "veth-a", "netns", &ends.a, "type", "veth", "peer", "name", "m-a",
                "netns", &middle,
            ],
        );
        run(
            "ip",
            &[
                "link", "add", "veth-b", "netns", &ends.b, "type", "veth", "peer", "name", "m-b",
                "netns", &middle,
            ],
        );
        for (ns, dev, addr) in [
            (&ends.a, "veth-a", "10.213.0.1/30"),
            (&ends.b, "veth-b", "10.213.0.2/30"),
        ] {
            run("ip", &["-n", ns, "addr", "add", addr, "dev", dev]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
            // Immediate ACKs, so RTT samples hold the path's delay and no delayed-ACK wait.
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "route",
                    "change",
                    "10.213.0.0/30",
                    "dev",
                    dev,
                    "quickack",
                    "1",
                ],
            );
        }
        for dev in ["m-a", "m-b"] {
            run("ip", &["-n", &middle, "link", "set", dev, "up"]);
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let line = NetnsPair::in_ns(&middle, move || {
            use std::os::fd::AsRawFd;
            let from_a = packet_socket("m-a");
            let from_b = packet_socket("m-b");
            let mut held: std::collections::VecDeque<(Instant, Vec<u8>)> = Default::default();
            let mut buf = vec![0u8; 65536];
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let now = Instant::now();
                while held.front().is_some_and(|(due, _)| *due <= now) {
                    if let Some((_, mut f)) = held.pop_front() {
                        send_frame(&from_b, &mut f);
                    }
                }
                let wait = held
                    .front()
                    .map(|(due, _)| due.saturating_duration_since(now))
                    .unwrap_or(Duration::from_millis(10))
                    .min(Duration::from_millis(10));
                let mut fds = [
                    libc::pollfd {
                        fd: from_a.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: from_b.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // SAFETY: fds is a valid array of two pollfd.
                unsafe { libc::poll(fds.as_mut_ptr(), 2, wait.as_millis() as i32) };
                while let Some(n) = recv_frame(&from_a, &mut buf) {
                    if n > 0 {
                        held.push_back((Instant::now() + delay, buf[..n].to_vec()));
                    }
                }
                while let Some(n) = recv_frame(&from_b, &mut buf) {
                    if n > 0 {
                        send_frame(&from_a, &mut buf[..n]);
                    }
                }
            }
        });
        Self {
            ends,
            middle,
            stop,
            line: Some(line),
        }
    }
}

impl Drop for DelayedPath {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(l) = self.line.take() {
            let _ = l.join();
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.middle])
            .status();
        // self.ends deletes the two end namespaces.
    }
}

/// The grid slot holding `ns` (as the probe computes it: both are tested against the
/// same reference in `sonde_probes::grid`).
fn slot_of(ns: u64) -> usize {
    sonde_probes::grid::slot(ns)
}

/// A server in namespace `ns` on B's address: accepts `conns` connections, echoes each
/// one's 1000-byte request and reads until the client closes. Returns it and its port.
fn echo_server(ns: &str, conns: usize) -> (std::thread::JoinHandle<()>, u16) {
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let server = NetnsPair::in_ns(ns, move || {
        let listener =
            TcpListener::bind(SocketAddr::new(IpAddr::V4(NetnsPair::ADDR_B), 0)).expect("bind");
        port_tx
            .send(listener.local_addr().expect("addr").port())
            .expect("send port");
        let mut handles = Vec::new();
        for _ in 0..conns {
            let (mut s, _) = listener.accept().expect("accept");
            handles.push(std::thread::spawn(move || {
                let mut req = [0u8; 1000];
                s.read_exact(&mut req).expect("server read");
                s.write_all(&req).expect("server write");
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).expect("server drain");
            }));
        }
        for h in handles {
            h.join().expect("server connection");
        }
    });
    (server, port_rx.recv().expect("server port"))
}

/// The delay line's D: 149 ms lies in the grid bucket (2^-2.75, 2^-2.5] s = (148.65 ms,
/// 176.78 ms], which leaves 27 ms for the bridge and the scheduler on a busy machine.
const DELAY: Duration = Duration::from_millis(149);

#[test]
fn a_known_delay_puts_the_rtt_in_its_bucket_and_durations_hold_lifetimes() {
    let _serial = hostwide();
    let loaded = load();
    let src = &loaded.source;
    const LIFETIME: Duration = Duration::from_millis(1200);
    const CONNS: usize = 4;
    let path = DelayedPath::new(DELAY);
    let before = src.collector.read().expect("read");

    let (server, port) = echo_server(&path.ends.b, CONNS);
    let client = NetnsPair::in_ns(&path.ends.a, move || {
        // Resolve each end's MAC first (a refused connect makes both sides ARP), so no
        // SYN of the measured connections waits on neighbour discovery.
        let warm = SocketAddr::new(IpAddr::V4(NetnsPair::ADDR_B), 9);
        let _ = TcpStream::connect_timeout(&warm, Duration::from_secs(30));
        let conns: Vec<_> = (0..CONNS)
            .map(|_| {
                std::thread::spawn(move || {
                    let opened = Instant::now();
                    let mut c = TcpStream::connect((NetnsPair::ADDR_B, port)).expect("connect");
                    c.write_all(&[1u8; 1000]).expect("client write");
                    let mut reply = [0u8; 1000];
                    c.read_exact(&mut reply).expect("client read");
                    // A known lifetime: at least LIFETIME from connect to close.
                    std::thread::sleep(LIFETIME.saturating_sub(opened.elapsed()));
                })
            })
            .collect();
        for c in conns {
            c.join().expect("client connection");
        }
    });
    client.join().expect("client thread");
    server.join().expect("server thread");
    let ours = move |w: &Who| w.port == PortAttr::Peer(port) || w.port == PortAttr::Server(port);
    wait_ledger(src, "every connection closed on both sides", |l| {
        l.closed
            .values()
            .map(|c| sum_where(Some(c), ours))
            .sum::<u64>()
            == 2 * CONNS as u64
    });
    let after = src.collector.read().expect("read");

    let d = slot_of(DELAY.as_nanos() as u64);
    let rtt: Vec<u64> = (0..after.rtt_v4.slots.len())
        .map(|i| after.rtt_v4.slots[i] - before.rtt_v4.slots[i])
        .collect();
    let nonzero: Vec<(usize, u64)> = rtt
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| *v > 0)
        .collect();
    eprintln!("rtt slot deltas (D in slot {d}): {nonzero:?}");
    assert_eq!(
        rtt[d],
        2 * CONNS as u64,
        "both ends of every connection have their srtt in D's bucket ({} ms)",
        DELAY.as_millis()
    );
    assert_eq!(
        rtt[d + 1..].iter().sum::<u64>(),
        0,
        "nothing above D's bucket"
    );

    let l = slot_of(LIFETIME.as_nanos() as u64);
    let long: u64 = (l..after.duration_out.slots.len())
        .map(|i| after.duration_out.slots[i] - before.duration_out.slots[i])
        .sum();
    assert!(
        long >= CONNS as u64,
        "every outbound connection lived at least {LIFETIME:?}: {long} in slots >= {l}"
    );
    let sum = after.duration_out.sum_ns - before.duration_out.sum_ns;
    assert!(sum >= CONNS as u64 * LIFETIME.as_nanos() as u64);
}

#[test]
fn an_open_connection_shows_its_rtt_in_every_interval_while_it_lives() {
    let _serial = hostwide();
    let loaded = load();
    let src = &loaded.source;
    const WALKS: u64 = 3;
    let path = DelayedPath::new(DELAY);

    let (server, port) = echo_server(&path.ends.b, 1);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (close_tx, close_rx) = std::sync::mpsc::channel::<()>();
    let client = NetnsPair::in_ns(&path.ends.a, move || {
        let warm = SocketAddr::new(IpAddr::V4(NetnsPair::ADDR_B), 9);
        let _ = TcpStream::connect_timeout(&warm, Duration::from_secs(30));
        let mut c = TcpStream::connect((NetnsPair::ADDR_B, port)).expect("connect");
        c.write_all(&[1u8; 1000]).expect("client write");
        let mut reply = [0u8; 1000];
        c.read_exact(&mut reply).expect("client read");
        ready_tx.send(()).expect("ready");
        // Held open until the test has walked the connections WALKS times.
        let _ = close_rx.recv();
    });
    ready_rx
        .recv()
        .expect("the connection carried its request and reply");

    // Each walk is one interval of the agent.
    let before = src.collector.ledger(sonde::unix_nanos()).rtt_live_v4;
    for _ in 0..WALKS {
        src.collector.walk();
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = src.collector.ledger(sonde::unix_nanos()).rtt_live_v4;
    let closed_before = src.collector.read().expect("read").rtt_v4;
    close_tx.send(()).expect("close");
    client.join().expect("client thread");
    server.join().expect("server thread");

    let d = slot_of(DELAY.as_nanos() as u64);
    let live: Vec<u64> = (0..after.slots.len())
        .map(|i| after.slots[i] - before.slots[i])
        .collect();
    let nonzero: Vec<(usize, u64)> = live
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| *v > 0)
        .collect();
    eprintln!("live rtt slot deltas (D in slot {d}): {nonzero:?}");
    assert_eq!(
        live[d],
        2 * WALKS,
        "both ends of the open connection show their srtt in D's bucket at every walk"
    );
    assert_eq!(
        live[d + 1..].iter().sum::<u64>(),
        0,
        "nothing above D's bucket"
    );
    // At close, the kernel's histogram takes both ends once more (the server's close
    // waits for the client's last ACK, which crosses the delay line).
    let at_or_above_d = |h: &sonde::family::tcp::collect::Hist| h.slots[d..].iter().sum::<u64>();
    let deadline = Instant::now() + WAIT;
    while at_or_above_d(&src.collector.read().expect("read").rtt_v4)
        < at_or_above_d(&closed_before) + 2
    {
        assert!(
            Instant::now() < deadline,
            "the closes' srtt never reached the kernel's histogram"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SO_LINGER {on, 0}: close(2) then sends a reset instead of a FIN.
fn linger_zero(s: &impl std::os::fd::AsRawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket fd we own, with a correctly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// The socket's TCP state number (tcpi_state, the first byte of struct tcp_info).
fn tcp_state(s: &impl std::os::fd::AsRawFd) -> u8 {
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is that large.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info[0]
}

const TCP_CLOSE: u8 = 7;

/// The kernel's connection entries whose local or remote port is one of `ports`.
fn entries_on(src: &TcpSource, ports: &[u16]) -> Vec<sonde_probes::abi::sonde_tcp_conn> {
    src.collector
        .entries()
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| ports.contains(&c.lport) || ports.contains(&c.rport))
        .collect()
}

/// Connections that die in every way the review found leaking, in bulk: the map's
/// entries for the test's ports return to zero (the kernel deletes an entry at CLOSE or,
/// failing that, when the socket is destroyed, and never makes one for a closed socket).
#[test]
fn dead_connections_leave_no_entries_behind() {
    let loaded = load();
    let src = &loaded.source;
    const N: usize = 100;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let doomed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let doomed_port = doomed.local_addr().expect("addr").port();
    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let ports = [port, doomed_port, closed_port];
    assert!(
        entries_on(src, &ports).is_empty(),
        "fresh ports have no entries"
    );

    // The peer resets after sending data (half the time after a half-close from the
    // client); the client reads that data after the reset has closed its socket.
    let mut reset = Vec::new();
    for i in 0..N {
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (mut s, _) = listener.accept().expect("accept");
        if i % 2 == 1 {
            c.shutdown(std::net::Shutdown::Write).expect("half-close");
            let mut b = [0u8; 1];
            assert_eq!(
                s.read(&mut b).expect("server read"),
                0,
                "EOF after half-close"
            );
        }
        s.write_all(&[9u8; 100]).expect("server write");
        linger_zero(&s);
        drop(s);
        let deadline = Instant::now() + WAIT;
        while tcp_state(&c) != TCP_CLOSE {
            assert!(
                Instant::now() < deadline,
                "the reset never reached the client"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut got = [0u8; 100];
        c.read_exact(&mut got)
            .expect("data queued before the reset");
        reset.push(c);
    }
    // The reset sockets stay open (in CLOSE) for now, so their memory cannot be reused
    // for a new socket whose entry would overwrite a leaked one.
    let left = entries_on(src, &ports);
    assert!(
        left.is_empty(),
        "{} entries for sockets already closed by a reset, e.g. {:?}",
        left.len(),
        left.first()
    );
    drop(reset);
    // Clients that reset before the server accepts.
    for _ in 0..N {
        let c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        linger_zero(&c);
    }
    for _ in 0..N {
        let (mut s, _) = listener.accept().expect("accept");
        let _ = s.read(&mut [0u8; 1]);
    }
    // A listener closed with unaccepted connections holding unread data: the kernel
    // resets them; their clients read after the reset.
    let clients: Vec<TcpStream> = (0..N)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", doomed_port)).expect("connect");
            c.write_all(&[1u8; 10]).expect("client write");
            c
        })
        .collect();
    drop(doomed);
    for mut c in clients {
        let _ = c.read(&mut [0u8; 1]);
    }
    // Handshakes answered by a reset (nothing listens).
    for _ in 0..N {
        TcpStream::connect(("127.0.0.1", closed_port)).expect_err("nothing listens there");
    }
    drop(listener);
    let deadline = Instant::now() + WAIT;
    loop {
        let left = entries_on(src, &ports);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} entries of dead connections left in tcp_conns, e.g. {:?}",
            left.len(),
            left.first()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The listeners (bound to ephemeral ports) are gone from the listener map too.
    wait_no_listener(&loaded, port);
    wait_no_listener(&loaded, doomed_port);
}

/// One of the family's kernel maps by name.
fn family_map<'a>(loaded: &'a Loaded, name: &str) -> &'a aya::maps::Map {
    loaded
        ._family
        .ebpf
        .map(name)
        .unwrap_or_else(|| panic!("the tcp object has no map {name}"))
}

/// Entries of the kernel's listener map for `port` (any namespace, family, address).
fn listeners_on(loaded: &Loaded, port: u16) -> usize {
    use sonde_probes::abi::{sonde_tcp_listener, sonde_tcp_listener_key};
    let map = family_map(loaded, sonde_probes::names::tcp::MAP_LISTENERS);
    let m = aya::maps::HashMap::<_, sonde_tcp_listener_key, sonde_tcp_listener>::try_from(map)
        .expect("tcp_listeners layout");
    m.keys().flatten().filter(|k| k.port == port).count()
}

/// Waits until `count` reads 0; `what` says what was left when it does not.
fn wait_none_left(what: &str, count: impl Fn() -> usize) {
    let deadline = Instant::now() + WAIT;
    while count() != 0 {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the listener map holds no entry for `port`.
fn wait_no_listener(loaded: &Loaded, port: u16) {
    wait_none_left(
        &format!("the listener map keeps an entry for closed port {port}"),
        || listeners_on(loaded, port),
    );
}

/// A network namespace of the test's own with loopback up; deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let ns = Self(format!("{tag}-{}", common::unique_suffix()));
        run("ip", &["netns", "add", &ns.0]);
        run("ip", &["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// A TCP listener on 127.0.0.1:`port` with SO_REUSEPORT (std cannot set it before bind).
fn reuseport_listener(port: u16) -> TcpListener {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket syscalls on an fd this function owns until it is handed to
    // TcpListener, with correctly sized arguments.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let listener = TcpListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_REUSEPORT: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        assert_eq!(libc::listen(fd, 128), 0, "listen");
        listener
    }
}

/// Another process listening on `port` (127.0.0.1, SO_REUSEPORT) in network namespace
/// `netns` (None: this one); killed on drop.
struct ForeignListener(std::process::Child);

impl ForeignListener {
    fn start(netns: Option<&str>, port: u16) -> Self {
        const SCRIPT: &str = "import socket,sys\n\
            s=socket.socket()\n\
            s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEPORT,1)\n\
            s.bind(('127.0.0.1',int(sys.argv[1])))\n\
            s.listen(128)\n\
            print('ready',flush=True)\n\
            sys.stdin.read()\n";
        let port = port.to_string();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", ns, "/usr/bin/python3"]);
                c
            }
            None => std::process::Command::new("/usr/bin/python3"),
        };
        cmd.args(["-c", SCRIPT, &port]);
        let (child, line) = spawn_listener(cmd, "its ready line");
        assert_eq!(line.trim(), "ready", "the foreign listener did not start");
        Self(child)
    }

    fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ForeignListener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Listener ownership is keyed by network namespace, address and port: a process that
/// listens on the same port in another namespace, or joins this listener's SO_REUSEPORT
/// group and leaves it, never takes over (or deletes) the attribution of inbound
/// connections here.
#[test]
fn listeners_elsewhere_or_in_a_reuseport_group_keep_the_owner() {
    let loaded = load();
    let src = &loaded.source;
    let netns = Netns::new("sonde-listen");
    const K: u64 = 10;
    let ours = reuseport_listener(0);
    let port = ours.local_addr().expect("addr").port();
    let me = std::process::id();
    let connect_k = || -> Vec<TcpStream> {
        (0..K)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
            .collect()
    };
    let inbound_here = move |w: &Who| w.port == PortAttr::Server(port);
    let wait_opened = |n: u64| {
        wait_ledger(src, "the inbound opens", |l| {
            sum_where(l.opened.get(&(Direction::Inbound, false)), inbound_here) >= n
        })
    };

    // 1. The same port in another network namespace, opened after ours, then closed.
    let other_ns = ForeignListener::start(Some(&netns.0), port);
    let _batch1 = connect_k();
    wait_opened(K);
    other_ns.stop();
    let _batch2 = connect_k();
    // 2. A second process joins our SO_REUSEPORT group, then leaves it.
    let member = ForeignListener::start(None, port);
    let _batch3 = connect_k();
    wait_opened(3 * K);
    member.stop();
    assert_eq!(
        listeners_on(&loaded, port),
        1,
        "our listener's entry survives"
    );
    let _batch4 = connect_k();
    let l = wait_opened(4 * K);

    let opened = l
        .opened
        .get(&(Direction::Inbound, false))
        .expect("inbound opens");
    let (series, overflow) = opened.snapshot();
    assert!(overflow.is_empty());
    let owners: Vec<(u32, String, u64)> = series
        .iter()
        .filter(|p| inbound_here(&p.key))
        .map(|p| {
            let proc_ = p.key.process.as_ref();
            (
                proc_.and_then(|k| k.pid).unwrap_or(0),
                proc_.map(|k| k.executable.clone()).unwrap_or_default(),
                p.value,
            )
        })
        .collect();
    assert_eq!(
        owners.iter().map(|o| o.2).sum::<u64>(),
        4 * K,
        "every inbound connection opened once: {owners:?}"
    );
    assert!(
        owners.iter().all(|o| o.0 == me),
        "every inbound connection belongs to the first listener's process {me}: {owners:?}"
    );
    drop(ours);
    wait_no_listener(&loaded, port);
}

/// Entries of the parked-listener map (listen(2) without bind(2)) whose owner is `pid`.
fn parked_of(loaded: &Loaded, pid: u32) -> usize {
    use sonde_probes::abi::sonde_tcp_pending_listener;
    let map = family_map(loaded, sonde_probes::names::tcp::MAP_PENDING_LISTENERS);
    let m = aya::maps::HashMap::<_, u32, sonde_tcp_pending_listener>::try_from(map)
        .expect("tcp_pending_listeners layout");
    m.iter()
        .flatten()
        .filter(|(_, p)| p.owner.tgid == pid)
        .count()
}

/// Waits until no parked listener of `pid` is left.
fn wait_not_parked(loaded: &Loaded, pid: u32) {
    wait_none_left(
        &format!("a closed listener of {pid} is still parked"),
        || parked_of(loaded, pid),
    );
}

/// Starts a python process that listens without bind(2) and prints its pid and port.
fn spawn_autobind_listener() -> (std::process::Child, u32, u16) {
    const SCRIPT: &str = "import os,socket,sys\n\
        s=socket.socket()\n\
        s.listen(128)\n\
        print(os.getpid(),s.getsockname()[1],flush=True)\n\
        sys.stdin.read()\n";
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.args(["-c", SCRIPT]);
    let (child, line) = spawn_listener(cmd, "its pid and port");
    let mut f = line
        .split_whitespace()
        .map(|w| w.parse::<u32>().expect("a number"));
    let (pid, port) = (f.next().expect("pid"), f.next().expect("port") as u16);
    assert_eq!(pid, child.id());
    (child, pid, port)
}

/// A process that listens without bind(2) (the kernel picks the port: autobind, on the
/// wildcard address) owns the inbound connections to it: its socket is parked at the
/// LISTEN transition (no port yet) and recorded under its port by the first connection;
/// the listener entry goes when it closes.
#[test]
fn a_listener_without_bind_owns_its_inbound_connections() {
    let loaded = load();
    let src = &loaded.source;
    const K: u64 = 5;
    let (mut child, pid, port) = spawn_autobind_listener();
    // listen(2) has returned: its LISTEN transition ran, with port 0.
    assert_eq!(parked_of(&loaded, pid), 1, "the listener is parked");
    assert_eq!(listeners_on(&loaded, port), 0, "and not yet under a port");

    // The test connects (the listener never accepts: no task of its own ever touches
    // the connections, so only the listener's entry can name it).
    let _conns: Vec<TcpStream> = (0..K)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let inbound_here = move |w: &Who| w.port == PortAttr::Server(port);
    let l = wait_ledger(src, "the inbound opens", |l| {
        sum_where(l.opened.get(&(Direction::Inbound, false)), inbound_here) >= K
    });
    let (series, _) = l
        .opened
        .get(&(Direction::Inbound, false))
        .expect("inbound opens")
        .snapshot();
    let owners: Vec<(u32, u64)> = series
        .iter()
        .filter(|p| inbound_here(&p.key))
        .map(|p| (pid_of(&p.key).unwrap_or(0), p.value))
        .collect();
    assert_eq!(
        owners,
        vec![(pid, K)],
        "every inbound connection is the listener's"
    );
    assert_eq!(
        listeners_on(&loaded, port),
        1,
        "the first connection recorded the listener under its port"
    );
    assert_eq!(
        parked_of(&loaded, pid),
        0,
        "and took it out of the parked ones"
    );
    let _ = child.kill();
    let _ = child.wait();
    wait_no_listener(&loaded, port);
}

/// A listener without bind(2) that closes before any connection leaves nothing behind:
/// its parked entry goes at its LISTEN -> CLOSE transition (else the slots would fill).
#[test]
fn a_parked_listener_that_never_got_a_connection_goes_at_its_close() {
    let loaded = load();
    let (mut child, pid, port) = spawn_autobind_listener();
    assert_eq!(parked_of(&loaded, pid), 1, "the listener is parked");
    let _ = child.kill();
    let _ = child.wait();
    wait_not_parked(&loaded, pid);
    assert_eq!(listeners_on(&loaded, port), 0, "it was never recorded");
}

/// Ports of the listener map's entries.
fn listener_ports(loaded: &Loaded) -> std::collections::HashSet<u16> {
    use sonde_probes::abi::{sonde_tcp_listener, sonde_tcp_listener_key};
    let map = family_map(loaded, sonde_probes::names::tcp::MAP_LISTENERS);
    let m = aya::maps::HashMap::<_, sonde_tcp_listener_key, sonde_tcp_listener>::try_from(map)
        .expect("tcp_listeners layout");
    m.keys().flatten().map(|k| k.port).collect()
}

/// Past the listener map's bound, every listener it could not record is counted as lost
/// (`sonde.probe.events.lost{map_full}`), and the map empties as they close. The test's
/// own instance has a bound of 16 instead of 4096, so no other probe on the host ever
/// sees its map full.
#[test]
fn listeners_past_the_map_bound_are_counted_as_lost() {
    const BOUND: u32 = 16;
    const N: usize = 40;
    let loaded = load_sized(&[(sonde_probes::names::tcp::MAP_LISTENERS, BOUND)]);
    let src = &loaded.source;
    let before = src.collector.read().expect("counts").lost_listeners;
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a listener"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect();
    // listen(2) has returned for each: its transition has run, recorded or counted.
    let recorded = listener_ports(&loaded);
    assert!(recorded.len() <= BOUND as usize);
    let missing = ports.iter().filter(|p| !recorded.contains(p)).count() as u64;
    let lost = src.collector.read().expect("counts").lost_listeners - before;
    assert!(
        missing >= (N - BOUND as usize) as u64,
        "the map holds at most {BOUND}: {missing} of ours missing"
    );
    // Other processes' listens while the map was full are lost too: at least ours.
    assert!(
        lost >= missing,
        "every listener the map could not hold is counted: {lost} lost, {missing} missing"
    );
    drop(listeners);
    let deadline = Instant::now() + WAIT;
    loop {
        let left = listener_ports(&loaded);
        if !ports.iter().any(|p| left.contains(p)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "closed listeners left entries behind"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connections per state in a network namespace of the test's own (so no other traffic
/// on the machine counts): sockets that predate the probe are seeded from the kernel's
/// table (sock_diag), later ones counted by transitions, and a reconciliation against the
/// table finds nothing to correct.
#[test]
fn state_counts_are_seeded_from_and_agree_with_the_kernels_table() {
    let netns = Netns::new("sonde-seed");
    let path = format!("/run/netns/{}", netns.0);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on a namespace fd we own, for this thread only (CLONE_NEWNET).
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        let pair = || {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
            let (s, _) = l.accept().expect("accept");
            (l, c, s)
        };
        // Before the probe: 2 listeners with one connection each (2 x 2 established).
        let early: Vec<_> = (0..2).map(|_| pair()).collect();
        let mut loaded = load();
        // After: 3 more, counted by transitions.
        let late: Vec<_> = (0..3).map(|_| pair()).collect();
        let count = |src: &TcpSource, state: usize| -> i64 {
            let c = src.collector.read().expect("read");
            c.states
                .iter()
                .filter(|((v6, s), _)| !v6 && *s == state)
                .map(|(_, n)| n)
                .sum()
        };
        assert_eq!(count(&loaded.source, 10), 5, "listening");
        assert_eq!(count(&loaded.source, 1), 10, "established");
        let r = loaded
            .source
            .collector
            .reconcile(&sonde::family::tcp::sock_diag::tcp_state_counts, false)
            .expect("reconcile");
        assert_eq!(r.corrected, 0, "the kept counts match the kernel's table");
        assert_eq!(r.unsettled, 0);
        drop(late);
        drop(early);
        // Closed on both sides: nothing listens and nothing is established any more.
        let deadline = Instant::now() + WAIT;
        while count(&loaded.source, 1) != 0 || count(&loaded.source, 10) != 0 {
            assert!(Instant::now() < deadline, "counts never returned to zero");
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = loaded
            .source
            .collector
            .reconcile(&sonde::family::tcp::sock_diag::tcp_state_counts, false)
            .expect("reconcile");
        assert_eq!(r.corrected, 0);
        assert_eq!(loaded.source.collector.read().expect("read").corrections, 0);
    })
    .join()
    .expect("the test's thread");
}

/// Starts a python3 listener that reports on its first stdout line and lives until its
/// stdin closes; returns it and that line.
fn spawn_listener(mut cmd: std::process::Command, what: &str) -> (std::process::Child, String) {
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start python3 (Debian's python3 package)");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .unwrap_or_else(|e| panic!("read the listener's {what}: {e}"));
    (child, line)
}
