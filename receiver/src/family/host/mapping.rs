//! Host metrics from a /proc sample: pure mapping to semantic-conventions 1.44 names
//! (default) or the hostmetrics receiver's legacy v0 names and attributes
//! (`metric_names: hostmetrics_v0`). Every name comes from `sonde_semconv`.
//!
//! Utilization is computed as the hostmetrics receiver computes it:
//! - `system.cpu.utilization`: per mode, the mode's share of all CPU time that passed
//!   between the previous sample and this one (per CPU with `host.per_cpu`); nothing on
//!   the first sample or when no time passed (zero-period guard);
//! - `system.memory.utilization`: each state's bytes over MemTotal;
//! - `system.filesystem.utilization`: used / (used + free available to users), as df;
//! - `system.paging.utilization`: each state's bytes over the device's size.
//!
//! Counters the kernel keeps since boot start at boot time (`btime`); per-process
//! counters start when the process started.

use sonde_semconv::attr::{self, connection_state, disk_io_direction, network_io_direction};
use sonde_semconv::attr::{network_transport, network_type};
use sonde_semconv::host::{self as h, v0};
use sonde_semconv::{fileio, metric, tcp, MetricDef};

use std::sync::Arc;

use crate::aggregate::process::ProcessKey;
use crate::cgroup::Container;
use crate::family::host::collect::diskstats::DiskStats;
use crate::family::host::collect::filesystem::{Mount, Space};
use crate::family::host::collect::loadavg::LoadAvg;
use crate::family::host::collect::meminfo::Meminfo;
use crate::family::host::collect::net_dev::NetDev;
use crate::family::host::collect::net_tcp::TcpStates;
use crate::family::host::collect::process::{ProcIo, ProcStat};
use crate::family::host::collect::stat::{CpuTimes, Stat};
use crate::family::host::collect::vmstat::{Swap, Vmstat};
use crate::family::host::collect::Sample;
use crate::family::process::procfs::ProcessStates;
use crate::model::{numbers, Attributes, Metric, Number, Point, PointValue};

/// Which name set the shared metrics carry (`metric_names` in the config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MetricNames {
    /// Semantic conventions 1.44 (metrics.md).
    #[default]
    Semconv,
    /// The Collector hostmetrics receiver's legacy names and attributes.
    HostmetricsV0,
}

/// One of the top-N processes, with what was read for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcSeries {
    pub stat: ProcStat,
    pub io: Option<ProcIo>,
    pub fds: Option<u64>,
    /// When the process started (start of its cumulative series), Unix ns.
    pub start_unix_nano: u64,
    /// Its CPU ticks since it got its own series (what the overflow series has not
    /// already counted) and when that was.
    pub cpu: OwnCpu,
    /// Its container, from its cgroup (`None` outside one, or where it cannot be read).
    pub container: Option<Arc<Container>>,
}

/// CPU ticks a top process reports under its own series: all of its life when it went
/// straight into the top N, or since the sample it left the overflow series at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnCpu {
    pub utime: u64,
    pub stime: u64,
    pub start_unix_nano: u64,
}

/// Everything past the top N, folded into one series (`otel.metric.overflow=true`).
/// CPU ticks accumulate the per-interval use of processes outside the top N, so the
/// cumulative series stays monotonic as processes move in and out of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcOverflow {
    pub processes: u64,
    pub utime: u64,
    pub stime: u64,
    pub rss_pages: u64,
    pub vsize_bytes: u64,
    pub threads: u64,
}

/// Fixed facts of the host the mapping needs.
#[derive(Debug, Clone, Copy)]
pub struct HostFacts {
    pub ticks_per_sec: u64,
    pub page_size: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub names: MetricNames,
    /// `cpu.logical_number` (v0: `cpu`) on system.cpu.*.
    pub per_cpu: bool,
}

#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub sample: &'a Sample,
    /// The previous sample's /proc/stat, for utilization.
    pub prev_stat: Option<&'a Stat>,
    pub top: &'a [ProcSeries],
    pub overflow: Option<ProcOverflow>,
}

impl<'a> Inputs<'a> {
    /// A sample alone: no previous sample, no processes.
    pub fn sample(sample: &'a Sample) -> Self {
        Self {
            sample,
            prev_stat: None,
            top: &[],
            overflow: None,
        }
    }
}

fn int(v: u64) -> Number {
    Number::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn a(key: &'static str, v: &str) -> Attributes {
    Attributes::new().with(key, v)
}

/// Picks the def and attribute key of the chosen name set.
#[derive(Debug, Clone, Copy)]
struct Pick(MetricNames);

impl Pick {
    fn v0(self) -> bool {
        self.0 == MetricNames::HostmetricsV0
    }
    fn def(self, semconv: MetricDef, legacy: MetricDef) -> MetricDef {
        if self.v0() {
            legacy
        } else {
            semconv
        }
    }
    fn key(self, semconv: &'static str, legacy: &'static str) -> &'static str {
        if self.v0() {
            legacy
        } else {
            semconv
        }
    }
    fn val(self, semconv: &'static str, legacy: &'static str) -> &'static str {
        if self.v0() {
            legacy
        } else {
            semconv
        }
    }
}

/// (mode attribute value, ticks) of one CPU line, in the chosen name set.
fn cpu_modes(p: Pick, t: &CpuTimes) -> Vec<(&'static str, u64)> {
    use h::cpu_mode as m;
    use v0::cpu_state as s;
    if p.v0() {
        vec![
            (s::USER, t.user),
            (s::NICE, t.nice),
            (s::SYSTEM, t.system),
            (s::IDLE, t.idle),
            (s::WAIT, t.iowait),
            (s::INTERRUPT, t.irq),
            (s::SOFTIRQ, t.softirq),
            (s::STEAL, t.steal),
        ]
    } else {
        vec![
            (m::USER, t.user),
            (m::NICE, t.nice),
            (m::SYSTEM, t.system),
            (m::IDLE, t.idle),
            (m::IOWAIT, t.iowait),
            (m::INTERRUPT, t.irq + t.softirq),
            (m::STEAL, t.steal),
        ]
    }
}

