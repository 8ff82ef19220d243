//! Reads the fileio family's per-CPU maps: file I/O per file system, block I/O per
//! device, bytes per process for both, and the family's loss counters.
//!
//! The kernel keeps every value cumulative. Per-process entries of processes that have
//! exited are folded into [`ProcTotals`] (userspace keeps their cumulative share) and
//! deleted from the kernel map, so the map holds live processes only.

use std::collections::HashMap;
use std::path::Path;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuValues};
use sonde_probes::abi::{
    sonde_fileio_counter as slot, sonde_io_direction, sonde_io_hist, sonde_io_key,
    sonde_io_proc_key, sonde_io_proc_value, sonde_io_stats, sonde_io_totals, SONDE_HIST_SLOTS,
};
use sonde_probes::names::fileio as n;

use crate::aggregate::bounded::{BoundedCounter, SeriesPolicy, SeriesSnapshot};
use crate::aggregate::process::ProcessKey;
use crate::cgroup::Attribution;
pub use crate::collect::CollectError;
use crate::collect::{map_err, sum_slot, take_map};
use crate::family::host::collect::process::parse_stat;
use crate::family::process::collect::comm_to_string;
use crate::probe::LoadedFamily;

use super::fsnum::FsNumbers;

pub const SLOTS: usize = SONDE_HIST_SLOTS as usize;

/// One (file system or device, direction) summed over CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoStats {
    pub ops: u64,
    pub bytes: u64,
    pub time_ns: u64,
    /// Log2 latency slots as the kernel keeps them (see sonde_abi.h).
    pub slots: [u64; SLOTS],
}

impl Default for IoStats {
    fn default() -> Self {
        Self {
            ops: 0,
            bytes: 0,
            time_ns: 0,
            slots: [0; SLOTS],
        }
    }
}

impl IoStats {
    pub fn add(&mut self, other: &IoStats) {
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.time_ns += other.time_ns;
        for (a, b) in self.slots.iter_mut().zip(other.slots.iter()) {
            *a += b;
        }
    }

    fn add_kernel(&mut self, v: &sonde_io_stats) {
        self.ops += v.ops;
        self.bytes += v.bytes;
        self.time_ns += v.time_ns;
        for (a, b) in self.slots.iter_mut().zip(v.slots.iter()) {
            *a += b;
        }
    }
}

/// `dev` is the kernel's dev_t encoding (major << 20 | minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IoKey {
    pub dev: u32,
    /// `SONDE_IO_READ` (0) or `SONDE_IO_WRITE` (1).
    pub direction: u32,
}

/// One per-process series: who (executable name, container), where, which way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcSeries {
    pub process: ProcessKey,
    /// 0 where the metric has no device/file-system attribute (process.disk.io).
    pub dev: u32,
    pub direction: u32,
}

/// Per-process series and per-(dev, direction) overflow series, both cumulative.
pub type ProcSnapshot = SeriesSnapshot<ProcSeries, u64, IoKey>;

/// A kernel per-process entry: (tgid, dev, direction, exec_id, start_ns, cgroup_id), as
/// in `sonde_io_proc_key`.
pub type ProcEntry = (u32, u32, u32, u32, u64, u64);

/// Cumulative bytes per process series, bounded and expiring (`aggregate::bounded`):
/// series past the limit add to an overflow per (dev, direction), so totals per file
/// system and direction stay exact. Pure: no I/O.
#[derive(Debug, Clone)]
pub struct ProcTotals {
    /// Last cumulative value seen per kernel entry.
    last: HashMap<ProcEntry, u64>,
    series: BoundedCounter<ProcSeries, IoKey>,
}

impl ProcTotals {
    pub fn new(series: SeriesPolicy) -> Self {
        Self {
            last: HashMap::new(),
            series: BoundedCounter::new(series),
        }
    }

    /// Takes a kernel entry's cumulative bytes, accounted to `series`.
    pub fn update(&mut self, entry: ProcEntry, series: ProcSeries, cumulative: u64) {
        let last = self.last.insert(entry, cumulative).unwrap_or(0);
        // Never below the last value unless the entry was recreated: then all of it is new.
        let delta = cumulative.checked_sub(last).unwrap_or(cumulative);
        self.series.add_or_fold(series, delta, |s| IoKey {
            dev: s.dev,
            direction: s.direction,
        });
    }

