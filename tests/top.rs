//! What a person at the terminal sees: `sonde run`'s compact console summary with no
//! collector (and what happens when its reader goes away), and `sonde top`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_root, TempDir};

/// A child killed on drop, so a failing assertion leaves nothing running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `sonde run | head`: the console prints the banner once and then short summaries; when
/// the reader closes the pipe Sonde releases its probes and exits 0 instead of panicking.
#[test]
fn console_summary_then_closed_stdout_ends_cleanly() {
    require_root();
    let dir = TempDir::new("console");
    let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sonde"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")) {
        cmd.env_remove(k);
    }
    let mut child = Reaped(
        cmd.arg("run")
            .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
            .env("SONDE_LOG", "sonde=info,warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn sonde"),
    );
    let log = || std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    let out = child.0.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(out).lines();
    let mut text = Vec::new();
    // Banner, then three summaries (the first has no rates yet).
    while text
        .iter()
        .filter(|l: &&String| l.starts_with("── sonde"))
        .count()
        < 4
    {
        match lines.next() {
            Some(Ok(l)) => text.push(l),
            other => panic!(
                "stdout ended early ({other:?}):\n{}\n{}",
                text.join("\n"),
                log()
            ),
        }
    }
    drop(lines); // the reader goes away, as `head` does
    let all = text.join("\n");
    for needle in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "sonde top",
        "--verbose-console",
    ] {
        assert!(all.contains(needle), "banner lacks {needle}:\n{all}");
    }
    assert_eq!(
        text.iter().filter(|l| l.contains("sonde top")).count(),
        1,
        "the banner is said once:\n{all}"
    );
    let blocks: Vec<&[String]> = text.split(|l| l.starts_with("── sonde")).skip(1).collect();
    for b in &blocks {
        assert!(b.len() < 40, "a summary of {} lines:\n{all}", b.len() + 1);
    }
    assert!(
        blocks
            .iter()
            .skip(1)
            .any(|b| b.iter().any(|l| l.starts_with("host       cpu"))),
        "no host CPU headline after the first interval:\n{all}"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "sonde kept running with stdout closed:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log();
    assert!(status.success(), "sonde exited {status}:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("probes detached"),
        "probes not released in order:\n{log}"
    );
}
