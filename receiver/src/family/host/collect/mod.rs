//! Host metrics from /proc and /sys, as the hostmetrics receiver reads them: one
//! module per source-file family, each a pure parser over the file's text, and
//! [`HostReader`], the only part that touches the file system.
//!
//! A family that cannot be read (file missing on this kernel, permission denied in a
//! container) is left out of the sample and logged once; the others carry on.

pub mod diskstats;
pub mod filesystem;
pub mod loadavg;
pub mod meminfo;
pub mod net_dev;
pub mod net_tcp;
pub mod process;
pub mod stat;
pub mod vmstat;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Everything read in one collection cycle; `None` where the family could not be read.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub uptime: Option<f64>,
    pub stat: Option<stat::Stat>,
    pub meminfo: Option<meminfo::Meminfo>,
    pub loadavg: Option<loadavg::LoadAvg>,
    pub vmstat: Option<vmstat::Vmstat>,
    pub swaps: Option<Vec<vmstat::Swap>>,
    pub disks: Option<Vec<diskstats::DiskStats>>,
    pub filesystems: Option<Vec<(filesystem::Mount, filesystem::Space)>>,
    /// Samples each mount point was skipped in because its statvfs hung (cumulative).
    pub statvfs_skipped: std::collections::BTreeMap<String, u64>,
    pub net: Option<Vec<net_dev::NetDev>>,
    /// IPv4 and IPv6 tables.
    pub tcp: Option<(net_tcp::TcpStates, net_tcp::TcpStates)>,
    pub processes: Option<Vec<process::ProcStat>>,
}

/// Reads the host's /proc (or a copy of it, for tests).
#[derive(Debug)]
pub struct HostReader {
    proc_root: PathBuf,
    /// Families whose failure was already logged: a missing file stays missing, and
    /// a warning every interval would drown the log.
    warned: HashSet<&'static str>,
    /// Whether to read /proc/net/tcp{,6}: the costliest read of a cycle (the kernel walks
    /// its whole TCP hash table), not done when the TCP probe supplies the same counts.
    tcp_states: bool,
    statvfs: filesystem::BoundedStatvfs,
}

impl Default for HostReader {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl HostReader {
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        Self {
            proc_root: proc_root.into(),
            warned: HashSet::new(),
            tcp_states: true,
            statvfs: filesystem::BoundedStatvfs::default(),
        }
    }

    /// Leaves /proc/net/tcp{,6} unread (`Sample::tcp` stays `None`).
    pub fn without_tcp_states(mut self) -> Self {
        self.tcp_states = false;
        self
    }

    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    fn read(&mut self, family: &'static str, rel: &str) -> Option<String> {
        match std::fs::read_to_string(self.proc_root.join(rel)) {
            Ok(t) => Some(t),
            Err(e) => {
                if self.warned.insert(family) {
                    tracing::warn!(
                        "cannot read {}/{rel} ({e}): {family} metrics are left out; \
                         mount the host's /proc there or grant read access",
                        self.proc_root.display()
                    );
                }
                None
            }
        }
    }

    /// One collection cycle over every family.
    pub fn sample(&mut self) -> Sample {
        let mut s = Sample {
            uptime: self
                .read("uptime", "uptime")
                .and_then(|t| stat::parse_uptime(&t)),
            stat: self.read("cpu", "stat").map(|t| stat::parse(&t)),
            meminfo: self
                .read("memory", "meminfo")
                .and_then(|t| meminfo::parse(&t)),
            loadavg: self
                .read("load", "loadavg")
                .and_then(|t| loadavg::parse(&t)),
            vmstat: self
                .read("paging", "vmstat")
                .map(|t| vmstat::parse_vmstat(&t)),
            swaps: self.read("swap", "swaps").map(|t| vmstat::parse_swaps(&t)),
            disks: self.read("disk", "diskstats").map(|t| diskstats::parse(&t)),
            filesystems: None,
            statvfs_skipped: Default::default(),
            net: self.read("network", "net/dev").map(|t| net_dev::parse(&t)),
            tcp: None,
            processes: None,
        };
        if let (Some(m), Some(f)) = (
            self.read("filesystem", "self/mounts"),
            self.read("filesystem", "filesystems"),
        ) {
            let mounts =
                filesystem::reportable(filesystem::parse_mounts(&m), &filesystem::parse_nodev(&f));
            s.filesystems = Some(
                mounts
                    .into_iter()
                    // A mount this user may not stat (or that vanished, or that hangs)
                    // is left out.
                    .filter_map(|m| match self.statvfs.stat(&m.mountpoint) {
                        Some(Ok(sp)) => Some((m, sp)),
                        Some(Err(_)) | None => None,
                    })
                    .collect(),
            );
            s.statvfs_skipped = self.statvfs.skipped().clone();
        }
        if self.tcp_states {
            s.tcp = self.tcp_states();
        }
        s.processes = self.processes();
        s
    }