    /// The kernel entry was deleted (nothing could add to it any more): a new entry with
    /// the same key starts from zero.
    pub fn forget(&mut self, entry: ProcEntry) {
        self.last.remove(&entry);
    }

    /// A snapshot tick at `now` (Unix ns): idle series expire.
    pub fn tick(&mut self, now: u64) {
        self.series.tick(now);
    }

    /// Series in key order and overflow per (dev, direction), both cumulative.
    pub fn snapshot(&self) -> ProcSnapshot {
        self.series.snapshot()
    }
}

/// /proc's `starttime` (clock ticks after boot) of a process that started `start_ns` after
/// boot, as the kernel converts it (`nsec_to_clock_t`).
pub fn start_ticks(start_ns: u64, ticks_per_second: u64) -> u64 {
    start_ns / (1_000_000_000 / ticks_per_second.clamp(1, 1_000_000_000))
}

/// Which kernel entries can no longer grow: those whose process is gone (`start_of`
/// gives a live pid's start in clock ticks, `None` when there is no such pid; a
/// different start is a later process with the same pid) and those of a process that has
/// an entry of a later exec (its threads all died before the exec count moved). Pure.
pub fn finished_entries(
    entries: &[ProcEntry],
    ticks_per_second: u64,
    mut start_of: impl FnMut(u32) -> Option<u64>,
) -> Vec<bool> {
    // The latest exec seen per process (tgid, start). Exec counts only grow; the low 32
    // bits wrap after 4 billion execs of one process, which no process lives to see.
    let mut latest: HashMap<(u32, u64), u32> = HashMap::new();
    for &(tgid, _, _, exec_id, start, _) in entries {
        let l = latest.entry((tgid, start)).or_insert(exec_id);
        *l = (*l).max(exec_id);
    }
    let mut alive: HashMap<(u32, u64), bool> = HashMap::new();
    entries
        .iter()
        .map(|&(tgid, _, _, exec_id, start, _)| {
            let live = *alive
                .entry((tgid, start))
                .or_insert_with(|| start_of(tgid) == Some(start_ticks(start, ticks_per_second)));
            !live || latest[&(tgid, start)] != exec_id
        })
        .collect()
}

/// Cumulative loss counts of the family (`sonde.probe.events.lost`, reason `map_full`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileIoLost {
    pub file: u64,
    pub block: u64,
}

/// Shared (not per-CPU) in the kernel: each value holds a whole grid histogram.
type StatsMap = BpfHashMap<MapData, sonde_io_key, sonde_io_stats>;
type ProcMap = BpfHashMap<MapData, sonde_io_proc_key, sonde_io_proc_value>;

pub struct FileIoCollector {
    /// dev_t -> the file system's number: its place in the two arrays below.
    file_fs: BpfHashMap<MapData, u32, u32>,
    /// number -> dev_t: the numbers given out (freed last when one is taken back).
    file_fs_taken: BpfHashMap<MapData, u32, u32>,
    /// The numbering's generation, moved at every taking back.
    file_fs_gen: Array<MapData, u32>,
    gen: u32,
    fs_numbers: FsNumbers,
    /// The series TTL: a file system idle for this long gives its number back.
    ttl: std::time::Duration,
    file_fs_totals: PerCpuArray<MapData, sonde_io_totals>,
    file_fs_hists: Array<MapData, sonde_io_hist>,
    file_procs: ProcMap,
    block_stats: StatsMap,
    block_procs: ProcMap,
    counters: PerCpuArray<MapData, u64>,
    processes: Attribution,
    pub file_totals: ProcTotals,
    pub block_totals: ProcTotals,
}

impl std::fmt::Debug for FileIoCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileIoCollector").finish_non_exhaustive()
    }
}

