//! Frames as text: number formatting shared by every renderer, the compact console
//! summary (`sonde run` with no collector) and the one line per interval that `sonde top`
//! prints when stdout is not a terminal.

use std::fmt::Write as _;

use super::frame::{Frame, LatencyRow, PeerRow, ProcessRow};
use super::quantile::Quantile;
use super::rank;

/// Rows of each kind in the summary.
pub const SUMMARY_TOP: usize = 5;

/// Bytes with a binary unit: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Bytes per second.
pub fn byte_rate(v: f64) -> String {
    format!("{}/s", bytes(v))
}

/// Events per second with precision that suits the size: `0.3/s`, `12/s`, `4.1k/s`.
pub fn per_sec(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k/s", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1}k/s", v / 1000.0)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}/s")
    } else {
        format!("{v:.1}/s")
    }
}

/// A duration in seconds: `850ns`, `42us`, `1.3ms`, `2.1s`.
pub fn duration(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.1}s")
    } else if secs >= 1e-3 {
        format!("{:.1}ms", secs * 1e3)
    } else if secs >= 1e-6 {
        format!("{:.0}us", secs * 1e6)
    } else {
        format!("{:.0}ns", secs * 1e9)
    }
}

/// A quantile; one in the open last bucket reads `>bound`.
pub fn quantile(q: Quantile) -> String {
    match q {
        Quantile::At(v) => duration(v),
        Quantile::AtMost(v) => format!("≤{}", duration(v)),
        Quantile::Above(v) => format!(">{}", duration(v)),
    }
}

pub fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// CPU in cores as a percentage of one core, as top and htop show it.
pub fn cpu(cores: f64) -> String {
    format!("{:.1}%", cores * 100.0)
}

/// `-` for a value not known yet.
pub fn or_dash<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".to_owned())
}

