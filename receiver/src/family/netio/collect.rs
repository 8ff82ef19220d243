//! Reads the netio probe's byte maps, one retiring each collection, and its counters.

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray};
use sonde_probes::abi::{sonde_netio_counter as slot, sonde_netio_key, sonde_netio_value};
use sonde_probes::names::netio as n;

use crate::aggregate::bounded::SeriesPolicy;
use crate::cgroup::Attribution;
pub use crate::collect::CollectError;
use crate::collect::{sum_slot, take_map};
use crate::family::netio::aggregate::{Entry, NetTotals};
use crate::family::process::collect::comm_to_string;
use crate::probe::LoadedFamily;

type BytesMap = BpfHashMap<MapData, sonde_netio_key, sonde_netio_value>;

pub struct NetIoCollector {
    bytes: [BytesMap; 2],
    gen: Array<MapData, u32>,
    counters: PerCpuArray<MapData, u64>,
    /// The map the probe writes now (the value in `netio_gen`).
    active: u32,
    attribution: Attribution,
    pub totals: NetTotals,
}

impl std::fmt::Debug for NetIoCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetIoCollector")
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// The calls whose process could not be recorded (the byte map was full).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetIoLost {
    pub keys: u64,
}

fn entry(k: &sonde_netio_key) -> Entry {
    (k.cgroup_id, k.comm.map(|c| c as u8))
}

impl NetIoCollector {
    pub fn start(
        loaded: &mut LoadedFamily,
        series: SeriesPolicy,
        attribution: Attribution,
    ) -> Result<Self, CollectError> {
        let [m0, m1] = n::MAP_BYTES;
        Ok(Self {
            bytes: [take_map(loaded, m0)?, take_map(loaded, m1)?],
            gen: take_map(loaded, n::MAP_GEN)?,
            counters: take_map(loaded, n::MAP_COUNTERS)?,
            active: 0,
            attribution,
            totals: NetTotals::new(series),
        })
    }

    fn read(
        &self,
        which: usize,
    ) -> Result<Vec<(sonde_netio_key, sonde_netio_value)>, CollectError> {
        let name = n::MAP_BYTES[which];
        self.bytes[which]
            .iter()
            .map(|r| r.map_err(|source| CollectError::Map { map: name, source }))
            .collect()
    }

    /// One collection at `now`: empties the map retired last time (no program writes it
    /// any more), hands the probe that map, and reads the one it retires now.
    pub fn collect(&mut self, now: u64) -> Result<NetIoLost, CollectError> {
        let idle = (1 - self.active) as usize;
        let finals = self.read(idle)?;
        let keyed: Vec<_> = finals
            .iter()
            .map(|(k, v)| (entry(k), self.key(k), v.tx_bytes, v.rx_bytes))
            .collect();
        self.totals.finish(&keyed);
        for (k, _) in &finals {
            self.bytes[idle]
                .remove(k)
                .map_err(|source| CollectError::Map {
                    map: n::MAP_BYTES[idle],
                    source,
                })?;
        }
        // Programs that read the old value before this write may still add to the map
        // retired here: the next collection reads it again before emptying it.
        let retired = self.active as usize;
        self.gen
            .set(0, idle as u32, 0)
            .map_err(|source| CollectError::Map {
                map: n::MAP_GEN,
                source,
            })?;
        self.active = idle as u32;
        for (k, v) in self.read(retired)? {
            let key = self.key(&k);
            self.totals.update(entry(&k), &key, v.tx_bytes, v.rx_bytes);
        }
        let get = |s: slot| sum_slot(&self.counters, n::MAP_COUNTERS, s as u32);
        let (tx, rx) = (
            get(slot::SONDE_NETIO_UNKEYED_TX)?,
            get(slot::SONDE_NETIO_UNKEYED_RX)?,
        );
        self.totals.unkeyed(tx, rx);
        self.totals.tick(now);
        Ok(NetIoLost {
            keys: get(slot::SONDE_NETIO_LOST_KEYS)?,
        })
    }

    fn key(&mut self, k: &sonde_netio_key) -> crate::aggregate::process::ProcessKey {
        self.attribution
            .key_without_pid(comm_to_string(&k.comm), k.cgroup_id)
    }
}
