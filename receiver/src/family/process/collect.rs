//! Reads the process family's per-CPU counters and drains its exec ring buffer.

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use sonde_probes::abi::{
    sonde_exec_event, sonde_exit_event, sonde_proc_total, sonde_proc_total_key,
    sonde_process_counter as slot,
};
use sonde_probes::names::process as n;

use super::aggregate::{comm_name, ExitTotals, RawKey, Totals};
use crate::aggregate::bounded::{BoundedCounter, SeriesPoint, SeriesPolicy};
use crate::aggregate::process::ProcessKey;
use crate::cgroup::Attribution;
use crate::collect::ring::{DrainTask, Ring, Sink};
pub use crate::collect::CollectError;
use crate::collect::{sum_slot, take_map};
use crate::probe::LoadedFamily;

/// Cumulative counts since the probes were loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCounts {
    pub created: u64,
    pub exec: u64,
    pub exit_success: u64,
    pub exit_failure: u64,
    pub exit_signal: u64,
    pub lost_ringbuf: u64,
    /// Exit events for spans that did not fit in `process_exits`.
    pub lost_exits: u64,
    /// Execs not remembered for spans (`process_execs` full): those spans start at fork.
    pub lost_exec_starts: u64,
}

/// Exec counts by executable name and container, fed by the exec ring (see
/// `collect::ring`: drained by a task when the kernel wakes it or a short timer fires, and
/// at every snapshot, so counts are exact as of the snapshot).
struct ExecNames {
    counts: BoundedCounter<ProcessKey>,
    attribution: Attribution,
}

impl Sink for ExecNames {
    fn record(&mut self, bytes: &[u8]) {
        if let Some((name, cgroup_id)) = decode_exec(bytes) {
            let key = self.attribution.key_without_pid(name, cgroup_id);
            self.counts.add(key, 1);
        }
    }
}

/// Where the exit ring's records go: a span each, if the rate limit lets it through. The
/// kernel wrote only processes that qualify, so every record is offered.
#[derive(Debug)]
pub struct ExitSpans {
    pub sink: std::sync::Arc<crate::spans::sink::SpanSink>,
    /// Names the exiting task's container.
    pub attribution: Attribution,
}

impl Sink for ExitSpans {
    fn record(&mut self, bytes: &[u8]) {
        if let Some(e) = decode_exit(bytes) {
            self.sink.offer(e.end_ns, |ctx| {
                // Resolved only for spans the rate limit let through.
                let container = self.attribution.container(e.cgroup_id);
                super::spans::span(&e, container, &self.sink.clock, ctx)
            });
        }
    }
}

pub struct ProcessCollector {
    counters: PerCpuArray<MapData, u64>,
    totals: BpfHashMap<MapData, sonde_proc_total_key, sonde_proc_total>,
    totals_overflow: PerCpuArray<MapData, sonde_proc_total>,
    exit_totals: ExitTotals,
    /// Names the kernel's (comm, cgroup id) keys: executable and container.
    attribution: Attribution,
    exec: Ring<RingBuf<MapData>, ExecNames>,
    exits: Option<Ring<RingBuf<MapData>, ExitSpans>>,
}

impl std::fmt::Debug for ProcessCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessCollector").finish_non_exhaustive()
    }
}

/// How often the background task drains without a wake-up from the kernel.
const DRAIN_PERIOD: std::time::Duration = std::time::Duration::from_millis(250);

/// The probe that writes the exec ring: marked failed when the ring cannot be polled.
pub const EXEC_PROBE: &str = "process.exec";
/// The probe that writes the exit ring (process spans).
pub const EXIT_PROBE: &str = "process.exit";

