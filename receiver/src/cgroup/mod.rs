//! Containers as the kernel sees them: a task's cgroup v2 id, resolved to its path and
//! from the path to `container.id` (and Kubernetes names where the kubelet's log
//! directories show them). No container runtime API is asked.
//!
//! The id a probe reads (`bpf_get_current_cgroup_id`, `bpf_sk_cgroup_id`) is the inode
//! number of the cgroup's directory in the v2 hierarchy, so the resolver walks that tree
//! (found in /proc/self/mountinfo: `/sys/fs/cgroup` on pure v2 hosts,
//! `/sys/fs/cgroup/unified` on hybrid ones) and keeps inode -> path. A miss rescans when
//! the tree changed since the last scan (the root's `cgroup.stat` counts descendants, so
//! a new container's cgroup is found by the first event from it, however recent the last
//! scan: an event keyed without its container would stay in the wrong series), at most
//! once per `MIN_CHANGED_RESCAN`, and otherwise at most once per `min_rescan`. An id
//! missing from a scan of an unchanged tree is remembered as unknown (another cgroup
//! namespace, or gone) until the next scan. A cgroup a scan saw and a later one did not is
//! kept as removed for `KEEP_REMOVED` (at most `MAX_REMOVED` of them, the oldest evicted
//! first and counted): families that read their kernel maps once per interval (file and
//! network bytes, CPU of exited threads) find a container that ended in that interval.
//! Ids are never reused (64-bit kernfs ids), so a removed cgroup's answer cannot go stale.

pub mod attribution;
pub mod k8s;
pub mod path;

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use attribution::Attribution;
pub use k8s::K8sNames;
pub use path::{container_of, ContainerRef, Runtime};

/// A container and, on Kubernetes nodes, its names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Container {
    pub id: String,
    pub runtime: Runtime,
    pub k8s: Option<K8sNames>,
}

/// What a cgroup id resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// Path relative to the v2 root, starting with `/`.
    pub path: String,
    pub container: Option<Arc<Container>>,
}

/// Deepest cgroup directories walked: real trees are under 10 deep.
const MAX_DEPTH: usize = 32;
/// Ids remembered as unknown between two scans (bounds memory under a flood of ids).
const MAX_MISSES: usize = 65_536;
/// Rescans of a tree that changed are at most this frequent (bounds the cost when
/// containers churn; a walk of a thousand cgroups takes about a millisecond).
const MIN_CHANGED_RESCAN: Duration = Duration::from_millis(10);
/// How long a removed cgroup stays known: longer than any collection interval, so a
/// family reading its maps at the next tick still names the container.
const KEEP_REMOVED: Duration = Duration::from_secs(600);
/// Removed cgroups kept at most (about 200 bytes each): under faster container churn the
/// oldest go first, counted in [`Resolver::evicted`].
const MAX_REMOVED: usize = 4096;

/// cgroup id -> cgroup, cached by inode, refreshed on a miss.
#[derive(Debug)]
pub struct Resolver {
    root: PathBuf,
    /// Where the kubelet's `pods/` and `containers/` directories live (`/var/log`).
    log_root: PathBuf,
    min_rescan: Duration,
    current: HashMap<u64, Arc<Cgroup>>,
    /// Cgroups gone from the tree, oldest first in `removed_order` (when each was found
    /// gone).
    removed: HashMap<u64, Arc<Cgroup>>,
    removed_order: VecDeque<(Instant, u64)>,
    keep_removed: Duration,
    max_removed: usize,
    /// Removed cgroups forgotten before `keep_removed` because `max_removed` were kept.
    evicted: u64,
    misses: HashSet<u64>,
    last_scan: Option<Instant>,
    /// The root's `cgroup.stat` at the last scan (`None` where it cannot be read).
    last_stat: Option<String>,
    scans: u64,
    /// Bumped by every scan: what a lookup answered holds until then, so holders of an
    /// [`Attribution`] keep answers in a cache of their own and take the lock only when
    /// this moved (see [`Resolver::lookup`]).
    generation: Arc<AtomicU64>,
    lookups: u64,
}

/// One resolver shared by every family.
pub type SharedResolver = Arc<Mutex<Resolver>>;

impl Resolver {
    /// A resolver over the v2 hierarchy at `root`.
    pub fn new(root: PathBuf, log_root: PathBuf, min_rescan: Duration) -> Self {
        Self {
            root,
            log_root,
            min_rescan,
            current: HashMap::new(),
            removed: HashMap::new(),
            removed_order: VecDeque::new(),
            keep_removed: KEEP_REMOVED,
            max_removed: MAX_REMOVED,
            evicted: 0,
            misses: HashSet::new(),
            last_scan: None,
            last_stat: None,
            scans: 0,
            generation: Arc::new(AtomicU64::new(0)),
            lookups: 0,
        }
    }

