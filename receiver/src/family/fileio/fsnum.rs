//! Which file system numbers to take back, and when each file system's series started.
//!
//! The kernel numbers a file system the first time one of its files is read or written
//! (`fileio.bpf.c`, at most `SONDE_FILEIO_FS_MAX`); on a node where containers come and go,
//! every container's overlay (and each pod's tmpfs volumes) is a file system of its own,
//! so numbers would run out within hours if they were never given back. A number whose
//! file system has not moved for the series TTL is taken back, as any other series
//! expires (metrics.md, rule 7): its last values were exported, and should the file system
//! return it starts again from zero with a new start time. Pure: the caller reads the
//! kernel's maps and does what [`FsNumbers::idle`] says.

use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    dev: u32,
    /// Operations of both directions, as last read.
    ops: u64,
    /// When `ops` last moved (or the number was first seen).
    moved_ns: u64,
    /// The start of the file system's series under this number.
    start_ns: u64,
}

#[derive(Debug, Clone, Default)]
pub struct FsNumbers {
    slots: HashMap<u32, Slot>,
    /// When the kernel's numbering was last read: a number not there then was given
    /// out after it, so every operation counted under it came later.
    last_read_ns: Option<u64>,
}

impl FsNumbers {
    /// Records one reading of the numbering: (dev, number, operations of both
    /// directions) per numbered file system, at `now`. `start` is the family's start: the
    /// start of the file systems numbered before the first reading.
    pub fn observe(&mut self, now: u64, start: u64, seen: &[(u32, u32, u64)]) {
        let first_start = self.last_read_ns.unwrap_or(start);
        let mut next = HashMap::with_capacity(seen.len());
        for &(dev, number, ops) in seen {
            let slot = match self.slots.get(&number) {
                Some(s) if s.dev == dev => Slot {
                    ops,
                    moved_ns: if s.ops == ops { s.moved_ns } else { now },
                    ..*s
                },
                _ => Slot {
                    dev,
                    ops,
                    moved_ns: now,
                    start_ns: first_start,
                },
            };
            next.insert(number, slot);
        }
        self.slots = next;
        self.last_read_ns = Some(now);
    }

    /// The numbers whose file system has not moved for `ttl` at `now`, as (number, dev),
    /// lowest number first; none with a zero `ttl` (series kept forever).
    pub fn idle(&self, now: u64, ttl: Duration) -> Vec<(u32, u32)> {
        if ttl.is_zero() {
            return Vec::new();
        }
        let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        let mut out: Vec<(u32, u32)> = self
            .slots
            .iter()
            .filter(|(_, s)| now.saturating_sub(s.moved_ns) >= ttl)
            .map(|(n, s)| (*n, s.dev))
            .collect();
        out.sort_unstable();
        out
    }

    /// The caller took `number` back.
    pub fn taken_back(&mut self, number: u32) {
        self.slots.remove(&number);
    }

    /// The start of each numbered file system's series, by dev.
    pub fn starts(&self) -> HashMap<u32, u64> {
        self.slots.values().map(|s| (s.dev, s.start_ns)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const TTL: Duration = Duration::from_secs(300);

    #[test]
    fn a_number_goes_idle_once_its_operations_stand_still_for_the_ttl() {
        // (reading at, (dev, number, ops) seen, idle numbers expected after it)
        type Step = (u64, &'static [(u32, u32, u64)], &'static [(u32, u32)]);
        let steps: &[Step] = &[
            (10, &[(7, 0, 5), (8, 1, 0)], &[]),
            (200, &[(7, 0, 6), (8, 1, 0)], &[]),
            // dev 8 never moved since 10 s: idle at 310 s; dev 7 moved at 200 s.
            (310, &[(7, 0, 6), (8, 1, 0)], &[(1, 8)]),
            (499, &[(7, 0, 6), (8, 1, 0)], &[(1, 8)]),
            (500, &[(7, 0, 6), (8, 1, 0)], &[(0, 7), (1, 8)]),
        ];
        let mut f = FsNumbers::default();
        for (at, seen, idle) in steps {
            f.observe(at * S, 0, seen);
            assert_eq!(f.idle(at * S, TTL), *idle, "at {at} s");
            assert!(
                f.idle(at * S, Duration::ZERO).is_empty(),
                "a zero TTL keeps all"
            );
        }
    }

    #[test]
    fn a_file_system_numbered_after_a_reading_starts_then_and_a_reused_number_starts_anew() {
        let mut f = FsNumbers::default();
        f.observe(10 * S, 3 * S, &[(7, 0, 5)]);
        // Numbered before the first reading: the family's start.
        assert_eq!(f.starts(), HashMap::from([(7, 3 * S)]));
        f.observe(20 * S, 3 * S, &[(7, 0, 9), (8, 1, 1)]);
        // Not there at 10 s: every operation of dev 8 came after that reading.
        assert_eq!(f.starts(), HashMap::from([(7, 3 * S), (8, 10 * S)]));
        f.taken_back(0);
        f.observe(30 * S, 3 * S, &[(8, 1, 1)]);
        // Dev 7 returns under the number it had: a new series, from the last reading.
        f.observe(40 * S, 3 * S, &[(8, 1, 1), (7, 0, 2)]);
        assert_eq!(f.starts(), HashMap::from([(7, 30 * S), (8, 10 * S)]));
        // Another file system on a number (taken back between two readings): anew too.
        f.observe(50 * S, 3 * S, &[(9, 1, 4), (7, 0, 2)]);
        assert_eq!(f.starts(), HashMap::from([(7, 30 * S), (9, 40 * S)]));
        // A number read with another dev restarts its idle clock.
        assert!(f
            .idle(50 * S + TTL.as_nanos() as u64 - 1, TTL)
            .iter()
            .all(|(n, _)| *n != 1));
    }
}
