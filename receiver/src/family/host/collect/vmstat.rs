//! Paging: /proc/vmstat (faults, pages paged and swapped in and out) and /proc/swaps
//! (swap devices and their use).

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vmstat {
    /// Every page fault (minor and major).
    pub pgfault: Option<u64>,
    pub pgmajfault: Option<u64>,
    /// KiB paged in and out from/to block devices.
    pub pgpgin: Option<u64>,
    pub pgpgout: Option<u64>,
    /// Pages swapped in and out.
    pub pswpin: Option<u64>,
    pub pswpout: Option<u64>,
}

impl Vmstat {
    pub fn minor_faults(&self) -> Option<u64> {
        Some(self.pgfault?.saturating_sub(self.pgmajfault?))
    }
}

pub fn parse_vmstat(text: &str) -> Vmstat {
    let mut v = Vmstat::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let value = value.trim().parse::<u64>().ok();
        match key {
            "pgfault" => v.pgfault = value,
            "pgmajfault" => v.pgmajfault = value,
            "pgpgin" => v.pgpgin = value,
            "pgpgout" => v.pgpgout = value,
            "pswpin" => v.pswpin = value,
            "pswpout" => v.pswpout = value,
            _ => {}
        }
    }
    v
}

/// One swap device or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    pub device: String,
    pub size_bytes: u64,
    pub used_bytes: u64,
}

/// `Filename Type Size Used Priority`, sizes in KiB. The kernel escapes space, tab,
/// newline and backslash in file names as octal (`\040`).
pub fn parse_swaps(text: &str) -> Vec<Swap> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let name = f.next()?;
            let _type = f.next()?;
            let size: u64 = f.next()?.parse().ok()?;
            let used: u64 = f.next()?.parse().ok()?;
            Some(Swap {
                device: crate::mapping::unescape_octal(name),
                size_bytes: size * 1024,
                used_bytes: used * 1024,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmstat_faults_and_paging() {
        let v = parse_vmstat(
            "nr_free_pages 12345\npgpgin 100\npgpgout 200\npswpin 3\npswpout 4\npgfault 1000\npgmajfault 10\n",
        );
        assert_eq!(v.minor_faults(), Some(990));
        assert_eq!(
            (v.pgpgin, v.pgpgout, v.pswpin, v.pswpout),
            (Some(100), Some(200), Some(3), Some(4))
        );
        let old = parse_vmstat("pgfault 5\n");
        assert_eq!(
            old.minor_faults(),
            None,
            "no pgmajfault: unknown rather than wrong"
        );
    }

    #[test]
    fn swaps_with_escaped_names_and_no_swap() {
        let s = parse_swaps(
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
             /dev/zram0                              partition\t4194300\t\t1024\t\t100\n\
             /swap\\040file                           file\t\t1024\t\t0\t\t-2\n",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].device, "/dev/zram0");
        assert_eq!(s[0].used_bytes, 1024 * 1024);
        assert_eq!(s[1].device, "/swap file");
        assert!(parse_swaps("Filename Type Size Used Priority\n").is_empty());
    }
}
