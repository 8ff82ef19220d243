//! Kubernetes names from the kubelet's log directories, where they are visible. Pure
//! parsing of directory entry names; the reading is in `super::Resolver`.
//!
//! The kubelet keeps `/var/log/pods/<namespace>_<pod>_<uid>/<container>/` and links
//! `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log` into it. Pod,
//! namespace and container names are DNS labels or subdomains, which never contain `_`,
//! so the separators are unambiguous.

/// `k8s.namespace.name`, `k8s.pod.name` and, where known, `k8s.container.name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct K8sNames {
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
}

/// `<namespace>_<pod>_<uid>` (a /var/log/pods entry) -> (pod UID, names).
pub fn parse_pod_dir(name: &str) -> Option<(String, K8sNames)> {
    let mut it = name.split('_');
    let (namespace, pod, uid) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || namespace.is_empty() || pod.is_empty() || uid.is_empty() {
        return None;
    }
    Some((
        uid.to_owned(),
        K8sNames {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            container: None,
        },
    ))
}

/// `<pod>_<namespace>_<container>-<id>.log` (a /var/log/containers entry) -> (container
/// id, names).
pub fn parse_container_log(name: &str) -> Option<(String, K8sNames)> {
    let stem = name.strip_suffix(".log")?;
    let mut it = stem.split('_');
    let (pod, namespace, rest) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || pod.is_empty() || namespace.is_empty() {
        return None;
    }
    let (container, id) = rest.rsplit_once('-')?;
    let id_ok = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !id_ok || container.is_empty() {
        return None;
    }
    Some((
        id.to_owned(),
        K8sNames {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            container: Some(container.to_owned()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c2a9be0d44d6f8a7b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";

    #[test]
    fn kubelet_log_directory_names() {
        let names = |ns: &str, pod: &str, c: Option<&str>| K8sNames {
            namespace: ns.into(),
            pod: pod.into(),
            container: c.map(str::to_owned),
        };
        assert_eq!(
            parse_pod_dir(
                "kube-system_coredns-5d78c9869d-x7k2p_0f6c1f0e-9a43-4c1e-8f43-2a9e6d1b7c55"
            ),
            Some((
                "0f6c1f0e-9a43-4c1e-8f43-2a9e6d1b7c55".into(),
                names("kube-system", "coredns-5d78c9869d-x7k2p", None)
            ))
        );
        assert_eq!(parse_pod_dir("no-underscores"), None);
        assert_eq!(parse_pod_dir("a_b_c_d"), None);
        assert_eq!(
            parse_container_log(&format!(
                "coredns-5d78c9869d-x7k2p_kube-system_coredns-{ID}.log"
            )),
            Some((
                ID.into(),
                names("kube-system", "coredns-5d78c9869d-x7k2p", Some("coredns"))
            ))
        );
        assert_eq!(
            parse_container_log(&format!("web-0_shop_istio-proxy-{ID}.log")),
            Some((ID.into(), names("shop", "web-0", Some("istio-proxy"))))
        );
        assert_eq!(parse_container_log("web-0_shop_app-1234.log"), None);
        assert_eq!(parse_container_log(&format!("web-0_shop_app-{ID}")), None);
        assert_eq!(parse_container_log(&format!("web-0_shop_-{ID}.log")), None);
    }
}
