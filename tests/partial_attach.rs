//! Issue 17, point 5: a family that attaches only partly leaves the /proc side's metrics
//! in place of those its missing probes would have fed. Two programs are made to fail
//! (`SONDE_FAIL_PROBES`, a hook of debug builds: no kernel here refuses these programs
//! on its own): `fileio.block_issue`, which `system.disk.*` and `process.disk.io` need,
//! and `process.fork`, which `system.process.created` needs. The other programs of both
//! families attach and keep exporting.
//!
//! How the side is told: the /proc totals count since boot (their start time is the
//! boot time), the probes' since the agent started.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(60);

fn boot_unix_nano() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let secs: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .expect("btime");
    secs * 1_000_000_000
}

#[test]
fn proc_metrics_stand_in_for_probes_that_did_not_attach() {
    require_root();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut env = rx.env();
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "1000".into()));
    env.push((
        "SONDE_FAIL_PROBES",
        "fileio.block_issue,process.fork".into(),
    ));
    let mut sonde = Sonde::start(&env, None);
    sonde.wait_started();
    let boot = boot_unix_nano();
    let status = |e: &[Export], probe: &str, state: &str| {
        latest(
            e,
            "sonde.probe.status",
            &[("sonde.probe", probe), ("sonde.probe.state", state)],
        )
    };
    let got = rx.wait_for("two exports with disk and process counts", WAIT, |e| {
        e.len() >= 2 && latest(e, "system.disk.io", &[]).is_some()
    });
    for (probe, state) in [
        ("fileio.block_issue", "failed"),
        ("process.fork", "failed"),
        ("fileio.block_complete", "attached"),
        ("process.exec", "attached"),
    ] {
        assert_eq!(
            status(&got, probe, state),
            Some(1.0),
            "{probe} {state}:\n{}",
            sonde.stderr()
        );
    }
    for name in [
        "system.disk.io",
        "system.disk.operations",
        "system.disk.operation_time",
        "system.process.created",
    ] {
        let points = num_points(&got, name);
        assert!(!points.is_empty(), "{name} is exported");
        assert!(
            points.iter().all(|p| p.start == boot),
            "{name} comes from /proc (since boot {boot}): {:?}",
            points.iter().map(|p| p.start).collect::<Vec<_>>()
        );
    }
    assert!(
        latest(&got, "system.process.created", &[]).is_some_and(|n| n > 0.0),
        "the kernel's own count of processes since boot"
    );
    // The family's attached programs go on: file I/O is still the probes'.
    let file_ops = num_points(&got, "sonde.file.operations");
    assert!(
        !file_ops.is_empty() && file_ops.iter().all(|p| p.start > boot),
        "sonde.file.operations still comes from the fileio probes"
    );
}
