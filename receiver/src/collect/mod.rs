//! Collectors: read kernel maps, drain ring buffers, read /proc. They produce raw
//! counts; naming and shaping into metrics is `mapping`'s job.

pub mod agent_self;
pub mod kernel_objects;
pub mod ring;

use aya::maps::{MapData, PerCpuArray};

use crate::probe::LoadedFamily;

/// What can go wrong reading a family's maps; shared by every probe collector.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(
        "map `{map}` is missing from the embedded probe object (a build problem: rebuild sonde)"
    )]
    MissingMap { map: &'static str },
    #[error("map `{map}`: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot poll a probe's ring buffer: {0}")]
    Poll(#[source] std::io::Error),
    #[error("cannot read this machine's possible CPUs (/sys/devices/system/cpu/possible): {0}")]
    Cpus(#[source] std::io::Error),
}

/// A map operation's error as the collector reports it, naming the map:
/// `.map_err(map_err(MAP_NAME))`.
pub fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> CollectError {
    move |source| CollectError::Map { map, source }
}

/// Takes one map out of a loaded family, typed; the collector then owns it.
pub fn take_map<M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    loaded: &mut LoadedFamily,
    map: &'static str,
) -> Result<M, CollectError> {
    let m = loaded
        .ebpf
        .take_map(map)
        .ok_or(CollectError::MissingMap { map })?;
    M::try_from(m).map_err(map_err(map))
}

/// One slot of a per-CPU counter array, summed over CPUs.
pub fn sum_slot(
    counters: &PerCpuArray<MapData, u64>,
    map: &'static str,
    slot: u32,
) -> Result<u64, CollectError> {
    let per_cpu = counters.get(&slot, 0).map_err(map_err(map))?;
    Ok(per_cpu.iter().sum())
}