/// Each mode's share of the CPU time that passed between two samples of one CPU;
/// `None` when no time passed or the counters went backwards (CPU hot-plugged).
pub fn cpu_utilization(prev: &CpuTimes, cur: &CpuTimes) -> Option<CpuShares> {
    let total = cur.total().checked_sub(prev.total())?;
    if total == 0 {
        return None;
    }
    let d = |c: u64, p: u64| c.saturating_sub(p) as f64 / total as f64;
    Some(CpuShares([
        d(cur.user, prev.user),
        d(cur.nice, prev.nice),
        d(cur.system, prev.system),
        d(cur.idle, prev.idle),
        d(cur.iowait, prev.iowait),
        d(cur.irq, prev.irq),
        d(cur.softirq, prev.softirq),
        d(cur.steal, prev.steal),
    ]))
}

/// Shares per mode in [`CpuTimes`] field order (user, nice, system, idle, iowait, irq,
/// softirq, steal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuShares(pub [f64; 8]);

fn share_modes(p: Pick, s: &CpuShares) -> Vec<(&'static str, f64)> {
    let [user, nice, system, idle, iowait, irq, softirq, steal] = s.0;
    use h::cpu_mode as m;
    use v0::cpu_state as st;
    if p.v0() {
        vec![
            (st::USER, user),
            (st::NICE, nice),
            (st::SYSTEM, system),
            (st::IDLE, idle),
            (st::WAIT, iowait),
            (st::INTERRUPT, irq),
            (st::SOFTIRQ, softirq),
            (st::STEAL, steal),
        ]
    } else {
        vec![
            (m::USER, user),
            (m::NICE, nice),
            (m::SYSTEM, system),
            (m::IDLE, idle),
            (m::IOWAIT, iowait),
            (m::INTERRUPT, irq + softirq),
            (m::STEAL, steal),
        ]
    }
}

/// The kernel's TCP state numbers (1..=11) in semconv and v0 spelling.
const TCP_STATES: [(&str, &str); 11] = {
    use connection_state as c;
    use v0::tcp_state as k;
    [
        (c::ESTABLISHED, k::ESTABLISHED),
        (c::SYN_SENT, k::SYN_SENT),
        (c::SYN_RECEIVED, k::SYN_RECV),
        (c::FIN_WAIT_1, k::FIN_WAIT1),
        (c::FIN_WAIT_2, k::FIN_WAIT2),
        (c::TIME_WAIT, k::TIME_WAIT),
        (c::CLOSED, k::CLOSE),
        (c::CLOSE_WAIT, k::CLOSE_WAIT),
        (c::LAST_ACK, k::LAST_ACK),
        (c::LISTEN, k::LISTEN),
        (c::CLOSING, k::CLOSING),
    ]
};

/// v0 `status` of a process state letter, as the hostmetrics receiver names it.
fn v0_status(state: char) -> &'static str {
    use v0::process_status as s;
    match state {
        'R' => s::RUNNING,
        'S' => s::SLEEPING,
        'D' => s::BLOCKED,
        'T' | 't' => s::STOPPED,
        'Z' | 'X' | 'x' => s::ZOMBIES,
        'I' => s::IDLE,
        'W' | 'P' => s::PAGING,
        _ => s::UNKNOWN,
    }
}

/// Every host metric of one sample, group by group. Since-boot counters start at the
/// boot time; `start` (the agent's start) is used when boot time is unknown.
pub fn metrics(i: &Inputs<'_>, facts: HostFacts, opts: Options, start: u64) -> Vec<Metric> {
    let p = Pick(opts.names);
    let s = i.sample;
    let boot = s
        .stat
        .as_ref()
        .and_then(|st| st.boot_time)
        .map_or(start, |b| b.saturating_mul(1_000_000_000));
    let c = Ctx { p, boot, start };
    let ticks = facts.ticks_per_sec.max(1) as f64;
    let mut out = Vec::new();
    if let Some(up) = s.uptime {
        out.push(numbers(
            h::SYSTEM_UPTIME,
            boot,
            [(Attributes::new(), Number::Double(up))],
        ));
    }
    if let Some(stat) = &s.stat {
        out.extend(cpu(c, stat, i.prev_stat, opts.per_cpu, ticks));
    }
    if let Some(l) = &s.loadavg {
        out.extend(load_average(c, l));
    }
    if let Some(m) = &s.meminfo {
        out.extend(memory(c, m));
    }
    if let Some(swaps) = &s.swaps {
        out.extend(swap(c, swaps));
    }
    if let Some(v) = &s.vmstat {
        out.extend(paging(c, v));
    }
    if let Some(d) = &s.disks {
        out.extend(disks(c, d));
    }
    if let Some(fss) = &s.filesystems {
        out.extend(filesystems(c, fss));
    }
    if !s.statvfs_skipped.is_empty() {
        out.push(numbers(
            sonde_semconv::metric::SONDE_COLLECT_SKIPPED,
            start,
            s.statvfs_skipped.iter().map(|(mountpoint, n)| {
                (
                    Attributes::new().with(attr::SYSTEM_FILESYSTEM_MOUNTPOINT, mountpoint.as_str()),
                    int(*n),
                )
            }),
        ));
    }
    if let Some(net) = &s.net {
        out.extend(network(c, net));
    }
    if let Some((v4, v6)) = &s.tcp {
        out.push(tcp_connections(p, v4, v6, start));
    }
    if let Some(procs) = &s.processes {
        out.extend(process_count(c, procs));
    }
    out.extend(processes(p, i, facts, start));
    out
}

/// What every metric group needs: the name set, and when since-boot and agent-lifetime
/// series start.
#[derive(Debug, Clone, Copy)]
struct Ctx {
    p: Pick,
    boot: u64,
    start: u64,
}

