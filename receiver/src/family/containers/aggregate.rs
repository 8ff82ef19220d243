//! Per-container series from successive readings. Pure.
//!
//! The cgroup files hold totals since each cgroup was made. A container keeps its own
//! series while fewer than the limit are live (`aggregate::bounded`); past it, its
//! increments go to the overflow series, so the sum over series stays exact. A total that
//! went down belongs to a new cgroup under the same id (a restarted container): its new
//! value is the increment. A container that is gone stops changing and its series expires
//! after `collection.series_ttl`.

use std::collections::{BTreeMap, HashMap};

use crate::aggregate::bounded::{BoundedSeries, SeriesPoint, SeriesPolicy};
use crate::family::containers::collect::Reading;
use crate::family::containers::stat::Cpu;

/// One series' values: cumulative counters, and memory as read at `memory_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Whether any CPU figure was read (a series without one exports no CPU point).
    pub has_cpu: bool,
    pub cpu: Cpu,
    /// Bytes by (device, read = 0 / write = 1).
    pub disk: BTreeMap<(String, u8), u64>,
    /// Memory of the containers counted at tick `memory_at` (summed in the overflow).
    pub memory: u64,
    pub working_set: Option<u64>,
    pub memory_at: Option<u64>,
}

/// The last reading of each container present, and the bounded series.
#[derive(Debug)]
pub struct Containers {
    last: HashMap<String, Reading>,
    series: BoundedSeries<String, Usage>,
}

fn inc(now: u64, before: Option<u64>) -> u64 {
    match before {
        Some(b) if now >= b => now - b,
        _ => now, // new, or a new cgroup under the same id
    }
}

/// A CPU reading taken as the series will count it, and what it adds to the series.
struct CpuStep {
    reading: Cpu,
    added: Cpu,
}

/// The CPU a cgroup used since reading `before`. Only the total is exact and monotonic
/// on v1: cpuacct's user/system split comes from scheduler ticks and wobbles, so a mode
/// may read lower than before while the total grew. Each mode is held to at least what
/// was counted before, within the exact total, so both counters stay monotonic and add
/// up to `cpuacct.usage` (v2's `cpu.stat` modes never go down: nothing is moved there).
/// A total that went down belongs to a new cgroup under the same id: all of it is new.
fn cpu_since(now: Cpu, before: Option<Cpu>) -> CpuStep {
    let total = now.user_ns.saturating_add(now.system_ns);
    match before {
        Some(b) if total >= b.user_ns.saturating_add(b.system_ns) => {
            let user = now.user_ns.clamp(b.user_ns, total - b.system_ns);
            let reading = Cpu {
                user_ns: user,
                system_ns: total - user,
            };
            CpuStep {
                reading,
                added: Cpu {
                    user_ns: reading.user_ns - b.user_ns,
                    system_ns: reading.system_ns - b.system_ns,
                },
            }
        }
        _ => CpuStep {
            reading: now,
            added: now,
        },
    }
}

/// What exporting needs: live series, the overflow series, and the tick they are of.
pub type Snapshot = (
    Vec<SeriesPoint<String, Usage>>,
    Option<SeriesPoint<(), Usage>>,
);

impl Containers {
    pub fn new(policy: SeriesPolicy) -> Self {
        Self {
            last: HashMap::new(),
            series: BoundedSeries::new(policy),
        }
    }

    /// Folds the readings taken at `now` (Unix ns) into the series and ticks them.
    pub fn update(&mut self, now: u64, readings: Vec<Reading>) {
        let mut last = HashMap::with_capacity(readings.len());
        for mut r in readings {
            let before = self.last.remove(&r.id);
            let before = before.as_ref();
            let u = self.series.update_or_fold(r.id.clone(), |_| ());
            if let Some(c) = r.cpu {
                u.has_cpu = true;
                let c = cpu_since(c, before.and_then(|b| b.cpu));
                u.cpu.user_ns += c.added.user_ns;
                u.cpu.system_ns += c.added.system_ns;
                r.cpu = Some(c.reading);
            }
            for d in &r.disk {
                let b = before.and_then(|b| b.disk.iter().find(|x| x.device == d.device));
                for (dir, now_v, b_v) in [
                    (0u8, d.read, b.map(|b| b.read)),
                    (1u8, d.write, b.map(|b| b.write)),
                ] {
                    *u.disk.entry((d.device.clone(), dir)).or_default() += inc(now_v, b_v);
                }
            }
            if let Some(m) = r.memory {
                if u.memory_at != Some(now) {
                    u.memory = 0;
                    u.working_set = None;
                    u.memory_at = Some(now);
                }
                u.memory += m.usage;
                if let Some(ws) = m.working_set {
                    u.working_set = Some(u.working_set.unwrap_or(0) + ws);
                }
            }
            last.insert(r.id.clone(), r);
        }
        // Containers not read this time are gone: a later one with the same id starts over.
        self.last = last;
        self.series.tick(now);
    }