/// Wall-clock time of day (UTC) of a Unix-nanosecond instant, `HH:MM:SS`.
pub fn clock(unix_nano: u64) -> String {
    let s = unix_nano / 1_000_000_000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Cuts `s` to at most `n` characters, marking the cut with `…`.
pub fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

pub fn peer(p: &PeerRow) -> String {
    let host = if p.address.contains(':') {
        format!("[{}]", p.address)
    } else {
        p.address.clone()
    };
    match (p.port, p.inbound) {
        (Some(port), true) => format!("{host} -> :{port}"),
        (Some(port), false) => format!("{host}:{port}"),
        (None, _) => host,
    }
}

/// Whether a process did anything in the interval worth a row.
pub fn active(p: &ProcessRow) -> bool {
    [p.cpu, p.file_io, p.net_io]
        .iter()
        .any(|v| v.is_some_and(|v| v > 0.0))
}

/// Whether the TCP panel has anything but zeros.
pub fn tcp_active(f: &Frame) -> bool {
    let t = &f.tcp;
    !t.peers.is_empty()
        || [t.opened, t.closed, t.failed, t.retransmits, t.established]
            .iter()
            .any(|v| v.is_some_and(|v| v > 0.0))
}

/// Whether the DNS panel has anything but zeros.
pub fn dns_active(f: &Frame) -> bool {
    let d = &f.dns;
    d.queries.is_some_and(|q| q > 0.0)
        || d.lookups.is_some_and(|n| n > 0.0)
        || !d.failures.is_empty()
        || !d.slowest.is_empty()
}

/// The host's headline in a few phrases, parts not known yet left out.
fn host_phrases(f: &Frame) -> Vec<String> {
    let h = &f.host;
    let mut out = Vec::new();
    if let Some(busy) = h.cpu_busy {
        let cpus = h.cpus.map(|n| format!(" of {n:.0}")).unwrap_or_default();
        out.push(format!("cpu {}{cpus}", percent(busy)));
    }
    if let (Some(used), Some(limit)) = (h.memory_used, h.memory_limit) {
        out.push(format!("mem {} / {}", bytes(used), bytes(limit)));
    }
    if let Some([a, b, c]) = h.load {
        out.push(format!("load {a:.2} {b:.2} {c:.2}"));
    }
    if let Some(n) = h.processes {
        let running = h
            .processes_running
            .map(|r| format!(" ({r:.0} running)"))
            .unwrap_or_default();
        out.push(format!("procs {n:.0}{running}"));
    }
    if h.disk_read.is_some() || h.disk_write.is_some() {
        out.push(format!(
            "disk r {} w {}",
            byte_rate(h.disk_read.unwrap_or(0.0)),
            byte_rate(h.disk_write.unwrap_or(0.0))
        ));
    }
    if h.net_receive.is_some() || h.net_transmit.is_some() {
        out.push(format!(
            "net rx {} tx {}",
            byte_rate(h.net_receive.unwrap_or(0.0)),
            byte_rate(h.net_transmit.unwrap_or(0.0))
        ));
    }
    out
}

fn tcp_phrases(f: &Frame) -> Vec<String> {
    let t = &f.tcp;
    let mut out = Vec::new();
    for (label, v) in [
        ("opened", t.opened),
        ("closed", t.closed),
        ("failed", t.failed),
        ("retransmits", t.retransmits),
    ] {
        if let Some(v) = v {
            out.push(format!("{label} {}", per_sec(v)));
        }
    }
    if let Some(n) = t.established {
        out.push(format!("established {n:.0}"));
    }
    if let (Some(p50), Some(p99)) = (t.rtt_p50, t.rtt_p99) {
        out.push(format!("rtt p50 {} p99 {}", quantile(p50), quantile(p99)));
    }
    out
}

fn dns_phrases(f: &Frame) -> Vec<String> {
    let d = &f.dns;
    let mut out = Vec::new();
    if let Some(q) = d.queries {
        out.push(format!("queries {}", per_sec(q)));
    }
    if let (Some(p50), Some(p99)) = (d.p50, d.p99) {
        out.push(format!("p50 {} p99 {}", quantile(p50), quantile(p99)));
    }
    if let Some(r) = d.cache_hit_ratio {
        out.push(format!("cache hits {}", percent(r)));
    }
    if !d.failures.is_empty() {
        let list: Vec<String> = d
            .failures
            .iter()
            .map(|(e, r)| format!("{e} {}", per_sec(*r)))
            .collect();
        out.push(format!("failures {}", list.join(", ")));
    }
    out
}

/// The processes worth showing: active ones matching `filter`, the top `n` by CPU.
pub fn top_processes(f: &Frame, n: usize, filter: &str) -> Vec<ProcessRow> {
    let mut rows: Vec<ProcessRow> = f
        .processes
        .iter()
        .filter(|p| active(p) && rank::matches(&p.name, filter))
        .cloned()
        .collect();
    rank::top_n(&mut rows, n, |p| p.cpu, |p| &p.name);
    rows
}

pub fn top_peers(f: &Frame, n: usize) -> Vec<PeerRow> {
    let mut rows = f.tcp.peers.clone();
    rank::top_n(&mut rows, n, |p| Some(p.bytes() + p.opened), |p| &p.address);
    rows
}

pub fn top_latency(rows: &[LatencyRow], n: usize) -> Vec<LatencyRow> {
    let mut rows: Vec<LatencyRow> = rows
        .iter()
        .filter(|r| r.ops > 0.0 || r.bytes > 0.0)
        .cloned()
        .collect();
    rank::top_n(&mut rows, n, |r| Some(r.ops), |r| &r.name);
    rows
}

/// The compact summary: at most ~40 lines, headline rates and the top
/// [`SUMMARY_TOP`] of each kind, no row whose values are all zero.
pub fn summary(f: &Frame) -> String {
    let mut out = String::new();
    let period = f
        .period_secs
        .map(|p| format!(" · last {}", duration(p)))
        .unwrap_or_else(|| " · rates from the next interval".to_owned());
    let h = &f.host;
    let _ = writeln!(
        out,
        "{:─<100}",
        format!(
            "── sonde {} UTC{period} · {} ({}/{} probes) ",
            clock(f.time_unix_nano),
            h.mode(),
            h.probes_attached,
            h.probes_total
        )
    );
    let host = host_phrases(f);
    if !host.is_empty() {
        let _ = writeln!(out, "host       {}", host.join("  "));
    }
    if let (Some(cpu), Some(rss)) = (h.agent_cpu, h.agent_rss) {
        let _ = writeln!(
            out,
            "           sonde itself: cpu {}, rss {}",
            self::cpu(cpu),
            bytes(rss)
        );
    }

    let procs = top_processes(f, SUMMARY_TOP, "");
    if !procs.is_empty() {
        let _ = writeln!(
            out,
            "processes  {:<32} {:>8} {:>11} {:>13} {:>13}",
            "(top by cpu)", "cpu", "memory", "file i/o", "tcp i/o"
        );
        for p in &procs {
            let _ = writeln!(
                out,
                "  {:<40} {:>8} {:>11} {:>13} {:>13}",
                fit(&process_label(p), 40),
                or_dash(p.cpu, cpu),
                or_dash(p.memory, bytes),
                or_dash(p.file_io, byte_rate),
                or_dash(p.net_io, byte_rate)
            );
        }
    }

    let tcp = tcp_phrases(f);
    if tcp_active(f) {
        let _ = writeln!(out, "tcp        {}", tcp.join("  "));
        for p in top_peers(f, SUMMARY_TOP) {
            let _ = writeln!(
                out,
                "  {:<32} {:<16} tx {:>12}  rx {:>12}  opened {:>7}",
                fit(&peer(&p), 32),
                fit(&p.process, 16),
                byte_rate(p.transmit),
                byte_rate(p.receive),
                per_sec(p.opened)
            );
        }
    }

    let dns = dns_phrases(f);
    if dns_active(f) {
        let _ = writeln!(out, "dns        {}", dns.join("  "));
        let d = &f.dns;
        if !d.clients.is_empty() {
            let list: Vec<String> = d
                .clients
                .iter()
                .take(SUMMARY_TOP)
                .map(|(n, r)| format!("{n} {}", per_sec(*r)))
                .collect();
            let _ = writeln!(out, "  clients  {}", list.join(", "));
        }
        if !d.slowest.is_empty() {
            let list: Vec<String> = d
                .slowest
                .iter()
                .take(SUMMARY_TOP)
                .map(|(n, s)| format!("{} {}", fit(n, 40), duration(*s)))
                .collect();
            let _ = writeln!(out, "  slowest  {}", list.join(", "));
        }
    }

    let fs = top_latency(&f.storage.filesystems, SUMMARY_TOP);
    let dev = top_latency(&f.storage.devices, SUMMARY_TOP);
    if !fs.is_empty() || !dev.is_empty() {
        let _ = writeln!(
            out,
            "storage    {:<22} {:>9} {:>13} {:>8} {:>8}",
            "", "ops", "bytes", "p50", "p99"
        );
        for (kind, rows) in [("fs", fs), ("dev", dev)] {
            for r in rows {
                let _ = writeln!(
                    out,
                    "  {kind:<4} {:<26} {:>9} {:>13} {:>8} {:>8}",
                    fit(&r.name, 26),
                    per_sec(r.ops),
                    byte_rate(r.bytes),
                    or_dash(r.p50, quantile),
                    or_dash(r.p99, quantile)
                );
            }
        }
    }
    out
}

/// `name [pid]`, or `name [3 pids]` when several processes share the name, then its
/// container where it runs in one.
pub fn process_label(p: &ProcessRow) -> String {
    let who = match p.pids.as_slice() {
        [] => p.name.clone(),
        [pid] => format!("{} [{pid}]", p.name),
        pids => format!("{} [{} pids]", p.name, pids.len()),
    };
    match &p.container {
        Some(c) => format!("{who} {c}"),
        None => who,
    }
}

/// One line per interval, for `sonde top` when stdout is not a terminal: the headline
/// of every panel and the busiest process.
pub fn one_line(f: &Frame) -> String {
    let mut parts = vec![clock(f.time_unix_nano)];
    parts.extend(host_phrases(f));
    if let Some(p) = top_processes(f, 1, "").first() {
        parts.push(format!(
            "top {} cpu {}",
            process_label(p),
            or_dash(p.cpu, cpu)
        ));
    }
    let tcp = tcp_phrases(f);
    if !tcp.is_empty() {
        parts.push(format!("tcp {}", tcp.join(" ")));
    }
    let dns = dns_phrases(f);
    if !dns.is_empty() {
        parts.push(format!("dns {}", dns.join(" ")));
    }
    parts.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::frame::{Dns, Host, Tcp};

    #[test]
    fn formats() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
        assert_eq!(per_sec(0.0), "0/s");
        assert_eq!(per_sec(0.25), "0.2/s");
        assert_eq!(per_sec(12.4), "12/s");
        assert_eq!(per_sec(4100.0), "4.1k/s");
        assert_eq!(duration(0.0000008), "800ns");
        assert_eq!(duration(0.000042), "42us");
        assert_eq!(duration(0.0013), "1.3ms");
        assert_eq!(duration(2.1), "2.1s");
        assert_eq!(quantile(Quantile::Above(10.0)), ">10.0s");
        assert_eq!(clock(1_700_000_000_000_000_000), "22:13:20");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }

    fn busy_frame(processes: usize) -> Frame {
        Frame {
            time_unix_nano: 0,
            period_secs: Some(10.0),
            host: Host {
                cpu_busy: Some(0.5),
                cpus: Some(2.0),
                ..Host::default()
            },
            processes: (0..processes)
                .map(|i| ProcessRow {
                    name: format!("p{i:02}"),
                    // Every fourth in a container.
                    container: (i % 4 == 3).then(|| format!("{i:012}")),
                    pids: vec![i as i64],
                    // Every third process idle: it must not get a row.
                    cpu: Some(if i % 3 == 0 { 0.0 } else { i as f64 / 100.0 }),
                    memory: Some(1e6),
                    file_io: None,
                    net_io: None,
                })
                .collect(),
            tcp: Tcp {
                opened: Some(1.0),
                peers: (0..50)
                    .map(|i| PeerRow {
                        address: format!("10.0.0.{i}"),
                        port: Some(443),
                        transmit: i as f64,
                        ..PeerRow::default()
                    })
                    .collect(),
                ..Tcp::default()
            },
            dns: Dns {
                queries: Some(3.0),
                clients: (0..50).map(|i| (format!("c{i}"), 1.0)).collect(),
                slowest: (0..50).map(|i| (format!("n{i}.example"), 0.01)).collect(),
                ..Dns::default()
            },
            storage: Default::default(),
        }
    }

    #[test]
    fn summary_stays_short_and_leaves_out_idle_rows() {
        let text = summary(&busy_frame(300));
        let lines = text.lines().count();
        assert!(lines <= 40, "{lines} lines:\n{text}");
        assert!(
            text.contains("p299 [299] 000000000299"),
            "busiest first, with its container:\n{text}"
        );
        assert!(!text.contains("p297 "), "idle row shown:\n{text}");
        assert!(text.contains("10.0.0.49:443"), "busiest peer:\n{text}");
        assert!(!text.contains("storage"), "empty section shown:\n{text}");
        let mut quiet = busy_frame(0);
        quiet.tcp = Tcp {
            opened: Some(0.0),
            established: Some(0.0),
            ..Tcp::default()
        };
        quiet.dns = Dns {
            queries: Some(0.0),
            ..Dns::default()
        };
        let text = summary(&quiet);
        assert!(
            !text.contains("tcp") && !text.contains("dns"),
            "zero-only rows:\n{text}"
        );
    }

    #[test]
    fn summary_of_an_idle_first_snapshot_is_the_header_and_host() {
        let f = Frame {
            period_secs: None,
            ..Frame::default()
        };
        let text = summary(&f);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("rates from the next interval"), "{text}");
    }

    #[test]
    fn one_line_names_the_busiest_process() {
        let line = one_line(&busy_frame(5));
        assert!(!line.contains('\n'));
        assert!(line.contains("top p04 [4] cpu 4.0%"), "{line}");
        assert!(line.contains("cpu 50% of 2"), "{line}");
    }
}