/// system.cpu.time, system.cpu.utilization (from the second sample on) and
/// system.process.created, from /proc/stat.
fn cpu(c: Ctx, stat: &Stat, prev: Option<&Stat>, per_cpu: bool, ticks: f64) -> Vec<Metric> {
    let Ctx { p, boot, start } = c;
    let mut out = Vec::new();
    let cpu_key = p.key(attr::CPU_LOGICAL_NUMBER, v0::attr::CPU);
    let mode_key = p.key(attr::CPU_MODE, v0::attr::STATE);
    let cpu_attr = |n: u32| -> Attributes {
        if p.v0() {
            a(cpu_key, &format!("cpu{n}"))
        } else {
            Attributes::new().with(cpu_key, i64::from(n))
        }
    };
    let lines: Vec<(Attributes, &CpuTimes)> = if per_cpu {
        stat.per_cpu
            .iter()
            .map(|(n, t)| (cpu_attr(*n), t))
            .collect()
    } else {
        vec![(Attributes::new(), &stat.total)]
    };
    let time = lines.iter().flat_map(|(base, t)| {
        cpu_modes(p, t).into_iter().map(move |(mode, v)| {
            (
                base.clone().with(mode_key, mode),
                Number::Double(v as f64 / ticks),
            )
        })
    });
    out.push(numbers(
        p.def(h::SYSTEM_CPU_TIME, v0::SYSTEM_CPU_TIME),
        boot,
        time.collect::<Vec<_>>(),
    ));
    if let Some(prev) = prev {
        let pairs: Vec<(Attributes, &CpuTimes, &CpuTimes)> = if per_cpu {
            stat.per_cpu
                .iter()
                .filter_map(|(n, cur)| {
                    let (_, before) = prev.per_cpu.iter().find(|(m, _)| m == n)?;
                    Some((cpu_attr(*n), before, cur))
                })
                .collect()
        } else {
            vec![(Attributes::new(), &prev.total, &stat.total)]
        };
        let util: Vec<(Attributes, Number)> = pairs
            .into_iter()
            .filter_map(|(base, before, cur)| Some((base, cpu_utilization(before, cur)?)))
            .flat_map(|(base, shares)| {
                share_modes(p, &shares)
                    .into_iter()
                    .map(move |(m, v)| (base.clone().with(mode_key, m), Number::Double(v)))
            })
            .collect();
        if !util.is_empty() {
            out.push(numbers(
                p.def(h::SYSTEM_CPU_UTILIZATION, v0::SYSTEM_CPU_UTILIZATION),
                start,
                util,
            ));
        }
    }
    if let Some(created) = stat.processes_created {
        out.push(numbers(
            p.def(metric::SYSTEM_PROCESS_CREATED, v0::SYSTEM_PROCESSES_CREATED),
            boot,
            [(Attributes::new(), int(created))],
        ));
    }
    out
}

/// system.cpu.load_average.*, from /proc/loadavg.
fn load_average(c: Ctx, l: &LoadAvg) -> Vec<Metric> {
    let start = c.start;
    let mut out = Vec::new();
    for (def, v) in [
        (h::SYSTEM_CPU_LOAD_AVERAGE_1M, l.one),
        (h::SYSTEM_CPU_LOAD_AVERAGE_5M, l.five),
        (h::SYSTEM_CPU_LOAD_AVERAGE_15M, l.fifteen),
    ] {
        out.push(numbers(
            def,
            start,
            [(Attributes::new(), Number::Double(v))],
        ));
    }
    out
}

/// system.memory.*, from /proc/meminfo.
fn memory(c: Ctx, m: &Meminfo) -> Vec<Metric> {
    let Ctx { p, start, .. } = c;
    let mut out = Vec::new();
    let key = p.key(attr::SYSTEM_MEMORY_STATE, v0::attr::STATE);
    let states: Vec<(&str, u64)> = if p.v0() {
        use v0::memory_state as st;
        let mut v = vec![
            (st::USED, m.used()),
            (st::FREE, m.free),
            (st::BUFFERED, m.buffers),
            (st::CACHED, m.cached),
        ];
        v.extend(m.slab_reclaimable.map(|b| (st::SLAB_RECLAIMABLE, b)));
        v.extend(m.slab_unreclaimable.map(|b| (st::SLAB_UNRECLAIMABLE, b)));
        v
    } else {
        use h::memory_state as st;
        vec![
            (st::USED, m.used()),
            (st::FREE, m.free),
            (st::BUFFERS, m.buffers),
            (st::CACHED, m.cached_total()),
        ]
    };
    out.push(numbers(
        p.def(h::SYSTEM_MEMORY_USAGE, v0::SYSTEM_MEMORY_USAGE),
        start,
        states
            .iter()
            .map(|(st, b)| (a(key, st), int(*b)))
            .collect::<Vec<_>>(),
    ));
    if !p.v0() {
        out.push(numbers(
            h::SYSTEM_MEMORY_LIMIT,
            start,
            [(Attributes::new(), int(m.total))],
        ));
    }
    if m.total > 0 {
        out.push(numbers(
            p.def(h::SYSTEM_MEMORY_UTILIZATION, v0::SYSTEM_MEMORY_UTILIZATION),
            start,
            states
                .iter()
                .map(|(st, b)| (a(key, st), Number::Double(*b as f64 / m.total as f64)))
                .collect::<Vec<_>>(),
        ));
    }
    out
}

/// system.paging.usage and .utilization, from /proc/swaps.
fn swap(c: Ctx, swaps: &[Swap]) -> Vec<Metric> {
    let Ctx { p, start, .. } = c;
    let mut out = Vec::new();
    let dev = p.key(attr::SYSTEM_DEVICE, v0::attr::DEVICE);
    let state = p.key(attr::SYSTEM_PAGING_STATE, v0::attr::STATE);
    let (used, free) = (h::paging_state::USED, h::paging_state::FREE);
    let mut usage = Vec::new();
    let mut util = Vec::new();
    for sw in swaps {
        let free_b = sw.size_bytes.saturating_sub(sw.used_bytes);
        for (st, b) in [(used, sw.used_bytes), (free, free_b)] {
            let attrs = a(dev, &sw.device).with(state, st);
            usage.push((attrs.clone(), int(b)));
            if sw.size_bytes > 0 {
                util.push((attrs, Number::Double(b as f64 / sw.size_bytes as f64)));
            }
        }
    }
    out.push(numbers(
        p.def(h::SYSTEM_PAGING_USAGE, v0::SYSTEM_PAGING_USAGE),
        start,
        usage,
    ));
    out.push(numbers(
        p.def(h::SYSTEM_PAGING_UTILIZATION, v0::SYSTEM_PAGING_UTILIZATION),
        start,
        util,
    ));
    out
}

