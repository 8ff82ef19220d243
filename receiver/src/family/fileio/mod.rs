//! File and block I/O from the fileio probe: collector, per-process folding, device
//! names, mapping.

pub mod collect;
pub mod config;
pub mod fsnum;
pub mod mapping;
pub mod probe;

use std::collections::HashMap;
use std::path::PathBuf;

use sonde_semconv::attr::loss_reason;

use crate::family::fileio::collect::{FileIoCollector, IoKey, IoStats};
use crate::family::fileio::mapping::{self as map, DevNames, FileIoCounts};
use crate::family::{Family, ProbesConfig, Started};
use crate::probe::{LoadError, ProgramSpec};
use crate::source::{Output, Source};

#[derive(Debug)]
pub struct FileIoSource {
    pub collector: FileIoCollector,
    names: DevNames,
    /// The reading (its `now`) at which the mount table was last read.
    mounts_read_ns: u64,
    proc_root: PathBuf,
}

impl FileIoSource {
    pub fn new(collector: FileIoCollector) -> Self {
        Self {
            collector,
            names: DevNames::default(),
            mounts_read_ns: 0,
            proc_root: PathBuf::from("/proc"),
        }
    }

    /// Re-reads the mount tables when [`mounts_stale`] says so. `starts`: each file
    /// system's series start (the reading before it was numbered), `now`: this reading.
    fn refresh_names(
        &mut self,
        file: &[(IoKey, IoStats)],
        block: &[(IoKey, IoStats)],
        starts: &HashMap<u32, u64>,
        now: u64,
    ) {
        let unnamed = file
            .iter()
            .any(|(k, _)| !self.names.mounts.contains_key(&k.dev));
        let numbered_since = starts.values().any(|s| *s >= self.mounts_read_ns);
        if mounts_stale(unnamed, numbered_since, self.mounts_read_ns, now) {
            let read = |p: &str| match std::fs::read_to_string(self.proc_root.join(p)) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::debug!("reading {p} for file system names: {e}");
                    None
                }
            };
            let (host, own) = (read("1/mountinfo"), read("self/mountinfo"));
            // Neither readable: keep the names known so far.
            if host.is_some() || own.is_some() {
                self.names.mounts = map::merge_mount_tables(host.as_deref(), own.as_deref());
            }
            self.mounts_read_ns = now;
        }
        for (k, _) in block {
            if self.names.devices.contains_key(&k.dev) {
                continue;
            }
            // /sys/dev/block/M:m links to the device's sysfs directory, named after it.
            let link = format!("/sys/dev/block/{}", map::dev_string(k.dev));
            let name = std::fs::read_link(&link)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .or_else(|| {
                    std::fs::read_to_string(self.proc_root.join("partitions"))
                        .ok()
                        .and_then(|t| map::parse_partitions(&t).remove(&k.dev))
                });
            if let Some(name) = name {
                self.names.devices.insert(k.dev, name);
            }
        }
    }
}

/// How long a file system that no mount table names (mounted only in another container's
/// namespace) waits before the tables are read again for it.
const NAMELESS_RETRY_NS: u64 = 60_000_000_000;

/// Whether to read the mount tables again at `now` (last read at `read_ns`, 0: never): a
/// file system was numbered since the last read (mounts come and go, and the kernel hands
/// a freed anonymous dev_t to the next tmpfs or overlay, so a dev_t can name another file
/// system than before), or one has no name and the last read is a minute old. On a node
/// with thousands of mounts a read costs milliseconds: not every tick.
fn mounts_stale(unnamed: bool, numbered_since: bool, read_ns: u64, now: u64) -> bool {
    read_ns == 0 || numbered_since || (unnamed && now.saturating_sub(read_ns) >= NAMELESS_RETRY_NS)
}

