//! Host metrics from /proc and /sys (hostmetrics-compatible), in every mode: the reader
//! in `collect`, top-N process selection here, the names in `mapping`.
//!
//! Top-N (metrics.md rule 7): each interval, the N processes that used the most CPU
//! during the interval and the N with the largest resident memory get their own series
//! (at most 2N); everything else is folded into one `otel.metric.overflow=true` series.
//! The overflow CPU counter adds up the CPU the other processes used interval by
//! interval, so it stays monotonic as processes move in and out of the top.

pub mod collect;
pub mod config;
pub mod mapping;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cgroup::{Attribution, Container};
use crate::config::HostConfig;
use crate::family::host::collect::process::ProcStat;
use crate::family::host::collect::stat::Stat;
use crate::family::host::collect::HostReader;
use crate::family::host::mapping::{self as map, HostFacts, MetricNames, Options, ProcOverflow};
use crate::probe::{ProbeReport, ProbeState};
use crate::source::{Output, Source};

/// CPU ticks of a process at the previous sample; `starttime` tells a reused pid apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub starttime: u64,
    pub utime: u64,
    pub stime: u64,
}

#[derive(Debug)]
pub struct HostSource {
    reader: HostReader,
    opts: Options,
    top_n: usize,
    facts: HostFacts,
    prev_stat: Option<Stat>,
    prev_procs: HashMap<u32, Seen>,
    /// CPU ticks used by processes outside the top N, since the agent started.
    overflow_utime: u64,
    overflow_stime: u64,
    /// The top processes' own CPU series: where each began (pid -> base).
    own_cpu: HashMap<u32, CpuBase>,
    /// When the previous sample was taken (Unix ns).
    prev_sample: u64,
    /// Names the top processes' containers (`None` without cgroup v2, or in tests that
    /// give the source no resolver).
    containers: Option<Containers>,
}

/// A process's cgroup v2 path (/proc/PID/cgroup) -> its directory's inode, which is the
/// cgroup id the probes record -> the container the families' shared resolver knows it
/// as, so the top processes carry the same `container.id` and Kubernetes names as every
/// other per-process series.
#[derive(Debug)]
struct Containers {
    /// The v2 hierarchy's mount point (the paths in /proc/PID/cgroup are under it).
    root: PathBuf,
    attribution: Attribution,
}

impl Containers {
    fn of(&mut self, reader: &HostReader, pid: u32) -> Option<Arc<Container>> {
        let path = reader.process_cgroup(pid)?;
        let dir = self.root.join(path.trim_start_matches('/'));
        let id = std::fs::metadata(dir).ok()?.ino();
        self.attribution.container(id)
    }
}

/// Where a top process's own CPU series begins: ticks already reported elsewhere (by
/// the overflow series) and the series' start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuBase {
    starttime: u64,
    utime: u64,
    stime: u64,
    start_unix_nano: u64,
}

impl HostSource {
    /// `tcp_from_probe`: the TCP probe exports `system.network.connection.count` and
    /// wins the merge, so /proc/net/tcp need not be read at all.
    /// `processes`: the cgroup resolver the families share, to name the top processes'
    /// containers.
    pub fn new(
        config: &HostConfig,
        names: MetricNames,
        tcp_from_probe: bool,
        processes: &Attribution,
    ) -> Self {
        let reader = HostReader::default();
        let reader = if tcp_from_probe && names == MetricNames::Semconv {
            reader.without_tcp_states()
        } else {
            reader
        };
        let mut source = Self::with_reader(reader, config, names, host_facts());
        source.containers = processes.root().map(|root| Containers {
            root,
            attribution: processes.clone(),
        });
        source
    }

    pub fn with_reader(
        reader: HostReader,
        config: &HostConfig,
        names: MetricNames,
        facts: HostFacts,
    ) -> Self {
        Self {
            reader,
            opts: Options {
                names,
                per_cpu: config.per_cpu,
            },
            top_n: config.top_processes,
            facts,
            prev_stat: None,
            prev_procs: HashMap::new(),
            overflow_utime: 0,
            overflow_stime: 0,
            own_cpu: HashMap::new(),
            prev_sample: 0,
            containers: None,
        }
    }
}

