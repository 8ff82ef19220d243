//! The variants Sonde loads where a kernel lacks a feature a probe needs
//! (`sonde::probe::needs`), forced on this kernel (which has every feature) with
//! `SONDE_KERNEL_FEATURES_OFF`, each run beside a Sonde with nothing switched off on the
//! same workload:
//!
//! - DNS egress without `bpf_get_current_comm` in cgroup_skb programs (before 6.16): UDP
//!   queries keep their pid, their name comes from /proc; without
//!   `bpf_get_current_pid_tgid` (before 6.10): the same queries, counted exactly, with no
//!   process.
//! - TCP without `sock:sock_send_length` / `sock_recv_length` (before 6.3): an open
//!   connection's bytes are not counted while it is open, and exactly at its close.
//! - `sonde check` names each degraded probe with what it loses and why.
//!
//! The block probe's choice between `request_queue::disk` and the older `rq->rq_disk` is
//! CO-RE inside one program (`bpf_core_field_exists`), not a variant: this kernel has no
//! `rq_disk`, so that the probe loads here (every fileio test) is the check that the
//! missing field's read is relocated away; the older branch itself cannot run here.
//!
//! Needs root (eBPF, port 53 on loopback) and Debian's dnsmasq-base and python3.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::dns::*;
use common::*;

const WAIT: Duration = Duration::from_secs(60);
const CONFIG: &str = "collection:\n  interval: 300ms\nattributes:\n  process_pid: true\n";

fn start(rx: &OtlpReceiver, off: &str) -> Sonde {
    let mut env = rx.env();
    env.push(("SONDE_KERNEL_FEATURES_OFF", off.to_owned()));
    let mut sonde = Sonde::start(&env, Some(CONFIG));
    sonde.wait_started();
    rx.wait_for("a first export", WAIT, |e| !e.is_empty());
    sonde
}

/// A process of its own named `exe` (a copy of python3) that sends `n` A queries for
/// `name` to `server` one after the other, then stays until dropped: the variant without
/// `bpf_get_current_comm` reads a sender's name from /proc when it drains the ring, which
/// a process that has exited no longer has.
struct Querier(std::process::Child);

impl Querier {
    fn run(exe: &std::path::Path, server: std::net::Ipv4Addr, name: &str, n: usize) -> Self {
        const SCRIPT: &str = "import socket,struct,sys\n\
            srv,name,n=sys.argv[1],sys.argv[2],int(sys.argv[3])\n\
            s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
            s.settimeout(10)\n\
            q=b''.join(bytes([len(l)])+l.encode() for l in name.split('.'))+b'\\0'+struct.pack('>HH',1,1)\n\
            for i in range(n):\n\
            \x20   s.sendto(struct.pack('>HHHHHH',i+1,0x0100,1,0,0,0)+q,(srv,53))\n\
            \x20   s.recvfrom(4096)\n\
            print('done',flush=True)\n\
            sys.stdin.read()\n";
        let mut child = Command::new(exe)
            .args(["-c", SCRIPT, &server.to_string(), name, &n.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the query process");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read the query process's line");
        assert_eq!(line.trim(), "done", "the query process failed");
        Self(child)
    }
}

impl Drop for Querier {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dns_egress_variants_count_every_query_with_what_the_kernel_lets_them_name() {
    require_root();
    const N: usize = 7;
    let [server, ..] = addresses();
    let zone = format!("v{}.test", unique_suffix());
    let _dns = Dnsmasq::start(
        server,
        &[
            format!("--auth-zone={zone}"),
            format!("--auth-server=ns.{zone}"),
            format!("--host-record=h.{zone},10.1.2.3"),
        ],
    );
    wait_ready(server, &format!("h.{zone}"));

    let rx_full = OtlpReceiver::start(Proto::Grpc);
    let rx_pid = OtlpReceiver::start(Proto::Grpc);
    let rx_anon = OtlpReceiver::start(Proto::Grpc);
    let mut sondes = [
        start(&rx_full, ""),
        start(&rx_pid, "cgroup_skb_current_comm"),
        start(&rx_anon, "cgroup_skb_current_pid"),
    ];
    for (s, variant) in sondes[1..].iter().zip(["process.pid", "no process"]) {
        let log = s.stderr();
        assert!(
            log.lines()
                .any(|l| l.contains("dns.egress") && l.contains("attached, degraded")),
            "the {variant} variant is reported degraded:\n{log}"
        );
    }