    /// The host's resolver: the v2 root from /proc/self/mountinfo; `None` without cgroup v2.
    pub fn for_host() -> Option<Self> {
        let root = crate::probe::cgroup::cgroup2_root()?;
        Some(Self::new(
            root,
            PathBuf::from("/var/log"),
            Duration::from_secs(1),
        ))
    }

    /// Keeps at most `max` removed cgroups, each for `keep` (tests shrink both).
    pub fn keeping_removed(self, max: usize, keep: Duration) -> Self {
        Self {
            max_removed: max,
            keep_removed: keep,
            ..self
        }
    }

    /// Removed cgroups forgotten early because too many were kept: events read after
    /// that from their containers carry no container.id.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn shared(self) -> SharedResolver {
        Arc::new(Mutex::new(self))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Full scans of the tree so far.
    pub fn scans(&self) -> u64 {
        self.scans
    }

    /// Lookups so far (each one took the lock of a shared resolver).
    pub fn lookups(&self) -> u64 {
        self.lookups
    }

    /// Counts the scans; read without the lock (see [`Resolver::lookup`]).
    pub fn generation(&self) -> Arc<AtomicU64> {
        self.generation.clone()
    }

    /// The cgroup of `id`; `None` for 0 (the probe could not read it) or an id not in
    /// the tree (removed before the last scan, or in another cgroup namespace).
    pub fn resolve(&mut self, id: u64) -> Option<Arc<Cgroup>> {
        self.lookup(id).0
    }

    /// [`Resolver::resolve`], and whether the answer stands until the next scan (the
    /// generation moves): a cgroup found, or an id the current tree does not hold. An id
    /// missed while a rescan was held back (the tree changed too recently, or too many
    /// unknown ids) is asked again by its next event.
    pub fn lookup(&mut self, id: u64) -> (Option<Arc<Cgroup>>, bool) {
        self.lookups += 1;
        if id == 0 {
            return (None, true);
        }
        if let Some(c) = self.current.get(&id).or_else(|| self.removed.get(&id)) {
            return (Some(c.clone()), true);
        }
        if self.misses.contains(&id) {
            return (None, true);
        }
        let since = self.last_scan.map(|t| t.elapsed());
        let stat = self.stat();
        let changed = stat.is_some() && stat != self.last_stat;
        let scan = match since {
            None => true,
            Some(t) if changed => t >= MIN_CHANGED_RESCAN.min(self.min_rescan),
            Some(t) => t >= self.min_rescan,
        };
        if scan {
            self.rescan_with(stat);
            if let Some(c) = self.current.get(&id).or_else(|| self.removed.get(&id)) {
                return (Some(c.clone()), true);
            }
        }
        // Unknown for sure only if the tree it was looked up in is current; otherwise the
        // next event from it tries again.
        let settled = (scan || !changed) && self.misses.len() < MAX_MISSES;
        if settled {
            self.misses.insert(id);
        }
        (None, settled)
    }

    /// The root's descendant counts: they move whenever a cgroup is made or removed.
    fn stat(&self) -> Option<String> {
        std::fs::read_to_string(self.root.join("cgroup.stat")).ok()
    }

    /// The container of `id`, if its cgroup is one.
    pub fn container(&mut self, id: u64) -> Option<Arc<Container>> {
        self.resolve(id).and_then(|c| c.container.clone())
    }

    /// Walks the tree now (also done on a miss).
    pub fn rescan(&mut self) {
        let stat = self.stat();
        self.rescan_with(stat);
    }

