//! Finds the host's containers in the cgroup hierarchies and reads their statistics files.
//! The only I/O of the family.
//!
//! Containers are found by their cgroup paths (`cgroup::path::container_of`), walked in the
//! v2 tree and in the v1 cpuacct, memory and blkio hierarchies, since a hybrid host keeps
//! memory and block I/O accounting in v1 and a runtime with the cgroupfs driver makes v1
//! directories only. A container is read at the shallowest directory that names it (the
//! files count its sub-cgroups too), each resource from v2 where the file is there and
//! from v1 otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cgroup::container_of;
use crate::family::containers::stat::{self, Cpu, DeviceIo, Memory};
use crate::mapping::unescape_octal;

/// Where each hierarchy is mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchies {
    pub v2: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub blkio: Option<PathBuf>,
}

impl Hierarchies {
    /// From /proc/self/mountinfo (`id parent dev root mountpoint options ... - fstype
    /// source superoptions`): the cgroup2 mount, and the v1 mounts whose controllers
    /// include cpuacct, memory or blkio (the first of each).
    pub fn parse(mountinfo: &str) -> Self {
        let mut h = Self::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mut r = right.split(' ');
            let (Some(fstype), Some(_), Some(superopts)) = (r.next(), r.next(), r.next()) else {
                continue;
            };
            let Some(mnt) = left.split(' ').nth(4) else {
                continue;
            };
            let mnt = || Some(PathBuf::from(unescape_octal(mnt)));
            match fstype {
                "cgroup2" if h.v2.is_none() => h.v2 = mnt(),
                "cgroup" => {
                    let has = |c: &str| superopts.split(',').any(|o| o == c);
                    if has("cpuacct") && h.cpuacct.is_none() {
                        h.cpuacct = mnt();
                    }
                    if has("memory") && h.memory.is_none() {
                        h.memory = mnt();
                    }
                    if has("blkio") && h.blkio.is_none() {
                        h.blkio = mnt();
                    }
                }
                _ => {}
            }
        }
        h
    }

    pub fn read() -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(
            "/proc/self/mountinfo",
        )?))
    }

    pub fn is_empty(&self) -> bool {
        self.v2.is_none() && self.cpuacct.is_none() && self.memory.is_none() && self.blkio.is_none()
    }

    /// For `sonde check` and logs: the hierarchies found.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("v2", &self.v2),
            ("cpuacct", &self.cpuacct),
            ("memory", &self.memory),
            ("blkio", &self.blkio),
        ]
        .iter()
        .filter_map(|(n, p)| p.as_ref().map(|p| format!("{n} {}", p.display())))
        .collect();
        parts.join(", ")
    }
}

/// One container's statistics at one reading; a resource whose file could not be read is
/// `None` (or empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    pub id: String,
    pub cpu: Option<Cpu>,
    pub memory: Option<Memory>,
    /// Devices by name (`sda`), or by "major:minor" where /sys/dev/block names none.
    pub disk: Vec<DeviceIo>,
}

/// Deepest cgroup directories walked: real trees are under 10 deep.
const MAX_DEPTH: usize = 32;

/// Container id -> the shallowest path (relative to `root`, starting with `/`) that names
/// it. A container's directory is not descended into: what is below it is its own.
pub fn find_containers(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_path_buf(), String::new(), 0)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue; // removed during the walk
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let child = format!("{rel}/{}", e.file_name().to_string_lossy());
            match container_of(&child) {
                Some(c) => {
                    found.entry(c.id).or_insert(child);
                }
                None if depth < MAX_DEPTH => stack.push((e.path(), child, depth + 1)),
                None => {}
            }
        }
    }
    found
}

