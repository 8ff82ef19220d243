//! What a probe recorded about a task (thread group, comm, cgroup id) -> the key of its
//! per-process series. One [`Attribution`] is made by the agent and handed to every
//! family, so they share one resolver (one cache, one rescan budget) and one
//! `attributes.process_pid` setting.

use std::sync::Arc;

use super::{Container, Resolver, SharedResolver};
use crate::aggregate::process::ProcessKey;

/// How per-process series are keyed on this host.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    /// `None` without a cgroup v2 hierarchy (or in tests): no container attributes.
    resolver: Option<SharedResolver>,
    /// Whether keys carry `process.pid`.
    pid: bool,
}

impl Attribution {
    pub fn new(resolver: Option<SharedResolver>, pid: bool) -> Self {
        Self { resolver, pid }
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

    /// The container of a cgroup id (0: the probe could not read it).
    pub fn container(&self, cgroup_id: u64) -> Option<Arc<Container>> {
        let r = self.resolver.as_ref()?;
        r.lock()
            .unwrap_or_else(|e| e.into_inner())
            .container(cgroup_id)
    }

    /// The series key of thread group `tgid` running `executable` in cgroup `cgroup_id`.
    pub fn key(&self, tgid: u32, executable: String, cgroup_id: u64) -> ProcessKey {
        ProcessKey {
            pid: self.pid.then_some(tgid),
            ..self.key_without_pid(executable, cgroup_id)
        }
    }

    /// The series key of `executable` in cgroup `cgroup_id` for kernel tables that keep
    /// no pid (a key per pid would churn): never `process.pid`.
    pub fn key_without_pid(&self, executable: impl Into<String>, cgroup_id: u64) -> ProcessKey {
        ProcessKey::named(executable).in_container(self.container(cgroup_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn keys_carry_the_container_of_the_cgroup_and_the_pid_only_when_asked() {
        let root = std::env::temp_dir().join(format!(
            "sonde-attribution-{}-{}",
            std::process::id(),
            crate::unix_nanos()
        ));
        let id = "e".repeat(64);
        let dir = root.join(format!("system.slice/docker-{id}.scope"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let ino = std::fs::metadata(&dir).expect("stat").ino();
        let svc = std::fs::metadata(root.join("system.slice"))
            .expect("stat")
            .ino();
        let resolver = Resolver::new(root.clone(), PathBuf::from("/nonexistent"), Duration::ZERO);
        let a = Attribution::new(Some(resolver.shared()), false);
        let k = a.key(42, "curl".into(), ino);
        assert_eq!(k.container_id(), Some(id.as_str()));
        assert_eq!(k.pid, None);
        assert_eq!(a.key(42, "curl".into(), svc), ProcessKey::named("curl"));
        assert_eq!(a.key(42, "curl".into(), 0), ProcessKey::named("curl"));
        let with_pid = Attribution::new(None, true);
        assert_eq!(with_pid.key(42, "curl".into(), ino).pid, Some(42));
        assert_eq!(with_pid.key(42, "curl".into(), ino).container, None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
