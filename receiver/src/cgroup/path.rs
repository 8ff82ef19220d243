//! Which container a cgroup v2 path belongs to, from the path alone. Pure.
//!
//! Runtimes name their cgroups in a few fixed shapes (systemd driver: a scope unit named
//! after the runtime and the container id; cgroupfs driver: a directory named after the
//! id under the runtime's or the kubelet's directory). The deepest component that names
//! a container wins, so a container's own sub-cgroups (podman's `container/`, a nested
//! `init.scope`) belong to it. Conmon and similar monitors run beside the container in
//! scopes of their own and are not containers.

/// The runtime that made the cgroup, as far as its shape tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
    /// A bare 64-hex directory under `kubepods`, whose runtime the path does not name.
    Kubernetes,
    SystemdNspawn,
    Lxc,
    /// A bare 64-hex directory elsewhere (for example ECS's `/ecs/<task>/<id>`).
    Unknown,
}

/// A container as its cgroup path names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerRef {
    /// `container.id`: the runtime's 64-hex id, or the machine name for nspawn and LXC.
    pub id: String,
    pub runtime: Runtime,
    /// The Kubernetes pod UID (with dashes) when the path is under `kubepods`.
    pub pod_uid: Option<String>,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `<prefix><64hex><suffix>` -> the id.
fn between<'a>(c: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    let id = c.strip_prefix(prefix)?.strip_suffix(suffix)?;
    is_hex64(id).then_some(id)
}

/// A container named by one path component; `parent` is the component above it.
fn component(c: &str, parent: Option<&str>, under_kubepods: bool) -> Option<(String, Runtime)> {
    let hex = |id: &str, rt| Some((id.to_owned(), rt));
    // Monitors beside the container, never the container itself.
    if c.starts_with("crio-conmon-") || c.starts_with("libpod-conmon-") {
        return None;
    }
    if let Some(id) = between(c, "docker-", ".scope") {
        return hex(id, Runtime::Docker);
    }
    if let Some(id) = between(c, "cri-containerd-", ".scope") {
        return hex(id, Runtime::Containerd);
    }
    if let Some(id) = between(c, "crio-", ".scope") {
        return hex(id, Runtime::CriO);
    }
    if let Some(id) = between(c, "libpod-", ".scope").or_else(|| between(c, "libpod-payload-", ""))
    {
        return hex(id, Runtime::Podman);
    }
    if is_hex64(c) {
        let rt = match parent {
            Some("docker") => Runtime::Docker,
            _ if under_kubepods => Runtime::Kubernetes,
            _ => Runtime::Unknown,
        };
        return hex(c, rt);
    }
    // systemd-nspawn machines register as machine-<name>.scope (machined) or run as
    // systemd-nspawn@<name>.service, both in machine.slice.
    if parent == Some("machine.slice") {
        if let Some(name) = c
            .strip_prefix("systemd-nspawn@")
            .and_then(|n| n.strip_suffix(".service"))
            .or_else(|| {
                c.strip_prefix("machine-")
                    .and_then(|n| n.strip_suffix(".scope"))
            })
        {
            if !name.is_empty() {
                return Some((unescape_systemd(name), Runtime::SystemdNspawn));
            }
        }
    }
    // LXC 4+: lxc.payload.<name>; LXC 3: lxc/<name>.
    if let Some(name) = c.strip_prefix("lxc.payload.") {
        if !name.is_empty() {
            return Some((name.to_owned(), Runtime::Lxc));
        }
    }
    if parent == Some("lxc") && !c.is_empty() {
        return Some((c.to_owned(), Runtime::Lxc));
    }
    None
}

