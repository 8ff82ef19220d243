//! /proc/meminfo: memory and swap totals, in bytes.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meminfo {
    pub total: u64,
    pub free: u64,
    /// Absent before Linux 3.14.
    pub available: Option<u64>,
    pub buffers: u64,
    pub cached: u64,
    /// Absent before Linux 2.6.19.
    pub slab_reclaimable: Option<u64>,
    pub slab_unreclaimable: Option<u64>,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl Meminfo {
    /// Page cache plus reclaimable slab: what `free` shows as buff/cache minus buffers.
    pub fn cached_total(&self) -> u64 {
        self.cached + self.slab_reclaimable.unwrap_or(0)
    }

    /// Memory in use by processes and the kernel: the rest once free, buffers and
    /// cache are taken away (saturating: the counters are read at slightly different
    /// instants).
    pub fn used(&self) -> u64 {
        self.total
            .saturating_sub(self.free)
            .saturating_sub(self.buffers)
            .saturating_sub(self.cached_total())
    }
}

/// `None` if MemTotal is missing (not a meminfo file).
pub fn parse(text: &str) -> Option<Meminfo> {
    let mut m = Meminfo::default();
    let mut have_total = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut it = rest.split_ascii_whitespace();
        let Some(Ok(v)) = it.next().map(str::parse::<u64>) else {
            continue;
        };
        // Values are in kB (KiB) when a unit is given; a few lines (HugePages_*) are counts.
        let bytes = if it.next() == Some("kB") { v * 1024 } else { v };
        match key {
            "MemTotal" => {
                m.total = bytes;
                have_total = true;
            }
            "MemFree" => m.free = bytes,
            "MemAvailable" => m.available = Some(bytes),
            "Buffers" => m.buffers = bytes,
            "Cached" => m.cached = bytes,
            "SReclaimable" => m.slab_reclaimable = Some(bytes),
            "SUnreclaim" => m.slab_unreclaimable = Some(bytes),
            "SwapTotal" => m.swap_total = bytes,
            "SwapFree" => m.swap_free = bytes,
            _ => {}
        }
    }
    have_total.then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
MemTotal:        8048576 kB
MemFree:         1000000 kB
MemAvailable:    5000000 kB
Buffers:          200000 kB
Cached:          3000000 kB
SwapCached:            0 kB
SwapTotal:       2097148 kB
SwapFree:        2000000 kB
SReclaimable:     300000 kB
SUnreclaim:       100000 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

    #[test]
    fn parses_kib_into_bytes_and_states_add_up() {
        let m = parse(SAMPLE).expect("meminfo");
        assert_eq!(m.total, 8048576 * 1024);
        assert_eq!(m.available, Some(5000000 * 1024));
        assert_eq!(m.cached_total(), 3300000 * 1024);
        assert_eq!(m.used(), (8048576 - 1000000 - 200000 - 3300000) * 1024);
        assert_eq!(m.used() + m.free + m.buffers + m.cached_total(), m.total);
        assert_eq!(m.swap_total - m.swap_free, 97148 * 1024);
    }

    #[test]
    fn old_kernel_without_available_or_slab() {
        let m = parse("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 20 kB\n")
            .expect("meminfo");
        assert_eq!(m.available, None);
        assert_eq!(m.slab_reclaimable, None);
        assert_eq!(m.used(), 870 * 1024);
    }

    #[test]
    fn not_meminfo() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn used_saturates_when_counters_race() {
        let m = parse("MemTotal: 10 kB\nMemFree: 8 kB\nCached: 5 kB\n").expect("meminfo");
        assert_eq!(m.used(), 0);
    }
}
