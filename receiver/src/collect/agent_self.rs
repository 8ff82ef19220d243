//! Sonde's own CPU time and memory, from /proc/self.

use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SelfUsage {
    pub user: Duration,
    pub system: Duration,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

pub fn read() -> std::io::Result<SelfUsage> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let ticks = rustix::param::clock_ticks_per_second();
    parse(&stat, &status, ticks.max(1)).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "/proc/self/stat has no utime and stime fields",
        )
    })
}

/// utime/stime are fields 14 and 15 of stat (after the parenthesised name); VmRSS and
/// VmHWM come from status in kB.
pub fn parse(stat: &str, status: &str, ticks_per_sec: u64) -> Option<SelfUsage> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at index N - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_ascii_whitespace().next()?.parse().ok())
            .unwrap_or(0)
            * 1024
    };
    let tick = |t: u64| Duration::from_nanos(t * 1_000_000_000 / ticks_per_sec);
    Some(SelfUsage {
        user: tick(utime),
        system: tick(stime),
        rss_bytes: kb("VmRSS:"),
        peak_rss_bytes: kb("VmHWM:"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_ticks_and_rss() {
        let stat = "123 (sonde (x)) S 1 123 123 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        let status = "Name:\tsonde\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        let u = parse(stat, status, 100).expect("parse");
        assert_eq!(u.user, Duration::from_millis(2500));
        assert_eq!(u.system, Duration::from_millis(500));
        assert_eq!(u.rss_bytes, 1024 * 1024);
        assert_eq!(u.peak_rss_bytes, 2048 * 1024);
    }
}