/// systemd unit-name escaping: `\x2d` is `-`, and so on.
fn unescape_systemd(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 2..i + 4)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match code {
            Some(b) if b.is_ascii() => {
                out.push(char::from(b));
                rest = &rest[i + 4..];
            }
            _ => {
                out.push_str("\\x");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The pod UID of a kubelet pod cgroup component: `pod<uid>` (cgroupfs driver) or
/// `kubepods-<qos>-pod<uid with _ for ->.slice` (systemd driver).
fn pod_uid(c: &str) -> Option<String> {
    let raw = if let Some(rest) = c.strip_suffix(".slice") {
        let i = rest.rfind("-pod")?;
        &rest[i + 4..]
    } else {
        c.strip_prefix("pod")?
    };
    let uid = raw.replace('_', "-");
    let ok = uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    ok.then_some(uid)
}

/// The container a cgroup path (relative to the v2 root or absolute inside it) belongs
/// to; `None` for host processes, systemd services and anything else.
pub fn container_of(path: &str) -> Option<ContainerRef> {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let kube = parts.iter().position(|c| c.starts_with("kubepods"));
    for i in (0..parts.len()).rev() {
        let parent = i.checked_sub(1).map(|p| parts[p]);
        let under_kubepods = kube.is_some_and(|k| k < i);
        if let Some((id, runtime)) = component(parts[i], parent, under_kubepods) {
            let pod_uid = if under_kubepods {
                parts[..i].iter().rev().find_map(|c| pod_uid(c))
            } else {
                None
            };
            return Some(ContainerRef {
                id,
                runtime,
                pod_uid,
            });
        }
    }
    None
}

/// The systemd unit of a cgroup path outside containers: its deepest `.service`
/// component (`sonde.systemd.unit`), if any.
pub fn systemd_unit(path: &str) -> Option<&str> {
    path.rsplit('/').find(|c| c.ends_with(".service"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c2a9be0d44d6f8a7b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";

    type Want<'a> = Option<(&'a str, Runtime, Option<&'a str>)>;

    fn got(path: &str) -> Option<(String, Runtime, Option<String>)> {
        container_of(path).map(|c| (c.id, c.runtime, c.pod_uid))
    }

    #[test]
    fn real_runtime_path_shapes() {
        let uid = "0f6c1f0e-9a43-4c1e-8f43-2a9e6d1b7c55";
        let uid_ = uid.replace('-', "_");
        let cases: Vec<(String, Want)> = vec![
            // Docker, systemd driver (cgroup v2 default) and cgroupfs driver.
            (
                format!("/system.slice/docker-{ID}.scope"),
                Some((ID, Runtime::Docker, None)),
            ),
            (format!("/docker/{ID}"), Some((ID, Runtime::Docker, None))),
            // Docker-in-docker: the innermost container.
            (
                format!("/docker/{}/docker/{ID}", "a".repeat(64)),
                Some((ID, Runtime::Docker, None)),
            ),
            // containerd CRI (systemd driver), with the pod's UID.
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"
                ),
                Some((ID, Runtime::Containerd, Some(uid))),
            ),
            // Kubelet cgroupfs driver: a bare id under the pod directory.
            (
                format!("/kubepods/besteffort/pod{uid}/{ID}"),
                Some((ID, Runtime::Kubernetes, Some(uid))),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope"),
                Some((ID, Runtime::Containerd, Some(uid))),
            ),
            // CRI-O: the container, not its conmon.
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{ID}.scope"
                ),
                Some((ID, Runtime::CriO, Some(uid))),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-conmon-{ID}.scope"
                ),
                None,
            ),
            // Podman: rootful scope, its nested container cgroup, rootless, conmon.
            (
                format!("/machine.slice/libpod-{ID}.scope"),
                Some((ID, Runtime::Podman, None)),
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                Some((ID, Runtime::Podman, None)),
            ),
            (
                format!(
                    "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
                ),
                Some((ID, Runtime::Podman, None)),
            ),
            (
                format!("/machine.slice/libpod-conmon-{ID}.scope"),
                None,
            ),
            (
                format!("/libpod_parent/libpod-payload-{ID}"),
                Some((ID, Runtime::Podman, None)),
            ),
            // ECS-like: a bare id whose runtime the path does not name.
            (
                format!("/ecs/7e1c4a3b2f/{ID}"),
                Some((ID, Runtime::Unknown, None)),
            ),
            // systemd-nspawn and LXC: the machine name is the id.
            (
                "/machine.slice/systemd-nspawn@web\\x2d1.service".into(),
                Some(("web-1", Runtime::SystemdNspawn, None)),
            ),
            (
                "/machine.slice/machine-db.scope/payload".into(),
                Some(("db", Runtime::SystemdNspawn, None)),
            ),
            (
                "/lxc.payload.c1/system.slice/cron.service".into(),
                Some(("c1", Runtime::Lxc, None)),
            ),
            ("/lxc/c2".into(), Some(("c2", Runtime::Lxc, None))),
            // Not containers.
            ("/".into(), None),
            ("".into(), None),
            ("/system.slice/cron.service".into(), None),
            ("/user.slice/user-1000.slice/session-3.scope".into(), None),
            (format!("/system.slice/docker-{}.scope", &ID[..12]), None),
            (format!("/system.slice/docker-{ID}.scopex"), None),
            ("/kubepods.slice/kubepods-burstable.slice".into(), None),
            ("/system.slice/docker.service".into(), None),
        ];
        for (path, want) in cases {
            let want = want.map(|(id, rt, uid)| (id.to_owned(), rt, uid.map(str::to_owned)));
            assert_eq!(got(&path), want, "{path}");
        }
    }

    #[test]
    fn systemd_units_outside_containers() {
        assert_eq!(
            systemd_unit("/system.slice/nginx.service"),
            Some("nginx.service")
        );
        assert_eq!(
            systemd_unit("/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope"),
            Some("user@1000.service")
        );
        assert_eq!(
            systemd_unit("/user.slice/user-1000.slice/session-3.scope"),
            None
        );
    }
}
