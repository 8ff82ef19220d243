//! What a probe recorded about a task (thread group, comm, cgroup id) -> the key of its
//! per-process series. One [`Attribution`] is made by the agent and handed to every
//! family, so they share one resolver (one tree walk, one rescan budget) and one
//! `attributes.process_pid` setting.
//!
//! Each clone keeps a small cache of its own (cgroup id -> container), valid until the
//! shared resolver scans again (its generation, one atomic load per event): an event
//! whose id is cached takes no lock and hashes one integer (foldhash); the resolver's lock
//! is taken once per id per scan.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Container, Resolver, SharedResolver};
use crate::aggregate::process::ProcessKey;

/// Ids a clone caches between two scans; past it the cache starts over (it only saves
/// lookups: nothing is lost when it is emptied).
const LOCAL_CAPACITY: usize = 4096;

/// How per-process series are keyed on this host.
#[derive(Debug, Default)]
pub struct Attribution {
    /// `None` without a cgroup v2 hierarchy (or in tests): no container attributes.
    resolver: Option<(SharedResolver, Arc<AtomicU64>)>,
    /// Whether keys carry `process.pid`.
    pid: bool,
    /// This holder's answers, of the resolver's generation `generation`.
    local: foldhash::HashMap<u64, Option<Arc<Container>>>,
    generation: u64,
}

impl Clone for Attribution {
    /// The same resolver and setting; a cache of its own, empty.
    fn clone(&self) -> Self {
        Self {
            resolver: self.resolver.clone(),
            pid: self.pid,
            local: foldhash::HashMap::default(),
            generation: 0,
        }
    }
}

impl Attribution {
    pub fn new(resolver: Option<SharedResolver>, pid: bool) -> Self {
        let resolver = resolver.map(|r| {
            let generation = r.lock().unwrap_or_else(|e| e.into_inner()).generation();
            (r, generation)
        });
        Self {
            resolver,
            pid,
            local: foldhash::HashMap::default(),
            generation: 0,
        }
    }

    /// The host's: its cgroup v2 hierarchy (see [`Resolver::for_host`]), and `pid` from
    /// `attributes.process_pid`.
    pub fn for_host(pid: bool) -> Self {
        let resolver = Resolver::for_host();
        if resolver.is_none() {
            tracing::warn!(
                "no cgroup v2 hierarchy in /proc/self/mountinfo: per-process series get no \
                 container.id; mount cgroup2 (pure v2, or hybrid at /sys/fs/cgroup/unified)"
            );
        }
        Self::new(resolver.map(Resolver::shared), pid)
    }

    /// Whether keys carry `process.pid`.
    pub fn with_pid(&self) -> bool {
        self.pid
    }

    /// The mount point of the v2 hierarchy the resolver walks (`None` without one): paths
    /// in /proc/PID/cgroup are relative to it.
    pub fn root(&self) -> Option<std::path::PathBuf> {
        let (resolver, _) = self.resolver.as_ref()?;
        let r = resolver.lock().unwrap_or_else(|e| e.into_inner());
        Some(r.root().to_path_buf())
    }

    /// The container of a cgroup id (0: the probe could not read it).
    pub fn container(&mut self, cgroup_id: u64) -> Option<Arc<Container>> {
        let (resolver, generation) = self.resolver.as_ref()?;
        if cgroup_id == 0 {
            return None;
        }
        // Read before the lookup: a scan during it makes the next event start over.
        let now = generation.load(Ordering::Acquire);
        if now != self.generation {
            self.local.clear();
            self.generation = now;
        }
        if let Some(c) = self.local.get(&cgroup_id) {
            return c.clone();
        }
        let (cgroup, settled) = resolver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lookup(cgroup_id);
        let container = cgroup.and_then(|c| c.container.clone());
        if settled {
            if self.local.len() >= LOCAL_CAPACITY {
                self.local.clear();
            }
            self.local.insert(cgroup_id, container.clone());
        }
        container
    }

    /// The series key of thread group `tgid` running `executable` in cgroup `cgroup_id`.
    pub fn key(&mut self, tgid: u32, executable: String, cgroup_id: u64) -> ProcessKey {
        ProcessKey {
            pid: self.pid.then_some(tgid),
            ..self.key_without_pid(executable, cgroup_id)
        }
    }

