//! Per-process files: /proc/PID/stat (state, CPU, memory, threads), /proc/PID/status
//! (the name, unescaped), /proc/PID/io (storage bytes), /proc/PID/cgroup (its cgroup v2
//! path, which names its container).

/// What /proc/PID/stat says about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// `comm`: at most 15 bytes, and may hold spaces, parentheses or newlines.
    pub comm: String,
    pub state: char,
    /// Clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
    /// Clock ticks after boot.
    pub starttime: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

/// The name sits between the first `(` and the *last* `)`: it may itself contain
/// parentheses, spaces and newlines. Fields after it are numbered as in proc(5).
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_owned();
    let f: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    // f[0] is field 3 (state): field N is at index N - 3.
    let n = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
    Some(ProcStat {
        pid,
        comm,
        state: f.first()?.chars().next()?,
        utime: n(14)?,
        stime: n(15)?,
        num_threads: n(20)?,
        starttime: n(22)?,
        vsize_bytes: n(23)?,
        rss_pages: n(24)?,
    })
}

/// The cgroup v2 path of /proc/PID/cgroup: the `0::` line, on pure v2 and hybrid hosts
/// alike (v1 hierarchies have their own numbered lines). `None` on a v1-only host.
pub fn parse_cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .filter(|p| p.starts_with('/'))
}

/// The `Name:` of /proc/PID/status, where the kernel escapes `\n` and `\\` (so a
/// newline in the name cannot end the line).
pub fn parse_status_name(text: &str) -> Option<String> {
    let raw = text.lines().find_map(|l| l.strip_prefix("Name:"))?;
    let raw = raw.strip_prefix('\t').unwrap_or(raw);
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Bytes a process caused to be fetched from and sent to the storage layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcIo {
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// /proc/PID/io; `None` when the fields are missing (kernels without
/// CONFIG_TASK_IO_ACCOUNTING print no storage lines).
pub fn parse_io(text: &str) -> Option<ProcIo> {
    let get = |key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))?
            .trim()
            .parse()
            .ok()
    };
    Some(ProcIo {
        read_bytes: get("read_bytes:")?,
        write_bytes: get("write_bytes:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(comm: &str) -> String {
        // Captured from a 6.18 kernel, comm swapped in.
        format!(
            "4242 ({comm}) S 1 4242 4242 0 -1 4194560 1200 0 3 0 250 75 0 0 20 0 3 0 98765 \
             12345678 2500 18446744073709551615 1 1 0 0 0 0 0 4096 17415 0 0 0 17 1 0 0 0 0 0"
        )
    }

    #[test]
    fn awkward_names_spaces_parentheses_newlines() {
        for comm in [
            "bash",
            "Web Content",
            "a) S 1 2 (b",
            "x)",
            "new\nline",
            "((",
            "",
        ] {
            let s = parse_stat(&stat_line(comm)).unwrap_or_else(|| panic!("{comm:?}"));
            assert_eq!(s.comm, comm);
            assert_eq!(s.pid, 4242);
            assert_eq!(s.state, 'S');
            assert_eq!((s.utime, s.stime), (250, 75));
            assert_eq!(s.num_threads, 3);
            assert_eq!(s.starttime, 98765);
            assert_eq!(s.vsize_bytes, 12345678);
            assert_eq!(s.rss_pages, 2500);
        }
    }

    #[test]
    fn truncated_or_empty_stat_of_an_exiting_process() {
        assert_eq!(parse_stat(""), None, "read after the process exited");
        assert_eq!(parse_stat("4242 (bash) Z 1 4242"), None);
        assert_eq!(parse_stat("4242 )x( S"), None);
    }

    #[test]
    fn cgroup_v2_line_on_pure_v2_hybrid_and_v1_only_hosts() {
        let docker = format!("/system.slice/docker-{}.scope", "a".repeat(64));
        let cases: [(String, Option<&str>); 4] = [
            (format!("0::{docker}\n"), Some(docker.as_str())),
            (
                format!("12:memory:/user.slice\n1:name=systemd:/x\n0::{docker}\n"),
                Some(docker.as_str()),
            ),
            ("12:memory:/\n1:name=systemd:/init.scope\n".into(), None),
            ("0::\n".into(), None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_cgroup_v2_path(&text), want, "{text:?}");
        }
    }

    #[test]
    fn status_name_unescaped() {
        assert_eq!(
            parse_status_name("Name:\tnew\\nline\\\\x\nUmask:\t0022\nState:\tS (sleeping)\n"),
            Some("new\nline\\x".into())
        );
        assert_eq!(
            parse_status_name("Name:\tWeb Content\n"),
            Some("Web Content".into())
        );
        assert_eq!(parse_status_name("State:\tS\n"), None);
    }

    #[test]
    fn io_fields_and_missing_accounting() {
        let io = parse_io(
            "rchar: 100\nwchar: 200\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n",
        );
        assert_eq!(
            io,
            Some(ProcIo {
                read_bytes: 4096,
                write_bytes: 8192
            })
        );
        assert_eq!(parse_io("rchar: 100\nwchar: 200\n"), None);
    }
}
