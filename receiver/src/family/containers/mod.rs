//! Per-container CPU, memory and block I/O from the cgroup statistics files, for every
//! container the cgroup paths name (docker, containerd, CRI-O, podman, kubelet, nspawn,
//! LXC). Loads nothing into the kernel, so it runs in both modes. Network bytes per
//! container come from the netio probe (`container.network.io`).

pub mod aggregate;
pub mod collect;
pub mod config;
pub mod mapping;
pub mod stat;

use crate::aggregate::bounded::SeriesPolicy;
use crate::family::containers::aggregate::Containers as Series;
use crate::family::containers::collect::{DeviceNames, Hierarchies};
use crate::family::{FileFamily, ProbesConfig};
use crate::source::{Output, Source};

#[derive(Debug)]
pub struct ContainersSource {
    hierarchies: Hierarchies,
    devices: DeviceNames,
    series: Series,
}

impl Source for ContainersSource {
    fn name(&self) -> &'static str {
        "containers"
    }

    fn collect(&mut self, _start: u64, out: &mut Output) {
        let now = crate::unix_nanos();
        let readings = collect::read_all(&self.hierarchies, &mut self.devices);
        self.series.update(now, readings);
        out.metrics
            .extend(mapping::metrics(&self.series.snapshot(), now));
    }
}

/// The containers family: cgroup files, no probe.
#[derive(Debug)]
pub struct Containers;

impl FileFamily for Containers {
    fn name(&self) -> &'static str {
        "containers"
    }

    fn enabled(&self, config: &ProbesConfig) -> bool {
        config.containers.enabled
    }

    fn start(&self, config: &ProbesConfig, series: SeriesPolicy) -> Option<Box<dyn Source>> {
        let hierarchies = match Hierarchies::read() {
            Ok(h) if !h.is_empty() => h,
            Ok(_) => {
                tracing::warn!(
                    "no cgroup hierarchy is mounted (none in /proc/self/mountinfo): no \
                     container.* metrics; mount cgroup2 at /sys/fs/cgroup, or set \
                     probes.containers.enabled: false"
                );
                return None;
            }
            Err(e) => {
                tracing::warn!("cannot read /proc/self/mountinfo ({e}): no container.* metrics");
                return None;
            }
        };
        tracing::info!("containers from cgroups: {}", hierarchies.describe());
        Some(Box::new(ContainersSource {
            hierarchies,
            devices: DeviceNames::default(),
            series: Series::new(series.with_limit(config.containers.series_limit)),
        }))
    }

    fn check(&self) -> String {
        match Hierarchies::read() {
            Ok(h) if !h.is_empty() => {
                let n = [&h.v2, &h.cpuacct, &h.memory, &h.blkio]
                    .into_iter()
                    .flatten()
                    .flat_map(|root| collect::find_containers(root).into_keys())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                format!(
                    "reads cgroup statistics ({}); {n} containers now",
                    h.describe()
                )
            }
            Ok(_) => "unavailable: no cgroup hierarchy is mounted".to_owned(),
            Err(e) => format!("unavailable: cannot read /proc/self/mountinfo: {e}"),
        }
    }
}