    /// The series key of `executable` in cgroup `cgroup_id` for kernel tables that keep
    /// no pid (a key per pid would churn): never `process.pid`.
    pub fn key_without_pid(&mut self, executable: impl Into<String>, cgroup_id: u64) -> ProcessKey {
        ProcessKey::named(executable).in_container(self.container(cgroup_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;
    use std::time::Duration;

    /// A scratch tree standing in for the v2 hierarchy (the resolver needs only
    /// directories and their inodes) with a Docker-shaped cgroup `id`: the tree's root and
    /// the cgroup's id.
    fn tree_with(tag: &str, id: &str) -> (PathBuf, u64) {
        let root = std::env::temp_dir().join(format!(
            "sonde-attribution-{tag}-{}-{}",
            std::process::id(),
            crate::unix_nanos()
        ));
        let dir = root.join(format!("system.slice/docker-{id}.scope"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        (root, std::fs::metadata(&dir).expect("stat").ino())
    }

    #[test]
    fn keys_carry_the_container_of_the_cgroup_and_the_pid_only_when_asked() {
        let id = "e".repeat(64);
        let (root, ino) = tree_with("keys", &id);
        let svc = std::fs::metadata(root.join("system.slice"))
            .expect("stat")
            .ino();
        let resolver = Resolver::new(root.clone(), PathBuf::from("/nonexistent"), Duration::ZERO);
        let mut a = Attribution::new(Some(resolver.shared()), false);
        let k = a.key(42, "curl".into(), ino);
        assert_eq!(k.container_id(), Some(id.as_str()));
        assert_eq!(k.pid, None);
        assert_eq!(a.key(42, "curl".into(), svc), ProcessKey::named("curl"));
        assert_eq!(a.key(42, "curl".into(), 0), ProcessKey::named("curl"));
        let mut with_pid = Attribution::new(None, true);
        assert_eq!(with_pid.key(42, "curl".into(), ino).pid, Some(42));
        assert_eq!(with_pid.key(42, "curl".into(), ino).container, None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn answers_are_cached_per_holder_until_the_resolver_scans_again() {
        let id = "c".repeat(64);
        let (root, ino) = tree_with("cache", &id);
        // No cgroup.stat here: a miss rescans by the hour only, so it is settled.
        let resolver = Resolver::new(
            root.clone(),
            PathBuf::from("/nonexistent"),
            Duration::from_secs(3600),
        )
        .shared();
        resolver.lock().expect("lock").rescan(); // the first scan, before any holder
        let lookups = || resolver.lock().expect("lock").lookups();
        let mut a = Attribution::new(Some(resolver.clone()), false);
        for _ in 0..1000 {
            assert_eq!(a.container(ino).map(|c| c.id.clone()), Some(id.clone()));
            assert_eq!(a.container(u64::MAX), None);
        }
        assert_eq!(lookups(), 2, "one lookup per id, then the holder's cache");
        let mut b = a.clone();
        assert!(b.container(ino).is_some());
        assert_eq!(lookups(), 3, "a clone starts with a cache of its own");

        // A scan (here forced; on a host a miss in a changed tree) empties every cache:
        // a cgroup made since is found, and answers are asked for again once.
        let late = root.join(format!("system.slice/docker-{}.scope", "d".repeat(64)));
        std::fs::create_dir_all(&late).expect("mkdir");
        let late_ino = std::fs::metadata(&late).expect("stat").ino();
        assert_eq!(a.container(late_ino), None, "unknown until the next scan");
        resolver.lock().expect("lock").rescan();
        assert_eq!(
            a.container(late_ino).map(|c| c.id.clone()),
            Some("d".repeat(64))
        );
        assert!(a.container(ino).is_some());
        assert_eq!(lookups(), 6);
        assert_eq!(a.container(0), None);
        assert_eq!(lookups(), 6, "id 0 never asks");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_miss_while_a_rescan_is_held_back_is_asked_again() {
        let (root, _) = tree_with("unsettled", &"f".repeat(64));
        let stat = root.join("cgroup.stat");
        std::fs::write(&stat, "nr_descendants 0\n").expect("stat");
        let resolver = Resolver::new(
            root.clone(),
            PathBuf::from("/nonexistent"),
            Duration::from_secs(3600),
        )
        .shared();
        let mut a = Attribution::new(Some(resolver.clone()), false);
        assert_eq!(a.container(u64::MAX), None); // the first scan
                                                 // The tree changes: the next miss rescans, the one right after it is held back
                                                 // (at most one rescan of a changed tree per 10 ms) and must not be cached.
        std::fs::write(&stat, "nr_descendants 1\n").expect("stat");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(a.container(u64::MAX - 1), None);
        std::fs::write(&stat, "nr_descendants 2\n").expect("stat");
        assert_eq!(a.container(u64::MAX - 2), None);
        let before = resolver.lock().expect("lock").lookups();
        assert_eq!(a.container(u64::MAX - 2), None);
        assert_eq!(
            resolver.lock().expect("lock").lookups(),
            before + 1,
            "an unsettled miss goes back to the resolver"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
