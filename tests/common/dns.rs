//! DNS helpers for tests: a dnsmasq of the test's own on a loopback address unique to the
//! test run, and A queries over UDP. The machine's own resolver is never queried.

use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Loopback addresses no other test run uses: 127.<from pid>.<counter>.<role>.
pub fn addresses() -> [Ipv4Addr; 4] {
    use std::sync::atomic::AtomicU8;
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let a = 100 + (std::process::id() % 150) as u8;
    let b = NEXT.fetch_add(1, Ordering::Relaxed);
    [1, 2, 3, 4].map(|c| Ipv4Addr::new(127, a, b, c))
}

/// A dnsmasq in the foreground, killed on drop.
pub struct Dnsmasq(Child);

impl Dnsmasq {
    pub fn start(listen: Ipv4Addr, extra: &[String]) -> Self {
        Self::start_on(listen, 53, extra)
    }

    /// On `port` instead of 53: a Sonde that watches only that port sees no other
    /// session's DNS, so its counts are the test's own.
    pub fn start_on(listen: Ipv4Addr, port: u16, extra: &[String]) -> Self {
        assert!(
            std::path::Path::new(DNSMASQ).exists(),
            "this test needs dnsmasq: apt-get install dnsmasq-base"
        );
        let child = Command::new(DNSMASQ)
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--bind-interfaces",
                "--user=root",
                "--pid-file=",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--listen-address={listen}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dnsmasq");
        Self(child)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn encode_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]); // A, IN
    m
}

/// Sends one A query and returns the response's rcode, or None after `wait`.
pub fn query(server: Ipv4Addr, name: &str, wait: Duration) -> Option<u8> {
    query_on(server, 53, name, wait)
}

/// [`query`] to `port` instead of 53.
pub fn query_on(server: Ipv4Addr, port: u16, name: &str, wait: Duration) -> Option<u8> {
    use std::sync::atomic::AtomicU16;
    static ID: AtomicU16 = AtomicU16::new(1);
    let id = ID.fetch_add(1, Ordering::Relaxed);
    // From loopback to a loopback server; any address otherwise (a namespace's veth).
    let local = if server.is_loopback() {
        Ipv4Addr::LOCALHOST
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let sock = UdpSocket::bind((local, 0)).expect("bind client");
    sock.set_read_timeout(Some(wait)).expect("timeout");
    sock.send_to(&encode_query(id, name), (server, port))
        .expect("send query");
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if n >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id => {
                return Some(buf[3] & 0x0f)
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Waits until `server` answers (before Sonde starts, so these queries are not counted).
pub fn wait_ready(server: Ipv4Addr, name: &str) {
    wait_ready_on(server, 53, name)
}

/// [`wait_ready`] for a server on `port`.
pub fn wait_ready_on(server: Ipv4Addr, port: u16, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while query_on(server, port, name, Duration::from_secs(3)).is_none() {
        assert!(
            Instant::now() < deadline,
            "the resolver at {server} did not answer within 20 s"
        );
    }
}