/// Sources that need no probe, in both modes. The host source (fallback metrics,
/// issue 6) includes system.process.count; without it the process-state source keeps it.
pub fn sources(
    config: &crate::config::Config,
    probes: &[ProbeReport],
    processes: &Attribution,
) -> Vec<Box<dyn Source>> {
    if config.host.enabled {
        let tcp_from_probe = probes
            .iter()
            .any(|r| r.probe == "tcp.state" && r.state == ProbeState::Attached);
        vec![Box::new(HostSource::new(
            &config.host,
            config.metric_names,
            tcp_from_probe,
            processes,
        ))]
    } else {
        vec![Box::new(
            crate::family::process::ProcessStateSource::default(),
        )]
    }
}

/// USER_HZ and the page size, from sysconf (fall back to Linux's usual 100 and 4096).
pub fn host_facts() -> HostFacts {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    HostFacts {
        ticks_per_sec: u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100),
        page_size: u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096),
    }
}

/// CPU ticks a process used since the previous sample: everything if it is new (or
/// its pid was reused).
fn cpu_delta(p: &ProcStat, prev: &HashMap<u32, Seen>) -> (u64, u64) {
    match prev.get(&p.pid) {
        Some(s) if s.starttime == p.starttime => (
            p.utime.saturating_sub(s.utime),
            p.stime.saturating_sub(s.stime),
        ),
        _ => (p.utime, p.stime),
    }
}

/// Indices of the top `n` processes by CPU used in the interval and the top `n` by
/// resident memory (the union, in ascending index order). Ties go to the lower pid so
/// the choice is stable from one interval to the next.
pub fn select_top(procs: &[ProcStat], prev: &HashMap<u32, Seen>, n: usize) -> Vec<usize> {
    let mut by_cpu: Vec<(u64, u32, usize)> = procs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (u, s) = cpu_delta(p, prev);
            (u + s, p.pid, i)
        })
        .collect();
    by_cpu.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut by_mem: Vec<(u64, u32, usize)> = procs
        .iter()
        .enumerate()
        .map(|(i, p)| (p.rss_pages, p.pid, i))
        .collect();
    by_mem.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut chosen: Vec<usize> = by_cpu
        .iter()
        .take(n)
        .chain(by_mem.iter().take(n))
        .map(|(_, _, i)| *i)
        .collect();
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

impl HostSource {
    /// Chooses the top processes, reads their io and fds, and folds the rest. `now`
    /// (Unix ns) is the sample's time.
    ///
    /// Each CPU tick is reported by exactly one series: a process that comes out of the
    /// overflow into the top N starts a series of its own at the previous sample, from
    /// the ticks it had then (the overflow counted those); one that goes back keeps its
    /// later ticks in the overflow, and a later return starts yet another series.
    fn top_processes(
        &mut self,
        procs: &[ProcStat],
        boot_unix_nano: u64,
        now: u64,
    ) -> (Vec<map::ProcSeries>, Option<ProcOverflow>) {
        let first = self.prev_procs.is_empty();
        let chosen = select_top(procs, &self.prev_procs, self.top_n);
        let mut top = Vec::with_capacity(chosen.len());
        let mut overflow = ProcOverflow::default();
        let mut own_cpu = HashMap::with_capacity(chosen.len());
        let mut next = chosen.iter().peekable();
        for (i, p) in procs.iter().enumerate() {
            if next.peek() == Some(&&i) {
                next.next();
                let ticks = self.facts.ticks_per_sec.max(1);
                let started = boot_unix_nano
                    .saturating_add(p.starttime.saturating_mul(1_000_000_000) / ticks);
                let base = match (self.own_cpu.get(&p.pid), self.prev_procs.get(&p.pid)) {
                    // Still in the top: the same series goes on.
                    (Some(b), _) if b.starttime == p.starttime => *b,
                    // Out of the overflow (which counted its ticks up to the previous
                    // sample): a new series from there.
                    (_, Some(s)) if s.starttime == p.starttime && !first => CpuBase {
                        starttime: p.starttime,
                        utime: s.utime,
                        stime: s.stime,
                        start_unix_nano: self.prev_sample,
                    },
                    // New since the previous sample, or the first sample: its whole life.
                    _ => CpuBase {
                        starttime: p.starttime,
                        utime: 0,
                        stime: 0,
                        start_unix_nano: started,
                    },
                };
                own_cpu.insert(p.pid, base);
                top.push(map::ProcSeries {
                    stat: p.clone(),
                    io: self.reader.process_io(p.pid),
                    fds: self.reader.process_fds(p.pid),
                    start_unix_nano: started,
                    cpu: map::OwnCpu {
                        utime: p.utime.saturating_sub(base.utime),
                        stime: p.stime.saturating_sub(base.stime),
                        start_unix_nano: base.start_unix_nano,
                    },
                    container: self
                        .containers
                        .as_mut()
                        .and_then(|c| c.of(&self.reader, p.pid)),
                });
                continue;
            }
            overflow.processes += 1;
            overflow.rss_pages += p.rss_pages;
            overflow.vsize_bytes += p.vsize_bytes;
            overflow.threads += p.num_threads;
            // The first sample only seeds: CPU used before the agent started is not
            // the overflow series' to report.
            if !first {
                let (u, s) = cpu_delta(p, &self.prev_procs);
                self.overflow_utime += u;
                self.overflow_stime += s;
            }
        }
        overflow.utime = self.overflow_utime;
        overflow.stime = self.overflow_stime;
        self.own_cpu = own_cpu;
        self.prev_sample = now;
        self.prev_procs = procs
            .iter()
            .map(|p| {
                (
                    p.pid,
                    Seen {
                        starttime: p.starttime,
                        utime: p.utime,
                        stime: p.stime,
                    },
                )
            })
            .collect();
        (top, (overflow.processes > 0).then_some(overflow))
    }
}

