//! Sonde's own BPF objects as the kernel accounts them, from /proc/self/fdinfo: each
//! map's pinned memory (the `memlock` figure bpftool shows) and each program's
//! `recursion_misses` (runs the kernel skipped because a BPF program was already running
//! on that CPU). The parsing and the 64-CPU projection are pure and table-tested.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};

/// Map types (the kernel's `enum bpf_map_type`) whose values are stored once per possible
/// CPU.
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_PERCPU_HASH: u32 = 5;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
const BPF_MAP_TYPE_LRU_PERCPU_HASH: u32 = 10;
const BPF_F_NO_PREALLOC: u32 = 1;

/// The CPU count the README's memory budget is stated for.
pub const PROJECTED_CPUS: u64 = 64;

/// One map Sonde holds, as /proc/self/fdinfo describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapUsage {
    pub id: u32,
    pub name: String,
    pub map_type: u32,
    pub key_size: u64,
    pub value_size: u64,
    pub max_entries: u64,
    pub flags: u32,
    /// Bytes the kernel charges to the map now (`memlock`).
    pub memlock: u64,
}

/// `key:\tvalue` lines of an fdinfo file, numeric values only.
pub fn parse_fdinfo(text: &str) -> BTreeMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim(), v.trim().parse().ok()?))
        })
        .collect()
}

fn map_from_fdinfo(text: &str) -> Option<MapUsage> {
    let f = parse_fdinfo(text);
    Some(MapUsage {
        id: u32::try_from(*f.get("map_id")?).ok()?,
        name: String::new(),
        map_type: u32::try_from(*f.get("map_type")?).ok()?,
        key_size: *f.get("key_size")?,
        value_size: *f.get("value_size")?,
        max_entries: *f.get("max_entries")?,
        // Printed in hex ("0x1").
        flags: text
            .lines()
            .find_map(|l| l.strip_prefix("map_flags:"))
            .and_then(|v| u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
            .unwrap_or(0),
        memlock: *f.get("memlock")?,
    })
}

fn round8(v: u64) -> u64 {
    v.div_ceil(8) * 8
}

fn is_hash(t: u32) -> bool {
    matches!(
        t,
        BPF_MAP_TYPE_HASH
            | BPF_MAP_TYPE_PERCPU_HASH
            | BPF_MAP_TYPE_LRU_HASH
            | BPF_MAP_TYPE_LRU_PERCPU_HASH
    )
}

fn is_percpu(t: u32) -> bool {
    matches!(
        t,
        BPF_MAP_TYPE_PERCPU_HASH | BPF_MAP_TYPE_PERCPU_ARRAY | BPF_MAP_TYPE_LRU_PERCPU_HASH
    )
}

/// Size of the kernel's `struct htab_elem` header on 64-bit kernels (list node, hash,
/// pointers); a hash element is this plus the rounded key and value (or a per-CPU
/// pointer).
const HTAB_ELEM_HEADER: u64 = 48;

impl MapUsage {
    fn htab_elem_size(&self) -> u64 {
        HTAB_ELEM_HEADER
            + round8(self.key_size)
            + if is_percpu(self.map_type) {
                8
            } else {
                round8(self.value_size)
            }
    }

    /// The part of the map's memlock figure that the kernel allocates once per possible
    /// CPU, per CPU (the kernel's `map_mem_usage` terms that scale with
    /// `num_possible_cpus()`): a preallocated per-CPU map's values, a hash's bucket lock
    /// counters (8 ints per CPU) and a preallocated plain hash's one spare element per CPU.
    pub fn bytes_per_cpu(&self) -> u64 {
        let mut b = 0;
        let prealloc = self.flags & BPF_F_NO_PREALLOC == 0;
        if is_percpu(self.map_type) && prealloc {
            b += round8(self.value_size) * self.max_entries;
        }
        if is_hash(self.map_type) {
            b += 8 * 4;
            if prealloc && !is_percpu(self.map_type) && self.map_type != BPF_MAP_TYPE_LRU_HASH {
                b += self.htab_elem_size() + 8;
            }
        }
        b
    }

    /// An upper bound of what the map pins on a host with `cpus` possible CPUs: its
    /// memlock figure here with the per-CPU terms scaled from `here_cpus` to `cpus`, and
    /// for a hash that is not preallocated (its figure grows with its fill) every element
    /// it may hold added at full size on top of the ones it holds now.
    pub fn projected(&self, here_cpus: u64, cpus: u64) -> u64 {
        let mut full = self.memlock;
        if is_hash(self.map_type) && self.flags & BPF_F_NO_PREALLOC != 0 {
            // Such an element also carries a free-list node (8 bytes), and a per-CPU one
            // a pointer and a node besides its per-CPU values (scaled below).
            let mut per_elem = self.htab_elem_size() + 8;
            if is_percpu(self.map_type) {
                per_elem += 16 + round8(self.value_size) * here_cpus;
            }
            full += self.max_entries * per_elem;
        }
        let per_cpu = self.bytes_per_cpu()
            + if is_percpu(self.map_type) && self.flags & BPF_F_NO_PREALLOC != 0 {
                round8(self.value_size) * self.max_entries
            } else {
                0
            };
        (full + per_cpu * cpus).saturating_sub(per_cpu * here_cpus)
    }
}

/// The maps' memlock figures summed, and their bound on `cpus` possible CPUs (every map
/// full), from this host's `here_cpus`.
pub fn total(maps: &[MapUsage], here_cpus: u64, cpus: u64) -> (u64, u64) {
    maps.iter().fold((0, 0), |(now, bound), m| {
        (now + m.memlock, bound + m.projected(here_cpus, cpus))
    })
}

/// Every BPF map this process holds a descriptor for (each once); names are left empty
/// (see [`with_names`]).
pub fn own_maps() -> std::io::Result<Vec<MapUsage>> {
    let mut out: BTreeMap<u32, MapUsage> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.as_os_str() != "anon_inode:bpf-map" {
            continue;
        }
        let info_path = std::path::Path::new("/proc/self/fdinfo").join(entry.file_name());
        let Ok(text) = std::fs::read_to_string(info_path) else {
            continue;
        };
        let Some(m) = map_from_fdinfo(&text) else {
            continue;
        };
        out.entry(m.id).or_insert(m);
    }
    Ok(out.into_values().collect())
}

