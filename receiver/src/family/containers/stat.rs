//! cgroup statistics files, parsed. Pure: the collector reads the files and hands in
//! their text.
//!
//! cgroup v2 keeps `cpu.stat` (usage, user and system time in µs) in every cgroup, with or
//! without the cpu controller; `memory.current`, `memory.stat` and `io.stat` exist only
//! where the memory and io controllers are enabled. On hybrid hosts those live in the v1
//! hierarchies instead: `cpuacct.usage_user` / `cpuacct.usage_sys` (ns),
//! `memory.usage_in_bytes` with `memory.stat`'s `total_*` lines, and
//! `blkio.throttle.io_service_bytes_recursive`. Every figure is cumulative over the
//! cgroup and its descendants.

/// CPU time of a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cpu {
    pub user_ns: u64,
    pub system_ns: u64,
}

/// Memory charged to a cgroup, and its working set where `memory.stat` gives it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    pub working_set: Option<u64>,
}

/// Bytes a cgroup moved to and from one block device, by its "major:minor".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIo {
    pub device: String,
    pub read: u64,
    pub write: u64,
}

/// The value of `key` in a flat-keyed file (`key value` per line: `cpu.stat`,
/// `memory.stat`).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A file holding one number (`memory.current`, `cpuacct.usage_user`).
pub fn single(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// v2 `cpu.stat`.
pub fn cpu_v2(cpu_stat: &str) -> Option<Cpu> {
    Some(Cpu {
        user_ns: keyed(cpu_stat, "user_usec")?.saturating_mul(1000),
        system_ns: keyed(cpu_stat, "system_usec")?.saturating_mul(1000),
    })
}

/// v1 cpuacct. `cpuacct.usage` is the exact run time (ns); `cpuacct.usage_user` and
/// `cpuacct.usage_sys` come from scheduler ticks (a sample: a few percent off over a
/// second on a busy CPU), so they only split the exact total, as the kernel splits a
/// process's run time for /proc and as v2's `cpu.stat` does.
pub fn cpu_v1(usage: &str, usage_user: &str, usage_sys: &str) -> Option<Cpu> {
    let total = single(usage)?;
    let (user, sys) = (single(usage_user)?, single(usage_sys)?);
    let user_ns = match user.checked_add(sys) {
        Some(0) | None => 0,
        Some(ticks) => (u128::from(total) * u128::from(user) / u128::from(ticks)) as u64,
    };
    Some(Cpu {
        user_ns,
        system_ns: total - user_ns,
    })
}

/// Usage and working set (usage minus inactive file pages, as the kubelet and cAdvisor
/// compute it). `inactive_key` is `inactive_file` (v2) or `total_inactive_file` (v1,
/// which counts the descendants under `total_`).
fn memory(usage: &str, memory_stat: Option<&str>, inactive_key: &str) -> Option<Memory> {
    let usage = single(usage)?;
    let inactive = memory_stat.and_then(|s| keyed(s, inactive_key));
    Some(Memory {
        usage,
        working_set: inactive.map(|i| usage.saturating_sub(i)),
    })
}

/// v2 `memory.current` and `memory.stat`.
pub fn memory_v2(current: &str, memory_stat: Option<&str>) -> Option<Memory> {
    memory(current, memory_stat, "inactive_file")
}

/// v1 `memory.usage_in_bytes` and `memory.stat`.
pub fn memory_v1(usage_in_bytes: &str, memory_stat: Option<&str>) -> Option<Memory> {
    memory(usage_in_bytes, memory_stat, "total_inactive_file")
}

/// v2 `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` per device.
pub fn io_v2(io_stat: &str) -> Vec<DeviceIo> {
    io_stat
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let device = f.next()?.to_owned();
            let mut d = DeviceIo {
                device,
                ..DeviceIo::default()
            };
            for kv in f {
                match kv.split_once('=') {
                    Some(("rbytes", v)) => d.read = v.parse().ok()?,
                    Some(("wbytes", v)) => d.write = v.parse().ok()?,
                    _ => {}
                }
            }
            Some(d)
        })
        .collect()
}

