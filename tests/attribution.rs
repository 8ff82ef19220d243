//! Per-process series on real probes (issue 12): keyed by executable name and container,
//! not pid, so process churn keeps its attribution, idle series expire and free their
//! slot, and the same executable in two containers gets two series.
//!
//! No container runtime runs here, so the containers are cgroups with the runtimes' own
//! path shapes in the host's cgroup v2 hierarchy (`/sys/fs/cgroup/unified` on this hybrid
//! host): a task moved into `system.slice/docker-<id>.scope` has exactly the cgroup id and
//! path the kernel gives a Docker container's task. The workloads are copies of bash under
//! unique names (connections through bash's `/dev/tcp`, file bytes through `printf`), so
//! every assertion filters to this test's own executables and port.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cgroup::{hex, random_bytes, run_in, Made};
use common::*;

const WAIT: Duration = Duration::from_secs(90);

/// Accepts `n` connections on a loopback port in a thread of its own; returns the port.
fn accept(n: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for _ in 0..n {
            match listener.accept() {
                Ok((s, _)) => drop(s),
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    port
}

/// A bash script that opens `n` connections to `port` one after the other.
fn connect_script(n: usize, port: u16) -> String {
    format!("for ((i = 0; i < {n}; i++)); do exec 3<>/dev/tcp/127.0.0.1/{port}; exec 3>&-; done")
}

/// The total a metric counted for the series matching `filter` (and lacking every key in
/// `absent`) over their whole lives: a series that expired and came back is a new
/// series with a new start, so the last value of each (attributes, start) is summed.
fn lifetime_total(exports: &[Export], name: &str, filter: &[(&str, &str)], absent: &[&str]) -> f64 {
    let mut last: std::collections::BTreeMap<(Vec<(String, String)>, u64), f64> =
        Default::default();
    for p in num_points(exports, name) {
        let keep = filter
            .iter()
            .all(|(k, v)| p.attrs.get(*k).map(String::as_str) == Some(*v))
            && absent.iter().all(|k| !p.attrs.contains_key(*k));
        if keep {
            let key = (p.attrs.clone().into_iter().collect(), p.start);
            last.insert(key, p.value); // points are oldest first
        }
    }
    last.values().sum()
}

fn pairs(f: &[(String, String)]) -> Vec<(&str, &str)> {
    f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Series (attributes, start) of `name` with `process.executable.name` = `exe`.
fn series_of(exports: &[Export], name: &str, exe: &str) -> Vec<NumPoint> {
    num_points(exports, name)
        .into_iter()
        .filter(|p| p.attrs.get("process.executable.name").map(String::as_str) == Some(exe))
        .collect()
}

/// Whether the newest export carries a `name` series of `exe`.
fn in_latest_export(exports: &[Export], name: &str, exe: &str) -> bool {
    exports
        .last()
        .is_some_and(|e| !series_of(std::slice::from_ref(e), name, exe).is_empty())
}

#[test]
fn short_lived_processes_share_one_series_per_executable_and_a_late_program_gets_its_own() {
    require_root();
    const CHURN: usize = 300;
    const LATE: usize = 10;
    let rx = OtlpReceiver::start(Proto::Grpc);
    // A limit below 300 (one series per pid would overflow) but with room for what else
    // runs on the host (the limit counts every process's series, not only this test's),
    // and a ttl short enough that the first executable's series expires while the test
    // watches.
    let yaml = "collection:\n  interval: 500ms\n  series_ttl: 2s\n\
                probes:\n  tcp:\n    series_limit: 200\n  fileio:\n    enabled: false\n\
                \x20 dns:\n    enabled: false\n";
    let mut sonde = Sonde::start(&rx.env(), Some(yaml));
    sonde.wait_started();
    rx.wait_for("a first export", WAIT, |e| !e.is_empty());

    let dir = TempDir::new("churn");
    let (churn, churn_name) = unique_exe(dir.path(), "ch", "/bin/bash");
    let (late, late_name) = unique_exe(dir.path(), "lt", "/bin/bash");
    let port = accept(CHURN + LATE);
    let p = port.to_string();
    for i in 0..CHURN {
        let st = Command::new(&churn)
            .args(["-c", &connect_script(1, port)])
            .status()
            .expect("run a short-lived client");
        assert!(st.success(), "client {i} failed: {st}");
    }
    let filter = |exe: &str| -> Vec<(String, String)> {
        vec![
            ("process.executable.name".into(), exe.to_owned()),
            ("sonde.connection.direction".into(), "outbound".into()),
            ("network.peer.port".into(), p.clone()),
        ]
    };
    let churn_f = filter(&churn_name);
    let churn_filter = pairs(&churn_f);

    // Every connection under the one executable name, then the series expires (2 s
    // without a change) and leaves the export.
    let exports = rx.wait_for("the churn series to count 300 and expire", WAIT, |e| {
        lifetime_total(e, "sonde.tcp.connection.closed", &churn_filter, &[]) == CHURN as f64
            && !in_latest_export(e, "sonde.tcp.connection.opened", &churn_name)
    });
    for metric in ["sonde.tcp.connection.opened", "sonde.tcp.connection.closed"] {
        assert_eq!(
            lifetime_total(&exports, metric, &churn_filter, &[]),
            CHURN as f64,
            "{metric}: every short-lived process counted under its executable name"
        );
    }
    let churn_series = series_of(&exports, "sonde.tcp.connection.opened", &churn_name);
    assert!(
        churn_series
            .iter()
            .all(|p| !p.attrs.contains_key("process.pid")),
        "no pid by default: {churn_series:?}"
    );
    let lives: std::collections::BTreeSet<u64> = churn_series.iter().map(|p| p.start).collect();
    assert!(
        lives.len() <= 3,
        "one series (a few lives at most), not one per process: {lives:?}"
    );

    // The late program: its own series, exact.
    let st = Command::new(&late)
        .args(["-c", &connect_script(LATE, port)])
        .status()
        .expect("run the late program");
    assert!(st.success(), "late program: {st}");
    let late_f = filter(&late_name);
    let late_filter = pairs(&late_f);
    let exports = rx.wait_for("the late program's ten connections", WAIT, |e| {
        lifetime_total(e, "sonde.tcp.connection.closed", &late_filter, &[]) == LATE as f64
    });
    assert_eq!(
        latest(&exports, "sonde.tcp.connection.opened", &late_filter),
        Some(LATE as f64),
        "the late program has a series of its own with all ten"
    );
    assert_eq!(
        lifetime_total(&exports, "sonde.tcp.connection.opened", &churn_filter, &[]),
        CHURN as f64,
        "the expired series' count is kept in what was exported before it expired"
    );
    let mut sonde = sonde;
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success());
}

// ---- fake containers ------------------------------------------------------------------

#[test]
fn the_same_executable_in_two_containers_and_a_service_gets_three_exact_series() {
    require_root();
    // Running before the containers start: their cgroups are new to its resolver.
    let rx = OtlpReceiver::start(Proto::Grpc);
    let yaml = "collection:\n  interval: 300ms\n\
                probes:\n  tcp:\n    series_limit: 100000\n  fileio:\n    process_limit: 100000\n\
                \x20 dns:\n    enabled: false\n";
    let mut sonde = Sonde::start(&rx.env(), Some(yaml));
    sonde.wait_started();
    rx.wait_for("a first export", WAIT, |e| !e.is_empty());
    let root = sonde::probe::cgroup::cgroup2_root().expect("a cgroup v2 hierarchy");
    let mut made = Made::new(root.clone());
    let docker_id = hex(&random_bytes::<32>());
    let cri_id = hex(&random_bytes::<32>());
    let u = hex(&random_bytes::<16>());
    let uid = format!(
        "{}-{}-{}-{}-{}",
        &u[..8],
        &u[8..12],
        &u[12..16],
        &u[16..20],
        &u[20..]
    );
    let suffix = unique_suffix();
    let (ns, pod, ctr) = (
        format!("ns{suffix}"),
        format!("pod{suffix}"),
        format!("app{suffix}"),
    );
    // The kubelet's log entries name the pod and the container.
    let logs = Path::new("/var/log");
    made.mkdirs(&logs.join(format!("pods/{ns}_{pod}_{uid}/{ctr}")));
    made.mkdirs(&logs.join("containers"));
    made.file(&logs.join(format!("containers/{pod}_{ns}_{ctr}-{cri_id}.log")));

    let docker = root.join(format!("system.slice/docker-{docker_id}.scope"));
    let uid_ = uid.replace('-', "_");
    let cri = root.join(format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{cri_id}.scope"
    ));
    let service = root.join(format!("system.slice/sonde-test-{suffix}.service"));
    for d in [&docker, &cri, &service] {
        made.mkdirs(d);
    }

    let dir = TempDir::new("containers");
    let (exe, name) = unique_exe(dir.path(), "ct", "/bin/bash");
    // (cgroup, connections, bytes written)
    let plan = [(&docker, 3, 1000), (&cri, 5, 3000), (&service, 2, 7000)];
    let port = accept(plan.iter().map(|p| p.1).sum());
    let mut workloads = Vec::new();
    for (i, (cg, conns, bytes)) in plan.iter().enumerate() {
        let file = dir.path().join(format!("out{i}"));
        let script = format!(
            "{}; printf '%*s' {bytes} '' > {}",
            connect_script(*conns, port),
            file.display()
        );
        workloads.push((run_in(cg, &exe, &script), file, *bytes));
    }
    for (w, file, bytes) in &mut workloads {
        let st = w.0.wait().expect("wait for a workload");
        assert!(st.success(), "workload: {st}");
        assert_eq!(std::fs::metadata(&*file).expect("output").len(), *bytes);
    }

    let p = port.to_string();
    let conn = |id: Option<&str>| -> (Vec<(&str, String)>, Vec<&str>) {
        let mut f = vec![
            ("process.executable.name", name.clone()),
            ("sonde.connection.direction", "outbound".to_owned()),
            ("network.peer.port", p.clone()),
        ];
        match id {
            Some(id) => {
                f.push(("container.id", id.to_owned()));
                (f, vec![])
            }
            None => (f, vec!["container.id"]),
        }
    };
    let bytes = |id: Option<&str>| -> (Vec<(&str, String)>, Vec<&str>) {
        let mut f = vec![
            ("process.executable.name", name.clone()),
            ("disk.io.direction", "write".to_owned()),
        ];
        match id {
            Some(id) => {
                f.push(("container.id", id.to_owned()));
                (f, vec![])
            }
            None => (f, vec!["container.id"]),
        }
    };
    let total = |e: &[Export], metric: &str, (f, absent): &(Vec<(&str, String)>, Vec<&str>)| {
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        lifetime_total(e, metric, &f, absent)
    };
    let want = [
        (Some(docker_id.as_str()), 3.0, 1000.0),
        (Some(cri_id.as_str()), 5.0, 3000.0),
        (None, 2.0, 7000.0),
    ];
    let exports = rx.wait_for("connections and bytes per container", WAIT, |e| {
        want.iter().all(|(id, c, b)| {
            total(e, "sonde.tcp.connection.closed", &conn(*id)) == *c
                && total(e, "sonde.file.io", &bytes(*id)) == *b
        })
    });
    for (id, c, b) in want {
        for metric in ["sonde.tcp.connection.opened", "sonde.tcp.connection.closed"] {
            assert_eq!(total(&exports, metric, &conn(id)), c, "{metric} of {id:?}");
        }
        assert_eq!(total(&exports, "sonde.file.io", &bytes(id)), b, "{id:?}");
    }
    let k8s = series_of(&exports, "sonde.tcp.connection.opened", &name)
        .into_iter()
        .find(|p| p.attrs.get("container.id") == Some(&cri_id))
        .expect("the CRI container's series");
    let attr = |k: &str| k8s.attrs.get(k).map(String::as_str);
    assert_eq!(attr("k8s.namespace.name"), Some(ns.as_str()));
    assert_eq!(attr("k8s.pod.name"), Some(pod.as_str()));
    assert_eq!(attr("k8s.container.name"), Some(ctr.as_str()));
    let docker_series = series_of(&exports, "sonde.file.io", &name)
        .into_iter()
        .find(|p| p.attrs.get("container.id") == Some(&docker_id))
        .expect("the docker container's file series");
    assert!(
        !docker_series.attrs.contains_key("k8s.pod.name"),
        "no Kubernetes names outside kubepods: {docker_series:?}"
    );

    drop(workloads);
    sonde.signal(libc::SIGTERM);
    assert!(sonde.wait_exit(WAIT).success());
}
