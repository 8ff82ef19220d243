//! File systems: /proc/self/mounts and /proc/filesystems (pure parsers), and statvfs(3)
//! for each mount's space (the one system call here).

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fs_type: String,
    pub read_only: bool,
}

/// `device mountpoint type options dump pass`, with space, tab, newline and backslash
/// in names escaped as octal (`\040`).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let device = crate::mapping::unescape_octal(f.next()?);
            let mountpoint = crate::mapping::unescape_octal(f.next()?);
            let fs_type = f.next()?.to_owned();
            let options = f.next()?;
            Some(Mount {
                device,
                mountpoint,
                fs_type,
                read_only: options.split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

/// File system types not backed by a device (`nodev` in /proc/filesystems): proc,
/// sysfs, cgroup, tmpfs, overlay... Like the hostmetrics receiver's default, these are
/// not reported.
pub fn parse_nodev(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("nodev"))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The mounts worth reporting: device-backed types only, each mount point once (the
/// last mount on a path hides the earlier ones).
pub fn reportable(mounts: Vec<Mount>, nodev: &HashSet<String>) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for m in mounts {
        if nodev.contains(&m.fs_type) || m.fs_type == "autofs" {
            continue;
        }
        out.retain(|o| o.mountpoint != m.mountpoint);
        out.push(m);
    }
    out
}

/// Space of one file system, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Space {
    pub used: u64,
    /// Available to unprivileged users.
    pub free: u64,
    /// Free, but reserved for root.
    pub reserved: u64,
}

impl Space {
    /// From statvfs fields, as hostmetrics computes them: used = blocks - bfree,
    /// free = bavail, reserved = bfree - bavail, all times the fragment size.
    pub fn from_blocks(frsize: u64, blocks: u64, bfree: u64, bavail: u64) -> Self {
        Self {
            used: blocks.saturating_sub(bfree) * frsize,
            free: bavail * frsize,
            reserved: bfree.saturating_sub(bavail) * frsize,
        }
    }
}

/// statvfs(3) on a mount point, through rustix (no unsafe here). Can block on an
/// unresponsive network or FUSE file system: [`BoundedStatvfs`] bounds the wait.
pub fn statvfs(path: &str) -> std::io::Result<Space> {
    let s = rustix::fs::statvfs(path)?;
    let frsize = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    Ok(Space::from_blocks(
        frsize, s.f_blocks, s.f_bfree, s.f_bavail,
    ))
}

/// statvfs(3) calls bounded in time. A call runs on a thread of its own; if it has not
/// returned within the bound (a hung network or FUSE file system), the mount is skipped
/// for this sample and counted, and no new call is made on it until the stuck one
/// returns, so a dead mount holds at most one thread and delays at most one sample.
#[derive(Debug)]
pub struct BoundedStatvfs {
    bound: std::time::Duration,
    /// Calls that have not returned yet, by mount point.
    pending: std::collections::HashMap<String, std::sync::mpsc::Receiver<std::io::Result<Space>>>,
    /// Samples each mount point was skipped in (cumulative).
    skipped: std::collections::BTreeMap<String, u64>,
}

/// How long a sample waits for one file system's statvfs.
pub const STATVFS_BOUND: std::time::Duration = std::time::Duration::from_millis(500);

impl Default for BoundedStatvfs {
    fn default() -> Self {
        Self::new(STATVFS_BOUND)
    }
}

impl BoundedStatvfs {
    pub fn new(bound: std::time::Duration) -> Self {
        Self {
            bound,
            pending: std::collections::HashMap::new(),
            skipped: std::collections::BTreeMap::new(),
        }
    }

    /// The space of the file system at `path`; `None` when it was skipped (its call did
    /// not return within the bound, now or in an earlier sample).
    pub fn stat(&mut self, path: &str) -> Option<std::io::Result<Space>> {
        use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
        if let Some(rx) = self.pending.get(path) {
            match rx.try_recv() {
                // The stuck call came back: ask again, its answer is stale.
                Ok(_) | Err(TryRecvError::Disconnected) => {
                    self.pending.remove(path);
                }
                Err(TryRecvError::Empty) => {
                    *self.skipped.entry(path.to_owned()).or_default() += 1;
                    return None;
                }
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = path.to_owned();
        let spawned = std::thread::Builder::new()
            .name("sonde-statvfs".into())
            .spawn(move || {
                let _ = tx.send(statvfs(&owned));
            });
        if let Err(e) = spawned {
            return Some(Err(e));
        }
        match rx.recv_timeout(self.bound) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Disconnected) => Some(Err(std::io::Error::other(
                "the statvfs thread ended without an answer",
            ))),
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    mountpoint = path,
                    "statvfs did not return within {:?}: the file system is skipped (and \
                     counted in sonde.collect.skipped) until it answers",
                    self.bound
                );
                self.pending.insert(path.to_owned(), rx);
                *self.skipped.entry(path.to_owned()).or_default() += 1;
                None
            }
        }
    }

    /// Samples each mount point was skipped in, since the start.
    pub fn skipped(&self) -> &std::collections::BTreeMap<String, u64> {
        &self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_statvfs_answers_for_a_live_file_system_and_errs_for_a_missing_path() {
        let mut b = BoundedStatvfs::default();
        assert!(matches!(b.stat("/"), Some(Ok(sp)) if sp.used + sp.free > 0));
        assert!(matches!(b.stat("/nonexistent/sonde"), Some(Err(_))));
        assert!(b.skipped().is_empty(), "nothing hung, nothing skipped");
        // A hung file system is tests/slow_statvfs.rs (a FUSE mount that never answers).
    }

    const MOUNTS: &str = "\
/dev/vda1 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev 0 0
/dev/loop0 /mnt/with\\040space ext4 ro,relatime 0 0
/dev/vdb /data xfs rw 0 0
/dev/vdc /data ext4 rw 0 0
systemd-1 /auto autofs rw 0 0
short line
";
    const FILESYSTEMS: &str =
        "nodev\tsysfs\nnodev\tproc\nnodev\ttmpfs\n\text4\n\txfs\nnodev\tautofs\n";

    #[test]
    fn mounts_with_escapes_nodev_filtered_and_overmounts_collapsed() {
        let all = parse_mounts(MOUNTS);
        assert_eq!(all.len(), 7);
        assert_eq!(all[3].mountpoint, "/mnt/with space");
        assert!(all[3].read_only && !all[0].read_only);
        let nodev = parse_nodev(FILESYSTEMS);
        assert!(nodev.contains("proc") && !nodev.contains("ext4"));
        let r = reportable(all, &nodev);
        let points: Vec<(&str, &str)> = r
            .iter()
            .map(|m| (m.mountpoint.as_str(), m.device.as_str()))
            .collect();
        assert_eq!(
            points,
            [
                ("/", "/dev/vda1"),
                ("/mnt/with space", "/dev/loop0"),
                ("/data", "/dev/vdc")
            ]
        );
    }

    #[test]
    fn space_follows_hostmetrics() {
        let s = Space::from_blocks(4096, 1000, 300, 250);
        assert_eq!(
            s,
            Space {
                used: 700 * 4096,
                free: 250 * 4096,
                reserved: 50 * 4096
            }
        );
    }

    #[test]
    fn statvfs_of_root_is_sane() {
        let s = statvfs("/").expect("statvfs /");
        assert!(s.used + s.free + s.reserved > 0);
        assert!(statvfs("/definitely/not/here").is_err());
    }
}
