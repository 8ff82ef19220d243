//! One refresh of the view: the host summary and the process, TCP, DNS and storage
//! panels, computed from a snapshot and the one before it.
//!
//! Counters become per-second rates over the interval between the two snapshots, and
//! histograms become the interval's own histogram (bucket-wise difference) before a
//! quantile is read off them, so a p99 describes the last interval, not the agent's life.
//! A series seen for the first time has no rate yet; a section with no series at all is
//! `None`/empty so renderers can leave it out.

use std::collections::HashMap;

use sonde_semconv::attr::{self, disk_io_direction, network_io_direction, probe_state};
use sonde_semconv::host::{cpu_mode, memory_state};
use sonde_semconv::{dns as d, fileio as f, host as h, metric as m, tcp as t, MetricDef};

use super::quantile::{self, Quantile};
use super::rate::{self, Reading};
use crate::model::{Attributes, Histogram, PointValue, Snapshot, Value};

/// How long a question name stays in the "slowest recent names" list after its last lookup.
pub const RECENT_NAME_WINDOW_NANOS: u64 = 60_000_000_000;
/// Names kept in that list.
pub const RECENT_NAMES: usize = 10;

/// Turns consecutive snapshots into frames. Holds the previous reading of every series
/// (only those in the latest snapshot, so series that vanish are forgotten).
#[derive(Debug, Default)]
pub struct Viewer {
    prev_time: Option<u64>,
    numbers: HashMap<(&'static str, Attributes), Reading<f64>>,
    histograms: HashMap<(&'static str, Attributes), Reading<Histogram>>,
    /// Question name -> (mean latency of its last interval with lookups, when).
    recent_names: HashMap<String, (f64, u64)>,
}

/// Everything one refresh shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub time_unix_nano: u64,
    /// Seconds since the previous snapshot; `None` on the first one (no rates yet).
    pub period_secs: Option<f64>,
    pub host: Host,
    /// One row per executable name, unsorted (see [`super::rank`]).
    pub processes: Vec<ProcessRow>,
    pub tcp: Tcp,
    pub dns: Dns,
    pub storage: Storage,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Host {
    /// Share of all CPU time that was busy (not idle or iowait), 0..=1.
    pub cpu_busy: Option<f64>,
    /// CPU seconds per second over all modes: the number of CPUs.
    pub cpus: Option<f64>,
    pub memory_used: Option<f64>,
    pub memory_limit: Option<f64>,
    pub load: Option<[f64; 3]>,
    /// Block device bytes per second, read and write.
    pub disk_read: Option<f64>,
    pub disk_write: Option<f64>,
    /// Network bytes per second over every interface but loopback.
    pub net_receive: Option<f64>,
    pub net_transmit: Option<f64>,
    pub processes: Option<f64>,
    pub processes_running: Option<f64>,
    /// Probes in each state: attached, and all reported.
    pub probes_attached: usize,
    pub probes_total: usize,
    /// Sonde's own CPU (cores) and resident memory.
    pub agent_cpu: Option<f64>,
    pub agent_rss: Option<f64>,
}

impl Host {
    /// `ebpf` when at least one probe is attached, as the agent decides its mode.
    pub fn mode(&self) -> &'static str {
        if self.probes_attached > 0 {
            attr::sonde_mode::EBPF
        } else {
            attr::sonde_mode::FALLBACK
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessRow {
    pub name: String,
    /// Its container: `<namespace>/<pod>/<container>` where the kubelet names it,
    /// otherwise the first 12 digits of `container.id` (as `docker ps` shows it).
    pub container: Option<String>,
    /// Process ids of this name among the host source's top processes.
    pub pids: Vec<i64>,
    /// CPU in cores (1.0 is one core busy for the whole interval).
    pub cpu: Option<f64>,
    /// Resident memory, bytes.
    pub memory: Option<f64>,
    /// Regular-file bytes read + written per second.
    pub file_io: Option<f64>,
    /// TCP bytes sent + received per second.
    pub net_io: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tcp {
    pub opened: Option<f64>,
    pub closed: Option<f64>,
    pub failed: Option<f64>,
    pub retransmits: Option<f64>,
    pub established: Option<f64>,
    /// Smoothed RTT of the connections that closed in the interval.
    pub rtt_p50: Option<Quantile>,
    pub rtt_p99: Option<Quantile>,
    /// Unsorted; rank by `bytes()`.
    pub peers: Vec<PeerRow>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerRow {
    pub address: String,
    /// The peer's port for outbound connections; the local server port for inbound ones.
    pub port: Option<i64>,
    pub inbound: bool,
    /// The process with the most bytes to this peer.
    pub process: String,
    pub transmit: f64,
    pub receive: f64,
    pub opened: f64,
}

impl PeerRow {
    pub fn bytes(&self) -> f64 {
        self.transmit + self.receive
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dns {
    pub queries: Option<f64>,
    /// Latency of the interval's answered lookups.
    pub p50: Option<Quantile>,
    pub p99: Option<Quantile>,
    pub lookups: Option<f64>,
    /// Failures per second by `error.type`, largest first.
    pub failures: Vec<(String, f64)>,
    /// Share of the interval's queries answered from a resolver cache on this host.
    pub cache_hit_ratio: Option<f64>,
    /// Queries per second by process, largest first.
    pub clients: Vec<(String, f64)>,
    /// Question names by mean latency of their last interval with lookups, slowest
    /// first (only when `probes.dns.question_names` exports names).
    pub slowest: Vec<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Storage {
    pub filesystems: Vec<LatencyRow>,
    pub devices: Vec<LatencyRow>,
}

/// A file system (by mount point) or block device (by name) over the interval.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatencyRow {
    pub name: String,
    pub ops: f64,
    pub bytes: f64,
    pub p50: Option<Quantile>,
    pub p99: Option<Quantile>,
}

/// One series of the current snapshot with what the interval added to it.
struct Now<'a> {
    attrs: &'a Attributes,
    value: f64,
    rate: Option<f64>,
}

struct HistNow<'a> {
    attrs: &'a Attributes,
    interval: Option<Histogram>,
}

impl Viewer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Series (and question names) it remembers: bounded by the latest snapshot.
    pub fn series(&self) -> usize {
        self.numbers.len() + self.histograms.len() + self.recent_names.len()
    }

    pub fn update(&mut self, snap: &Snapshot) -> Frame {
        let t = snap.time_unix_nano;
        let mut numbers = HashMap::new();
        let mut histograms = HashMap::new();
        for metric in &snap.metrics {
            for p in &metric.points {
                let key = (metric.def.name, p.attributes.clone());
                match &p.value {
                    PointValue::Number(n) => {
                        numbers.insert(
                            key,
                            Reading {
                                value: n.as_f64(),
                                start_unix_nano: p.start_unix_nano,
                                time_unix_nano: t,
                            },
                        );
                    }
                    PointValue::Histogram(_) | PointValue::Exponential(_) => {
                        let Some(hist) = p.value.explicit() else {
                            continue;
                        };
                        histograms.insert(
                            key,
                            Reading {
                                value: hist.into_owned(),
                                start_unix_nano: p.start_unix_nano,
                                time_unix_nano: t,
                            },
                        );
                    }
                }
            }
        }
        let period_secs = self.prev_time.and_then(|p| rate::period_secs(p, t));
        let ctx = Ctx {
            snap,
            prev_numbers: &self.numbers,
            prev_histograms: &self.histograms,
        };
        let (dns, names) = dns(&ctx);
        let mut frame = Frame {
            time_unix_nano: t,
            period_secs,
            host: host(&ctx),
            processes: processes(&ctx),
            tcp: tcp(&ctx),
            dns,
            storage: storage(&ctx),
        };
        for (name, mean) in names {
            self.recent_names.insert(name, (mean, t));
        }
        self.recent_names
            .retain(|_, (_, seen)| t.saturating_sub(*seen) <= RECENT_NAME_WINDOW_NANOS);
        let mut slowest: Vec<(String, f64)> = self
            .recent_names
            .iter()
            .map(|(n, (mean, _))| (n.clone(), *mean))
            .collect();
        super::rank::top_n(&mut slowest, RECENT_NAMES, |r| Some(r.1), |r| &r.0);
        frame.dns.slowest = slowest;

        self.numbers = numbers;
        self.histograms = histograms;
        self.prev_time = Some(t);
        frame
    }
}

struct Ctx<'a> {
    snap: &'a Snapshot,
    prev_numbers: &'a HashMap<(&'static str, Attributes), Reading<f64>>,
    prev_histograms: &'a HashMap<(&'static str, Attributes), Reading<Histogram>>,
}

impl<'a> Ctx<'a> {
    /// The number points of `def` with their rates over the interval.
    fn numbers(&self, def: MetricDef) -> Vec<Now<'a>> {
        let t = self.snap.time_unix_nano;
        let mut out = Vec::new();
        for metric in self.snap.metrics.iter().filter(|m| m.def.name == def.name) {
            for p in &metric.points {
                let PointValue::Number(n) = &p.value else {
                    continue;
                };
                let cur = Reading {
                    value: n.as_f64(),
                    start_unix_nano: p.start_unix_nano,
                    time_unix_nano: t,
                };
                let rate = self
                    .prev_numbers
                    .get(&(def.name, p.attributes.clone()))
                    .and_then(|prev| rate::per_second(prev, &cur));
                out.push(Now {
                    attrs: &p.attributes,
                    value: cur.value,
                    rate,
                });
            }
        }
        out
    }

    /// The histogram points of `def` with what the interval added to each.
    fn histograms(&self, def: MetricDef) -> Vec<HistNow<'a>> {
        let t = self.snap.time_unix_nano;
        let mut out = Vec::new();
        for metric in self.snap.metrics.iter().filter(|m| m.def.name == def.name) {
            for p in &metric.points {
                let Some(hist) = p.value.explicit() else {
                    continue;
                };
                let hist = hist.as_ref();
                let interval = self
                    .prev_histograms
                    .get(&(def.name, p.attributes.clone()))
                    .and_then(|prev| {
                        rate::increase(
                            prev,
                            &Reading {
                                value: hist.clone(),
                                start_unix_nano: p.start_unix_nano,
                                time_unix_nano: t,
                            },
                        )
                    });
                out.push(HistNow {
                    attrs: &p.attributes,
                    interval,
                });
            }
        }
        out
    }

