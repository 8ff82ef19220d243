//! File and block I/O metrics from the fileio collector's counts. Pure: device numbers
//! are turned into names with tables the source reads (/proc/self/mountinfo,
//! /sys/dev/block, /proc/partitions) and hands in.
//!
//! Histograms keep the kernel's buckets exactly (metrics.md rule 6): the grid of
//! `sonde_probes::grid`, carried as the model's exponential histogram.

use std::collections::{BTreeMap, HashMap};

use sonde_semconv::attr::{self, disk_io_direction};
use sonde_semconv::fileio as m;

use crate::aggregate::bounded::SeriesPoint;
use crate::family::fileio::collect::{IoKey, IoStats, ProcSeries};
use crate::mapping::CounterPoints;
use crate::model::{numbers, Attributes, ExpHistogram, Metric, Number, Point, PointValue};

/// The kernel's dev_t encoding (MKDEV): major << 20 | minor.
pub fn dev_t(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xfffff)
}

/// "major:minor" of a kernel dev_t.
pub fn dev_string(dev: u32) -> String {
    format!("{}:{}", dev >> 20, dev & 0xfffff)
}

/// Mount point of each file system (by its dev_t) from /proc/self/mountinfo. A file
/// system mounted more than once (bind mounts) is named by its first mount, which is
/// the one mounted first.
pub fn parse_mountinfo(text: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        // id parent major:minor root mountpoint options ...
        let mut f = line.split(' ');
        let (Some(_), Some(_), Some(devno), Some(_), Some(mnt)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let Some((ma, mi)) = devno.split_once(':') else {
            continue;
        };
        let (Ok(ma), Ok(mi)) = (ma.parse::<u32>(), mi.parse::<u32>()) else {
            continue;
        };
        out.entry(dev_t(ma, mi))
            .or_insert_with(|| crate::mapping::unescape_octal(mnt));
    }
    out
}

/// The mount points of both tables: the host's (PID 1's mount namespace, which a
/// DaemonSet with hostPID sees as /proc/1) first, where every file system of the node is
/// mounted under the path an operator knows (a container's overlay under its runtime's
/// directory, which names the container), then Sonde's own for file systems mounted only
/// there. Either may be missing.
pub fn merge_mount_tables(host: Option<&str>, own: Option<&str>) -> HashMap<u32, String> {
    let mut out = host.map(parse_mountinfo).unwrap_or_default();
    for (dev, mnt) in own.map(parse_mountinfo).unwrap_or_default() {
        out.entry(dev).or_insert(mnt);
    }
    out
}

/// Block device names by dev_t from /proc/partitions (`major minor #blocks name`).
pub fn parse_partitions(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let ma = f.next()?.parse::<u32>().ok()?;
            let mi = f.next()?.parse::<u32>().ok()?;
            let _blocks = f.next()?;
            Some((dev_t(ma, mi), f.next()?.to_owned()))
        })
        .collect()
}

/// Names for device numbers; unknown ones are shown as "major:minor".
#[derive(Debug, Clone, Default)]
pub struct DevNames {
    pub mounts: HashMap<u32, String>,
    pub devices: HashMap<u32, String>,
}

impl DevNames {
    pub fn mount(&self, dev: u32) -> String {
        self.mounts
            .get(&dev)
            .cloned()
            .unwrap_or_else(|| dev_string(dev))
    }
    pub fn device(&self, dev: u32) -> String {
        self.devices
            .get(&dev)
            .cloned()
            .unwrap_or_else(|| dev_string(dev))
    }
}

/// Everything the family counted, cumulative.
#[derive(Debug, Clone, Default)]
pub struct FileIoCounts {
    pub file: Vec<(IoKey, IoStats)>,
    /// The start of each file system's series, by dev_t, where it is not the family's: a
    /// file system numbered after the first reading, or again after its number was taken
    /// back (collect's `FsNumbers`).
    pub file_starts: HashMap<u32, u64>,
    pub file_procs: Vec<SeriesPoint<ProcSeries>>,
    pub file_procs_overflow: Vec<SeriesPoint<IoKey>>,
    pub block: Vec<(IoKey, IoStats)>,
    pub block_procs: Vec<SeriesPoint<ProcSeries>>,
    pub block_procs_overflow: Vec<SeriesPoint<IoKey>>,
}

