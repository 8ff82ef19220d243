//! /proc/stat: CPU times per mode (all CPUs and each CPU), processes created since boot,
//! runnable and blocked tasks, boot time.

/// Clock ticks (USER_HZ) a CPU spent in each mode. Guest time is already included in
/// `user` and guest_nice in `nice` by the kernel, so it is not added again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    pub fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stat {
    /// The `cpu` line: every CPU together.
    pub total: CpuTimes,
    /// `cpuN` lines, by N. Offline CPUs have no line, so N can have gaps.
    pub per_cpu: Vec<(u32, CpuTimes)>,
    /// Forks since boot (`processes`): every fork/clone, as hostmetrics reports it.
    pub processes_created: Option<u64>,
    pub procs_running: Option<u64>,
    pub procs_blocked: Option<u64>,
    /// Boot time, seconds since the Unix epoch (`btime`).
    pub boot_time: Option<u64>,
}

/// Parses one `cpu` line's numbers. Kernels before 2.6.11 had no steal column and
/// before 2.6.0 no iowait/irq/softirq: missing columns read as zero.
fn cpu_times(fields: &[&str]) -> Option<CpuTimes> {
    let n = |i: usize| -> Option<u64> {
        match fields.get(i) {
            None => Some(0),
            Some(v) => v.parse().ok(),
        }
    };
    if fields.len() < 4 {
        return None;
    }
    Some(CpuTimes {
        user: n(0)?,
        nice: n(1)?,
        system: n(2)?,
        idle: n(3)?,
        iowait: n(4)?,
        irq: n(5)?,
        softirq: n(6)?,
        steal: n(7)?,
    })
}

pub fn parse(text: &str) -> Stat {
    let mut stat = Stat::default();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let Some(key) = it.next() else { continue };
        let fields: Vec<&str> = it.collect();
        let one = || fields.first().and_then(|v| v.parse::<u64>().ok());
        match key {
            "cpu" => {
                if let Some(t) = cpu_times(&fields) {
                    stat.total = t;
                }
            }
            "processes" => stat.processes_created = one(),
            "procs_running" => stat.procs_running = one(),
            "procs_blocked" => stat.procs_blocked = one(),
            "btime" => stat.boot_time = one(),
            k => {
                if let Some(n) = k.strip_prefix("cpu").and_then(|n| n.parse::<u32>().ok()) {
                    if let Some(t) = cpu_times(&fields) {
                        stat.per_cpu.push((n, t));
                    }
                }
            }
        }
    }
    stat
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on Linux 6.18 (2 CPUs), trimmed.
    const SAMPLE: &str = "\
cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23345 0
cpu1 1335588 35000 554036 13396428 2640 0 1234 7 22222 0
intr 1462898 34 9 0 0 0 0 0 0 0
ctxt 5493931
btime 1763880000
processes 72041
procs_running 2
procs_blocked 1
softirq 398312 0 1 2 3 4 5 6 7 8 9
";

    #[test]
    fn parses_cpu_lines_and_counters() {
        let s = parse(SAMPLE);
        assert_eq!(s.total.user, 10132153);
        assert_eq!(s.total.softirq, 25195);
        assert_eq!(s.total.steal, 0);
        assert_eq!(s.per_cpu.len(), 2);
        assert_eq!(s.per_cpu[1].0, 1);
        assert_eq!(s.per_cpu[1].1.steal, 7);
        assert_eq!(s.processes_created, Some(72041));
        assert_eq!(s.procs_running, Some(2));
        assert_eq!(s.procs_blocked, Some(1));
        assert_eq!(s.boot_time, Some(1763880000));
        assert_eq!(
            s.total.total(),
            10132153 + 290696 + 3084719 + 46828483 + 16683 + 25195,
            "guest columns are already inside user/nice and are not added again"
        );
    }

    #[test]
    fn old_kernel_without_steal_or_iowait_and_offline_cpus() {
        // 2.6.0-era: 7 columns; 2.4-era: 4 columns; cpu1 offline (no line).
        let s = parse("cpu 1 2 3 4 5 6 7\ncpu0 1 2 3 4\ncpu2 9 9 9 9 9 9 9 9\nprocesses 5\n");
        assert_eq!(s.total.softirq, 7);
        assert_eq!(s.total.steal, 0);
        assert_eq!(
            s.per_cpu[0].1,
            CpuTimes {
                user: 1,
                nice: 2,
                system: 3,
                idle: 4,
                ..Default::default()
            }
        );
        assert_eq!(
            s.per_cpu[1].0, 2,
            "numbering keeps the gap of the offline CPU"
        );
        assert_eq!(
            s.procs_running, None,
            "missing lines stay unknown, not zero"
        );
    }

    #[test]
    fn garbage_is_skipped_not_fatal() {
        let s = parse("cpu x y z w\ncpuX 1 2 3 4\n\nprocesses lots\n");
        assert_eq!(s, Stat::default());
    }
}

/// /proc/uptime: seconds since boot (the first of its two numbers).
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_ascii_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

#[cfg(test)]
mod uptime_tests {
    #[test]
    fn uptime() {
        assert_eq!(
            super::parse_uptime("350735.47 234388.90\n"),
            Some(350735.47)
        );
        assert_eq!(super::parse_uptime(""), None);
        assert_eq!(super::parse_uptime("-1 0"), None);
    }
}
