//! /proc/diskstats: I/O counters per block device.

/// Counters of one device since boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStats {
    pub name: String,
    pub reads: u64,
    pub reads_merged: u64,
    pub read_bytes: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub writes_merged: u64,
    pub write_bytes: u64,
    pub write_ms: u64,
    pub io_ms: u64,
}

impl DiskStats {
    pub fn idle(&self) -> bool {
        self.reads == 0 && self.writes == 0
    }
}

/// Sectors in diskstats are always 512 bytes, whatever the device's sector size.
const SECTOR: u64 = 512;

/// `major minor name` then 11 counters (4.18 adds 4 discard counters, 5.5 two flush
/// counters: ignored). Kernels before 2.6.25 printed partitions with 4 counters only
/// (reads, sectors read, writes, sectors written).
pub fn parse(text: &str) -> Vec<DiskStats> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let name = (*f.get(2)?).to_owned();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            if f.len() == 7 {
                return Some(DiskStats {
                    name,
                    reads: n(3)?,
                    read_bytes: n(4)? * SECTOR,
                    writes: n(5)?,
                    write_bytes: n(6)? * SECTOR,
                    reads_merged: 0,
                    read_ms: 0,
                    writes_merged: 0,
                    write_ms: 0,
                    io_ms: 0,
                });
            }
            Some(DiskStats {
                name,
                reads: n(3)?,
                reads_merged: n(4)?,
                read_bytes: n(5)? * SECTOR,
                read_ms: n(6)?,
                writes: n(7)?,
                writes_merged: n(8)?,
                write_bytes: n(9)? * SECTOR,
                write_ms: n(10)?,
                io_ms: n(12)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modern_old_and_broken_lines() {
        let d = parse(
            "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n\
             \x20254       0 vda 15046 5410 1235918 6412 90210 60213 4010234 81234 0 50123 99000 0 0 0 0 311 2811\n\
             \x20  8       1 sda1 100 200 300 400\n\
             \x20  8       2 sdb 1 2\n",
        );
        assert_eq!(d.len(), 3, "the truncated sdb line is skipped");
        assert!(d[0].idle());
        let vda = &d[1];
        assert_eq!(vda.name, "vda");
        assert_eq!((vda.reads, vda.reads_merged), (15046, 5410));
        assert_eq!(vda.read_bytes, 1235918 * 512);
        assert_eq!(
            (vda.read_ms, vda.writes, vda.write_ms, vda.io_ms),
            (6412, 90210, 81234, 50123)
        );
        assert_eq!(vda.write_bytes, 4010234 * 512);
        let old = &d[2];
        assert_eq!(
            (old.reads, old.read_bytes, old.writes, old.write_bytes),
            (100, 200 * 512, 300, 400 * 512)
        );
    }
}