    /// Sum of the rates of `def`'s points that pass `keep`; `None` when none has a rate.
    fn rate_sum(&self, def: MetricDef, keep: impl Fn(&Attributes) -> bool) -> Option<f64> {
        sum_opt(
            self.numbers(def)
                .iter()
                .filter(|p| keep(p.attrs))
                .map(|p| p.rate),
        )
    }

    /// Sum of the current values of `def`'s points that pass `keep`.
    fn value_sum(&self, def: MetricDef, keep: impl Fn(&Attributes) -> bool) -> Option<f64> {
        sum_opt(
            self.numbers(def)
                .iter()
                .filter(|p| keep(p.attrs))
                .map(|p| Some(p.value)),
        )
    }
}

fn sum_opt(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values
        .flatten()
        .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

fn text<'a>(a: &'a Attributes, key: &str) -> Option<&'a str> {
    match a.get(key)? {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

fn int(a: &Attributes, key: &str) -> Option<i64> {
    match a.get(key)? {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn is(a: &Attributes, key: &str, value: &str) -> bool {
    text(a, key) == Some(value)
}

fn overflow(a: &Attributes) -> bool {
    matches!(a.get(attr::OTEL_METRIC_OVERFLOW), Some(Value::Bool(true)))
}

fn any(_: &Attributes) -> bool {
    true
}

/// The interval histogram of all points that pass `keep` (those with the same bounds as
/// the first), or `None` when no point has an interval yet.
fn merged(points: &[HistNow<'_>], keep: impl Fn(&Attributes) -> bool) -> Option<Histogram> {
    let mut out: Option<Histogram> = None;
    for p in points.iter().filter(|p| keep(p.attrs)) {
        let Some(h) = &p.interval else { continue };
        match &mut out {
            None => out = Some(h.clone()),
            Some(acc) => {
                quantile::add(acc, h);
            }
        }
    }
    out
}

fn host(c: &Ctx<'_>) -> Host {
    let cpu = c.numbers(h::SYSTEM_CPU_TIME);
    let total = sum_opt(cpu.iter().map(|p| p.rate));
    let idle = sum_opt(
        cpu.iter()
            .filter(|p| {
                is(p.attrs, attr::CPU_MODE, cpu_mode::IDLE)
                    || is(p.attrs, attr::CPU_MODE, cpu_mode::IOWAIT)
            })
            .map(|p| p.rate),
    );
    let cpu_busy = match (total, idle) {
        (Some(t), idle) if t > 0.0 => Some(((t - idle.unwrap_or(0.0)) / t).clamp(0.0, 1.0)),
        _ => None,
    };
    let load = match (
        c.value_sum(h::SYSTEM_CPU_LOAD_AVERAGE_1M, any),
        c.value_sum(h::SYSTEM_CPU_LOAD_AVERAGE_5M, any),
        c.value_sum(h::SYSTEM_CPU_LOAD_AVERAGE_15M, any),
    ) {
        (Some(a), Some(b), Some(c)) => Some([a, b, c]),
        _ => None,
    };
    let disk = |dir| c.rate_sum(f::SYSTEM_DISK_IO, |a| is(a, attr::DISK_IO_DIRECTION, dir));
    let net = |dir| {
        c.rate_sum(h::SYSTEM_NETWORK_IO, |a| {
            is(a, attr::NETWORK_IO_DIRECTION, dir) && !is(a, attr::NETWORK_INTERFACE_NAME, "lo")
        })
    };
    let probes: Vec<Now<'_>> = c
        .numbers(m::SONDE_PROBE_STATUS)
        .into_iter()
        .filter(|p| p.value > 0.0)
        .collect();
    Host {
        cpu_busy,
        cpus: total,
        memory_used: c.value_sum(h::SYSTEM_MEMORY_USAGE, |a| {
            is(a, attr::SYSTEM_MEMORY_STATE, memory_state::USED)
        }),
        memory_limit: c.value_sum(h::SYSTEM_MEMORY_LIMIT, any),
        load,
        disk_read: disk(disk_io_direction::READ),
        disk_write: disk(disk_io_direction::WRITE),
        net_receive: net(network_io_direction::RECEIVE),
        net_transmit: net(network_io_direction::TRANSMIT),
        processes: c.value_sum(m::SYSTEM_PROCESS_COUNT, any),
        processes_running: c.value_sum(m::SYSTEM_PROCESS_COUNT, |a| {
            is(a, attr::PROCESS_STATE, attr::process_state::RUNNING)
        }),
        probes_attached: probes
            .iter()
            .filter(|p| is(p.attrs, attr::SONDE_PROBE_STATE, probe_state::ATTACHED))
            .count(),
        probes_total: probes.len(),
        agent_cpu: c.rate_sum(m::SONDE_AGENT_CPU_TIME, any),
        agent_rss: c.value_sum(m::SONDE_AGENT_MEMORY_RSS, any),
    }
}

/// How a row names a container (see [`ProcessRow::container`]).
pub fn container_label(a: &Attributes) -> Option<String> {
    let id = text(a, attr::CONTAINER_ID)?;
    match (
        text(a, attr::K8S_NAMESPACE_NAME),
        text(a, attr::K8S_POD_NAME),
        text(a, attr::K8S_CONTAINER_NAME),
    ) {
        (Some(ns), Some(pod), Some(c)) => Some(format!("{ns}/{pod}/{c}")),
        (Some(ns), Some(pod), None) => Some(format!("{ns}/{pod}")),
        _ => Some(id.chars().take(12).collect()),
    }
}

fn processes(c: &Ctx<'_>) -> Vec<ProcessRow> {
    // One row per executable name and container: the same program on the host and in a
    // container are two rows.
    let mut rows: HashMap<(String, Option<String>), ProcessRow> = HashMap::new();
    fn row<'m>(
        rows: &'m mut HashMap<(String, Option<String>), ProcessRow>,
        a: &Attributes,
    ) -> Option<&'m mut ProcessRow> {
        if overflow(a) {
            return None;
        }
        let name = text(a, attr::PROCESS_EXECUTABLE_NAME)?;
        let id = text(a, attr::CONTAINER_ID).map(str::to_owned);
        Some(
            rows.entry((name.to_owned(), id))
                .or_insert_with(|| ProcessRow {
                    name: name.to_owned(),
                    container: container_label(a),
                    ..ProcessRow::default()
                }),
        )
    }
    let add = |slot: &mut Option<f64>, v: Option<f64>| {
        if let Some(v) = v {
            *slot = Some(slot.unwrap_or(0.0) + v);
        }
    };
    for p in c.numbers(h::PROCESS_CPU_TIME) {
        if let Some(r) = row(&mut rows, p.attrs) {
            add(&mut r.cpu, p.rate);
            if let Some(pid) = int(p.attrs, attr::PROCESS_PID) {
                if !r.pids.contains(&pid) {
                    r.pids.push(pid);
                }
            }
        }
    }
    for p in c.numbers(h::PROCESS_MEMORY_USAGE) {
        if let Some(r) = row(&mut rows, p.attrs) {
            add(&mut r.memory, Some(p.value));
        }
    }
    for p in c.numbers(f::SONDE_FILE_IO) {
        if let Some(r) = row(&mut rows, p.attrs) {
            add(&mut r.file_io, p.rate);
        }
    }
    for p in c.numbers(t::SONDE_TCP_IO) {
        if let Some(r) = row(&mut rows, p.attrs) {
            add(&mut r.net_io, p.rate);
        }
    }
    let mut out: Vec<ProcessRow> = rows.into_values().collect();
    for r in &mut out {
        r.pids.sort_unstable();
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.container.cmp(&b.container)));
    out
}

fn tcp(c: &Ctx<'_>) -> Tcp {
    let rtt = merged(&c.histograms(t::SONDE_TCP_RTT), any);
    // Peers: bytes and opens by (address, port, direction), named after their busiest process.
    type PeerKey = (String, Option<i64>, bool);
    type Peers = HashMap<PeerKey, (PeerRow, HashMap<String, f64>)>;
    let mut peers: Peers = HashMap::new();
    fn entry<'m>(
        peers: &'m mut Peers,
        a: &Attributes,
    ) -> Option<&'m mut (PeerRow, HashMap<String, f64>)> {
        let address = text(a, attr::NETWORK_PEER_ADDRESS)?.to_owned();
        let k = match int(a, attr::SERVER_PORT) {
            Some(port) => (address, Some(port), true),
            None => (address, int(a, attr::NETWORK_PEER_PORT), false),
        };
        Some(peers.entry(k.clone()).or_insert_with(|| {
            (
                PeerRow {
                    address: k.0,
                    port: k.1,
                    inbound: k.2,
                    ..PeerRow::default()
                },
                HashMap::new(),
            )
        }))
    }
    for p in c.numbers(t::SONDE_TCP_IO) {
        let Some(rate) = p.rate else { continue };
        if overflow(p.attrs) {
            continue;
        }
        let Some((row, by_process)) = entry(&mut peers, p.attrs) else {
            continue;
        };
        if is(
            p.attrs,
            attr::NETWORK_IO_DIRECTION,
            network_io_direction::TRANSMIT,
        ) {
            row.transmit += rate;
        } else {
            row.receive += rate;
        }
        if let Some(name) = text(p.attrs, attr::PROCESS_EXECUTABLE_NAME) {
            *by_process.entry(name.to_owned()).or_default() += rate;
        }
    }
    for p in c.numbers(t::SONDE_TCP_CONNECTION_OPENED) {
        let Some(rate) = p.rate else { continue };
        if overflow(p.attrs) {
            continue;
        }
        if let Some((row, by_process)) = entry(&mut peers, p.attrs) {
            row.opened += rate;
            if let Some(name) = text(p.attrs, attr::PROCESS_EXECUTABLE_NAME) {
                by_process.entry(name.to_owned()).or_default();
            }
        }
    }
    let peers = peers
        .into_values()
        .map(|(mut row, by_process)| {
            let mut names: Vec<(String, f64)> = by_process.into_iter().collect();
            super::rank::top_n(&mut names, 1, |r| Some(r.1), |r| &r.0);
            row.process = names.pop().map(|(n, _)| n).unwrap_or_default();
            row
        })
        .filter(|r| r.bytes() > 0.0 || r.opened > 0.0)
        .collect();
    Tcp {
        opened: c.rate_sum(t::SONDE_TCP_CONNECTION_OPENED, any),
        closed: c.rate_sum(t::SONDE_TCP_CONNECTION_CLOSED, any),
        failed: c.rate_sum(t::SONDE_TCP_CONNECTION_FAILED, any),
        retransmits: c.rate_sum(t::SONDE_TCP_RETRANSMITS, any),
        established: c.value_sum(t::SYSTEM_NETWORK_CONNECTION_COUNT, |a| {
            is(
                a,
                attr::NETWORK_CONNECTION_STATE,
                attr::connection_state::ESTABLISHED,
            )
        }),
        rtt_p50: rtt.as_ref().and_then(|h| quantile::quantile(h, 0.5)),
        rtt_p99: rtt.as_ref().and_then(|h| quantile::quantile(h, 0.99)),
        peers,
    }
}