impl Source for HostSource {
    fn name(&self) -> &'static str {
        "host"
    }

    fn collect(&mut self, start: u64, out: &mut Output) {
        let sample = self.reader.sample();
        let boot = sample
            .stat
            .as_ref()
            .and_then(|s| s.boot_time)
            .map_or(start, |b| b.saturating_mul(1_000_000_000));
        let (top, overflow) = match (&sample.processes, self.top_n) {
            (Some(procs), n) if n > 0 => self.top_processes(procs, boot, crate::unix_nanos()),
            _ => (Vec::new(), None),
        };
        let inputs = map::Inputs {
            sample: &sample,
            prev_stat: self.prev_stat.as_ref(),
            top: &top,
            overflow,
        };
        out.metrics
            .extend(map::metrics(&inputs, self.facts, self.opts, start));
        self.prev_stat = sample.stat;
    }
}

/// The metrics of the probe sources and of the /proc sources as one list with one
/// entry per metric name. Both can supply a name (system.disk.io, process.disk.io,
/// system.process.created, system.network.connection.count): exporting two series sets
/// under one name would double every sum, so one side wins. By default the probes'
/// (exact, event-driven: "eBPF supplies what /proc cannot"); under `metric_names:
/// hostmetrics_v0` the /proc side, whose legacy attribute names those dashboards expect.
/// `unavailable`: probe metrics a missing probe leaves empty or stale (a family that
/// attached only partly, `family::unavailable_twins`): the /proc side's are kept.
pub fn merge(
    mut probes: Vec<crate::model::Metric>,
    procfs: Vec<crate::model::Metric>,
    names: MetricNames,
    unavailable: &[&str],
) -> Vec<crate::model::Metric> {
    probes.retain(|m| !unavailable.contains(&m.def.name));
    let (first, second) = match names {
        MetricNames::Semconv => (probes, procfs),
        MetricNames::HostmetricsV0 => (procfs, probes),
    };
    let taken: std::collections::HashSet<&'static str> = first.iter().map(|m| m.def.name).collect();
    let mut out = first;
    out.extend(second.into_iter().filter(|m| !taken.contains(m.def.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_(pid: u32, utime: u64, rss: u64) -> ProcStat {
        ProcStat {
            pid,
            comm: format!("p{pid}"),
            state: 'S',
            utime,
            stime: 0,
            num_threads: 1,
            starttime: 10,
            vsize_bytes: 0,
            rss_pages: rss,
        }
    }

    #[test]
    fn top_by_cpu_in_the_interval_and_by_memory() {
        let procs = vec![
            proc_(1, 1000, 1),
            proc_(2, 10, 500),
            proc_(3, 50, 2),
            proc_(4, 5, 3),
        ];
        let mut prev = HashMap::new();
        // pid 1 has used a lot in its life but nothing in this interval.
        prev.insert(
            1,
            Seen {
                starttime: 10,
                utime: 1000,
                stime: 0,
            },
        );
        // pid 4's number was reused by a new process: its whole time counts.
        prev.insert(
            4,
            Seen {
                starttime: 9,
                utime: 0,
                stime: 0,
            },
        );
        assert_eq!(
            select_top(&procs, &prev, 1),
            vec![1, 2],
            "pid 3 by CPU, pid 2 by memory"
        );
        assert_eq!(select_top(&procs, &prev, 2), vec![1, 2, 3]);
        assert_eq!(select_top(&procs, &prev, 0), Vec::<usize>::new());
        assert_eq!(select_top(&[], &prev, 3), Vec::<usize>::new());
    }

    /// A host source keeping the top 1 process, on no /proc (tests feed it samples).
    fn top_one_source() -> HostSource {
        let cfg = HostConfig {
            enabled: true,
            per_cpu: false,
            top_processes: 1,
        };
        let facts = HostFacts {
            ticks_per_sec: 100,
            page_size: 4096,
        };
        HostSource::with_reader(
            HostReader::new("/nonexistent"),
            &cfg,
            MetricNames::Semconv,
            facts,
        )
    }

    #[test]
    fn overflow_cpu_is_monotonic_and_seeded_on_the_first_sample() {
        let mut src = top_one_source();
        // Interval 1: seed. pid 1 is top by both.
        let (top, of) = src.top_processes(&[proc_(1, 100, 9), proc_(2, 50, 1)], 0, 1);
        assert_eq!(top.len(), 1);
        assert_eq!(of.map(|o| (o.utime, o.processes)), Some((0, 1)));
        // Interval 2: pid 2 used 30 more ticks and takes the CPU top spot; pid 1 (idle)
        // stays top by memory; pid 3 (new, 7 ticks) is folded.
        let (top, of) =
            src.top_processes(&[proc_(1, 100, 9), proc_(2, 80, 1), proc_(3, 7, 0)], 0, 2);
        assert_eq!(top.iter().map(|t| t.stat.pid).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(of.map(|o| o.utime), Some(7));
        // Interval 3: pid 3 exits; pid 1 stays top by memory; pid 4 (new, 5 ticks) takes
        // the CPU spot; pid 2, idle, folds without adding anything.
        let (_, of) = src.top_processes(&[proc_(1, 100, 9), proc_(2, 80, 1), proc_(4, 5, 0)], 0, 3);
        assert_eq!(
            of.map(|o| o.utime),
            Some(7),
            "pid 2 used nothing more: still 7"
        );
    }

    #[test]
    fn a_process_out_of_the_overflow_does_not_report_its_ticks_again() {
        let mut src = top_one_source();
        // pid 9 is the top by memory throughout and idle; pids 1 and 2 take turns at the
        // CPU spot. Each row: (pid, utime) of 1 and 2, and the sample's time.
        let samples = [
            ([(1, 10), (2, 5)], 100),
            ([(1, 12), (2, 25)], 200),
            ([(1, 40), (2, 26)], 300),
        ];
        // Latest value of each exported series, keyed by (pid, start); the overflow apart.
        let mut series: HashMap<(u32, u64), u64> = HashMap::new();
        let mut overflow = 0;
        for (procs, now) in samples {
            let mut all = vec![proc_(9, 0, 1000)];
            all.extend(procs.iter().map(|(pid, t)| proc_(*pid, *t, 1)));
            let (top, of) = src.top_processes(&all, 0, now);
            for t in top {
                series.insert((t.stat.pid, t.cpu.start_unix_nano), t.cpu.utime);
            }
            overflow = of.map_or(overflow, |o| o.utime);
        }
        // Truth: pid 1 was in the top at the first sample (all its 40 ticks are its own);
        // pid 2 was folded then (its 5 earlier ticks predate the agent): 21 since.
        let exported: u64 = series.values().sum::<u64>() + overflow;
        assert_eq!(exported, 40 + 21, "{series:?} + overflow {overflow}");
        // The table: pid 1's first series, pid 2's series from the first sample, pid 1's
        // second series from the second sample; the overflow has 2 + 1.
        // (Processes started 10 ticks after boot: 0.1 s.)
        const STARTED: u64 = 100_000_000;
        let mut rows: Vec<_> = series.into_iter().collect();
        rows.sort();
        assert_eq!(
            rows,
            [
                ((1, 200), 28),
                ((1, STARTED), 10),
                ((2, 100), 20),
                ((9, STARTED), 0)
            ]
        );
        assert_eq!(overflow, 3);
    }

    #[test]
    fn merge_keeps_the_proc_side_where_the_probes_that_feed_a_metric_did_not_attach() {
        use crate::model::{numbers, Attributes, Number};
        use sonde_semconv::{fileio, metric};
        let m = |def, v: i64| numbers(def, 0, [(Attributes::new(), Number::Int(v))]);
        let probes = vec![
            m(fileio::SYSTEM_DISK_IO, 0),
            m(fileio::SONDE_FILE_IO, 2),
            m(metric::SYSTEM_PROCESS_CREATED, 3),
        ];
        let procfs = vec![
            m(fileio::SYSTEM_DISK_IO, 10),
            m(metric::SYSTEM_PROCESS_CREATED, 30),
        ];
        let got: Vec<_> = merge(probes, procfs, MetricNames::Semconv, &["system.disk.io"])
            .iter()
            .map(|x| (x.def.name, x.points[0].value.clone()))
            .collect();
        let v = |n: i64| crate::model::PointValue::Number(Number::Int(n));
        assert_eq!(
            got,
            [
                ("sonde.file.io", v(2)),
                ("system.process.created", v(3)),
                ("system.disk.io", v(10)),
            ]
        );
    }

    #[test]
    fn unavailable_twins_follow_the_probe_reports() {
        use crate::family::{unavailable_twins, FAMILIES};
        use crate::probe::{ProbeReport, ProbeState};
        let attached = |probe| ProbeReport::new(probe, ProbeState::Attached);
        let mut reports: Vec<ProbeReport> = FAMILIES
            .iter()
            .flat_map(|f| f.programs())
            .map(|p| attached(p.probe))
            .collect();
        assert!(unavailable_twins(FAMILIES.iter().copied(), &reports).is_empty());
        for r in &mut reports {
            if r.probe == "fileio.block_complete" || r.probe == "process.fork" {
                r.state = ProbeState::Failed("forced".into());
            }
        }
        let mut got = unavailable_twins(FAMILIES.iter().copied(), &reports);
        got.sort_unstable();
        assert_eq!(
            got,
            [
                "process.disk.io",
                "system.disk.io",
                "system.disk.operation_time",
                "system.disk.operations",
                "system.process.created"
            ]
        );
    }

    #[test]
    fn merge_keeps_one_series_set_per_name() {
        use crate::model::{numbers, Attributes, Number};
        use sonde_semconv::{fileio, host};
        let m = |def, v: i64| numbers(def, 0, [(Attributes::new(), Number::Int(v))]);
        let probes = || vec![m(fileio::SYSTEM_DISK_IO, 1), m(fileio::SONDE_FILE_IO, 2)];
        let procfs = || vec![m(fileio::SYSTEM_DISK_IO, 10), m(host::SYSTEM_UPTIME, 20)];
        let got = |names| {
            merge(probes(), procfs(), names, &[])
                .iter()
                .map(|x| (x.def.name, x.points[0].value.clone()))
                .collect::<Vec<_>>()
        };
        let v = |n: i64| crate::model::PointValue::Number(Number::Int(n));
        assert_eq!(
            got(MetricNames::Semconv),
            [
                ("system.disk.io", v(1)),
                ("sonde.file.io", v(2)),
                ("system.uptime", v(20))
            ]
        );
        assert_eq!(
            got(MetricNames::HostmetricsV0),
            [
                ("system.disk.io", v(10)),
                ("system.uptime", v(20)),
                ("sonde.file.io", v(2))
            ]
        );
    }

    #[test]
    fn collects_from_the_real_proc() {
        let cfg = HostConfig {
            enabled: true,
            per_cpu: true,
            top_processes: 3,
        };
        let mut src = HostSource::new(
            &cfg,
            MetricNames::Semconv,
            false,
            &Attribution::for_host(false),
        );
        let mut out = Output::default();
        src.collect(1, &mut out);
        // Utilization needs /proc/stat to have moved between two samples (its counters
        // advance once per clock tick): sample again until it has, for a few seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            out = Output::default();
            src.collect(1, &mut out);
            let moved = out
                .metrics
                .iter()
                .any(|m| m.def.name == "system.cpu.utilization");
            if moved || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let names: Vec<&str> = out.metrics.iter().map(|m| m.def.name).collect();
        for want in [
            "system.cpu.time",
            "system.cpu.utilization",
            "system.memory.usage",
            "system.network.io",
            "system.process.count",
            "process.cpu.time",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let cpu = out
            .metrics
            .iter()
            .find(|m| m.def.name == "process.cpu.time")
            .expect("process.cpu.time");
        assert!(
            cpu.points.len() <= 2 * (2 * 3) + 2,
            "at most 2N processes plus overflow"
        );
    }
}