impl FileIoCollector {
    /// Takes the family's maps. `series` bounds the per-process series of each metric
    /// (limit with overflow, expiry).
    pub fn new(
        loaded: &mut LoadedFamily,
        series: SeriesPolicy,
        processes: Attribution,
    ) -> Result<Self, CollectError> {
        Ok(Self {
            file_fs: take_map(loaded, n::MAP_FILE_FS)?,
            file_fs_taken: take_map(loaded, n::MAP_FILE_FS_TAKEN)?,
            file_fs_gen: take_map(loaded, n::MAP_FILE_FS_GEN)?,
            gen: 0,
            fs_numbers: FsNumbers::default(),
            ttl: series.ttl,
            file_fs_totals: take_map(loaded, n::MAP_FILE_TOTALS)?,
            file_fs_hists: take_map(loaded, n::MAP_FILE_HISTS)?,
            file_procs: take_map(loaded, n::MAP_FILE_PROCS)?,
            block_stats: take_map(loaded, n::MAP_BLOCK_STATS)?,
            block_procs: take_map(loaded, n::MAP_BLOCK_PROCS)?,
            counters: take_map(loaded, n::MAP_COUNTERS)?,
            processes,
            file_totals: ProcTotals::new(series),
            block_totals: ProcTotals::new(series),
        })
    }

    /// File I/O per (file system, direction), read at `now`; `start` is the family's.
    pub fn file_stats(
        &mut self,
        now: u64,
        start: u64,
    ) -> Result<Vec<(IoKey, IoStats)>, CollectError> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let numbered: Vec<(u32, u32)> = self
            .file_fs
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(n::MAP_FILE_FS))?;
        for (dev, number) in numbered {
            let mut ops = 0;
            for direction in [
                sonde_io_direction::SONDE_IO_READ as u32,
                sonde_io_direction::SONDE_IO_WRITE as u32,
            ] {
                let i = 2 * number + direction;
                let mut s = IoStats::default();
                let totals = self
                    .file_fs_totals
                    .get(&i, 0)
                    .map_err(map_err(n::MAP_FILE_TOTALS))?;
                for t in totals.iter() {
                    s.ops += t.ops;
                    s.bytes += t.bytes;
                    s.time_ns += t.time_ns;
                }
                ops += s.ops;
                // A file system is numbered when its first file is opened for a call,
                // before any call completes, and may never see the other direction.
                if s.ops == 0 {
                    continue;
                }
                let hist = self
                    .file_fs_hists
                    .get(&i, 0)
                    .map_err(map_err(n::MAP_FILE_HISTS))?;
                s.slots = hist.slots;
                out.push((IoKey { dev, direction }, s));
            }
            seen.push((dev, number, ops));
        }
        self.fs_numbers.observe(now, start, &seen);
        out.sort_by_key(|(k, _)| *k);
        Ok(out)
    }

    /// The start of each numbered file system's series, by dev_t.
    pub fn file_starts(&self) -> HashMap<u32, u64> {
        self.fs_numbers.starts()
    }

    /// Takes back the numbers of file systems idle for the series TTL (see [`FsNumbers`]),
    /// after [`Self::file_stats`] exported their last values. In this order, so that the
    /// kernel never counts into a number another file system may take: the file system's
    /// entry goes (its next call asks for a number anew), the generation moves (no task's
    /// fd memo keeps the old number), the number's totals and histograms are zeroed, and
    /// only then is the number free. Returns how many were taken back.
    pub fn take_back_idle(&mut self, now: u64) -> Result<usize, CollectError> {
        let idle = self.fs_numbers.idle(now, self.ttl);
        if idle.is_empty() {
            return Ok(0);
        }
        for (_, dev) in &idle {
            gone(self.file_fs.remove(dev)).map_err(map_err(n::MAP_FILE_FS))?;
        }
        self.gen = self.gen.wrapping_add(1);
        self.file_fs_gen
            .set(0, self.gen, 0)
            .map_err(map_err(n::MAP_FILE_FS_GEN))?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| CollectError::Cpus(e))?;
        let zero_totals = || {
            PerCpuValues::try_from(vec![
                sonde_io_totals {
                    ops: 0,
                    bytes: 0,
                    time_ns: 0
                };
                cpus
            ])
        };
        for (number, _) in &idle {
            for i in [2 * number, 2 * number + 1] {
                let values = zero_totals().map_err(CollectError::Cpus)?;
                self.file_fs_totals
                    .set(i, values, 0)
                    .map_err(map_err(n::MAP_FILE_TOTALS))?;
                self.file_fs_hists
                    .set(i, sonde_io_hist { slots: [0; SLOTS] }, 0)
                    .map_err(map_err(n::MAP_FILE_HISTS))?;
            }
            gone(self.file_fs_taken.remove(number)).map_err(map_err(n::MAP_FILE_FS_TAKEN))?;
            self.fs_numbers.taken_back(*number);
        }
        Ok(idle.len())
    }

    /// Block I/O per (device, direction).
    pub fn block_stats(&self) -> Result<Vec<(IoKey, IoStats)>, CollectError> {
        read_stats(&self.block_stats, n::MAP_BLOCK_STATS)
    }

    /// Folds the per-process maps into `file_totals` and `block_totals`, and deletes the
    /// kernel entries of processes that no longer exist under `proc_root`.
    pub fn update_procs(&mut self, proc_root: &Path) -> Result<(), CollectError> {
        fold_procs(
            &mut self.file_procs,
            n::MAP_FILE_PROCS,
            &mut self.file_totals,
            false,
            &mut self.processes,
            proc_root,
        )?;
        fold_procs(
            &mut self.block_procs,
            n::MAP_BLOCK_PROCS,
            &mut self.block_totals,
            true,
            &mut self.processes,
            proc_root,
        )
    }

    pub fn lost(&self) -> Result<FileIoLost, CollectError> {
        let get = |s: slot| sum_slot(&self.counters, n::MAP_COUNTERS, s as u32);
        Ok(FileIoLost {
            file: get(slot::SONDE_FILEIO_LOST_STATS)?
                + get(slot::SONDE_FILEIO_LOST_PROCS)?
                + get(slot::SONDE_FILEIO_LOST_CALLS)?,
            block: get(slot::SONDE_BLOCK_LOST_STATS)?
                + get(slot::SONDE_BLOCK_LOST_PROCS)?
                + get(slot::SONDE_BLOCK_LOST_START)?,
        })
    }
}