/// The DNS panel, and the mean latency of each question name looked up in the interval.
fn dns(c: &Ctx<'_>) -> (Dns, Vec<(String, f64)>) {
    let durations = c.histograms(d::DNS_LOOKUP_DURATION);
    // Answered lookups only: a timeout is a failure, not a latency.
    let answered = merged(&durations, |a| a.get(attr::ERROR_TYPE).is_none());
    let all = merged(&durations, any);
    let mut failures: HashMap<String, f64> = HashMap::new();
    for p in c.numbers(d::SONDE_DNS_FAILURES) {
        if let (Some(r), Some(e)) = (p.rate, text(p.attrs, attr::ERROR_TYPE)) {
            *failures.entry(e.to_owned()).or_default() += r;
        }
    }
    let mut failures: Vec<(String, f64)> = failures.into_iter().filter(|f| f.1 > 0.0).collect();
    super::rank::top_n(&mut failures, usize::MAX, |r| Some(r.1), |r| &r.0);
    let mut clients: HashMap<String, f64> = HashMap::new();
    for p in c.numbers(d::SONDE_DNS_QUERIES) {
        if let (Some(r), Some(n)) = (p.rate, text(p.attrs, attr::PROCESS_EXECUTABLE_NAME)) {
            *clients.entry(n.to_owned()).or_default() += r;
        }
    }
    let mut clients: Vec<(String, f64)> = clients.into_iter().filter(|f| f.1 > 0.0).collect();
    super::rank::top_n(&mut clients, usize::MAX, |r| Some(r.1), |r| &r.0);
    let queries = c.rate_sum(d::SONDE_DNS_QUERIES, any);
    let hits = c.rate_sum(d::SONDE_DNS_CACHE_HITS, any);
    let cache_hit_ratio = match (hits, queries) {
        (Some(h), Some(q)) if q > 0.0 => Some((h / q).min(1.0)),
        _ => None,
    };
    // Per question name: the interval's mean latency over its answered lookups.
    let mut names: HashMap<String, (f64, u64)> = HashMap::new();
    for p in &durations {
        let (Some(h), Some(n)) = (&p.interval, text(p.attrs, attr::DNS_QUESTION_NAME)) else {
            continue;
        };
        if h.count == 0 || overflow(p.attrs) || p.attrs.get(attr::ERROR_TYPE).is_some() {
            continue;
        }
        let e = names.entry(n.to_owned()).or_default();
        e.0 += h.sum;
        e.1 += h.count;
    }
    let names = names
        .into_iter()
        .map(|(n, (sum, count))| (n, sum / count as f64))
        .collect();
    let panel = Dns {
        queries,
        p50: answered.as_ref().and_then(|h| quantile::quantile(h, 0.5)),
        p99: answered.as_ref().and_then(|h| quantile::quantile(h, 0.99)),
        lookups: all.map(|h| h.count as f64),
        failures,
        cache_hit_ratio,
        clients,
        slowest: Vec::new(),
    };
    (panel, names)
}