impl Source for FileIoSource {
    fn name(&self) -> &'static str {
        "fileio"
    }

    fn collect(&mut self, start: u64, out: &mut Output) {
        let now = crate::unix_nanos();
        let read = (|| {
            self.collector.update_procs(&self.proc_root)?;
            Ok::<_, crate::family::fileio::collect::CollectError>((
                self.collector.file_stats(now, start)?,
                self.collector.block_stats()?,
                self.collector.lost()?,
            ))
        })();
        let (file, block, lost) = match read {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("reading the fileio probe's maps failed: {e}");
                return;
            }
        };
        let file_starts = self.collector.file_starts();
        self.refresh_names(&file, &block, &file_starts, now);
        // After the read: an idle file system's last values go out with this snapshot.
        match self.collector.take_back_idle(now) {
            Ok(0) => {}
            Ok(n) => tracing::debug!("fileio: took back the numbers of {n} idle file systems"),
            Err(e) => tracing::warn!("fileio: taking back idle file systems' numbers: {e}"),
        }
        self.collector.file_totals.tick(now);
        self.collector.block_totals.tick(now);
        let (file_procs, file_procs_overflow) = self.collector.file_totals.snapshot();
        let (block_procs, block_procs_overflow) = self.collector.block_totals.snapshot();
        let counts = FileIoCounts {
            file,
            file_starts,
            file_procs,
            file_procs_overflow,
            block,
            block_procs,
            block_procs_overflow,
        };
        out.metrics
            .extend(map::metrics(&counts, &self.names, start));
        out.lost
            .push(("fileio.file", loss_reason::MAP_FULL, lost.file));
        out.lost
            .push(("fileio.block", loss_reason::MAP_FULL, lost.block));
    }
}

/// The fileio family: file reads and writes from syscall tracepoints, block I/O from the
/// block layer's.
#[derive(Debug)]
pub struct FileIo;

impl Family for FileIo {
    fn kind(&self) -> sonde_probes::Family {
        sonde_probes::Family::FileIo
    }

    fn procfs_twins(&self) -> &'static [crate::family::ProcfsTwin] {
        use sonde_semconv::fileio::{
            PROCESS_DISK_IO, SYSTEM_DISK_IO, SYSTEM_DISK_OPERATIONS, SYSTEM_DISK_OPERATION_TIME,
        };
        const BLOCK: &[&str] = &["fileio.block_issue", "fileio.block_complete"];
        const fn twin(metric: &'static str) -> crate::family::ProcfsTwin {
            crate::family::ProcfsTwin {
                metric,
                probes: BLOCK,
            }
        }
        const TWINS: &[crate::family::ProcfsTwin] = &[
            twin(SYSTEM_DISK_IO.name),
            twin(SYSTEM_DISK_OPERATIONS.name),
            twin(SYSTEM_DISK_OPERATION_TIME.name),
            twin(PROCESS_DISK_IO.name),
        ];
        TWINS
    }

    fn programs(&self) -> &'static [ProgramSpec] {
        probe::PROGRAMS
    }

    fn enabled(&self, config: &ProbesConfig) -> bool {
        config.fileio.enabled
    }

    fn start(
        &self,
        config: &ProbesConfig,
        series: crate::aggregate::bounded::SeriesPolicy,
        _spans: Option<&crate::spans::Spans>,
        processes: &crate::cgroup::Attribution,
    ) -> Result<Started, LoadError> {
        let pseudo = u32::from(config.fileio.pseudo_filesystems);
        let mut loaded = crate::probe::load_family_with(
            self.kind(),
            self.programs(),
            true,
            &[(sonde_probes::names::fileio::GLOBAL_PSEUDO_FS, pseudo)],
        )?;
        let limit = series.with_limit(config.fileio.process_limit);
        let source = super::collector(
            "fileio",
            FileIoCollector::new(&mut loaded, limit, processes.clone()),
        )
        .map(FileIoSource::new);
        Ok(Started::new(loaded, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_tables_are_read_again_for_new_file_systems_and_each_minute_for_nameless_ones() {
        const S: u64 = 1_000_000_000;
        // (unnamed, numbered since the last read, last read at, now, read again)
        let cases = [
            (false, false, 0, 10 * S, true),
            (false, false, 10 * S, 20 * S, false),
            (false, true, 10 * S, 20 * S, true),
            (true, false, 10 * S, 69 * S, false),
            (true, false, 10 * S, 70 * S, true),
            (true, true, 10 * S, 11 * S, true),
            (false, false, 10 * S, 1000 * S, false),
        ];
        for (unnamed, numbered, read, now, want) in cases {
            assert_eq!(
                mounts_stale(unnamed, numbered, read, now),
                want,
                "unnamed {unnamed}, numbered {numbered}, read {read}, now {now}"
            );
        }
    }
}