/// system.paging.faults and .operations, from /proc/vmstat.
fn paging(c: Ctx, v: &Vmstat) -> Vec<Metric> {
    let Ctx { p, boot, .. } = c;
    let mut out = Vec::new();
    let ty = p.key(attr::SYSTEM_PAGING_FAULT_TYPE, v0::attr::TYPE);
    let (major, minor) = (h::paging_fault_type::MAJOR, h::paging_fault_type::MINOR);
    let mut faults = Vec::new();
    faults.extend(v.minor_faults().map(|n| (a(ty, minor), int(n))));
    faults.extend(v.pgmajfault.map(|n| (a(ty, major), int(n))));
    if !faults.is_empty() {
        out.push(numbers(
            p.def(h::SYSTEM_PAGING_FAULTS, v0::SYSTEM_PAGING_FAULTS),
            boot,
            faults,
        ));
    }
    // As hostmetrics: swap-ins/outs are the major operations, page-ins/outs the minor.
    let dir = p.key(attr::SYSTEM_PAGING_DIRECTION, v0::attr::DIRECTION);
    let din = p.val(h::paging_direction::IN, v0::direction::PAGE_IN);
    let dout = p.val(h::paging_direction::OUT, v0::direction::PAGE_OUT);
    let ops: Vec<(Attributes, Number)> = [
        (din, major, v.pswpin),
        (dout, major, v.pswpout),
        (din, minor, v.pgpgin),
        (dout, minor, v.pgpgout),
    ]
    .into_iter()
    .filter_map(|(d, t, n)| Some((a(dir, d).with(ty, t), int(n?))))
    .collect();
    if !ops.is_empty() {
        out.push(numbers(
            p.def(h::SYSTEM_PAGING_OPERATIONS, v0::SYSTEM_PAGING_OPERATIONS),
            boot,
            ops,
        ));
    }
    out
}

/// system.disk.*, from /proc/diskstats (devices that never did I/O are left out:
/// loop and ram devices).
fn disks(c: Ctx, disks: &[DiskStats]) -> Vec<Metric> {
    let Ctx { p, boot, .. } = c;
    let mut out = Vec::new();
    let dev = p.key(attr::SYSTEM_DEVICE, v0::attr::DEVICE);
    let dir = p.key(attr::DISK_IO_DIRECTION, v0::attr::DIRECTION);
    let (r, w) = (disk_io_direction::READ, disk_io_direction::WRITE);
    let active: Vec<_> = disks.iter().filter(|d| !d.idle()).collect();
    let per =
        |f: &dyn Fn(&crate::family::host::collect::diskstats::DiskStats) -> (Number, Number)| {
            active
                .iter()
                .flat_map(|d| {
                    let (rv, wv) = f(d);
                    [
                        (a(dev, &d.name).with(dir, r), rv),
                        (a(dev, &d.name).with(dir, w), wv),
                    ]
                })
                .collect::<Vec<_>>()
        };
    let secs = |ms: u64| Number::Double(ms as f64 / 1000.0);
    out.push(numbers(
        p.def(fileio::SYSTEM_DISK_IO, v0::SYSTEM_DISK_IO),
        boot,
        per(&|d| (int(d.read_bytes), int(d.write_bytes))),
    ));
    out.push(numbers(
        p.def(fileio::SYSTEM_DISK_OPERATIONS, v0::SYSTEM_DISK_OPERATIONS),
        boot,
        per(&|d| (int(d.reads), int(d.writes))),
    ));
    out.push(numbers(
        p.def(
            fileio::SYSTEM_DISK_OPERATION_TIME,
            v0::SYSTEM_DISK_OPERATION_TIME,
        ),
        boot,
        per(&|d| (secs(d.read_ms), secs(d.write_ms))),
    ));
    out
}

/// system.filesystem.*, from the mounts and statvfs.
fn filesystems(c: Ctx, fss: &[(Mount, Space)]) -> Vec<Metric> {
    let Ctx { p, start, .. } = c;
    let mut out = Vec::new();
    let dev = p.key(attr::SYSTEM_DEVICE, v0::attr::DEVICE);
    let mnt = p.key(attr::SYSTEM_FILESYSTEM_MOUNTPOINT, v0::attr::MOUNTPOINT);
    let ty = p.key(attr::SYSTEM_FILESYSTEM_TYPE, v0::attr::TYPE);
    let mode = p.key(attr::SYSTEM_FILESYSTEM_MODE, v0::attr::MODE);
    let state = p.key(attr::SYSTEM_FILESYSTEM_STATE, v0::attr::STATE);
    let mut usage = Vec::new();
    let mut util = Vec::new();
    for (m, sp) in fss {
        let base = a(dev, &m.device)
            .with(mnt, m.mountpoint.as_str())
            .with(ty, m.fs_type.as_str())
            .with(
                mode,
                if m.read_only {
                    h::filesystem_mode::RO
                } else {
                    h::filesystem_mode::RW
                },
            );
        use h::filesystem_state as st;
        for (s_, b) in [
            (st::USED, sp.used),
            (st::FREE, sp.free),
            (st::RESERVED, sp.reserved),
        ] {
            usage.push((base.clone().with(state, s_), int(b)));
        }
        if sp.used + sp.free > 0 {
            util.push((
                base,
                Number::Double(sp.used as f64 / (sp.used + sp.free) as f64),
            ));
        }
    }
    out.push(numbers(
        p.def(h::SYSTEM_FILESYSTEM_USAGE, v0::SYSTEM_FILESYSTEM_USAGE),
        start,
        usage,
    ));
    out.push(numbers(
        p.def(
            h::SYSTEM_FILESYSTEM_UTILIZATION,
            v0::SYSTEM_FILESYSTEM_UTILIZATION,
        ),
        start,
        util,
    ));
    out
}