    fn rescan_with(&mut self, stat: Option<String>) {
        let k8s = KubeletIndex::read(&self.log_root);
        let mut found: HashMap<u64, Arc<Cgroup>> = HashMap::new();
        // Containers interned by id, so every cgroup of one container shares one value.
        let mut containers: HashMap<String, Arc<Container>> = HashMap::new();
        let mut stack: Vec<(PathBuf, String, usize)> = vec![(self.root.clone(), "/".into(), 0)];
        while let Some((dir, rel, depth)) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue; // removed during the walk
            };
            let container = container_of(&rel).map(|r| {
                containers
                    .entry(r.id.clone())
                    .or_insert_with(|| Arc::new(k8s.container(r)))
                    .clone()
            });
            found.insert(
                meta.ino(),
                Arc::new(Cgroup {
                    path: rel.clone(),
                    container,
                }),
            );
            if depth >= MAX_DEPTH {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let child = if rel == "/" {
                        format!("/{name}")
                    } else {
                        format!("{rel}/{name}")
                    };
                    stack.push((e.path(), child, depth + 1));
                }
            }
        }
        let now = Instant::now();
        let before = std::mem::replace(&mut self.current, found);
        for (id, c) in before {
            if !self.current.contains_key(&id) && self.removed.insert(id, c).is_none() {
                self.removed_order.push_back((now, id));
            }
        }
        let evicted_before = self.evicted;
        while let Some(&(at, id)) = self.removed_order.front() {
            let full = self.removed_order.len() > self.max_removed;
            if !full && now.duration_since(at) < self.keep_removed {
                break;
            }
            self.removed_order.pop_front();
            self.removed.remove(&id);
            self.evicted += u64::from(full);
        }
        if self.evicted > evicted_before {
            let level_warn = evicted_before == 0;
            if level_warn {
                tracing::warn!(
                    "more than {} containers ended within {:?}: the oldest are forgotten \
                     early, and their events read later carry no container.id",
                    self.max_removed,
                    self.keep_removed
                );
            }
            tracing::debug!(
                evicted = self.evicted - evicted_before,
                total = self.evicted,
                "removed cgroups forgotten early: more than {} containers ended within {:?}",
                self.max_removed,
                self.keep_removed
            );
        }
        self.misses.clear();
        self.last_stat = stat;
        self.last_scan = Some(now);
        self.scans += 1;
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// Names from the kubelet's log directories, read once per scan.
#[derive(Debug, Default)]
struct KubeletIndex {
    by_container: HashMap<String, K8sNames>,
    by_pod_uid: HashMap<String, K8sNames>,
}

impl KubeletIndex {
    fn read(log_root: &Path) -> Self {
        let names = |dir: &str| -> Vec<String> {
            std::fs::read_dir(log_root.join(dir))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            by_container: names("containers")
                .iter()
                .filter_map(|n| k8s::parse_container_log(n))
                .collect(),
            by_pod_uid: names("pods")
                .iter()
                .filter_map(|n| k8s::parse_pod_dir(n))
                .collect(),
        }
    }