    /// TCP sockets per state, IPv4 and IPv6. Reading the host's own /proc, from netlink
    /// sock_diag: the same counts as /proc/net/tcp{,6} for a small part of the cost (the
    /// text walks the kernel's whole hash table again for every page it returns, most of
    /// a fallback cycle's CPU). From the files for another /proc root, or when the dump
    /// fails (a seccomp filter, a kernel without inet_diag).
    fn tcp_states(&mut self) -> Option<(net_tcp::TcpStates, net_tcp::TcpStates)> {
        if self.proc_root == Path::new("/proc") && !self.warned.contains("tcp_diag") {
            match crate::family::tcp::sock_diag::all_state_counts() {
                Ok([v4, v6]) => return Some((v4, v6)),
                Err(e) => {
                    self.warned.insert("tcp_diag");
                    tracing::info!(
                        "netlink sock_diag failed ({e}): TCP connection counts come from \
                         /proc/net/tcp and tcp6 instead, which costs more CPU"
                    );
                }
            }
        }
        let v4 = self.read("tcp", "net/tcp")?;
        // tcp6 is absent when IPv6 is disabled: count IPv4 alone then.
        let v6 = std::fs::read_to_string(self.proc_root.join("net/tcp6")).unwrap_or_default();
        Some((net_tcp::parse(&v4), net_tcp::parse(&v6)))
    }

    /// Every process's stat. A process that exits between the directory listing and
    /// the read is simply not there (ENOENT/ESRCH, or an empty read).
    fn processes(&mut self) -> Option<Vec<process::ProcStat>> {
        let dir = match std::fs::read_dir(&self.proc_root) {
            Ok(d) => d,
            Err(e) => {
                if self.warned.insert("processes") {
                    tracing::warn!(
                        "cannot list {} ({e}): process metrics are left out",
                        self.proc_root.display()
                    );
                }
                return None;
            }
        };
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) {
                if let Some(p) = process::parse_stat(&text) {
                    out.push(p);
                }
            }
        }
        Some(out)
    }

    /// /proc/PID/io, where readable (another user's process needs ptrace rights).
    pub fn process_io(&self, pid: u32) -> Option<process::ProcIo> {
        let t = std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("io")).ok()?;
        process::parse_io(&t)
    }

    /// The cgroup v2 path of a process (relative to the v2 root), where readable.
    pub fn process_cgroup(&self, pid: u32) -> Option<String> {
        let t =
            std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("cgroup")).ok()?;
        process::parse_cgroup_v2_path(&t).map(str::to_owned)
    }

    /// Open descriptors of a process, where readable.
    pub fn process_fds(&self, pid: u32) -> Option<u64> {
        let d = std::fs::read_dir(self.proc_root.join(pid.to_string()).join("fd")).ok()?;
        Some(d.count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_proc_tree_with_a_vanished_process_and_missing_families() {
        let dir = std::env::temp_dir().join(format!("sonde-host-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("net")).expect("mkdir");
        let w = |rel: &str, text: &str| std::fs::write(dir.join(rel), text).expect("write");
        w(
            "stat",
            "cpu 1 2 3 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\nprocesses 9\n",
        );
        w("meminfo", "MemTotal: 100 kB\nMemFree: 10 kB\n");
        w("net/dev", "h\nh\n lo: 1 2 3 4 0 0 0 0 5 6 7 8 0 0 0 0\n");
        for (pid, text) in [
            (
                "1",
                "1 (init) S 0 1 1 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 5 1000 50 0",
            ),
            (
                "22",
                "22 (a) R) R 1 22 22 0 -1 0 0 0 0 0 30 40 0 0 20 0 2 0 6 2000 60 0",
            ),
        ] {
            std::fs::create_dir_all(dir.join(pid)).expect("mkdir");
            w(&format!("{pid}/stat"), text);
        }
        // Listed, but exited before its stat was read.
        std::fs::create_dir_all(dir.join("33")).expect("mkdir");
        // Exited while being read: the kernel returns an empty file.
        std::fs::create_dir_all(dir.join("44")).expect("mkdir");
        w("44/stat", "");
        let mut r = HostReader::new(&dir);
        let s = r.sample();
        assert_eq!(s.stat.as_ref().and_then(|s| s.processes_created), Some(9));
        assert_eq!(s.meminfo.map(|m| m.total), Some(100 * 1024));
        assert_eq!(s.net.as_ref().map(|n| n[0].rx_bytes), Some(1));
        assert!(
            s.loadavg.is_none() && s.disks.is_none() && s.tcp.is_none(),
            "missing files are left out"
        );
        let mut procs = s.processes.expect("process scan");
        procs.sort_by_key(|p| p.pid);
        let got: Vec<(u32, &str)> = procs.iter().map(|p| (p.pid, p.comm.as_str())).collect();
        assert_eq!(got, [(1, "init"), (22, "a) R")]);
        assert_eq!(r.process_io(1), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