/// Fills in the maps' names (looked up by id: needs CAP_SYS_ADMIN, so for `sonde check`
/// and tests, not for the agent once it has dropped its capabilities).
pub fn with_names(mut maps: Vec<MapUsage>) -> Vec<MapUsage> {
    for m in &mut maps {
        m.name = aya::maps::MapInfo::from_id(m.id)
            .ok()
            .and_then(|i| i.name_as_str().map(str::to_owned))
            .unwrap_or_default();
    }
    maps
}

/// `recursion_misses` of a loaded program (0 if the kernel does not report it).
pub fn recursion_misses(fd: &impl AsFd) -> u64 {
    let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| parse_fdinfo(&t).get("recursion_misses").copied())
        .unwrap_or(0)
}

/// The number of possible CPUs (what per-CPU maps are sized by), from
/// /sys/devices/system/cpu/possible ("0-63", "0,2-5").
pub fn possible_cpus() -> u64 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|t| parse_cpu_list(&t))
        .unwrap_or(1)
}

pub fn parse_cpu_list(text: &str) -> Option<u64> {
    let mut n = 0;
    for part in text.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => n += b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1,
            None => {
                part.parse::<u64>().ok()?;
                n += 1;
            }
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BPF_MAP_TYPE_ARRAY: u32 = 2;

    const PERCPU_HASH_FDINFO: &str = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1059\n\
        map_type:\t5\nkey_size:\t8\nvalue_size:\t344\nmax_entries:\t1024\nmap_flags:\t0x0\n\
        map_extra:\t0x0\nmemlock:\t869728\nmap_id:\t412\nfrozen:\t0\n";

    #[test]
    fn fdinfo_fields_parse() {
        let m = map_from_fdinfo(PERCPU_HASH_FDINFO).expect("parse");
        assert_eq!(m.id, 412);
        assert_eq!(m.map_type, BPF_MAP_TYPE_PERCPU_HASH);
        assert_eq!((m.key_size, m.value_size, m.max_entries), (8, 344, 1024));
        assert_eq!(m.memlock, 869_728);
        assert_eq!(m.flags, 0);
        let sparse = PERCPU_HASH_FDINFO.replace("map_flags:\t0x0", "map_flags:\t0x1");
        assert_eq!(
            map_from_fdinfo(&sparse).expect("parse").flags,
            BPF_F_NO_PREALLOC
        );
        assert_eq!(map_from_fdinfo("pos:\t0\n"), None);
        let p = parse_fdinfo("prog_type:\t17\nrecursion_misses:\t3\nprog_tag:\tab12\n");
        assert_eq!(p.get("recursion_misses"), Some(&3));
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0-63"), Some(64));
        assert_eq!(parse_cpu_list("0,2-5"), Some(5));
        assert_eq!(parse_cpu_list("x"), None);
    }

    fn map(map_type: u32, value_size: u64, max_entries: u64, flags: u32) -> MapUsage {
        MapUsage {
            id: 1,
            name: "m".into(),
            map_type,
            key_size: 8,
            value_size,
            max_entries,
            flags,
            memlock: 1000,
        }
    }

    #[test]
    fn per_cpu_maps_scale_with_cpus_and_shared_ones_do_not() {
        // A per-CPU array of 4 slots of 328 bytes: 1312 bytes per CPU.
        let a = map(BPF_MAP_TYPE_PERCPU_ARRAY, 328, 4, 0);
        assert_eq!(a.bytes_per_cpu(), 1312);
        assert_eq!(a.projected(2, 64), 1000 + 62 * 1312);
        // A plain array does not scale.
        let a = map(BPF_MAP_TYPE_ARRAY, 328, 4, 0);
        assert_eq!(a.projected(2, 64), 1000);
        // A preallocated per-CPU hash: values (rounded to 8) per CPU, plus lock counters.
        let h = map(BPF_MAP_TYPE_PERCPU_HASH, 20, 10, 0);
        assert_eq!(h.bytes_per_cpu(), 24 * 10 + 32);
        // A hash that is not preallocated is projected full: every element added.
        let h = map(BPF_MAP_TYPE_HASH, 96, 10, BPF_F_NO_PREALLOC);
        let elem = HTAB_ELEM_HEADER + 8 + 96 + 8;
        assert_eq!(h.projected(2, 2), 1000 + 10 * elem);
        assert_eq!(h.projected(2, 64), 1000 + 10 * elem + 62 * 32);
        // And a per-CPU one with its values on every CPU.
        let h = map(BPF_MAP_TYPE_PERCPU_HASH, 32, 10, BPF_F_NO_PREALLOC);
        let elem = HTAB_ELEM_HEADER + 8 + 8 + 8 + 16;
        assert_eq!(
            h.projected(2, 64),
            1000 + 10 * elem + 10 * 32 * 64 + 62 * 32
        );
    }
}