impl ProcessCollector {
    /// Takes the family's maps and starts the task that drains exec events.
    pub fn start(loaded: &mut LoadedFamily, series: SeriesPolicy) -> Result<Self, CollectError> {
        let counters: PerCpuArray<MapData, u64> = take_map(loaded, n::MAP_COUNTERS)?;
        let totals = take_map(loaded, n::MAP_TOTALS)?;
        let totals_overflow = take_map(loaded, n::MAP_TOTALS_OVERFLOW)?;
        let ring: RingBuf<MapData> = take_map(loaded, n::MAP_EVENTS)?;
        let names = ExecNames {
            counts: BoundedCounter::new(series),
            attribution: Attribution::default(),
        };
        let exec = Ring::start_bpf(ring, names, DRAIN_PERIOD)?;
        Ok(Self {
            counters,
            totals,
            totals_overflow,
            exit_totals: ExitTotals::new(series),
            attribution: Attribution::default(),
            exec,
            exits: None,
        })
    }

    /// Resolves the cgroups of execs and per-executable totals to containers with
    /// `attribution` (without it, both are keyed by executable name alone).
    pub fn with_attribution(mut self, attribution: Attribution) -> Self {
        let for_exec = attribution.clone();
        self.exec.with(|names| names.attribution = for_exec);
        self.attribution = attribution;
        self
    }

    /// Starts draining the exit ring into spans (the family was loaded with process
    /// spans on, so the kernel writes it).
    pub fn with_exit_spans(
        mut self,
        loaded: &mut LoadedFamily,
        spans: ExitSpans,
    ) -> Result<Self, CollectError> {
        let ring: RingBuf<MapData> = take_map(loaded, n::MAP_EXITS)?;
        self.exits = Some(Ring::start_bpf(ring, spans, DRAIN_PERIOD)?);
        Ok(self)
    }

    pub fn read(&self) -> Result<ProcessCounts, CollectError> {
        let get = |s: slot| sum_slot(&self.counters, n::MAP_COUNTERS, s as u32);
        Ok(ProcessCounts {
            created: get(slot::SONDE_PROC_CREATED)?,
            exec: get(slot::SONDE_PROC_EXEC)?,
            exit_success: get(slot::SONDE_PROC_EXIT_SUCCESS)?,
            exit_failure: get(slot::SONDE_PROC_EXIT_FAILURE)?,
            exit_signal: get(slot::SONDE_PROC_EXIT_SIGNAL)?,
            lost_ringbuf: get(slot::SONDE_PROC_LOST_RINGBUF)?,
            lost_exits: get(slot::SONDE_PROC_LOST_EXITS)?,
            lost_exec_starts: get(slot::SONDE_PROC_LOST_EXEC_STARTS)?,
        })
    }

    /// Folds the kernel's per-executable totals into their series at `now` (the
    /// snapshot's time) and deletes the kernel keys that stayed idle for the ttl.
    pub fn exited(&mut self, now: u64) -> Result<&ExitTotals, CollectError> {
        let err = |map, source| CollectError::Map { map, source };
        let mut entries: Vec<(RawKey, Totals)> = Vec::new();
        for item in self.totals.iter() {
            let (k, v) = item.map_err(|e| err(n::MAP_TOTALS, e))?;
            entries.push(((comm_bytes(&k.comm), k.cgroup_id), totals(&v)));
        }
        let overflow = self
            .totals_overflow
            .get(&0, 0)
            .map_err(|e| err(n::MAP_TOTALS_OVERFLOW, e))?
            .iter()
            .fold(Totals::default(), |a, v| {
                let v = totals(v);
                Totals {
                    user_ns: a.user_ns + v.user_ns,
                    system_ns: a.system_ns + v.system_ns,
                    oom_kills: a.oom_kills + v.oom_kills,
                }
            });
        let attribution = &mut self.attribution;
        let name = |(comm, cgroup): &RawKey| {
            comm_name(comm).map(|n| attribution.key_without_pid(n, *cgroup))
        };
        for (comm, cgroup_id) in self.exit_totals.update(now, entries, overflow, name) {
            let mut key = sonde_proc_total_key {
                cgroup_id,
                ..Default::default()
            };
            for (d, s) in key.comm.iter_mut().zip(comm) {
                *d = s as core::ffi::c_char;
            }
            // An exit of this name between the read above and this delete is lost: the
            // key was idle for the whole ttl, so that window is a few microseconds.
            // Already gone is fine.
            let _ = self.totals.remove(&key);
        }
        Ok(&self.exit_totals)
    }