fn storage(c: &Ctx<'_>) -> Storage {
    let rows = |ops: MetricDef, bytes: MetricDef, hist: MetricDef, key: &'static str| {
        let mut out: HashMap<String, LatencyRow> = HashMap::new();
        fn row<'m>(
            out: &'m mut HashMap<String, LatencyRow>,
            a: &Attributes,
            key: &str,
        ) -> Option<&'m mut LatencyRow> {
            let name = text(a, key)?.to_owned();
            Some(out.entry(name.clone()).or_insert_with(|| LatencyRow {
                name,
                ..LatencyRow::default()
            }))
        }
        for p in c.numbers(ops) {
            if let (Some(r), Some(rate)) = (row(&mut out, p.attrs, key), p.rate) {
                r.ops += rate;
            }
        }
        for p in c.numbers(bytes) {
            if let (Some(r), Some(rate)) = (row(&mut out, p.attrs, key), p.rate) {
                r.bytes += rate;
            }
        }
        let hists = c.histograms(hist);
        for p in &hists {
            row(&mut out, p.attrs, key);
        }
        for (name, r) in out.iter_mut() {
            let h = merged(&hists, |a| text(a, key) == Some(name.as_str()));
            r.p50 = h.as_ref().and_then(|h| quantile::quantile(h, 0.5));
            r.p99 = h.as_ref().and_then(|h| quantile::quantile(h, 0.99));
        }
        let mut rows: Vec<LatencyRow> = out
            .into_values()
            .filter(|r| r.ops > 0.0 || r.bytes > 0.0 || r.p50.is_some())
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    };
    Storage {
        filesystems: rows(
            f::SONDE_FILE_OPERATIONS,
            f::SONDE_FILE_IO,
            f::SONDE_FILE_IO_DURATION,
            attr::SYSTEM_FILESYSTEM_MOUNTPOINT,
        ),
        devices: rows(
            f::SYSTEM_DISK_OPERATIONS,
            f::SYSTEM_DISK_IO,
            f::SONDE_DISK_IO_DURATION,
            attr::SYSTEM_DEVICE,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{numbers, Metric, Number, Point};
    use sonde_semconv::attr::connection_state;

    const S: u64 = 1_000_000_000;

    fn a<const N: usize>(pairs: [(&'static str, Value); N]) -> Attributes {
        Attributes::from(pairs)
    }
    fn s(v: &str) -> Value {
        Value::from(v)
    }

    fn hist(def: MetricDef, attrs: Attributes, counts: &[u64], sum: f64) -> Metric {
        Metric {
            def,
            points: vec![Point {
                attributes: attrs,
                value: PointValue::Histogram(Histogram {
                    bounds: vec![0.001, 0.002, 0.004],
                    counts: counts.to_vec(),
                    sum,
                    count: counts.iter().sum(),
                    exemplars: Vec::new(),
                }),
                start_unix_nano: 0,
            }],
        }
    }

    /// A host at time `t` seconds whose counters are `k` times a base amount, so two
    /// snapshots one second apart show the base amount per second.
    fn snap(t: u64, k: f64) -> Snapshot {
        let n = |v: f64| Number::Double(v);
        let cpu = |mode: &'static str| a([(attr::CPU_MODE, s(mode))]);
        let burner = |mode: &'static str| {
            a([
                (attr::PROCESS_PID, Value::Int(42)),
                (attr::PROCESS_EXECUTABLE_NAME, s("burner")),
                (attr::CPU_MODE, s(mode)),
            ])
        };
        let peer = |dir: &'static str| {
            a([
                (attr::PROCESS_EXECUTABLE_NAME, s("burner")),
                (attr::NETWORK_PEER_ADDRESS, s("127.0.0.1")),
                (attr::NETWORK_PEER_PORT, Value::Int(8080)),
                (attr::NETWORK_IO_DIRECTION, s(dir)),
            ])
        };
        let name = |q: &str| {
            a([
                (attr::DNS_QUESTION_NAME, s(q)),
                (attr::NETWORK_PEER_ADDRESS, s("127.0.0.1")),
            ])
        };
        let k64 = k as u64;
        let ki = k as i64;
        Snapshot {
            time_unix_nano: t * S,
            metrics: vec![
                numbers(
                    h::SYSTEM_CPU_TIME,
                    0,
                    [
                        (cpu(cpu_mode::USER), n(1.5 * k)),
                        (cpu(cpu_mode::IDLE), n(0.5 * k)),
                    ],
                ),
                numbers(
                    h::SYSTEM_MEMORY_USAGE,
                    0,
                    [
                        (
                            a([(attr::SYSTEM_MEMORY_STATE, s(memory_state::USED))]),
                            n(3e9),
                        ),
                        (
                            a([(attr::SYSTEM_MEMORY_STATE, s(memory_state::FREE))]),
                            n(1e9),
                        ),
                    ],
                ),
                numbers(h::SYSTEM_MEMORY_LIMIT, 0, [(Attributes::new(), n(4e9))]),
                numbers(
                    h::SYSTEM_NETWORK_IO,
                    0,
                    [
                        (
                            a([
                                (attr::NETWORK_INTERFACE_NAME, s("eth0")),
                                (attr::NETWORK_IO_DIRECTION, s("receive")),
                            ]),
                            n(1000.0 * k),
                        ),
                        (
                            a([
                                (attr::NETWORK_INTERFACE_NAME, s("lo")),
                                (attr::NETWORK_IO_DIRECTION, s("receive")),
                            ]),
                            n(5000.0 * k),
                        ),
                    ],
                ),
                numbers(
                    m::SONDE_PROBE_STATUS,
                    0,
                    [
                        (
                            a([
                                (attr::SONDE_PROBE, s("tcp.state")),
                                (attr::SONDE_PROBE_STATE, s(probe_state::ATTACHED)),
                            ]),
                            Number::Int(1),
                        ),
                        (
                            a([
                                (attr::SONDE_PROBE, s("tcp.state")),
                                (attr::SONDE_PROBE_STATE, s(probe_state::FAILED)),
                            ]),
                            Number::Int(0),
                        ),
                        (
                            a([
                                (attr::SONDE_PROBE, s("dns")),
                                (attr::SONDE_PROBE_STATE, s(probe_state::SKIPPED)),
                            ]),
                            Number::Int(1),
                        ),
                    ],
                ),
                numbers(
                    h::PROCESS_CPU_TIME,
                    0,
                    [
                        (burner(cpu_mode::USER), n(0.75 * k)),
                        (burner(cpu_mode::SYSTEM), n(0.25 * k)),
                        // The overflow series is not a process.
                        (
                            a([
                                (attr::OTEL_METRIC_OVERFLOW, Value::Bool(true)),
                                (attr::CPU_MODE, s(cpu_mode::USER)),
                            ]),
                            n(9.0 * k),
                        ),
                    ],
                ),
                numbers(
                    h::PROCESS_MEMORY_USAGE,
                    0,
                    [(
                        a([
                            (attr::PROCESS_PID, Value::Int(42)),
                            (attr::PROCESS_EXECUTABLE_NAME, s("burner")),
                        ]),
                        Number::Int(1 << 20),
                    )],
                ),
                numbers(
                    t::SONDE_TCP_IO,
                    0,
                    [
                        (peer("transmit"), Number::Int(100 * ki)),
                        (peer("receive"), Number::Int(300 * ki)),
                    ],
                ),
                numbers(
                    t::SONDE_TCP_CONNECTION_OPENED,
                    0,
                    [(peer("transmit"), Number::Int(2 * ki))],
                ),
                numbers(
                    t::SYSTEM_NETWORK_CONNECTION_COUNT,
                    0,
                    [(
                        a([(
                            attr::NETWORK_CONNECTION_STATE,
                            s(connection_state::ESTABLISHED),
                        )]),
                        Number::Int(7),
                    )],
                ),
                numbers(
                    d::SONDE_DNS_QUERIES,
                    0,
                    [(
                        a([(attr::PROCESS_EXECUTABLE_NAME, s("burner"))]),
                        Number::Int(10 * ki),
                    )],
                ),
                numbers(
                    d::SONDE_DNS_CACHE_HITS,
                    0,
                    [(Attributes::new(), Number::Int(4 * ki))],
                ),
                numbers(
                    d::SONDE_DNS_FAILURES,
                    0,
                    [
                        (a([(attr::ERROR_TYPE, s("nxdomain"))]), Number::Int(2 * ki)),
                        (a([(attr::ERROR_TYPE, s("servfail"))]), Number::Int(0)),
                    ],
                ),
                // Per interval: fast.example 8 lookups in (1, 2] ms, slow.example 2 in
                // (2, 4] ms; the nxdomain lookups have no latency.
                hist(
                    d::DNS_LOOKUP_DURATION,
                    name("fast.example"),
                    &[0, 8 * k64, 0, 0],
                    0.012 * k,
                ),
                hist(
                    d::DNS_LOOKUP_DURATION,
                    name("slow.example"),
                    &[0, 0, 2 * k64, 0],
                    0.006 * k,
                ),
                hist(
                    f::SONDE_FILE_IO_DURATION,
                    a([
                        (attr::SYSTEM_FILESYSTEM_MOUNTPOINT, s("/")),
                        (attr::DISK_IO_DIRECTION, s("read")),
                    ]),
                    &[10 * k64, 0, 0, 0],
                    0.0,
                ),
            ],
        }
    }

    #[test]
    fn first_snapshot_has_values_but_no_rates() {
        let f = Viewer::new().update(&snap(10, 10.0));
        assert_eq!(f.period_secs, None);
        assert_eq!(f.host.cpu_busy, None);
        assert_eq!(f.host.memory_used, Some(3e9));
        assert_eq!(f.tcp.opened, None);
        assert_eq!(f.tcp.established, Some(7.0));
        assert_eq!(f.dns.p50, None);
        let burner = &f.processes[0];
        assert_eq!((burner.cpu, burner.memory), (None, Some(1048576.0)));
    }

    #[test]
    fn one_name_on_the_host_and_in_two_containers_is_three_rows() {
        let docker = "3f4e5a6b7c8d".to_owned() + &"0".repeat(52);
        let pod = "9".repeat(64);
        let at = |t: u64, k: f64| {
            let who = |extra: &[(&'static str, Value)]| {
                let mut a = Attributes::new()
                    .with(attr::PROCESS_EXECUTABLE_NAME, "nginx")
                    .with(attr::CPU_MODE, cpu_mode::USER);
                for (k, v) in extra {
                    a.insert(k, v.clone());
                }
                a
            };
            Snapshot {
                time_unix_nano: t * S,
                metrics: vec![numbers(
                    h::PROCESS_CPU_TIME,
                    0,
                    [
                        (who(&[]), Number::Double(0.125 * k)),
                        (
                            who(&[(attr::CONTAINER_ID, s(&docker))]),
                            Number::Double(0.5 * k),
                        ),
                        (
                            who(&[
                                (attr::CONTAINER_ID, s(&pod)),
                                (attr::K8S_NAMESPACE_NAME, s("shop")),
                                (attr::K8S_POD_NAME, s("web-1")),
                                (attr::K8S_CONTAINER_NAME, s("nginx")),
                            ]),
                            Number::Double(0.25 * k),
                        ),
                    ],
                )],
            }
        };
        let mut v = Viewer::new();
        v.update(&at(10, 10.0));
        let f = v.update(&at(11, 11.0));
        let rows: Vec<(Option<&str>, Option<f64>)> = f
            .processes
            .iter()
            .map(|p| (p.container.as_deref(), p.cpu))
            .collect();
        assert_eq!(
            rows,
            [
                (None, Some(0.125)),
                (Some("3f4e5a6b7c8d"), Some(0.5)),
                (Some("shop/web-1/nginx"), Some(0.25)),
            ]
        );
    }

    #[test]
    fn second_snapshot_gives_the_interval() {
        let mut v = Viewer::new();
        v.update(&snap(10, 10.0));
        let f = v.update(&snap(12, 12.0)); // every counter gained 2 base amounts in 2 s
        assert_eq!(f.period_secs, Some(2.0));

        let host = &f.host;
        assert_eq!(host.cpus, Some(2.0));
        assert_eq!(host.cpu_busy, Some(0.75));
        assert_eq!(host.memory_limit, Some(4e9));
        assert_eq!(host.net_receive, Some(1000.0), "loopback is left out");
        assert_eq!(host.net_transmit, None);
        assert_eq!((host.probes_attached, host.probes_total), (1, 2));
        assert_eq!(host.mode(), "ebpf");

        assert_eq!(f.processes.len(), 1, "the overflow series is no row");
        let burner = &f.processes[0];
        assert_eq!(burner.name, "burner");
        assert_eq!(burner.pids, [42]);
        assert_eq!(burner.cpu, Some(1.0));
        assert_eq!(burner.net_io, Some(400.0));
        assert_eq!(burner.file_io, None);

        assert_eq!(f.tcp.opened, Some(2.0));
        assert_eq!(f.tcp.failed, None);
        let peer = &f.tcp.peers[0];
        assert_eq!(
            (
                peer.address.as_str(),
                peer.port,
                peer.inbound,
                peer.process.as_str()
            ),
            ("127.0.0.1", Some(8080), false, "burner")
        );
        assert_eq!(
            (peer.transmit, peer.receive, peer.opened),
            (100.0, 300.0, 2.0)
        );

        let dns = &f.dns;
        assert_eq!(dns.queries, Some(10.0));
        assert_eq!(dns.lookups, Some(20.0));
        assert_eq!(dns.cache_hit_ratio, Some(0.4));
        assert_eq!(
            dns.failures,
            [("nxdomain".to_owned(), 2.0)],
            "zero rows left out"
        );
        assert_eq!(dns.clients, [("burner".to_owned(), 10.0)]);
        // 16 in (1, 2] ms, 4 in (2, 4] ms: p50 at rank 10 of 20 is 1.625 ms.
        assert!(matches!(dns.p50, Some(Quantile::At(v)) if (v - 0.001625).abs() < 1e-12));
        assert!(matches!(dns.p99, Some(Quantile::At(v)) if v > 0.0039 && v <= 0.004));
        let slow: Vec<&str> = dns.slowest.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(slow, ["slow.example", "fast.example"]);
        assert!((dns.slowest[0].1 - 0.003).abs() < 1e-12);

        let fs = &f.storage.filesystems;
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].name, "/");
        assert_eq!(fs[0].p50, Some(Quantile::AtMost(0.001)));
        assert!(f.storage.devices.is_empty());
    }

    #[test]
    fn a_reset_series_and_vanished_names() {
        let mut v = Viewer::new();
        v.update(&snap(10, 10.0));
        // Counters went down with the same start time: no rate rather than a negative one.
        let f = v.update(&snap(11, 1.0));
        assert_eq!(f.tcp.opened, None);
        assert_eq!(f.dns.p50, None);
        assert!(f.dns.slowest.is_empty());
        // Names stay listed for the window after their last lookup, then go.
        v.update(&snap(12, 2.0));
        let late = v.update(&Snapshot {
            time_unix_nano: 12 * S + RECENT_NAME_WINDOW_NANOS,
            metrics: Vec::new(),
        });
        assert_eq!(late.dns.slowest.len(), 2);
        let later = v.update(&Snapshot {
            time_unix_nano: 13 * S + RECENT_NAME_WINDOW_NANOS,
            metrics: Vec::new(),
        });
        assert!(later.dns.slowest.is_empty());
    }
}