fn read(path: PathBuf) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Reads every container's statistics; `dev_names` maps "major:minor" to a device name.
pub fn read_all(h: &Hierarchies, dev_names: &mut DeviceNames) -> Vec<Reading> {
    let walk = |root: &Option<PathBuf>| root.as_deref().map(find_containers).unwrap_or_default();
    let (v2, cpuacct, memory, blkio) = (
        walk(&h.v2),
        walk(&h.cpuacct),
        walk(&h.memory),
        walk(&h.blkio),
    );
    let ids: std::collections::BTreeSet<&String> = v2
        .keys()
        .chain(cpuacct.keys())
        .chain(memory.keys())
        .chain(blkio.keys())
        .collect();
    // The directory of container `id` in hierarchy `root`, if it has one there.
    let dir = |root: &Option<PathBuf>, found: &BTreeMap<String, String>, id: &str| {
        let rel = found.get(id)?;
        Some(root.as_ref()?.join(rel.trim_start_matches('/')))
    };
    ids.into_iter()
        .map(|id| {
            let v2_dir = dir(&h.v2, &v2, id);
            let cpu = v2_dir
                .as_ref()
                .and_then(|d| stat::cpu_v2(&read(d.join("cpu.stat"))?))
                .or_else(|| {
                    let d = dir(&h.cpuacct, &cpuacct, id)?;
                    stat::cpu_v1(
                        &read(d.join("cpuacct.usage"))?,
                        &read(d.join("cpuacct.usage_user"))?,
                        &read(d.join("cpuacct.usage_sys"))?,
                    )
                });
            let memory = v2_dir
                .as_ref()
                .and_then(|d| {
                    stat::memory_v2(
                        &read(d.join("memory.current"))?,
                        read(d.join("memory.stat")).as_deref(),
                    )
                })
                .or_else(|| {
                    let d = dir(&h.memory, &memory, id)?;
                    stat::memory_v1(
                        &read(d.join("memory.usage_in_bytes"))?,
                        read(d.join("memory.stat")).as_deref(),
                    )
                });
            let disk = v2_dir
                .as_ref()
                .and_then(|d| read(d.join("io.stat")))
                .map(|t| stat::io_v2(&t))
                .or_else(|| {
                    let d = dir(&h.blkio, &blkio, id)?;
                    read(d.join("blkio.throttle.io_service_bytes_recursive"))
                        .or_else(|| read(d.join("blkio.throttle.io_service_bytes")))
                        .map(|t| stat::io_v1(&t))
                })
                .unwrap_or_default()
                .into_iter()
                .map(|d| DeviceIo {
                    device: dev_names.name(&d.device),
                    ..d
                })
                .collect();
            Reading {
                id: id.clone(),
                cpu,
                memory,
                disk,
            }
        })
        .collect()
}

/// Block device names by "major:minor", read from /sys/dev/block once per device.
#[derive(Debug, Default)]
pub struct DeviceNames(std::collections::HashMap<String, String>);

