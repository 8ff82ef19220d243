//! Process attributes of per-process series, from their [`ProcessKey`]. Pure.

use sonde_semconv::attr;

use crate::aggregate::process::ProcessKey;
use crate::cgroup::Container;
use crate::model::Attributes;

/// Adds `process.executable.name`, `container.id` and the Kubernetes names where known,
/// and `process.pid` where the key carries it.
pub fn insert(a: &mut Attributes, k: &ProcessKey) {
    a.insert(attr::PROCESS_EXECUTABLE_NAME, k.executable.as_str());
    if let Some(pid) = k.pid {
        a.insert(attr::PROCESS_PID, i64::from(pid));
    }
    if let Some(c) = k.container.as_deref() {
        insert_container(a, c);
    }
}

/// Adds `container.id` and the Kubernetes names where known (for an event whose cgroup
/// is known but not its process).
pub fn insert_container(a: &mut Attributes, c: &Container) {
    a.insert(attr::CONTAINER_ID, c.id.as_str());
    if let Some(names) = &c.k8s {
        a.insert(attr::K8S_NAMESPACE_NAME, names.namespace.as_str());
        a.insert(attr::K8S_POD_NAME, names.pod.as_str());
        if let Some(name) = &names.container {
            a.insert(attr::K8S_CONTAINER_NAME, name.as_str());
        }
    }
}

/// `base` with the process attributes of `k`.
pub fn with(mut base: Attributes, k: &ProcessKey) -> Attributes {
    insert(&mut base, k);
    base
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{Container, K8sNames, Runtime};
    use crate::model::Value;
    use std::sync::Arc;

    fn keys(a: &Attributes) -> Vec<&str> {
        a.iter().map(|(k, _)| *k).collect()
    }

    #[test]
    fn executable_container_kubernetes_names_and_opt_in_pid() {
        let plain = with(Attributes::new(), &ProcessKey::named("nginx"));
        assert_eq!(keys(&plain), ["process.executable.name"]);

        let id = "c".repeat(64);
        let pod = Arc::new(Container {
            id: id.clone(),
            runtime: Runtime::Containerd,
            k8s: Some(K8sNames {
                namespace: "shop".into(),
                pod: "web-0".into(),
                container: Some("app".into()),
            }),
        });
        let mut k = ProcessKey::named("nginx").in_container(Some(pod));
        k.pid = Some(7);
        let a = with(Attributes::new(), &k);
        assert_eq!(
            keys(&a),
            [
                "container.id",
                "k8s.container.name",
                "k8s.namespace.name",
                "k8s.pod.name",
                "process.executable.name",
                "process.pid"
            ]
        );
        assert_eq!(a.get("container.id"), Some(&Value::Str(id)));
        assert_eq!(a.get("process.pid"), Some(&Value::Int(7)));
    }
}
