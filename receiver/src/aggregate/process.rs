//! The key of per-process series (`sonde.tcp.*`, `sonde.file.io`, `sonde.dns.queries`,
//! `process.disk.io`, and the container families built on them): the executable name
//! and the container, not the pid. Pids churn: a pid in every key turned a busy host's
//! attribution into overflow within minutes (design decision 10). `pid` is set only when
//! `attributes.process_pid` asks for it. Pure data: made by `cgroup::Attribution` (which
//! resolves cgroup ids), mapped to attributes by `mapping::process`.

use std::sync::Arc;

use crate::cgroup::Container;

/// Who a per-process series belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    /// `process.executable.name`: the task's comm as the kernel recorded it.
    pub executable: String,
    /// `container.id` (and Kubernetes names) when the task's cgroup is a container's.
    pub container: Option<Arc<Container>>,
    /// `process.pid`, only under `attributes.process_pid: true`.
    pub pid: Option<u32>,
}

impl ProcessKey {
    /// A process outside any container, without its pid.
    pub fn named(executable: impl Into<String>) -> Self {
        Self {
            executable: executable.into(),
            container: None,
            pid: None,
        }
    }

    /// The same key in `container`.
    pub fn in_container(self, container: Option<Arc<Container>>) -> Self {
        Self { container, ..self }
    }

    /// The container's id, if any.
    pub fn container_id(&self) -> Option<&str> {
        self.container.as_deref().map(|c| c.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Runtime;
    use std::collections::HashSet;

    #[test]
    fn processes_of_one_executable_share_a_key_per_container() {
        let c = Arc::new(Container {
            id: "a".repeat(64),
            runtime: Runtime::Docker,
            k8s: None,
        });
        let keys: HashSet<ProcessKey> = [
            ProcessKey::named("curl"),
            ProcessKey::named("curl"),
            ProcessKey::named("curl").in_container(Some(c.clone())),
            // Another Arc of an equal container is the same key.
            ProcessKey::named("curl").in_container(Some(Arc::new((*c).clone()))),
            ProcessKey::named("wget"),
        ]
        .into_iter()
        .collect();
        assert_eq!(keys.len(), 3);
        assert_eq!(
            ProcessKey::named("x").in_container(Some(c)).container_id(),
            Some("a".repeat(64).as_str())
        );
    }
}