/// system.network.* per interface, from /proc/net/dev.
fn network(c: Ctx, net: &[NetDev]) -> Vec<Metric> {
    let Ctx { p, boot, .. } = c;
    let mut out = Vec::new();
    let dev = p.key(attr::NETWORK_INTERFACE_NAME, v0::attr::DEVICE);
    let dir = p.key(attr::NETWORK_IO_DIRECTION, v0::attr::DIRECTION);
    let (rx, tx) = (
        network_io_direction::RECEIVE,
        network_io_direction::TRANSMIT,
    );
    let per = |f: &dyn Fn(&crate::family::host::collect::net_dev::NetDev) -> (u64, u64)| {
        net.iter()
            .flat_map(|d| {
                let (r, t) = f(d);
                [
                    (a(dev, &d.name).with(dir, rx), int(r)),
                    (a(dev, &d.name).with(dir, tx), int(t)),
                ]
            })
            .collect::<Vec<_>>()
    };
    out.push(numbers(
        p.def(h::SYSTEM_NETWORK_IO, v0::SYSTEM_NETWORK_IO),
        boot,
        per(&|d| (d.rx_bytes, d.tx_bytes)),
    ));
    out.push(numbers(
        p.def(h::SYSTEM_NETWORK_PACKET_COUNT, v0::SYSTEM_NETWORK_PACKETS),
        boot,
        per(&|d| (d.rx_packets, d.tx_packets)),
    ));
    out.push(numbers(
        p.def(h::SYSTEM_NETWORK_PACKET_DROPPED, v0::SYSTEM_NETWORK_DROPPED),
        boot,
        per(&|d| (d.rx_dropped, d.tx_dropped)),
    ));
    out.push(numbers(
        p.def(h::SYSTEM_NETWORK_ERRORS, v0::SYSTEM_NETWORK_ERRORS),
        boot,
        per(&|d| (d.rx_errors, d.tx_errors)),
    ));
    out
}

/// system.process.count (semconv) or system.processes.count (v0), from /proc/<pid>/stat.
fn process_count(c: Ctx, procs: &[ProcStat]) -> Vec<Metric> {
    let Ctx { p, start, .. } = c;
    let mut out = Vec::new();
    if p.v0() {
        let mut by: std::collections::BTreeMap<&str, u64> = Default::default();
        for pr in procs {
            *by.entry(v0_status(pr.state)).or_default() += 1;
        }
        out.push(numbers(
            v0::SYSTEM_PROCESSES_COUNT,
            start,
            by.into_iter()
                .map(|(st, n)| (a(v0::attr::STATUS, st), int(n)))
                .collect::<Vec<_>>(),
        ));
    } else {
        let mut states = ProcessStates::default();
        for pr in procs {
            states.count(pr.state);
        }
        out.push(crate::family::process::mapping::count(&states, start));
    }
    out
}

fn tcp_connections(p: Pick, v4: &TcpStates, v6: &TcpStates, start: u64) -> Metric {
    if p.v0() {
        numbers(
            v0::SYSTEM_NETWORK_CONNECTIONS,
            start,
            TCP_STATES
                .iter()
                .enumerate()
                .map(|(idx, (_, name))| {
                    (
                        a(v0::attr::PROTOCOL, v0::PROTOCOL_TCP).with(v0::attr::STATE, *name),
                        int(v4[idx] + v6[idx]),
                    )
                })
                .collect::<Vec<_>>(),
        )
    } else {
        let mut pts = Vec::new();
        for (ty, table) in [(network_type::IPV4, v4), (network_type::IPV6, v6)] {
            for (idx, (name, _)) in TCP_STATES.iter().enumerate() {
                pts.push((
                    a(attr::NETWORK_TRANSPORT, network_transport::TCP)
                        .with(attr::NETWORK_TYPE, ty)
                        .with(attr::NETWORK_CONNECTION_STATE, *name),
                    int(table[idx]),
                ));
            }
        }
        numbers(tcp::SYSTEM_NETWORK_CONNECTION_COUNT, start, pts)
    }
}

