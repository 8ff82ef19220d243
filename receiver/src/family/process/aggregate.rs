//! Per-executable totals the kernel keeps (`process_totals`: CPU of threads that ended,
//! OOM kills, by executable name and cgroup) turned into bounded, expiring series keyed by
//! [`ProcessKey`] (name and container). Pure: the collector passes each tick's map
//! contents, the time and how to name a kernel key (it resolves cgroups, called only for
//! keys whose totals changed), and deletes the kernel keys this state names idle.
//!
//! The kernel's values are cumulative per key for as long as the key lives in the map;
//! each tick adds the difference to the key's series. A key unchanged for the series
//! ttl is handed back for deletion (so the map never fills with names that are gone); if
//! the name returns, the kernel starts it again at zero and so does this state.

use std::collections::HashMap;

use crate::aggregate::bounded::{BoundedCounter, BoundedSeries, SeriesPoint, SeriesPolicy};
use crate::aggregate::process::ProcessKey;

/// Kernel comm bytes (all zero: unknown).
pub type Comm = [u8; 16];

/// A key of `process_totals`: comm and cgroup v2 id (0: unknown).
pub type RawKey = (Comm, u64);

/// Series by process key (`None`: unknown name) and the overflow series, if any.
pub type Points<V> = (
    Vec<SeriesPoint<Option<ProcessKey>, V>>,
    Option<SeriesPoint<(), V>>,
);

/// One key's cumulative totals as the kernel holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub user_ns: u64,
    pub system_ns: u64,
    pub oom_kills: u64,
}

impl Totals {
    /// `self - earlier`, field by field (a field that went down means the key was
    /// recreated: its whole value is new).
    fn since(&self, earlier: &Totals) -> Totals {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        Totals {
            user_ns: d(self.user_ns, earlier.user_ns),
            system_ns: d(self.system_ns, earlier.system_ns),
            oom_kills: d(self.oom_kills, earlier.oom_kills),
        }
    }
}

/// CPU of ended threads per executable name, nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cpu {
    pub user_ns: u64,
    pub system_ns: u64,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    totals: Totals,
    /// When the kernel's value last changed (Unix ns).
    changed: u64,
}

/// The executable name a key stands for; `None` for the unknown name.
pub fn comm_name(comm: &Comm) -> Option<String> {
    let end = comm.iter().position(|b| *b == 0).unwrap_or(comm.len());
    (end > 0).then(|| String::from_utf8_lossy(&comm[..end]).into_owned())
}

/// Exported series of ended-thread CPU and OOM kills by executable name.
#[derive(Debug)]
pub struct ExitTotals {
    seen: HashMap<RawKey, Seen>,
    overflow_seen: Totals,
    ttl_ns: u64,
    /// `None` = the unknown name (a kernel that does not name the OOM victim).
    pub cpu: BoundedSeries<Option<ProcessKey>, Cpu>,
    pub oom_kills: BoundedCounter<Option<ProcessKey>>,
}

impl ExitTotals {
    pub fn new(policy: SeriesPolicy) -> Self {
        Self {
            seen: HashMap::new(),
            overflow_seen: Totals::default(),
            ttl_ns: u64::try_from(policy.ttl.as_nanos()).unwrap_or(u64::MAX),
            cpu: BoundedSeries::new(policy),
            oom_kills: BoundedCounter::new(policy),
        }
    }

    fn add(&mut self, name: Option<ProcessKey>, d: Totals) {
        if d.user_ns > 0 || d.system_ns > 0 {
            let c = self.cpu.update_or_fold(name.clone(), |_| ());
            c.user_ns += d.user_ns;
            c.system_ns += d.system_ns;
        }
        self.oom_kills.add_or_fold(name, d.oom_kills, |_| ());
    }

    /// One tick: the map's entries and the overflow slot (summed over CPUs) as read at
    /// `now`; `key` names a kernel key (`None` for the unknown name). Returns the keys
    /// idle for the ttl, which the caller deletes from the map.
    pub fn update(
        &mut self,
        now: u64,
        entries: impl IntoIterator<Item = (RawKey, Totals)>,
        overflow: Totals,
        mut key: impl FnMut(&RawKey) -> Option<ProcessKey>,
    ) -> Vec<RawKey> {
        for (raw, totals) in entries {
            let earlier = self.seen.get(&raw).map(|s| s.totals).unwrap_or_default();
            if totals == earlier && self.seen.contains_key(&raw) {
                continue;
            }
            self.seen.insert(
                raw,
                Seen {
                    totals,
                    changed: now,
                },
            );
            self.add(key(&raw), totals.since(&earlier));
        }
        let d = overflow.since(&self.overflow_seen);
        self.overflow_seen = overflow;
        if d.user_ns > 0 || d.system_ns > 0 {
            let c = self.cpu.overflow_mut(());
            c.user_ns += d.user_ns;
            c.system_ns += d.system_ns;
        }
        if d.oom_kills > 0 {
            *self.oom_kills.overflow_mut(()) += d.oom_kills;
        }
        self.cpu.tick(now);
        self.oom_kills.tick(now);
        if self.ttl_ns == 0 {
            return Vec::new();
        }
        let ttl = self.ttl_ns;
        let idle: Vec<RawKey> = self
            .seen
            .iter()
            .filter(|(_, s)| now.saturating_sub(s.changed) >= ttl)
            .map(|(k, _)| *k)
            .collect();
        for k in &idle {
            self.seen.remove(k);
        }
        idle
    }