/// v1 `blkio.throttle.io_service_bytes(_recursive)`: `8:0 Read 123` lines per device and
/// operation, then a `Total` line.
pub fn io_v1(service_bytes: &str) -> Vec<DeviceIo> {
    let mut out: Vec<DeviceIo> = Vec::new();
    for l in service_bytes.lines() {
        let mut f = l.split_whitespace();
        let (Some(device), Some(op), Some(v)) = (f.next(), f.next(), f.next()) else {
            continue; // `Total N`
        };
        let Ok(v) = v.parse::<u64>() else { continue };
        let i = match out.iter().position(|d| d.device == device) {
            Some(i) => i,
            None => {
                out.push(DeviceIo {
                    device: device.to_owned(),
                    ..DeviceIo::default()
                });
                out.len() - 1
            }
        };
        match op {
            "Read" => out[i].read = v,
            "Write" => out[i].write = v,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_from_v2_cpu_stat_and_v1_cpuacct() {
        // A v2 cpu.stat without the cpu controller (hybrid host) and with it (pure v2).
        let bare = "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnice_usec 0\n";
        let full = "usage_usec 12\nuser_usec 7\nsystem_usec 5\nnr_periods 0\n\
                    nr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n";
        let cases: &[(&str, Option<Cpu>)] = &[
            (
                bare,
                Some(Cpu {
                    user_ns: 2_000_000,
                    system_ns: 500_000,
                }),
            ),
            (
                full,
                Some(Cpu {
                    user_ns: 7000,
                    system_ns: 5000,
                }),
            ),
            ("usage_usec 5\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(cpu_v2(text), *want, "{text:?}");
        }
        // The exact total, split as the tick samples say.
        // ((cpuacct.usage, .usage_user, .usage_sys), split).
        type Case<'a> = ((&'a str, &'a str, &'a str), Option<Cpu>);
        let v1: &[Case] = &[
            (
                ("1000000000\n", "750000000\n", "250000000\n"),
                Some(Cpu {
                    user_ns: 750_000_000,
                    system_ns: 250_000_000,
                }),
            ),
            (
                ("1030000000", "884000000", "104000000"),
                Some(Cpu {
                    user_ns: 921_578_947,
                    system_ns: 108_421_053,
                }),
            ),
            (
                ("5000", "0", "0"),
                Some(Cpu {
                    user_ns: 0,
                    system_ns: 5000,
                }),
            ),
            (("x", "1", "1"), None),
            (("1", "1", ""), None),
        ];
        for ((usage, user, sys), want) in v1 {
            assert_eq!(cpu_v1(usage, user, sys), *want, "{usage} {user} {sys}");
        }
    }

    #[test]
    fn memory_and_working_set_from_v2_and_v1() {
        let v2_stat = "anon 100\nfile 4096\nactive_file 1024\ninactive_file 3072\n";
        assert_eq!(
            memory_v2("8192\n", Some(v2_stat)),
            Some(Memory {
                usage: 8192,
                working_set: Some(5120)
            })
        );
        // v1: the cgroup's own lines come first; total_* include descendants.
        let v1_stat = "cache 10\nrss 5\ninactive_file 1\ntotal_cache 4096\ntotal_rss 20\n\
                       total_inactive_file 2048\n";
        assert_eq!(
            memory_v1("4096\n", Some(v1_stat)),
            Some(Memory {
                usage: 4096,
                working_set: Some(2048)
            })
        );
        assert_eq!(
            memory_v1("100", Some("total_inactive_file 500\n")),
            Some(Memory {
                usage: 100,
                working_set: Some(0)
            }),
            "never below zero"
        );
        assert_eq!(
            memory_v2("7", None),
            Some(Memory {
                usage: 7,
                working_set: None
            })
        );
        assert_eq!(memory_v2("max", None), None);
    }

    #[test]
    fn disk_bytes_from_v2_io_stat_and_v1_blkio() {
        let io = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                  253:1 rbytes=0 wbytes=512 rios=0 wios=1 dbytes=0 dios=0\n";
        assert_eq!(
            io_v2(io),
            vec![
                DeviceIo {
                    device: "8:0".into(),
                    read: 4096,
                    write: 8192
                },
                DeviceIo {
                    device: "253:1".into(),
                    read: 0,
                    write: 512
                },
            ]
        );
        assert_eq!(io_v2(""), vec![]);
        let blkio = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n\
                     8:0 Discard 0\n8:0 Total 12288\n7:3 Read 0\n7:3 Write 1048576\n\
                     Total 13336576\n";
        assert_eq!(
            io_v1(blkio),
            vec![
                DeviceIo {
                    device: "8:0".into(),
                    read: 4096,
                    write: 8192
                },
                DeviceIo {
                    device: "7:3".into(),
                    read: 0,
                    write: 1_048_576
                },
            ]
        );
        assert_eq!(io_v1("Total 0\n"), vec![]);
    }
}