fn direction(d: u32) -> &'static str {
    if d == 0 {
        disk_io_direction::READ
    } else {
        disk_io_direction::WRITE
    }
}

fn int(v: u64) -> Number {
    Number::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn histogram(s: &IoStats) -> ExpHistogram {
    crate::mapping::grid_histogram(&s.slots, s.time_ns)
}

/// Sums stats whose names collide (e.g. two file systems over-mounted at one path), so
/// each attribute set appears once; with the latest start among them (one that started
/// anew makes the sum start anew).
fn by_name(
    stats: &[(IoKey, IoStats)],
    name: impl Fn(u32) -> String,
    start_of: impl Fn(u32) -> u64,
) -> BTreeMap<(String, u32), (IoStats, u64)> {
    let mut out: BTreeMap<(String, u32), (IoStats, u64)> = BTreeMap::new();
    for (k, s) in stats {
        let e = out.entry((name(k.dev), k.direction)).or_default();
        e.0.add(s);
        e.1 = e.1.max(start_of(k.dev));
    }
    out
}

fn process_points(
    series: &[SeriesPoint<ProcSeries>],
    overflow: &[SeriesPoint<IoKey>],
    place: impl Fn(u32) -> Option<(&'static str, String)>,
) -> CounterPoints {
    let mut out = CounterPoints::default();
    for p in series {
        let s = &p.key;
        let mut a = crate::mapping::process::with(
            Attributes::new().with(attr::DISK_IO_DIRECTION, direction(s.direction)),
            &s.process,
        );
        if let Some((key, value)) = place(s.dev) {
            a.insert(key, value);
        }
        out.add(a, p.value, p.start_unix_nano);
    }
    for p in overflow {
        let k = &p.key;
        let mut a = Attributes::new()
            .with(attr::DISK_IO_DIRECTION, direction(k.direction))
            .with(attr::OTEL_METRIC_OVERFLOW, true);
        if let Some((key, value)) = place(k.dev) {
            a.insert(key, value);
        }
        out.add(a, p.value, p.start_unix_nano);
    }
    out
}

pub fn metrics(c: &FileIoCounts, names: &DevNames, start: u64) -> Vec<Metric> {
    let files = by_name(
        &c.file,
        |d| names.mount(d),
        |d| c.file_starts.get(&d).copied().unwrap_or(start),
    );
    let blocks = by_name(&c.block, |d| names.device(d), |_| start);
    let file_attrs = |mnt: &str, d: u32| {
        Attributes::new()
            .with(attr::DISK_IO_DIRECTION, direction(d))
            .with(attr::SYSTEM_FILESYSTEM_MOUNTPOINT, mnt)
    };
    let block_attrs = |dev: &str, d: u32| {
        Attributes::new()
            .with(attr::DISK_IO_DIRECTION, direction(d))
            .with(attr::SYSTEM_DEVICE, dev)
    };
    let metric = |def, points: Vec<(Attributes, PointValue, u64)>| Metric {
        def,
        points: points
            .into_iter()
            .map(|(attributes, value, start_unix_nano)| Point {
                attributes,
                value,
                start_unix_nano,
            })
            .collect(),
    };
    let hist = |s: &IoStats| PointValue::Exponential(histogram(s));
    vec![
        metric(
            m::SONDE_FILE_IO_DURATION,
            files
                .iter()
                .map(|((mnt, d), (s, t))| (file_attrs(mnt, *d), hist(s), *t))
                .collect(),
        ),
        process_points(&c.file_procs, &c.file_procs_overflow, |d| {
            Some((attr::SYSTEM_FILESYSTEM_MOUNTPOINT, names.mount(d)))
        })
        .metric(m::SONDE_FILE_IO),
        metric(
            m::SONDE_FILE_OPERATIONS,
            files
                .iter()
                .map(|((mnt, d), (s, t))| (file_attrs(mnt, *d), PointValue::Number(int(s.ops)), *t))
                .collect(),
        ),
        numbers(
            m::SYSTEM_DISK_IO,
            start,
            blocks
                .iter()
                .map(|((dev, d), (s, _))| (block_attrs(dev, *d), int(s.bytes))),
        ),
        numbers(
            m::SYSTEM_DISK_OPERATIONS,
            start,
            blocks
                .iter()
                .map(|((dev, d), (s, _))| (block_attrs(dev, *d), int(s.ops))),
        ),
        numbers(
            m::SYSTEM_DISK_OPERATION_TIME,
            start,
            blocks.iter().map(|((dev, d), (s, _))| {
                (block_attrs(dev, *d), Number::Double(s.time_ns as f64 / 1e9))
            }),
        ),
        metric(
            m::SONDE_DISK_IO_DURATION,
            blocks
                .iter()
                .map(|((dev, d), (s, t))| (block_attrs(dev, *d), hist(s), *t))
                .collect(),
        ),
        process_points(&c.block_procs, &c.block_procs_overflow, |_| None)
            .metric(m::PROCESS_DISK_IO),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    #[test]
    fn mountinfo_maps_dev_to_first_mountpoint_and_unescapes() {
        let text = "\
22 1 259:1 / / rw,relatime - ext4 /dev/vda1 rw
30 22 0:45 / /tmp/my\\040dir rw - tmpfs tmpfs rw
31 22 259:1 /var /mnt/bind rw - ext4 /dev/vda1 rw
";
        let m = parse_mountinfo(text);
        assert_eq!(m[&dev_t(259, 1)], "/");
        assert_eq!(m[&dev_t(0, 45)], "/tmp/my dir");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn partitions_name_devices() {
        let text = "major minor  #blocks  name\n\n   7        0     102400 loop0\n 259        1   10485760 vda1\n";
        let p = parse_partitions(text);
        assert_eq!(p[&dev_t(7, 0)], "loop0");
        assert_eq!(p[&dev_t(259, 1)], "vda1");
        assert_eq!(dev_string(dev_t(259, 1)), "259:1");
    }

    #[test]
    fn counts_map_to_contract_names_with_exact_buckets() {
        let mut s = IoStats {
            ops: 3,
            bytes: 4096,
            time_ns: 3_000,
            ..Default::default()
        };
        // 1 us = 2^-19.93 s: bucket index -80 of the grid.
        let one_us = sonde_probes::grid::slot_of(1000, &sonde_probes::grid::upper_bounds_ns());
        s.slots[one_us] = 3;
        let counts = FileIoCounts {
            file: vec![(
                IoKey {
                    dev: dev_t(0, 45),
                    direction: 1,
                },
                s.clone(),
            )],
            file_starts: HashMap::new(),
            file_procs: vec![SeriesPoint {
                key: ProcSeries {
                    process: crate::aggregate::process::ProcessKey::named("dd"),
                    dev: dev_t(0, 45),
                    direction: 1,
                },
                value: 4096,
                start_unix_nano: 5,
            }],
            file_procs_overflow: vec![SeriesPoint {
                key: IoKey {
                    dev: dev_t(0, 45),
                    direction: 1,
                },
                value: 10,
                start_unix_nano: 5,
            }],
            block: vec![(
                IoKey {
                    dev: dev_t(7, 0),
                    direction: 0,
                },
                s,
            )],
            ..Default::default()
        };
        let mut names = DevNames::default();
        names.mounts.insert(dev_t(0, 45), "/data".into());
        let ms = metrics(&counts, &names, 5);
        let get = |name: &str| ms.iter().find(|m| m.def.name == name).expect(name);

        let h = &get("sonde.file.io.duration").points[0];
        assert_eq!(
            h.attributes.get("system.filesystem.mountpoint"),
            Some(&Value::Str("/data".into()))
        );
        assert_eq!(
            h.attributes.get("disk.io.direction"),
            Some(&Value::Str("write".into()))
        );
        let PointValue::Exponential(h) = &h.value else {
            panic!("a grid histogram")
        };
        assert_eq!((h.scale, h.zero_count), (2, 0));
        assert_eq!((h.offset, h.counts.as_slice()), (-80, &[3][..]));
        assert_eq!((h.count, h.sum), (3, 3e-6));

        let io = &get("sonde.file.io").points;
        assert_eq!(io.len(), 2);
        assert!(io
            .iter()
            .any(|p| p.attributes.get("process.executable.name")
                == Some(&Value::Str("dd".into()))
                && p.attributes.get("process.pid").is_none()
                && p.value == PointValue::Number(Number::Int(4096))));
        assert!(io.iter().any(|p| p.attributes.get("otel.metric.overflow")
            == Some(&Value::Bool(true))
            && p.attributes.get("system.filesystem.mountpoint")
                == Some(&Value::Str("/data".into()))));

        let disk = &get("system.disk.io").points[0];
        assert_eq!(
            disk.attributes.get("system.device"),
            Some(&Value::Str("7:0".into())),
            "unknown devices show as major:minor"
        );
        assert_eq!(disk.value, PointValue::Number(Number::Int(4096)));
        assert_eq!(
            get("system.disk.operation_time").points[0].value,
            PointValue::Number(Number::Double(3e-6))
        );
    }

    #[test]
    fn a_file_system_that_started_anew_carries_its_start_and_a_shared_name_the_latest() {
        let stats = |ops| IoStats {
            ops,
            ..Default::default()
        };
        let key = |minor| IoKey {
            dev: dev_t(0, minor),
            direction: 0,
        };
        let counts = FileIoCounts {
            file: vec![
                (key(45), stats(2)),
                (key(46), stats(3)),
                (key(47), stats(4)),
            ],
            // 46 numbered again after it was idle; 47 over-mounted at 45's path.
            file_starts: HashMap::from([(dev_t(0, 46), 90), (dev_t(0, 47), 70)]),
            file_procs: vec![],
            file_procs_overflow: vec![],
            block: vec![],
            block_procs: vec![],
            block_procs_overflow: vec![],
        };
        let mut names = DevNames::default();
        names.mounts.insert(dev_t(0, 45), "/a".into());
        names.mounts.insert(dev_t(0, 46), "/b".into());
        names.mounts.insert(dev_t(0, 47), "/a".into());
        let ms = metrics(&counts, &names, 5);
        for name in ["sonde.file.operations", "sonde.file.io.duration"] {
            let m = ms.iter().find(|m| m.def.name == name).expect(name);
            let start = |mnt: &str| {
                m.points
                    .iter()
                    .find(|p| {
                        p.attributes.get("system.filesystem.mountpoint")
                            == Some(&Value::Str(mnt.into()))
                    })
                    .map(|p| p.start_unix_nano)
            };
            assert_eq!((start("/a"), start("/b")), (Some(70), Some(90)), "{name}");
        }
        let ops = ms
            .iter()
            .find(|m| m.def.name == "sonde.file.operations")
            .expect("sonde.file.operations");
        assert!(ops
            .points
            .iter()
            .any(|p| p.value == PointValue::Number(Number::Int(6))));
    }

    #[test]
    fn the_host_mount_table_names_first_and_sondes_own_fills_in() {
        let host = "30 1 8:1 / / rw - ext4 /dev/vda1 rw\n\
                    40 30 0:55 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw\n";
        let own = "1 0 0:60 / / rw - overlay overlay rw\n\
                   2 1 8:1 / /host rw - ext4 /dev/vda1 rw\n";
        let m = merge_mount_tables(Some(host), Some(own));
        assert_eq!(m[&dev_t(8, 1)], "/");
        assert_eq!(
            m[&dev_t(0, 55)],
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs"
        );
        assert_eq!(m[&dev_t(0, 60)], "/", "only in Sonde's own namespace");
        assert_eq!(merge_mount_tables(None, Some(own))[&dev_t(8, 1)], "/host");
        assert!(merge_mount_tables(None, None).is_empty());
    }
}
