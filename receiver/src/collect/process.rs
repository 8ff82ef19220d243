//! Reads the process family's per-CPU counters and drains its exec ring buffer.

use std::sync::{Arc, Mutex};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use sonde_probes::abi::{sonde_exec_event, sonde_process_counter as slot};
use sonde_probes::names::process as n;
use tokio::io::unix::AsyncFd;

use crate::aggregate::bounded::BoundedCounter;
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
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("map `{map}` is missing from the process object (a build problem)")]
    MissingMap { map: &'static str },
    #[error("map `{map}`: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot poll the exec ring buffer: {0}")]
    Poll(#[source] std::io::Error),
}

/// Exec counts by executable name, fed by the ring-buffer drain task.
pub type ExecNames = Arc<Mutex<BoundedCounter<String>>>;

pub struct ProcessCollector {
    counters: PerCpuArray<MapData, u64>,
    exec_names: ExecNames,
}

impl std::fmt::Debug for ProcessCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessCollector").finish_non_exhaustive()
    }
}

impl ProcessCollector {
    /// Takes the family's maps; starts a task that drains exec events as they arrive
    /// (continuously, not per tick, so a burst of execs does not overflow the ring).
    pub fn start(loaded: &mut LoadedFamily, name_limit: usize) -> Result<Self, CollectError> {
        let counters = loaded
            .ebpf
            .take_map(n::MAP_COUNTERS)
            .ok_or(CollectError::MissingMap {
                map: n::MAP_COUNTERS,
            })?;
        let counters = PerCpuArray::try_from(counters).map_err(|source| CollectError::Map {
            map: n::MAP_COUNTERS,
            source,
        })?;
        let ring = loaded
            .ebpf
            .take_map(n::MAP_EVENTS)
            .ok_or(CollectError::MissingMap { map: n::MAP_EVENTS })?;
        let ring = RingBuf::try_from(ring).map_err(|source| CollectError::Map {
            map: n::MAP_EVENTS,
            source,
        })?;
        let exec_names: ExecNames = Arc::new(Mutex::new(BoundedCounter::new(name_limit)));
        // SAFETY: the RingBuf owns its map fd (MapData holds an OwnedFd) for as long as
        // the AsyncFd owns the RingBuf, and as_raw_fd always returns that same fd.
        let fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| CollectError::Poll(e.into()))?;
        tokio::spawn(drain(fd, exec_names.clone()));
        Ok(Self {
            counters,
            exec_names,
        })
    }

    pub fn read(&self) -> Result<ProcessCounts, CollectError> {
        let get = |s: slot| -> Result<u64, CollectError> {
            let per_cpu =
                self.counters
                    .get(&(s as u32), 0)
                    .map_err(|source| CollectError::Map {
                        map: n::MAP_COUNTERS,
                        source,
                    })?;
            Ok(per_cpu.iter().sum())
        };
        Ok(ProcessCounts {
            created: get(slot::SONDE_PROC_CREATED)?,
            exec: get(slot::SONDE_PROC_EXEC)?,
            exit_success: get(slot::SONDE_PROC_EXIT_SUCCESS)?,
            exit_failure: get(slot::SONDE_PROC_EXIT_FAILURE)?,
            exit_signal: get(slot::SONDE_PROC_EXIT_SIGNAL)?,
            lost_ringbuf: get(slot::SONDE_PROC_LOST_RINGBUF)?,
        })
    }

    /// Exec counts by name (first `limit` names) and the overflow total.
    pub fn exec_names(&self) -> (Vec<(String, u64)>, u64) {
        self.exec_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot()
    }
}

async fn drain(mut fd: AsyncFd<RingBuf<MapData>>, names: ExecNames) {
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("exec ring buffer poll failed, exec names stop here: {e}");
                return;
            }
        };
        let ring = guard.get_inner_mut();
        let mut batch: Vec<String> = Vec::new();
        while let Some(item) = ring.next() {
            if let Some(name) = decode_exec(&item) {
                batch.push(name);
            }
        }
        guard.clear_ready();
        if !batch.is_empty() {
            let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
            for name in batch {
                names.add(name, 1);
            }
        }
    }
}

/// The executable name of one ring-buffer record; `None` for a short record.
pub fn decode_exec(bytes: &[u8]) -> Option<String> {
    if bytes.len() < std::mem::size_of::<sonde_exec_event>() {
        return None;
    }
    // SAFETY: the length was checked above and sonde_exec_event is plain old data
    // (any bit pattern is valid); read_unaligned copes with the ring's 8-byte alignment
    // not being promised to the reader.
    let ev: sonde_exec_event =
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<sonde_exec_event>()) };
    Some(comm_to_string(&ev.comm))
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
        assert_eq!(decode_exec(bytes).as_deref(), Some("my exe"));
        assert_eq!(decode_exec(&bytes[..10]), None);
    }

    #[test]
    fn comm_without_nul_uses_all_bytes_and_bad_utf8_is_replaced() {
        let comm: Vec<core::ffi::c_char> = [b'a', 0xff, b'b'].iter().map(|b| *b as _).collect();
        assert_eq!(comm_to_string(&comm), "a\u{fffd}b");
    }
}