    /// Exec counts by executable and container (bounded, expiring) and the overflow
    /// series, after draining whatever the ring holds now; `now` is the snapshot's time.
    pub fn exec_names(&self, now: u64) -> (Vec<SeriesPoint<ProcessKey>>, Option<SeriesPoint<()>>) {
        self.exec.drain_now();
        if let Some(exits) = &self.exits {
            exits.drain_now();
        }
        self.exec.with(|names| {
            names.counts.tick(now);
            let (names, mut overflow) = names.counts.snapshot();
            (names, overflow.pop())
        })
    }

    /// Why the exec ring can no longer be polled, if it cannot.
    pub fn ring_failure(&self) -> Option<&str> {
        self.exec.failure()
    }

    /// Why the exit ring can no longer be polled, if it cannot.
    pub fn exit_ring_failure(&self) -> Option<&str> {
        self.exits.as_ref().and_then(|r| r.failure())
    }

    /// The drain tasks, for the agent to join at shutdown.
    pub fn stop(&mut self) -> Vec<DrainTask> {
        let exits = self.exits.as_mut().and_then(|r| r.stop());
        self.exec.stop().into_iter().chain(exits).collect()
    }
}

/// One exit record; `None` for a short record.
pub fn decode_exit(bytes: &[u8]) -> Option<sonde_exit_event> {
    if bytes.len() < std::mem::size_of::<sonde_exit_event>() {
        return None;
    }
    // SAFETY: the length was checked above and sonde_exit_event is plain old data (any
    // bit pattern is valid); read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<sonde_exit_event>()) })
}

/// The executable name and cgroup id of one ring-buffer record; `None` for a short record.
pub fn decode_exec(bytes: &[u8]) -> Option<(String, u64)> {
    if bytes.len() < std::mem::size_of::<sonde_exec_event>() {
        return None;
    }
    // SAFETY: the length was checked above and sonde_exec_event is plain old data
    // (any bit pattern is valid); read_unaligned copes with the ring's 8-byte alignment
    // not being promised to the reader.
    let ev: sonde_exec_event =
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<sonde_exec_event>()) };
    Some((comm_to_string(&ev.comm), ev.cgroup_id))
}

fn comm_bytes(comm: &[core::ffi::c_char; 16]) -> super::aggregate::Comm {
    comm.map(|c| c as u8)
}

fn totals(v: &sonde_proc_total) -> Totals {
    Totals {
        user_ns: v.user_ns,
        system_ns: v.system_ns,
        oom_kills: v.oom_kills,
    }
}

/// A kernel `comm` (NUL-padded, at most 15 bytes, not guaranteed UTF-8).
pub fn comm_to_string(comm: &[core::ffi::c_char]) -> String {
    let bytes: Vec<u8> = comm
        .iter()
        .map(|c| *c as u8)
        .take_while(|b| *b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_record_decodes_its_name() {
        let mut ev = sonde_exec_event {
            pid: 7,
            cgroup_id: 99,
            ..Default::default()
        };
        for (dst, src) in ev.comm.iter_mut().zip(b"my exe\0junk") {
            *dst = *src as core::ffi::c_char;
        }
        // SAFETY: sonde_exec_event is plain old data; viewing it as bytes is sound.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&ev as *const sonde_exec_event).cast::<u8>(),
                std::mem::size_of::<sonde_exec_event>(),
            )
        };
        assert_eq!(decode_exec(bytes), Some(("my exe".to_owned(), 99)));
        assert_eq!(decode_exec(&bytes[..10]), None);
    }

    #[test]
    fn comm_without_nul_uses_all_bytes_and_bad_utf8_is_replaced() {
        let comm: Vec<core::ffi::c_char> = [b'a', 0xff, b'b'].iter().map(|b| *b as _).collect();
        assert_eq!(comm_to_string(&comm), "a\u{fffd}b");
    }
}