    fn container(&self, r: ContainerRef) -> Container {
        let k8s = self.by_container.get(&r.id).cloned().or_else(|| {
            r.pod_uid
                .as_ref()
                .and_then(|uid| self.by_pod_uid.get(uid).cloned())
        });
        Container {
            id: r.id,
            runtime: r.runtime,
            k8s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c2a9be0d44d6f8a7b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";
    const UID: &str = "0f6c1f0e-9a43-4c1e-8f43-2a9e6d1b7c55";

    /// A scratch directory tree standing in for the cgroup and log trees: the resolver
    /// only needs directories and their inode numbers, which any file system gives.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "sonde-cgroup-{tag}-{}-{}",
                std::process::id(),
                crate::unix_nanos()
            ));
            std::fs::create_dir_all(&p).expect("scratch dir");
            Self(p)
        }
        fn mkdir(&self, rel: &str) -> u64 {
            let p = self.0.join(rel.trim_start_matches('/'));
            std::fs::create_dir_all(&p).expect("mkdir");
            std::fs::metadata(&p).expect("stat").ino()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn resolves_by_inode_rescans_on_a_miss_and_remembers_removed_cgroups() {
        let cg = Scratch::new("tree");
        let logs = Scratch::new("logs");
        let svc = cg.mkdir("/system.slice/cron.service");
        let mut r = Resolver::new(cg.0.clone(), logs.0.clone(), Duration::ZERO);
        let c = r.resolve(svc).expect("service cgroup");
        assert_eq!(c.path, "/system.slice/cron.service");
        assert_eq!(c.container, None);
        assert_eq!(r.scans(), 1);
        assert!(r.resolve(svc).is_some());
        assert_eq!(r.scans(), 1, "a hit does not rescan");

        let docker = cg.mkdir(&format!("/system.slice/docker-{ID}.scope"));
        let inner = cg.mkdir(&format!("/system.slice/docker-{ID}.scope/init.scope"));
        let got = r.container(docker).expect("docker container");
        assert_eq!((got.id.as_str(), got.runtime), (ID, Runtime::Docker));
        assert_eq!(r.scans(), 2, "a new cgroup is found by a rescan on a miss");
        assert_eq!(
            r.container(inner).map(|c| c.id.clone()).as_deref(),
            Some(ID)
        );
        assert!(Arc::ptr_eq(
            &r.container(inner).expect("inner"),
            &r.container(docker).expect("outer")
        ));

        std::fs::remove_dir(cg.0.join(format!("system.slice/docker-{ID}.scope/init.scope")))
            .expect("rmdir");
        for _ in 0..3 {
            r.rescan();
            assert_eq!(
                r.container(inner).map(|c| c.id.clone()).as_deref(),
                Some(ID),
                "a removed cgroup stays known across scans"
            );
        }
        assert_eq!(r.resolve(0), None);
        assert_eq!(r.evicted(), 0);
    }

    /// A container that ended before a family read its kernel map (once per interval)
    /// still names its events, within the bounds on removed cgroups: the oldest are
    /// forgotten first when too many ended (counted), and all after `keep`.
    #[test]
    fn removed_cgroups_are_kept_bounded_and_evictions_counted() {
        let cg = Scratch::new("removed");
        let logs = Scratch::new("removed-logs");
        let mut r = Resolver::new(cg.0.clone(), logs.0.clone(), Duration::ZERO)
            .keeping_removed(2, Duration::from_secs(3600));
        let ids: Vec<(String, u64)> = (0..3)
            .map(|i| {
                let id = format!("{i}").repeat(64);
                let ino = cg.mkdir(&format!("/system.slice/docker-{id}.scope"));
                (id, ino)
            })
            .collect();
        r.rescan();
        for (id, _) in &ids {
            std::fs::remove_dir(cg.0.join(format!("system.slice/docker-{id}.scope")))
                .expect("rmdir");
            r.rescan(); // one ends per scan: the first is the oldest
        }
        let named = |r: &mut Resolver, ino: u64| r.container(ino).map(|c| c.id.clone());
        assert_eq!(named(&mut r, ids[0].1), None, "the oldest went first");
        assert_eq!(named(&mut r, ids[1].1), Some(ids[1].0.clone()));
        assert_eq!(named(&mut r, ids[2].1), Some(ids[2].0.clone()));
        assert_eq!(r.evicted(), 1);

        let mut r = Resolver::new(cg.0.clone(), logs.0.clone(), Duration::ZERO)
            .keeping_removed(100, Duration::ZERO);
        let late = cg.mkdir(&format!("/system.slice/docker-{ID}.scope"));
        r.rescan();
        std::fs::remove_dir(cg.0.join(format!("system.slice/docker-{ID}.scope"))).expect("rmdir");
        r.rescan();
        assert_eq!(r.resolve(late), None, "kept no longer than asked");
        assert_eq!(r.evicted(), 0, "ageing out is no eviction");
    }

    #[test]
    fn misses_do_not_rescan_more_often_than_asked() {
        let cg = Scratch::new("rate");
        let logs = Scratch::new("rate-logs");
        let mut r = Resolver::new(cg.0.clone(), logs.0.clone(), Duration::from_secs(3600));
        assert_eq!(r.resolve(u64::MAX), None);
        assert_eq!(r.resolve(u64::MAX - 1), None);
        assert_eq!(r.scans(), 1);
    }

    #[test]
    fn a_new_cgroup_is_found_by_its_first_event_however_recent_the_last_scan() {
        let cg = Scratch::new("changed");
        let logs = Scratch::new("changed-logs");
        let stat = cg.0.join("cgroup.stat");
        std::fs::write(&stat, "nr_descendants 0\nnr_dying_descendants 0\n").expect("stat");
        let mut r = Resolver::new(cg.0.clone(), logs.0.clone(), Duration::from_secs(3600));
        assert_eq!(r.resolve(u64::MAX), None);
        assert_eq!(r.scans(), 1);
        // A container starts: the kernel's counts move with its cgroup.
        let id = cg.mkdir(&format!("/system.slice/docker-{ID}.scope"));
        std::fs::write(&stat, "nr_descendants 2\nnr_dying_descendants 0\n").expect("stat");
        std::thread::sleep(MIN_CHANGED_RESCAN);
        assert_eq!(
            r.container(id).map(|c| c.id.clone()).as_deref(),
            Some(ID),
            "rescanned at once: the tree changed"
        );
        assert_eq!(r.scans(), 2);
        assert_eq!(r.resolve(u64::MAX - 1), None);
        assert_eq!(
            r.scans(),
            2,
            "an unchanged tree is not walked again for an unknown id"
        );
    }

    #[test]
    fn kubernetes_names_from_the_kubelet_log_directories() {
        let cg = Scratch::new("k8s");
        let logs = Scratch::new("k8s-logs");
        let uid_ = UID.replace('-', "_");
        let a = cg.mkdir(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"
        ));
        let other = "b".repeat(64);
        let b = cg.mkdir(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{other}.scope"
        ));
        logs.mkdir(&format!("/pods/shop_web-0_{UID}/app"));
        logs.mkdir(&format!("/containers/web-0_shop_app-{ID}.log"));
        let mut r = Resolver::new(cg.0.clone(), logs.0.clone(), Duration::ZERO);
        let names = |c: Option<Arc<Container>>| c.and_then(|c| c.k8s.clone());
        assert_eq!(
            names(r.container(a)),
            Some(K8sNames {
                namespace: "shop".into(),
                pod: "web-0".into(),
                container: Some("app".into())
            })
        );
        assert_eq!(
            names(r.container(b)),
            Some(K8sNames {
                namespace: "shop".into(),
                pod: "web-0".into(),
                container: None
            }),
            "no log link for this container: pod names from the pod directory"
        );
    }
}