impl DeviceNames {
    pub fn name(&mut self, major_minor: &str) -> String {
        self.0
            .entry(major_minor.to_owned())
            .or_insert_with(|| {
                // /sys/dev/block/M:m links to the device's sysfs directory, named after it.
                std::fs::read_link(format!("/sys/dev/block/{major_minor}"))
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| major_minor.to_owned())
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchies_on_hybrid_unified_and_cgroupfs_driver_hosts() {
        // This lab's layout: cpu and cpuacct mounted apart, v2 at unified.
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        // systemd's usual hybrid layout: cpu and cpuacct co-mounted.
        let comounted = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
        let unified = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let p = |s: &str| Some(PathBuf::from(s));
        let cases = [
            (
                hybrid,
                Hierarchies {
                    v2: p("/sys/fs/cgroup/unified"),
                    cpuacct: p("/sys/fs/cgroup/cpuacct"),
                    memory: p("/sys/fs/cgroup/memory"),
                    blkio: p("/sys/fs/cgroup/blkio"),
                },
            ),
            (
                comounted,
                Hierarchies {
                    cpuacct: p("/sys/fs/cgroup/cpu,cpuacct"),
                    memory: p("/sys/fs/cgroup/memory"),
                    ..Hierarchies::default()
                },
            ),
            (
                unified,
                Hierarchies {
                    v2: p("/sys/fs/cgroup"),
                    ..Hierarchies::default()
                },
            ),
            ("", Hierarchies::default()),
        ];
        for (text, want) in cases {
            assert_eq!(Hierarchies::parse(text), want, "{text}");
        }
        assert!(Hierarchies::default().is_empty());
    }

    /// A scratch tree standing in for a cgroup hierarchy: the walk needs directories and
    /// the reader files, which any file system gives.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "sonde-containers-{tag}-{}-{}",
                std::process::id(),
                crate::unix_nanos()
            ));
            std::fs::create_dir_all(&p).expect("scratch dir");
            Self(p)
        }
        fn file(&self, rel: &str, text: &str) {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const A: &str = "3f1c2a9be0d44d6f8a7b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn each_resource_from_v2_where_it_is_there_and_from_v1_otherwise() {
        let v2 = Scratch::new("v2");
        let cpuacct = Scratch::new("cpuacct");
        let memory = Scratch::new("memory");
        let blkio = Scratch::new("blkio");
        // A: docker with the systemd driver on a hybrid host (v2 has cpu.stat only).
        let a = format!("system.slice/docker-{A}.scope");
        v2.file(&format!("{a}/cpu.stat"), "user_usec 3\nsystem_usec 4\n");
        v2.file(
            &format!("{a}/init.scope/cpu.stat"),
            "user_usec 1\nsystem_usec 1\n",
        );
        cpuacct.file(&format!("{a}/cpuacct.usage"), "999\n");
        cpuacct.file(&format!("{a}/cpuacct.usage_user"), "999\n");
        cpuacct.file(&format!("{a}/cpuacct.usage_sys"), "999\n");
        memory.file(&format!("{a}/memory.usage_in_bytes"), "4096\n");
        memory.file(&format!("{a}/memory.stat"), "total_inactive_file 1024\n");
        blkio.file(
            &format!("{a}/blkio.throttle.io_service_bytes_recursive"),
            "7:99 Read 512\n7:99 Write 1024\nTotal 1536\n",
        );
        // B: docker with the cgroupfs driver on v1: no v2 directory at all.
        cpuacct.file(&format!("docker/{B}/cpuacct.usage"), "33\n");
        cpuacct.file(&format!("docker/{B}/cpuacct.usage_user"), "10\n");
        cpuacct.file(&format!("docker/{B}/cpuacct.usage_sys"), "20\n");
        // Not containers.
        v2.file(
            "system.slice/cron.service/cpu.stat",
            "user_usec 9\nsystem_usec 9\n",
        );
        let h = Hierarchies {
            v2: Some(v2.0.clone()),
            cpuacct: Some(cpuacct.0.clone()),
            memory: Some(memory.0.clone()),
            blkio: Some(blkio.0.clone()),
        };
        assert_eq!(
            find_containers(&v2.0).into_iter().collect::<Vec<_>>(),
            vec![(A.to_owned(), format!("/{a}"))],
            "the shallowest directory naming the container"
        );
        let mut names = DeviceNames::default();
        // 7:99 is no device here: it keeps its number.
        let got = read_all(&h, &mut names);
        assert_eq!(
            got,
            vec![
                Reading {
                    id: A.into(),
                    cpu: Some(Cpu {
                        user_ns: 3000,
                        system_ns: 4000
                    }),
                    memory: Some(Memory {
                        usage: 4096,
                        working_set: Some(3072)
                    }),
                    disk: vec![DeviceIo {
                        device: "7:99".into(),
                        read: 512,
                        write: 1024
                    }],
                },
                Reading {
                    id: B.into(),
                    cpu: Some(Cpu {
                        user_ns: 11,
                        system_ns: 22
                    }),
                    memory: None,
                    disk: vec![],
                },
            ]
        );
    }
}