fn processes(p: Pick, i: &Inputs<'_>, facts: HostFacts, start: u64) -> Vec<Metric> {
    if i.top.is_empty() && i.overflow.is_none() {
        return Vec::new();
    }
    let ticks = facts.ticks_per_sec.max(1) as f64;
    let secs = |t: u64| Number::Double(t as f64 / ticks);
    let mode = p.key(attr::CPU_MODE, v0::attr::STATE);
    let (user, system) = (
        p.val(attr::cpu_mode::USER, v0::process_cpu_state::USER),
        p.val(attr::cpu_mode::SYSTEM, v0::process_cpu_state::SYSTEM),
    );
    let dir = p.key(attr::DISK_IO_DIRECTION, v0::attr::DIRECTION);
    // Like every per-process series (mapping::process), plus the pid: each of these
    // describes one process.
    let who = |s: &ProcSeries| {
        let key = ProcessKey {
            executable: s.stat.comm.clone(),
            container: s.container.clone(),
            pid: Some(s.stat.pid),
        };
        crate::mapping::process::with(Attributes::new(), &key)
    };
    // Counters of a process start when it started; gauges-like sums at the agent's start.
    let mut cpu = Vec::new();
    let mut disk = Vec::new();
    let mut mem = Vec::new();
    let mut virt = Vec::new();
    let mut threads = Vec::new();
    let mut fds = Vec::new();
    for s in i.top {
        let w = who(s);
        let st = s.start_unix_nano;
        let c = s.cpu;
        cpu.push(point(
            w.clone().with(mode, user),
            secs(c.utime),
            c.start_unix_nano,
        ));
        cpu.push(point(
            w.clone().with(mode, system),
            secs(c.stime),
            c.start_unix_nano,
        ));
        if let Some(io) = s.io {
            let r = w.clone().with(dir, disk_io_direction::READ);
            disk.push(point(r, int(io.read_bytes), st));
            let wr = w.clone().with(dir, disk_io_direction::WRITE);
            disk.push(point(wr, int(io.write_bytes), st));
        }
        mem.push(point(
            w.clone(),
            int(s.stat.rss_pages * facts.page_size),
            start,
        ));
        virt.push(point(w.clone(), int(s.stat.vsize_bytes), start));
        threads.push(point(w.clone(), int(s.stat.num_threads), start));
        if let Some(n) = s.fds {
            fds.push(point(w, int(n), start));
        }
    }
    if let Some(o) = i.overflow {
        // The overflow CPU counter accumulates from the agent's start (ProcOverflow).
        let of = Attributes::new().with(attr::OTEL_METRIC_OVERFLOW, true);
        cpu.push(point(of.clone().with(mode, user), secs(o.utime), start));
        cpu.push(point(of.clone().with(mode, system), secs(o.stime), start));
        mem.push(point(of.clone(), int(o.rss_pages * facts.page_size), start));
        virt.push(point(of.clone(), int(o.vsize_bytes), start));
        threads.push(point(of, int(o.threads), start));
    }
    let metric = |def: MetricDef, points: Vec<Point>| Metric { def, points };
    let mut out = vec![
        metric(p.def(h::PROCESS_CPU_TIME, v0::PROCESS_CPU_TIME), cpu),
        metric(h::PROCESS_MEMORY_USAGE, mem),
        metric(h::PROCESS_MEMORY_VIRTUAL, virt),
        metric(p.def(h::PROCESS_THREAD_COUNT, v0::PROCESS_THREADS), threads),
    ];
    if !disk.is_empty() {
        out.push(metric(
            p.def(fileio::PROCESS_DISK_IO, v0::PROCESS_DISK_IO),
            disk,
        ));
    }
    if !fds.is_empty() {
        out.push(metric(
            p.def(
                h::PROCESS_UNIX_FILE_DESCRIPTOR_COUNT,
                v0::PROCESS_OPEN_FILE_DESCRIPTORS,
            ),
            fds,
        ));
    }
    out
}