    pub fn snapshot(&self) -> Snapshot {
        let (series, mut overflow) = self.series.snapshot();
        (series, overflow.pop())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::family::containers::stat::{DeviceIo, Memory};

    const S: u64 = 1_000_000_000;

    fn reading(id: &str, user: u64, sys: u64, mem: u64, write: u64) -> Reading {
        Reading {
            id: id.into(),
            cpu: Some(Cpu {
                user_ns: user,
                system_ns: sys,
            }),
            memory: Some(Memory {
                usage: mem,
                working_set: Some(mem / 2),
            }),
            disk: vec![DeviceIo {
                device: "sda".into(),
                read: 0,
                write,
            }],
        }
    }

    fn policy(limit: usize, ttl_s: u64) -> SeriesPolicy {
        SeriesPolicy {
            limit,
            ttl: Duration::from_secs(ttl_s),
            start_unix_nano: 100 * S,
        }
    }

    /// (id, user, system, memory at this tick, written, start s) per series.
    fn table(c: &Containers, now: u64) -> Vec<(String, u64, u64, Option<u64>, u64, u64)> {
        let (series, overflow) = c.snapshot();
        let row = |id: String, u: &Usage, start: u64| {
            (
                id,
                u.cpu.user_ns,
                u.cpu.system_ns,
                (u.memory_at == Some(now)).then_some(u.memory),
                u.disk.get(&("sda".to_owned(), 1)).copied().unwrap_or(0),
                start / S,
            )
        };
        let mut rows: Vec<_> = series
            .iter()
            .map(|p| row(p.key.clone(), &p.value, p.start_unix_nano))
            .collect();
        rows.extend(overflow.map(|p| row("overflow".into(), &p.value, p.start_unix_nano)));
        rows
    }

    #[test]
    fn totals_follow_the_files_and_a_restarted_cgroup_adds_its_new_total() {
        let mut c = Containers::new(policy(10, 0));
        c.update(110 * S, vec![reading("a", 50, 5, 1000, 7)]);
        c.update(120 * S, vec![reading("a", 80, 6, 900, 7)]);
        assert_eq!(
            table(&c, 120 * S),
            vec![("a".into(), 80, 6, Some(900), 7, 100)],
            "the first reading counts in full: the cgroup's total since it was made"
        );
        // Restarted under the same id: totals went down.
        c.update(130 * S, vec![reading("a", 10, 1, 100, 2)]);
        assert_eq!(
            table(&c, 130 * S),
            vec![("a".into(), 90, 7, Some(100), 9, 100)]
        );
        // Gone for one reading, then back: its new totals are all new.
        c.update(140 * S, vec![]);
        assert_eq!(table(&c, 140 * S), vec![("a".into(), 90, 7, None, 9, 100)]);
        c.update(150 * S, vec![reading("a", 10, 1, 100, 2)]);
        assert_eq!(
            table(&c, 150 * S),
            vec![("a".into(), 100, 8, Some(100), 11, 100)]
        );
    }

    #[test]
    fn a_wobbling_v1_split_keeps_both_modes_monotonic_and_the_total_exact() {
        let mut c = Containers::new(policy(10, 0));
        // (user, system) as cpu_v1 splits cpuacct.usage by tick counts: the split moves
        // while the exact total only grows.
        let steps = [
            ((300, 700), (300, 700)),
            ((280, 760), (300, 740)), // user read lower: held, system takes the rest
            ((350, 790), (350, 790)), // both above what was counted
            ((100, 1_200), (350, 950)), // a big swing: still the total, still monotonic
        ];
        for (i, ((user, sys), want)) in steps.into_iter().enumerate() {
            let now = (110 + i as u64) * S;
            c.update(now, vec![reading("a", user, sys, 1, 0)]);
            let row = table(&c, now).remove(0);
            assert_eq!((row.1, row.2), want, "step {i}");
            assert_eq!(row.1 + row.2, user + sys, "the total is the file's");
        }
    }

    #[test]
    fn containers_past_the_limit_share_the_overflow_and_the_sum_stays_exact() {
        let mut c = Containers::new(policy(1, 0));
        c.update(
            110 * S,
            vec![
                reading("a", 10, 1, 100, 1),
                reading("b", 20, 2, 200, 2),
                reading("c", 30, 3, 300, 3),
            ],
        );
        c.update(
            120 * S,
            vec![
                reading("a", 11, 1, 100, 1),
                reading("b", 25, 2, 250, 2),
                reading("c", 30, 3, 300, 3),
            ],
        );
        assert_eq!(
            table(&c, 120 * S),
            vec![
                ("a".into(), 11, 1, Some(100), 1, 100),
                ("overflow".into(), 55, 5, Some(550), 5, 100),
            ],
            "b and c: increments summed, memory summed at this tick"
        );
    }

    #[test]
    fn a_gone_container_expires_after_the_ttl_and_frees_its_slot() {
        let mut c = Containers::new(policy(1, 60));
        c.update(110 * S, vec![reading("a", 1, 1, 1, 1)]);
        c.update(120 * S, vec![reading("b", 5, 5, 5, 5)]);
        assert_eq!(table(&c, 120 * S)[1].0, "overflow");
        c.update(169 * S, vec![reading("b", 5, 5, 5, 5)]);
        assert_eq!(table(&c, 169 * S)[0].0, "a", "59 s idle: still there");
        c.update(171 * S, vec![reading("b", 6, 5, 5, 5)]);
        c.update(172 * S, vec![reading("b", 7, 5, 5, 5)]);
        let rows = table(&c, 172 * S);
        assert_eq!(rows[0], ("b".into(), 1, 0, Some(5), 0, 171));
        assert_eq!(
            rows[1].0, "overflow",
            "the overflow keeps b's earlier counts until it expires itself"
        );
    }
}
