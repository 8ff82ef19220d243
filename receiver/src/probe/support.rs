//! What this kernel and this process offer for eBPF: BTF, capabilities, kernel version.
//! Used by `sonde check` and to explain a fall back to /proc in one actionable sentence.

use std::path::Path;

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub bpf: bool,
    pub perfmon: bool,
    pub sys_admin: bool,
    pub net_admin: bool,
}

impl Capabilities {
    /// From the `CapEff:` line of /proc/self/status.
    pub fn from_status(status: &str) -> Option<Self> {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))?
            .trim();
        let bits = u64::from_str_radix(hex, 16).ok()?;
        let has = |c: u32| bits & (1u64 << c) != 0;
        Some(Self {
            bpf: has(CAP_BPF),
            perfmon: has(CAP_PERFMON),
            sys_admin: has(CAP_SYS_ADMIN),
            net_admin: has(CAP_NET_ADMIN),
        })
    }

    pub fn current() -> Self {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| Self::from_status(&s))
            .unwrap_or_default()
    }

    /// Tracing programs need CAP_BPF + CAP_PERFMON (5.8+) or CAP_SYS_ADMIN.
    pub fn can_trace(&self) -> bool {
        (self.bpf && self.perfmon) || self.sys_admin
    }
}

/// (major, minor) of the running kernel.
pub fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_release(&release)
}

pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Why eBPF mode cannot run here, in a sentence that says what to do; `None` if the
/// preconditions hold (loading can still fail, and says why itself).
pub fn blocker() -> Option<String> {
    if !Path::new(BTF_PATH).exists() {
        return Some(format!(
            "this kernel exposes no BTF ({BTF_PATH} is missing): Sonde's probes need a \
             kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 5.4 \
             are); collecting from /proc and /sys instead"
        ));
    }
    if let Some(v) = kernel_version() {
        if v < (5, 8) {
            return Some(format!(
                "kernel {}.{} is older than 5.8, which Sonde's probes need (BPF ring buffer); \
                 collecting from /proc and /sys instead",
                v.0, v.1
            ));
        }
    }
    if !Capabilities::current().can_trace() {
        return Some(
            "Sonde lacks CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run it as root or grant \
             them (systemd AmbientCapabilities=CAP_BPF CAP_PERFMON); collecting from /proc \
             and /sys instead"
                .to_owned(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_status() {
        let root =
            Capabilities::from_status("Name:\tx\nCapEff:\t000001ffffffffff\n").expect("parse");
        assert!(root.bpf && root.perfmon && root.sys_admin && root.net_admin && root.can_trace());
        let none = Capabilities::from_status("CapEff:\t0000000000000000\n").expect("parse");
        assert!(!none.can_trace());
        let bpf_only =
            Capabilities::from_status(&format!("CapEff:\t{:016x}\n", (1u64 << 39) | (1u64 << 38)))
                .expect("parse");
        assert!(bpf_only.can_trace() && !bpf_only.sys_admin);
        assert_eq!(Capabilities::from_status("nothing"), None);
    }

    #[test]
    fn kernel_release_parsing() {
        assert_eq!(parse_release("6.18.44-fc-v782\n"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_release("garbage"), None);
    }
}
