//! Issue 13, operating safely: config errors that fail `sonde check`, the durable export
//! queue across a SIGKILL, health endpoints, capabilities after attach, hostile DNS input.

mod common;

use std::process::Command;

use common::TempDir;

/// `sonde check --config FILE` on an invalid file: exit code 2 (not 0, not the "no eBPF
/// here" 1), the key path in the message, no Rust type name. Runs as any user.
#[test]
fn check_fails_on_an_invalid_config_with_the_key_path() {
    let dir = TempDir::new("check");
    for (yaml, key) in [
        ("probes: [1]\n", "probes"),
        ("probes:\n  procss: {}\n", "probes.procss"),
        (
            "exporters:\n  otlp:\n    backlog_max_points: -3\n",
            "exporters.otlp.backlog_max_points",
        ),
        (
            "collection:\n  interval: 1 fortnight\n",
            "collection.interval",
        ),
        ("probes: [\n", "probes"),
    ] {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, yaml).expect("write config");
        let out = Command::new(env!("CARGO_BIN_EXE_sonde"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("run sonde check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {stdout}");
        assert!(stdout.contains("INVALID"), "{yaml}: {stdout}");
        assert!(
            stdout.contains(key),
            "{yaml}: `{key}` not named in {stdout}"
        );
        for rust in ["Raw", "struct ", "usize"] {
            assert!(!stdout.contains(rust), "{yaml}: `{rust}` in {stdout}");
        }
    }

    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "collection:\n  interval: 5s\n").expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_sonde"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .expect("run sonde check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("is valid"), "{stdout}");
}
