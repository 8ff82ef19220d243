//! Issue 17, point 1: a file system whose statvfs never returns does not stop the
//! exports. `sonde run` starts in a mount namespace of its own (`unshare -m`, private
//! propagation, so no other process on the host sees the mount) where a FUSE file system
//! is mounted whose server never answers: the shell opens /dev/fuse, mounts with that
//! descriptor and execs Sonde, which inherits the descriptor and never reads it. Every
//! request to that file system, statfs included, then waits for an answer that does not
//! come, as on a dead sshfs or NFS mount. The type is `fuse.sondehang`, so the host
//! source treats it as the device-backed file system it claims to be.
//!
//! What must hold: exports keep coming interval after interval, the hung mount is left
//! out of `system.filesystem.usage` (the others stay), and `sonde.collect.skipped`
//! counts the samples it was skipped in. Without the bound the first snapshot hangs and
//! no export ever arrives.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(60);
const EXPORTS: usize = 6;

#[test]
fn exports_go_on_while_a_file_system_hangs_in_statvfs() {
    require_root();
    let dir = TempDir::new("hang");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).expect("mount point");
    let mnt = mnt.to_str().expect("utf-8 path").to_owned();
    // $@ is the sonde command line that `start_wrapped` appends.
    let script = format!(
        "exec 3<>/dev/fuse && \
         mount -i -t fuse.sondehang -o fd=3,rootmode=40000,user_id=0,group_id=0 sondehang {mnt} && \
         exec \"$@\""
    );
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut env = rx.env();
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "1000".into()));
    let mut sonde = Sonde::start_wrapped(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ],
        &env,
        Some("collection:\n  ebpf_enabled: false\n"),
    );
    sonde.wait_started();

    let got = rx.wait_for(
        "exports going on while statvfs hangs on the FUSE mount",
        WAIT,
        |e| e.len() >= EXPORTS,
    );
    let skipped = |e: &[Export]| {
        latest(
            e,
            "sonde.collect.skipped",
            &[("system.filesystem.mountpoint", mnt.as_str())],
        )
    };
    assert!(
        skipped(&got).is_some_and(|n| n >= 2.0),
        "the hung mount is counted in each sample it is skipped in: {:?}\n{}",
        skipped(&got),
        sonde.stderr()
    );
    let usage = num_points(&got, "system.filesystem.usage");
    let last = usage
        .iter()
        .map(|p| p.time)
        .max()
        .expect("file system usage");
    let mounts: Vec<&str> = usage
        .iter()
        .filter(|p| p.time == last)
        .filter_map(|p| {
            p.attrs
                .get("system.filesystem.mountpoint")
                .map(String::as_str)
        })
        .collect();
    assert!(
        !mounts.contains(&mnt.as_str()),
        "the hung mount is left out"
    );
    assert!(
        mounts.contains(&"/"),
        "the other file systems stay: {mounts:?}"
    );
    // One sample waited for the bound, the later ones skip at once: the snapshots keep
    // their interval (each export carries a newer snapshot than the one before).
    let times: Vec<u64> = got.iter().map(|e| snapshot_time(&e.req)).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "every export is a new snapshot: {times:?}"
    );
    assert!(
        sonde.stderr().contains("statvfs did not return"),
        "the skip is logged:\n{}",
        sonde.stderr()
    );
}