/// A delete whose key was already gone did what was asked.
fn gone(r: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match r {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn read_stats(map: &StatsMap, name: &'static str) -> Result<Vec<(IoKey, IoStats)>, CollectError> {
    let mut out = Vec::new();
    for item in map.iter() {
        let (k, v) = item.map_err(map_err(name))?;
        let mut s = IoStats::default();
        s.add_kernel(&v);
        out.push((
            IoKey {
                dev: k.dev,
                direction: k.direction,
            },
            s,
        ));
    }
    out.sort_by_key(|(k, _)| *k);
    Ok(out)
}

fn fold_procs(
    map: &mut ProcMap,
    name: &'static str,
    totals: &mut ProcTotals,
    fold_dev: bool,
    processes: &mut Attribution,
    proc_root: &Path,
) -> Result<(), CollectError> {
    let keys = map
        .keys()
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err(name))?;
    let entries: Vec<ProcEntry> = keys
        .iter()
        .map(|k| {
            (
                k.tgid,
                k.dev,
                k.direction,
                k.exec_id,
                k.start_ns,
                k.cgroup_id,
            )
        })
        .collect();
    // Liveness first, then the read: an entry judged finished can no longer grow, so the
    // value read after the check is its last, and deleting it loses nothing.
    let finished = finished_entries(&entries, rustix::param::clock_ticks_per_second(), |tgid| {
        std::fs::read_to_string(proc_root.join(tgid.to_string()).join("stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
            .map(|s| s.starttime)
    });
    for ((k, entry), finished) in keys.iter().zip(entries).zip(finished) {
        let v = match map.get(k, 0) {
            Ok(v) => v,
            // Deleted meanwhile (not by the kernel, which never deletes: a race with
            // nobody); nothing to count.
            Err(aya::maps::MapError::KeyNotFound) => continue,
            Err(source) => return Err(CollectError::Map { map: name, source }),
        };
        totals.update(
            entry,
            ProcSeries {
                process: processes.key(k.tgid, comm_to_string(&v.comm), k.cgroup_id),
                dev: if fold_dev { 0 } else { k.dev },
                direction: k.direction,
            },
            v.bytes,
        );
        if finished {
            // Its share is kept in `totals`.
            match map.remove(k) {
                Ok(()) => totals.forget(entry),
                Err(e) => tracing::debug!("removing a finished process entry from `{name}`: {e}"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: usize) -> SeriesPolicy {
        SeriesPolicy {
            limit,
            ttl: std::time::Duration::ZERO,
            start_unix_nano: 0,
        }
    }

    fn values<K: Clone>(points: &[crate::aggregate::bounded::SeriesPoint<K>]) -> Vec<(K, u64)> {
        points.iter().map(|p| (p.key.clone(), p.value)).collect()
    }

    fn series(pid: u32, dev: u32) -> ProcSeries {
        ProcSeries {
            process: ProcessKey::named(format!("p{pid}")),
            dev,
            direction: 0,
        }
    }

    #[test]
    fn cumulative_kernel_values_become_exact_series_and_overflow_keeps_dev_and_direction() {
        let mut t = ProcTotals::new(policy(1));
        t.update((1, 7, 0, 0, 0, 0), series(1, 7), 100);
        t.update((2, 7, 0, 0, 0, 0), series(2, 7), 50);
        t.update((1, 7, 0, 0, 0, 0), series(1, 7), 150);
        t.update((2, 7, 0, 0, 0, 0), series(2, 7), 80);
        let (s, o) = t.snapshot();
        assert_eq!(values(&s), vec![(series(1, 7), 150)]);
        assert_eq!(
            values(&o),
            vec![(
                IoKey {
                    dev: 7,
                    direction: 0
                },
                80
            )]
        );
    }

    #[test]
    fn a_forgotten_entry_that_comes_back_counts_from_zero_and_totals_stay_monotonic() {
        let mut t = ProcTotals::new(policy(10));
        t.update((1, 7, 0, 0, 0, 0), series(1, 7), 100);
        t.forget((1, 7, 0, 0, 0, 0));
        // Same pid reused by a new process with the same comm: adds, never resets.
        t.update((1, 7, 0, 0, 0, 0), series(1, 7), 30);
        assert_eq!(values(&t.snapshot().0), vec![(series(1, 7), 130)]);
        // A value below the last one means the entry was recreated: all of it is new.
        t.update((1, 7, 0, 0, 0, 0), series(1, 7), 10);
        assert_eq!(values(&t.snapshot().0), vec![(series(1, 7), 140)]);
    }

    #[test]
    fn entries_finish_when_their_process_is_gone_reused_or_has_exec_d() {
        const HZ: u64 = 100;
        let s = 5_000_000_000; // started 5 s after boot: 500 ticks
        let entries = [
            (10, 7, 0, 3, s, 0),             // pid 10, before its exec
            (10, 7, 1, 4, s, 0),             // pid 10 after exec: the live one
            (10, 7, 1, 4, s, 9),             // ... also counted after a move to cgroup 9
            (11, 7, 0, 0, s, 0),             // pid 11: exited
            (12, 7, 0, 0, s, 0),             // pid 12: reused by a process started later
            (13, 7, 0, 0, s + 9_999_999, 0), // same tick as 500
        ];
        let start_of = |pid: u32| match pid {
            10 | 13 => Some(500),
            12 => Some(501),
            _ => None,
        };
        assert_eq!(
            finished_entries(&entries, HZ, start_of),
            vec![true, false, false, true, true, false]
        );
        assert_eq!(start_ticks(s, HZ), 500);
        assert_eq!(
            start_ticks(s, 0),
            5,
            "a zero tick rate cannot divide by zero"
        );
    }

    #[test]
    fn stats_add_slot_by_slot() {
        let mut a = IoStats::default();
        a.slots[3] = 2;
        a.ops = 2;
        let mut b = IoStats::default();
        b.slots[3] = 1;
        b.slots[39] = 4;
        b.ops = 5;
        a.add(&b);
        assert_eq!((a.ops, a.slots[3], a.slots[39]), (7, 3, 4));
    }

    #[test]
    fn a_delete_of_a_key_already_gone_is_done_and_other_failures_are_not() {
        let syscall = |errno| {
            Err(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_delete_elem",
                io_error: std::io::Error::from_raw_os_error(errno),
            }))
        };
        assert!(gone(Ok(())).is_ok());
        assert!(gone(Err(aya::maps::MapError::KeyNotFound)).is_ok());
        assert!(gone(syscall(libc::ENOENT)).is_ok());
        assert!(gone(syscall(libc::EPERM)).is_err());
    }
}