    let dir = TempDir::new("variants-dns");
    let (exe, name) = unique_exe(dir.path(), "sdq", "/usr/bin/python3");
    let querier = Querier::run(&exe, server, &format!("h.{zone}"), N);
    let pid = querier.0.id().to_string();
    let peer = server.to_string();
    let n = N as f64;
    let queries = |e: &[Export], f: &[(&str, &str)]| latest(e, "sonde.dns.queries", f);
    let named = [
        ("network.peer.address", peer.as_str()),
        ("process.pid", pid.as_str()),
        ("process.executable.name", name.as_str()),
    ];
    for rx in [&rx_full, &rx_pid] {
        let got = rx.wait_for("the queries with their process", WAIT, |e| {
            queries(e, &named) == Some(n)
        });
        assert_eq!(queries(&got, &named), Some(n));
    }
    // Without the pid: every query still counted, none with a process.
    let got = rx_anon.wait_for("the queries", WAIT, |e| {
        queries(e, &[("network.peer.address", &peer)]) == Some(n)
    });
    let n_rx = got.len();
    let got = rx_anon.wait_for("two more exports", WAIT, |e| e.len() >= n_rx + 2);
    let points: Vec<NumPoint> = num_points(&got, "sonde.dns.queries")
        .into_iter()
        .filter(|p| p.attrs.get("network.peer.address") == Some(&peer))
        .collect();
    assert!(
        points.iter().all(|p| !p.attrs.contains_key("process.pid")
            && !p.attrs.contains_key("process.executable.name")),
        "no process without the helpers: {points:?}"
    );
    assert_eq!(
        queries(&got, &[("network.peer.address", &peer)]),
        Some(n),
        "every query counted"
    );
    drop(querier);
    for s in &mut sondes {
        s.signal(libc::SIGTERM);
        assert!(s.wait_exit(WAIT).success(), "{}", s.stderr());
    }
}

#[test]
fn tcp_without_the_byte_tracepoints_counts_an_open_connections_bytes_at_its_close() {
    require_root();
    const X: usize = 5000; // client to server
    const Y: usize = 3000; // server to client
    let rx_full = OtlpReceiver::start(Proto::Grpc);
    let rx_close = OtlpReceiver::start(Proto::Grpc);
    let mut full = start(&rx_full, "");
    let mut at_close = start(&rx_close, "sock_length_tracepoints");
    let log = at_close.stderr();
    for probe in ["tcp.send", "tcp.recv"] {
        assert!(
            log.lines().any(|l| l.contains(probe)
                && l.contains("skipped")
                && l.contains("at their close")),
            "{probe} is reported left out, with what that costs:\n{log}"
        );
    }

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(&[1u8; X]).expect("client write");
    let mut buf = vec![0u8; X];
    server.read_exact(&mut buf).expect("server read");
    server.write_all(&[2u8; Y]).expect("server write");
    let mut buf = vec![0u8; Y];
    client.read_exact(&mut buf).expect("client read");

    let p = port.to_string();
    // The client's side (the peer's port is the server's).
    let tx: &[(&str, &str)] = &[
        ("network.peer.port", &p),
        ("network.io.direction", "transmit"),
    ];
    let rx_dir: &[(&str, &str)] = &[
        ("network.peer.port", &p),
        ("network.io.direction", "receive"),
    ];
    let opened: &[(&str, &str)] = &[
        ("network.peer.port", &p),
        ("sonde.connection.direction", "outbound"),
    ];
    // While it is open: the full probe counts its bytes every interval ...
    rx_full.wait_for("the open connection's bytes", WAIT, |e| {
        latest(e, "sonde.tcp.io", tx) == Some(X as f64)
            && latest(e, "sonde.tcp.io", rx_dir) == Some(Y as f64)
    });
    // ... the variant sees it open but counts none of its bytes, interval after interval.
    let got = rx_close.wait_for("the open", WAIT, |e| {
        latest(e, "sonde.tcp.connection.opened", opened) == Some(1.0)
    });
    let n = got.len();
    let got = rx_close.wait_for("three more exports", WAIT, |e| e.len() >= n + 3);
    for f in [tx, rx_dir] {
        let v = latest(&got, "sonde.tcp.io", f).unwrap_or(0.0);
        assert_eq!(
            v, 0.0,
            "bytes counted while open without the tracepoints: {f:?}"
        );
    }

    // At close, exactly what the applications wrote, in both Sondes.
    drop(client);
    drop(server);
    for rx in [&rx_full, &rx_close] {
        let got = rx.wait_for("the close with its bytes", WAIT, |e| {
            latest(e, "sonde.tcp.connection.closed", opened) == Some(1.0)
                && latest(e, "sonde.tcp.io", tx) == Some(X as f64)
        });
        assert_eq!(latest(&got, "sonde.tcp.io", tx), Some(X as f64));
        assert_eq!(latest(&got, "sonde.tcp.io", rx_dir), Some(Y as f64));
    }
    for s in [&mut full, &mut at_close] {
        s.signal(libc::SIGTERM);
        assert!(s.wait_exit(WAIT).success(), "{}", s.stderr());
    }
}

/// `sonde check` says, per probe, which run as variants or are left out, what that costs
/// and why; the probes that need nothing switched off stay plain `ok`.
#[test]
fn sonde_check_says_what_is_degraded_and_why() {
    require_root();
    let out = Command::new(env!("CARGO_BIN_EXE_sonde"))
        .arg("check")
        .env(
            "SONDE_KERNEL_FEATURES_OFF",
            "cgroup_skb_current_pid,sock_length_tracepoints",
        )
        .output()
        .expect("run sonde check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sonde check failed:\n{text}");
    let line = |probe: &str| {
        text.lines()
            .find(|l| l.starts_with("probe ") && l.split_whitespace().nth(1) == Some(probe))
            .unwrap_or_else(|| panic!("no line for {probe}:\n{text}"))
            .to_owned()
    };
    let egress = line("dns.egress");
    assert!(
        egress.contains("degraded: its variant loads")
            && egress.contains("no process")
            && egress.contains("bpf_get_current_pid_tgid")
            && egress.contains("SONDE_KERNEL_FEATURES_OFF"),
        "{egress}"
    );
    for probe in ["tcp.send", "tcp.recv"] {
        let l = line(probe);
        assert!(
            l.contains("degraded: left out") && l.contains("SONDE_KERNEL_FEATURES_OFF"),
            "{l}"
        );
    }
    for probe in ["dns.ingress", "tcp.state", "fileio.block_issue"] {
        let l = line(probe);
        assert!(l.contains("ok: loads and passes the verifier"), "{l}");
    }
}
