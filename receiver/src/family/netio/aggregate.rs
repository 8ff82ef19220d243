//! Bytes per process series and per container from the probe's (cgroup, name) entries.
//! Pure.
//!
//! The kernel's two maps take turns (`probes/include/sonde_abi.h`): an entry is read while
//! its map may still be written (credited up to what it shows) and once more when it is
//! final, then forgotten with the map's contents. So each entry is credited its increments
//! only, and the series are the running totals, bounded and expiring
//! (`aggregate::bounded`): past the limit, bytes go to an overflow series per direction.

use std::collections::HashMap;
use std::sync::Arc;

use crate::aggregate::bounded::{BoundedCounter, SeriesPoint, SeriesPolicy};
use crate::aggregate::process::ProcessKey;
use crate::cgroup::Container;

/// Which way bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Transmit,
    Receive,
}

/// A kernel entry: (cgroup id, process name as the kernel wrote it).
pub type Entry = (u64, [u8; 16]);

/// Series and overflow of one metric, by direction.
pub type Snapshot<K> = (
    Vec<SeriesPoint<(K, Direction)>>,
    Vec<SeriesPoint<Direction>>,
);

#[derive(Debug)]
pub struct NetTotals {
    /// What each entry of the map being retired has been credited so far.
    credited: HashMap<Entry, (u64, u64)>,
    processes: BoundedCounter<(ProcessKey, Direction), Direction>,
    containers: BoundedCounter<(Arc<Container>, Direction), Direction>,
    /// The kernel's unkeyed totals (bytes whose key found the map full), as last read.
    unkeyed: (u64, u64),
}

impl NetTotals {
    pub fn new(policy: SeriesPolicy) -> Self {
        Self {
            credited: HashMap::new(),
            processes: BoundedCounter::new(policy),
            containers: BoundedCounter::new(policy),
            unkeyed: (0, 0),
        }
    }

    fn add(&mut self, key: &ProcessKey, tx: u64, rx: u64) {
        for (dir, n) in [(Direction::Transmit, tx), (Direction::Receive, rx)] {
            self.processes.add_or_fold((key.clone(), dir), n, |k| k.1);
            if let Some(c) = &key.container {
                self.containers.add_or_fold((c.clone(), dir), n, |k| k.1);
            }
        }
    }

    /// The retired map's entry as read now: `(tx, rx)` bytes since the map was emptied.
    pub fn update(&mut self, entry: Entry, key: &ProcessKey, tx: u64, rx: u64) {
        let (ctx, crx) = self.credited.insert(entry, (tx, rx)).unwrap_or((0, 0));
        self.add(key, tx.saturating_sub(ctx), rx.saturating_sub(crx));
    }

    /// The retired map is read for the last time (`final_values`, each entry's final
    /// totals) and emptied: what was not credited yet is, and its entries are forgotten.
    pub fn finish(&mut self, final_values: &[(Entry, ProcessKey, u64, u64)]) {
        for (entry, key, tx, rx) in final_values {
            let (ctx, crx) = self.credited.remove(entry).unwrap_or((0, 0));
            self.add(key, tx.saturating_sub(ctx), rx.saturating_sub(crx));
        }
        self.credited.clear();
    }

    /// The kernel's cumulative unkeyed totals: their increments go to the overflow.
    pub fn unkeyed(&mut self, tx: u64, rx: u64) -> (u64, u64) {
        self.unkeyed = (self.unkeyed.0.max(tx), self.unkeyed.1.max(rx));
        self.unkeyed
    }

    /// A snapshot tick at `now` (Unix ns): idle series expire.
    pub fn tick(&mut self, now: u64) {
        self.processes.tick(now);
        self.containers.tick(now);
    }

    pub fn processes(&self) -> Snapshot<ProcessKey> {
        self.processes.snapshot()
    }

    pub fn containers(&self) -> Snapshot<Arc<Container>> {
        self.containers.snapshot()
    }

    pub fn unkeyed_totals(&self) -> (u64, u64) {
        self.unkeyed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cgroup::Runtime;

    fn policy(limit: usize) -> SeriesPolicy {
        SeriesPolicy {
            limit,
            ttl: Duration::ZERO,
            start_unix_nano: 0,
        }
    }

    fn entry(cg: u64, name: &str) -> Entry {
        let mut c = [0u8; 16];
        c[..name.len()].copy_from_slice(name.as_bytes());
        (cg, c)
    }

    fn container(id: char) -> Arc<Container> {
        Arc::new(Container {
            id: id.to_string().repeat(64),
            runtime: Runtime::Docker,
            k8s: None,
        })
    }

    /// (key, direction, bytes) per series, and (direction, bytes) per overflow series.
    type Values<K> = (Vec<(K, Direction, u64)>, Vec<(Direction, u64)>);

    fn values<K: Clone>(s: &Snapshot<K>) -> Values<K> {
        (
            s.0.iter()
                .map(|p| (p.key.0.clone(), p.key.1, p.value))
                .collect(),
            s.1.iter().map(|p| (p.key, p.value)).collect(),
        )
    }

    #[test]
    fn entries_are_credited_increments_across_reads_and_the_final_read() {
        let mut t = NetTotals::new(policy(10));
        let c = container('a');
        let curl = ProcessKey::named("curl").in_container(Some(c.clone()));
        // Map 0 retired: read while in-flight writes may still land.
        t.update(entry(7, "curl"), &curl, 100, 10);
        // Next collection: its final values, then it is emptied.
        t.finish(&[(entry(7, "curl"), curl.clone(), 150, 10)]);
        // Map 1 retired: the same key again, counted from zero in the new map.
        t.update(entry(7, "curl"), &curl, 5, 1);
        // Two cgroups of one container and one name fold into one series.
        t.update(entry(8, "curl"), &curl, 1, 1);
        let (p, o) = values(&t.processes());
        assert_eq!(
            p,
            vec![
                (curl.clone(), Direction::Transmit, 156),
                (curl.clone(), Direction::Receive, 12)
            ]
        );
        assert!(o.is_empty());
        let (c_series, _) = values(&t.containers());
        assert_eq!(
            c_series,
            vec![
                (c.clone(), Direction::Transmit, 156),
                (c, Direction::Receive, 12)
            ]
        );
        // An entry the final read no longer shows changes nothing; nothing is credited twice.
        t.finish(&[(entry(7, "curl"), curl.clone(), 5, 1)]);
        assert_eq!(values(&t.processes()).0[0].2, 156);
    }

    #[test]
    fn processes_past_the_limit_fold_per_direction_and_hosts_have_no_container_series() {
        let mut t = NetTotals::new(policy(2));
        let a = ProcessKey::named("a");
        let b = ProcessKey::named("b");
        t.update(entry(1, "a"), &a, 1, 2);
        t.update(entry(1, "b"), &b, 3, 4);
        let (p, o) = values(&t.processes());
        assert_eq!(
            p,
            vec![
                (a.clone(), Direction::Transmit, 1),
                (a, Direction::Receive, 2)
            ]
        );
        assert_eq!(o, vec![(Direction::Transmit, 3), (Direction::Receive, 4)]);
        assert!(t.containers().0.is_empty());
        assert_eq!(t.unkeyed(9, 1), (9, 1));
        assert_eq!(t.unkeyed(2, 1), (9, 1), "a total never goes down");
    }
}
