//! Where the cgroup v2 hierarchy is mounted: programs attached to its root see every
//! socket of the host (or of Sonde's cgroup namespace, when Sonde runs in one).

use std::path::PathBuf;

/// The cgroup2 mount point from /proc/self/mountinfo: `/sys/fs/cgroup` on unified
/// hosts, `/sys/fs/cgroup/unified` on hybrid ones.
pub fn cgroup2_root() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_cgroup2_root(&text)
}

/// The first mount whose file-system type is cgroup2. mountinfo lines are
/// `id parent major:minor root mountpoint options [optional...] - fstype source super`.
pub fn parse_cgroup2_root(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mountpoint = left.split(' ').nth(4)?;
        // mountinfo escapes space, tab, newline and backslash as octal.
        Some(PathBuf::from(
            mountpoint
                .replace("\\040", " ")
                .replace("\\011", "\t")
                .replace("\\012", "\n")
                .replace("\\134", "\\"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_on_unified_and_hybrid_hosts_and_none_without_it() {
        let hybrid = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
";
        let unified =
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let spaced = "29 23 0:26 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        let none = "32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        let cases = [
            (hybrid, Some("/sys/fs/cgroup/unified")),
            (unified, Some("/sys/fs/cgroup")),
            (spaced, Some("/mnt/my cg")),
            (none, None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_cgroup2_root(text), want.map(PathBuf::from), "{text}");
        }
    }
}