fn point(attributes: Attributes, n: Number, start_unix_nano: u64) -> Point {
    Point {
        attributes,
        value: PointValue::Number(n),
        start_unix_nano,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::host::collect::{
        diskstats, filesystem, loadavg, meminfo, net_dev, stat, vmstat,
    };
    use crate::model::{PointValue, Value};

    fn sample() -> Sample {
        Sample {
            uptime: Some(100.5),
            stat: Some(stat::parse(
                "cpu 100 10 50 800 20 5 5 10\ncpu0 50 5 25 400 10 3 2 5\ncpu1 50 5 25 400 10 2 3 5\nbtime 1000\nprocesses 77\n",
            )),
            meminfo: meminfo::parse(
                "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 300 kB\nSReclaimable: 50 kB\nSUnreclaim: 20 kB\n",
            ),
            loadavg: loadavg::parse("0.5 0.25 0.125 1/2 3"),
            vmstat: Some(vmstat::parse_vmstat(
                "pgfault 100\npgmajfault 10\npgpgin 1\npgpgout 2\npswpin 3\npswpout 4\n",
            )),
            swaps: Some(vmstat::parse_swaps("h\n/dev/zram0 partition 1000 250 100\n")),
            disks: Some(diskstats::parse("254 0 vda 10 0 8 1500 20 0 16 2500 0 3000 4000\n7 0 loop0 0 0 0 0 0 0 0 0 0 0 0\n")),
            filesystems: Some(vec![(
                filesystem::Mount {
                    device: "/dev/vda1".into(),
                    mountpoint: "/".into(),
                    fs_type: "ext4".into(),
                    read_only: false,
                },
                filesystem::Space { used: 60, free: 30, reserved: 10 },
            )]),
            statvfs_skipped: [("/mnt/dead".to_owned(), 3)].into(),
            net: Some(net_dev::parse("lo: 1 2 3 4 0 0 0 0 5 6 7 8 0 0 0 0\n")),
            tcp: Some(([1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0], [0; 11])),
            processes: Some(vec![
                crate::family::host::collect::process::parse_stat(
                    "7 (my proc) R 1 1 1 0 -1 0 0 0 0 0 200 100 0 0 20 0 4 0 50 4096 3 0",
                )
                .expect("stat"),
            ]),
        }
    }

    fn facts() -> HostFacts {
        HostFacts {
            ticks_per_sec: 100,
            page_size: 4096,
        }
    }

    /// (metric name, sorted attribute keys of its first point) for every metric.
    fn shape(names: MetricNames) -> Vec<(String, Vec<String>)> {
        let s = sample();
        let mut prev = s.stat.clone().expect("stat");
        prev.total.user -= 10;
        prev.total.idle -= 30;
        let top = vec![ProcSeries {
            stat: s.processes.as_ref().expect("procs")[0].clone(),
            io: Some(ProcIo {
                read_bytes: 1,
                write_bytes: 2,
            }),
            fds: Some(5),
            start_unix_nano: 7,
            cpu: OwnCpu {
                utime: s.processes.as_ref().expect("procs")[0].utime,
                stime: s.processes.as_ref().expect("procs")[0].stime,
                start_unix_nano: 7,
            },
            container: None,
        }];
        let inputs = Inputs {
            sample: &s,
            prev_stat: Some(&prev),
            top: &top,
            overflow: Some(ProcOverflow {
                processes: 3,
                utime: 1,
                stime: 1,
                rss_pages: 1,
                vsize_bytes: 1,
                threads: 3,
            }),
        };
        metrics(
            &inputs,
            facts(),
            Options {
                names,
                per_cpu: false,
            },
            42,
        )
        .iter()
        .map(|m| {
            let keys = m.points.first().map_or_else(Vec::new, |p| {
                let mut k: Vec<String> =
                    p.attributes.iter().map(|(k, _)| (*k).to_owned()).collect();
                k.sort();
                k
            });
            (m.def.name.to_owned(), keys)
        })
        .collect()
    }

    fn pinned(rows: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        rows.iter()
            .map(|(n, k)| ((*n).to_owned(), k.iter().map(|s| (*s).to_owned()).collect()))
            .collect()
    }

    #[test]
    fn semconv_1_44_name_set_is_pinned() {
        let pid_exe: &[&str] = &["cpu.mode", "process.executable.name", "process.pid"];
        assert_eq!(
            shape(MetricNames::Semconv),
            pinned(&[
                ("system.uptime", &[]),
                ("system.cpu.time", &["cpu.mode"]),
                ("system.cpu.utilization", &["cpu.mode"]),
                ("system.process.created", &[]),
                ("system.cpu.load_average.1m", &[]),
                ("system.cpu.load_average.5m", &[]),
                ("system.cpu.load_average.15m", &[]),
                ("system.memory.usage", &["system.memory.state"]),
                ("system.memory.limit", &[]),
                ("system.memory.utilization", &["system.memory.state"]),
                (
                    "system.paging.usage",
                    &["system.device", "system.paging.state"]
                ),
                (
                    "system.paging.utilization",
                    &["system.device", "system.paging.state"]
                ),
                ("system.paging.faults", &["system.paging.fault.type"]),
                (
                    "system.paging.operations",
                    &["system.paging.direction", "system.paging.fault.type"]
                ),
                ("system.disk.io", &["disk.io.direction", "system.device"]),
                (
                    "system.disk.operations",
                    &["disk.io.direction", "system.device"]
                ),
                (
                    "system.disk.operation_time",
                    &["disk.io.direction", "system.device"]
                ),
                (
                    "system.filesystem.usage",
                    &[
                        "system.device",
                        "system.filesystem.mode",
                        "system.filesystem.mountpoint",
                        "system.filesystem.state",
                        "system.filesystem.type"
                    ]
                ),
                (
                    "system.filesystem.utilization",
                    &[
                        "system.device",
                        "system.filesystem.mode",
                        "system.filesystem.mountpoint",
                        "system.filesystem.type"
                    ]
                ),
                ("sonde.collect.skipped", &["system.filesystem.mountpoint"]),
                (
                    "system.network.io",
                    &["network.interface.name", "network.io.direction"]
                ),
                (
                    "system.network.packet.count",
                    &["network.interface.name", "network.io.direction"]
                ),
                (
                    "system.network.packet.dropped",
                    &["network.interface.name", "network.io.direction"]
                ),
                (
                    "system.network.errors",
                    &["network.interface.name", "network.io.direction"]
                ),
                (
                    "system.network.connection.count",
                    &[
                        "network.connection.state",
                        "network.transport",
                        "network.type"
                    ]
                ),
                ("system.process.count", &["process.state"]),
                ("process.cpu.time", pid_exe),
                (
                    "process.memory.usage",
                    &["process.executable.name", "process.pid"]
                ),
                (
                    "process.memory.virtual",
                    &["process.executable.name", "process.pid"]
                ),
                (
                    "process.thread.count",
                    &["process.executable.name", "process.pid"]
                ),
                (
                    "process.disk.io",
                    &[
                        "disk.io.direction",
                        "process.executable.name",
                        "process.pid"
                    ]
                ),
                (
                    "process.unix.file_descriptor.count",
                    &["process.executable.name", "process.pid"]
                ),
            ])
        );
    }

    #[test]
    fn hostmetrics_v0_name_set_is_pinned() {
        assert_eq!(
            shape(MetricNames::HostmetricsV0),
            pinned(&[
                ("system.uptime", &[]),
                ("system.cpu.time", &["state"]),
                ("system.cpu.utilization", &["state"]),
                ("system.processes.created", &[]),
                ("system.cpu.load_average.1m", &[]),
                ("system.cpu.load_average.5m", &[]),
                ("system.cpu.load_average.15m", &[]),
                ("system.memory.usage", &["state"]),
                ("system.memory.utilization", &["state"]),
                ("system.paging.usage", &["device", "state"]),
                ("system.paging.utilization", &["device", "state"]),
                ("system.paging.faults", &["type"]),
                ("system.paging.operations", &["direction", "type"]),
                ("system.disk.io", &["device", "direction"]),
                ("system.disk.operations", &["device", "direction"]),
                ("system.disk.operation_time", &["device", "direction"]),
                (
                    "system.filesystem.usage",
                    &["device", "mode", "mountpoint", "state", "type"]
                ),
                (
                    "system.filesystem.utilization",
                    &["device", "mode", "mountpoint", "type"]
                ),
                ("sonde.collect.skipped", &["system.filesystem.mountpoint"]),
                ("system.network.io", &["device", "direction"]),
                ("system.network.packets", &["device", "direction"]),
                ("system.network.dropped", &["device", "direction"]),
                ("system.network.errors", &["device", "direction"]),
                ("system.network.connections", &["protocol", "state"]),
                ("system.processes.count", &["status"]),
                (
                    "process.cpu.time",
                    &["process.executable.name", "process.pid", "state"]
                ),
                (
                    "process.memory.usage",
                    &["process.executable.name", "process.pid"]
                ),
                (
                    "process.memory.virtual",
                    &["process.executable.name", "process.pid"]
                ),
                (
                    "process.threads",
                    &["process.executable.name", "process.pid"]
                ),
                (
                    "process.disk.io",
                    &["direction", "process.executable.name", "process.pid"]
                ),
                (
                    "process.open_file_descriptors",
                    &["process.executable.name", "process.pid"]
                ),
            ])
        );
    }

    fn find<'a>(ms: &'a [Metric], name: &str) -> &'a Metric {
        ms.iter()
            .find(|m| m.def.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    fn value(m: &Metric, key: &str, val: &str) -> f64 {
        m.points
            .iter()
            .find(|p| p.attributes.get(key) == Some(&Value::Str(val.into())))
            .map(|p| match &p.value {
                PointValue::Number(n) => n.as_f64(),
                PointValue::Histogram(_) | PointValue::Exponential(_) => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{}: no {key}={val}", m.def.name))
    }

    #[test]
    fn a_top_process_in_a_container_carries_its_container_and_pod() {
        let s = sample();
        let stat = s.processes.as_ref().expect("procs")[0].clone();
        let id = "d".repeat(64);
        let container = Arc::new(Container {
            id: id.clone(),
            runtime: crate::cgroup::Runtime::Containerd,
            k8s: Some(crate::cgroup::K8sNames {
                namespace: "shop".into(),
                pod: "cart-7d9".into(),
                container: Some("cart".into()),
            }),
        });
        let top = vec![ProcSeries {
            stat,
            io: None,
            fds: None,
            start_unix_nano: 7,
            cpu: OwnCpu::default(),
            container: Some(container),
        }];
        let inputs = Inputs {
            sample: &s,
            prev_stat: None,
            top: &top,
            overflow: None,
        };
        let opts = Options {
            names: MetricNames::Semconv,
            per_cpu: false,
        };
        let out = metrics(&inputs, facts(), opts, 42);
        let cpu = out
            .iter()
            .find(|m| m.def.name == h::PROCESS_CPU_TIME.name)
            .expect("process.cpu.time");
        for p in &cpu.points {
            let a = &p.attributes;
            assert_eq!(a.get(attr::CONTAINER_ID), Some(&Value::from(id.as_str())));
            assert_eq!(a.get(attr::K8S_POD_NAME), Some(&Value::from("cart-7d9")));
            assert_eq!(a.get(attr::K8S_CONTAINER_NAME), Some(&Value::from("cart")));
            assert!(a.get(attr::PROCESS_PID).is_some(), "top-N keeps the pid");
        }
    }

    #[test]
    fn values_units_and_start_times() {
        let s = sample();
        let ms = metrics(
            &Inputs::sample(&s),
            facts(),
            Options {
                names: MetricNames::Semconv,
                per_cpu: false,
            },
            42,
        );
        let cpu = find(&ms, "system.cpu.time");
        assert_eq!(value(cpu, "cpu.mode", "user"), 1.0, "100 ticks at 100 Hz");
        assert_eq!(value(cpu, "cpu.mode", "interrupt"), 0.1, "irq + softirq");
        assert_eq!(
            cpu.points[0].start_unix_nano,
            1000 * 1_000_000_000,
            "since boot"
        );
        assert!(
            ms.iter().all(|m| m.def.name != "system.cpu.utilization"),
            "no utilization without a previous sample"
        );
        let mem = find(&ms, "system.memory.usage");
        let sum: f64 = mem
            .points
            .iter()
            .map(|p| match p.value {
                PointValue::Number(n) => n.as_f64(),
                PointValue::Histogram(_) | PointValue::Exponential(_) => 0.0,
            })
            .sum();
        assert_eq!(sum, 1000.0 * 1024.0, "states add up to MemTotal");
        assert_eq!(value(mem, "system.memory.state", "cached"), 350.0 * 1024.0);
        let disk = find(&ms, "system.disk.io");
        assert_eq!(disk.points.len(), 2, "idle loop0 is left out");
        assert_eq!(value(disk, "disk.io.direction", "write"), 16.0 * 512.0);
        assert_eq!(
            value(
                find(&ms, "system.disk.operation_time"),
                "disk.io.direction",
                "read"
            ),
            1.5
        );
        let fs = find(&ms, "system.filesystem.utilization");
        assert!((fs.points[0].value == PointValue::Number(Number::Double(60.0 / 90.0))));
        let tcp = find(&ms, "system.network.connection.count");
        assert_eq!(value(tcp, "network.connection.state", "listen"), 2.0);
        assert_eq!(
            value(
                find(&ms, "system.network.io"),
                "network.io.direction",
                "transmit"
            ),
            5.0
        );
    }

    #[test]
    fn cpu_utilization_as_hostmetrics_with_zero_period_guard() {
        let prev = CpuTimes {
            user: 100,
            idle: 100,
            ..Default::default()
        };
        let cur = CpuTimes {
            user: 130,
            idle: 170,
            ..Default::default()
        };
        let u = cpu_utilization(&prev, &cur).expect("time passed");
        assert_eq!(u.0[0], 0.3);
        assert_eq!(u.0[3], 0.7);
        assert_eq!(cpu_utilization(&cur, &cur), None, "no time passed");
        assert_eq!(
            cpu_utilization(&cur, &prev),
            None,
            "counters went backwards"
        );
    }

    #[test]
    fn per_cpu_carries_the_logical_number_and_v0_the_cpu_name() {
        let s = sample();
        let prev = s.stat.clone().expect("stat");
        for (names, key, val) in [
            (MetricNames::Semconv, "cpu.logical_number", Value::Int(1)),
            (MetricNames::HostmetricsV0, "cpu", Value::Str("cpu1".into())),
        ] {
            let ms = metrics(
                &Inputs {
                    prev_stat: Some(&prev),
                    ..Inputs::sample(&s)
                },
                facts(),
                Options {
                    names,
                    per_cpu: true,
                },
                0,
            );
            let cpu = find(&ms, "system.cpu.time");
            assert!(cpu
                .points
                .iter()
                .any(|p| p.attributes.get(key) == Some(&val)));
            assert!(
                ms.iter().all(|m| m.def.name != "system.cpu.utilization"),
                "no time passed: no utilization"
            );
        }
    }

    #[test]
    fn v0_process_statuses_and_connection_states() {
        assert_eq!(v0_status('D'), "blocked");
        assert_eq!(v0_status('Z'), "zombies");
        assert_eq!(v0_status('?'), "unknown");
        let s = sample();
        let ms = metrics(
            &Inputs::sample(&s),
            facts(),
            Options {
                names: MetricNames::HostmetricsV0,
                per_cpu: false,
            },
            0,
        );
        let c = find(&ms, "system.network.connections");
        assert_eq!(value(c, "state", "LISTEN"), 2.0);
        assert_eq!(value(c, "state", "ESTABLISHED"), 1.0);
        assert_eq!(
            value(find(&ms, "system.processes.count"), "status", "running"),
            1.0
        );
        assert_eq!(
            value(
                find(&ms, "system.paging.operations"),
                "direction",
                "page_in"
            ),
            3.0 + 1.0 - 1.0
        );
    }
}
