//! Network namespaces of a test's own, and raw frames on their interfaces (AF_PACKET):
//! what the TCP tests' lossy and delayed paths and the DNS test's resolver that the
//! probes cannot see are built from. Everything is deleted on drop.

use std::net::Ipv4Addr;

use super::run;

/// Two network namespaces of the test's own joined by a veth pair; deleted on drop.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
}

impl NetnsPair {
    pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
    pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);

    /// Namespaces `sonde-<what>-a-<pid>` and `sonde-<what>-b-<pid>`, with ADDR_A on
    /// `veth-a` and ADDR_B on `veth-b`.
    pub fn new(what: &str) -> Self {
        let tag = std::process::id();
        let pair = Self {
            a: format!("sonde-{what}-a-{tag}"),
            b: format!("sonde-{what}-b-{tag}"),
        };
        run("ip", &["netns", "add", &pair.a]);
        run("ip", &["netns", "add", &pair.b]);
        run(
            "ip",
            &[
                "link", "add", "veth-a", "netns", &pair.a, "type", "veth", "peer", "name",
                "veth-b", "netns", &pair.b,
            ],
        );
        for (ns, dev, addr) in [
            (&pair.a, "veth-a", "10.213.0.1/30"),
            (&pair.b, "veth-b", "10.213.0.2/30"),
        ] {
            run("ip", &["-n", ns, "addr", "add", addr, "dev", dev]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// Runs `f` on a thread that has entered namespace `ns` (sockets it creates live
    /// there, and /proc/thread-self/net describes it).
    pub fn in_ns<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on a namespace fd we own, for this thread only (CLONE_NEWNET).
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and with it the peer.
        for ns in [&self.a, &self.b] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// A raw socket on interface `ifname` of the calling thread's namespace: every frame the
/// interface receives, and frames sent as they are (no IP socket, so no cgroup_skb hook).
pub fn packet_socket(ifname: &str) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(ifname).expect("ifname");
    // SAFETY: name is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(index > 0, "no interface {ifname}");
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid starting value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: sll is a valid sockaddr_ll and the length matches it.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(
        rc,
        0,
        "bind to {ifname}: {}",
        std::io::Error::last_os_error()
    );
    owned
}

/// Reads one frame the interface received (not one it sent); `None` if none is waiting.
pub fn recv_frame(fd: &std::os::fd::OwnedFd, buf: &mut [u8]) -> Option<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
    // SAFETY: buf and sll are valid for writes of the sizes passed.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut sll as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    if n <= 0 {
        return None;
    }
    if sll.sll_pkttype == libc::PACKET_OUTGOING {
        return Some(0); // our own transmission, seen again: skip
    }
    Some(n as usize)
}

/// Completes the TCP checksum of an IPv4 frame: veth leaves it to "hardware" (checksum
/// offload), and a frame re-sent from userspace must carry a complete one.
fn fix_tcp_checksum(frame: &mut [u8]) {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] || frame[23] != 6 {
        return;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let (ip, tcp_start) = (14, 14 + ihl);
    let end = (ip + total).min(frame.len());
    if tcp_start + 20 > end {
        return;
    }
    frame[tcp_start + 16] = 0;
    frame[tcp_start + 17] = 0;
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&frame[ip + 12..ip + 20]); // source and destination addresses
    add(&[0, 6]);
    add(&((end - tcp_start) as u16).to_be_bytes());
    add(&frame[tcp_start..end]);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = !(sum as u16);
    frame[tcp_start + 16..tcp_start + 18].copy_from_slice(&ck.to_be_bytes());
}

pub fn send_frame(fd: &std::os::fd::OwnedFd, frame: &mut [u8]) {
    use std::os::fd::AsRawFd;
    fix_tcp_checksum(frame);
    // SAFETY: frame is valid for reads of its length; the socket is bound to an interface.
    let _ = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
}