    /// CPU series and the overflow series (if any).
    pub fn cpu_points(&self) -> Points<Cpu> {
        let (points, mut overflow) = self.cpu.snapshot();
        (points, overflow.pop())
    }

    /// OOM kill series and the overflow series (if any).
    pub fn oom_points(&self) -> Points<u64> {
        let (points, mut overflow) = self.oom_kills.snapshot();
        (points, overflow.pop())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: u64 = 1_000_000_000;

    fn comm(name: &str) -> RawKey {
        let mut c = [0u8; 16];
        c[..name.len()].copy_from_slice(name.as_bytes());
        (c, 0)
    }

    /// Names keys as the collector does without containers.
    fn named(raw: &RawKey) -> Option<ProcessKey> {
        comm_name(&raw.0).map(ProcessKey::named)
    }

    fn t(user_ns: u64, system_ns: u64, oom_kills: u64) -> Totals {
        Totals {
            user_ns,
            system_ns,
            oom_kills,
        }
    }

    fn policy(limit: usize, ttl_s: u64) -> SeriesPolicy {
        SeriesPolicy {
            limit,
            ttl: Duration::from_secs(ttl_s),
            start_unix_nano: 0,
        }
    }

    fn cpu_of(x: &ExitTotals, name: &str) -> Option<Cpu> {
        x.cpu_points()
            .0
            .into_iter()
            .find(|p| p.key.as_ref().map(|k| k.executable.as_str()) == Some(name))
            .map(|p| p.value)
    }

    #[test]
    fn kernel_totals_become_cumulative_series_by_name() {
        let mut x = ExitTotals::new(policy(10, 300));
        x.update(S, [(comm("make"), t(10, 5, 0))], Totals::default(), named);
        x.update(
            2 * S,
            [(comm("make"), t(30, 6, 0)), (comm("java"), t(0, 0, 1))],
            Totals::default(),
            named,
        );
        assert_eq!(
            cpu_of(&x, "make"),
            Some(Cpu {
                user_ns: 30,
                system_ns: 6
            })
        );
        assert_eq!(
            cpu_of(&x, "java"),
            None,
            "an OOM kill alone makes no CPU series"
        );
        let (oom, over) = x.oom_points();
        assert_eq!(oom.len(), 1);
        assert_eq!(oom[0].key, Some(ProcessKey::named("java")));
        assert_eq!(oom[0].value, 1);
        assert!(over.is_none());
    }

    #[test]
    fn idle_keys_are_handed_back_and_a_recreated_key_counts_from_zero() {
        let mut x = ExitTotals::new(policy(10, 60));
        assert!(x
            .update(S, [(comm("cron"), t(100, 0, 0))], Totals::default(), named)
            .is_empty());
        let idle = x.update(
            61 * S,
            [(comm("cron"), t(100, 0, 0))],
            Totals::default(),
            named,
        );
        assert_eq!(idle, vec![comm("cron")], "unchanged for the ttl");
        // The caller deleted it and its series expired with it; the kernel starts the
        // name again at zero, and so does a new series with a new start.
        x.update(
            62 * S,
            [(comm("cron"), t(7, 0, 0))],
            Totals::default(),
            named,
        );
        let p = x.cpu_points().0.pop().expect("cron again");
        assert_eq!((p.value.user_ns, p.start_unix_nano), (7, 61 * S));
    }

    #[test]
    fn the_kernels_overflow_and_the_series_limit_keep_sums_exact() {
        let mut x = ExitTotals::new(policy(1, 0));
        x.update(
            S,
            [(comm("a"), t(1, 0, 0)), (comm("b"), t(2, 0, 0))],
            t(4, 8, 1),
            named,
        );
        x.update(2 * S, [], t(5, 8, 1), named);
        let (points, over) = x.cpu_points();
        let total: u64 = points.iter().map(|p| p.value.user_ns).sum::<u64>()
            + over.as_ref().map_or(0, |o| o.value.user_ns);
        assert_eq!(total, 1 + 2 + 5, "user ns over series and overflow");
        assert_eq!(over.map(|o| o.value.system_ns), Some(8));
        assert_eq!(x.oom_points().1.map(|o| o.value), Some(1));
        assert!(
            x.update(1000 * S, [], t(5, 8, 1), named).is_empty(),
            "ttl 0 keeps keys"
        );
    }

    #[test]
    fn names_decode_and_zero_is_unknown() {
        assert_eq!(comm_name(&comm("bash").0).as_deref(), Some("bash"));
        assert_eq!(comm_name(&[0; 16]), None);
        let full = [b'x'; 16];
        assert_eq!(comm_name(&full).map(|s| s.len()), Some(16));
    }
}
