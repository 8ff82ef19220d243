//! The OTLP exporter's failure handling against a collector stub that answers what each
//! test scripts (429, 503 with Retry-After in seconds or as a date, 400, gRPC codes with
//! and without RetryInfo, partial success), over real gRPC and HTTP/protobuf sockets.
//! The rules are the OTLP specification's: retry what can heal after the server's delay or
//! a jittered backoff, never retry what the server refused, log partial success.
//!
//! Sonde runs in fallback mode (no probes): only the export path is under test, and the
//! /proc metrics give every snapshot plenty of points.

mod common;

use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(30);
const FALLBACK: &str = "collection:\n  ebpf_enabled: false\n";

fn start(rx: &OtlpReceiver) -> Sonde {
    let mut env = rx.env();
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "300".into()));
    let mut sonde = Sonde::start(&env, Some(FALLBACK));
    sonde.wait_started();
    sonde
}

/// The attempts at each snapshot, in the order the snapshots were first tried.
fn by_snapshot(attempts: &[Attempt]) -> Vec<(u64, Vec<Attempt>)> {
    let mut out: Vec<(u64, Vec<Attempt>)> = Vec::new();
    for a in attempts {
        let t = snapshot_time(&a.req);
        match out.iter_mut().find(|(time, _)| *time == t) {
            Some((_, v)) => v.push(a.clone()),
            None => out.push((t, vec![a.clone()])),
        }
    }
    out
}

fn gap(a: &Attempt, b: &Attempt) -> Duration {
    b.at.duration_since(a.at)
}

fn outcome(e: &[Export], which: &str) -> Option<f64> {
    latest(e, "sonde.export.points", &[("sonde.export.outcome", which)])
}

#[test]
fn http_429_and_503_are_retried_after_backoff_or_the_retry_after_delay_in_seconds_or_as_a_date() {
    let throttle = |status, retry_after| Reply::Http {
        status,
        retry_after,
        message: "collector is busy",
    };
    let rx = OtlpReceiver::start_scripted(
        Proto::Http,
        vec![
            throttle(429, None),
            throttle(429, None),
            throttle(503, Some(RetryAfter::Seconds(2))),
            throttle(429, Some(RetryAfter::DateIn(Duration::from_secs(3)))),
        ],
    );
    let mut sonde = start(&rx);
    let got = rx.wait_for_attempts("the first snapshot delivered", WAIT, |a| {
        a.len() >= 6 && by_snapshot(a).len() >= 2
    });
    let snaps = by_snapshot(&got);
    let first = &snaps[0].1;
    assert_eq!(
        first.len(),
        5,
        "four refusals then success, all for the oldest snapshot: {first:#?}"
    );
    // Backoff without a server delay: 0.5 s then 1 s nominal, jittered by +-50 %.
    assert!(gap(&first[0], &first[1]) >= Duration::from_millis(250));
    assert!(gap(&first[1], &first[2]) >= Duration::from_millis(500));
    // Retry-After: 2 is waited in full.
    assert!(
        gap(&first[2], &first[3]) >= Duration::from_secs(2),
        "{:?}",
        gap(&first[2], &first[3])
    );
    // An HTTP date 3 s ahead (whole seconds, so at least 2 s once truncated).
    assert!(
        gap(&first[3], &first[4]) >= Duration::from_millis(1900),
        "{:?}",
        gap(&first[3], &first[4])
    );
    assert!(matches!(first[4].reply, Reply::Ok));
    // The snapshots queued meanwhile follow, and the failed tries were counted.
    let points = point_count(&first[0].req) as f64;
    let got = rx.wait_for("retries counted", WAIT, |e| {
        outcome(e, "retried") >= Some(4.0 * points)
    });
    assert_eq!(outcome(&got, "dropped"), Some(0.0));
    let log = sonde.stderr();
    assert!(log.contains("will retry"), "{log}");
    assert!(
        log.contains("collector is busy"),
        "the collector's reason is logged: {log}"
    );
    sonde.wait_log("OTLP export recovered", WAIT);
}

#[test]
fn http_400_drops_the_batch_and_partial_success_is_logged_neither_is_retried() {
    let rx = OtlpReceiver::start_scripted(
        Proto::Http,
        vec![
            Reply::Http {
                status: 400,
                retry_after: None,
                message: "metric name is empty",
            },
            Reply::Partial {
                rejected: 2,
                message: "2 points had no unit",
            },
        ],
    );
    let mut sonde = start(&rx);
    let got = rx.wait_for_attempts("four snapshots tried", WAIT, |a| by_snapshot(a).len() >= 4);
    let snaps = by_snapshot(&got);
    for (i, (_, tries)) in snaps.iter().take(3).enumerate() {
        assert_eq!(tries.len(), 1, "snapshot {i} tried once: {tries:#?}");
    }
    let refused = point_count(&snaps[0].1[0].req) as f64;
    let got = rx.wait_for("the drops counted", WAIT, |e| {
        outcome(e, "dropped") >= Some(refused + 2.0)
    });
    assert_eq!(outcome(&got, "dropped"), Some(refused + 2.0));
    assert_eq!(outcome(&got, "retried"), Some(0.0));
    sonde.wait_log("metric name is empty", WAIT);
    sonde.wait_log("2 points had no unit", WAIT);
    let log = sonde.stderr();
    assert!(log.contains("HTTP 400"), "{log}");
    assert!(log.contains("rejected 2 of"), "{log}");
    assert!(!log.contains("will retry"), "{log}");
}

#[test]
fn grpc_resource_exhausted_is_retried_only_with_retry_info_and_after_its_delay() {
    let status = |code, retry_delay, message| Reply::Grpc {
        code,
        retry_delay,
        message,
    };
    let rx = OtlpReceiver::start_scripted(
        Proto::Grpc,
        vec![
            // No RetryInfo: the server cannot recover, so the batch is dropped.
            status(tonic::Code::ResourceExhausted, None, "quota gone for good"),
            // RetryInfo: throttling, retried after its delay.
            status(
                tonic::Code::ResourceExhausted,
                Some(Duration::from_secs(2)),
                "slow down",
            ),
            status(tonic::Code::Unavailable, None, "restarting"),
            Reply::Partial {
                rejected: 1,
                message: "1 point over the series limit",
            },
            status(tonic::Code::InvalidArgument, None, "bad data"),
        ],
    );
    let mut sonde = start(&rx);
    let got = rx.wait_for_attempts("four snapshots tried", WAIT, |a| by_snapshot(a).len() >= 4);
    let snaps = by_snapshot(&got);
    let tries: Vec<usize> = snaps.iter().map(|(_, t)| t.len()).collect();
    assert_eq!(&tries[..3], &[1, 3, 1], "{snaps:#?}");
    let second = &snaps[1].1;
    assert!(
        gap(&second[0], &second[1]) >= Duration::from_secs(2),
        "RetryInfo's delay is honoured: {:?}",
        gap(&second[0], &second[1])
    );
    // After a 2 s server delay, backoff continues from 4 s (jittered down to 2 s at least).
    assert!(gap(&second[1], &second[2]) >= Duration::from_secs(2));
    let dropped = (point_count(&snaps[0].1[0].req) + 1 + point_count(&snaps[2].1[0].req)) as f64;
    let got = rx.wait_for("the drops counted", WAIT, |e| {
        outcome(e, "dropped") >= Some(dropped)
    });
    assert_eq!(outcome(&got, "dropped"), Some(dropped));
    let retried = 2.0 * point_count(&second[0].req) as f64;
    assert_eq!(outcome(&got, "retried"), Some(retried));
    for needle in [
        "RESOURCE_EXHAUSTED: quota gone for good",
        "1 point over the series limit",
        "INVALID_ARGUMENT: bad data",
    ] {
        sonde.wait_log(needle, WAIT);
    }
}

#[test]
fn a_tls_failure_is_dropped_with_a_clear_error_not_retried_forever() {
    for proto in [Proto::Http, Proto::Grpc] {
        let server = NotTlsServer::start();
        let mut env = vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("https://127.0.0.1:{}", server.port),
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                match proto {
                    Proto::Grpc => "grpc".into(),
                    Proto::Http => "http/protobuf".into(),
                },
            ),
        ];
        env.push(("OTEL_METRIC_EXPORT_INTERVAL", "300".into()));
        let mut sonde = Sonde::start(&env, Some(FALLBACK));
        sonde.wait_started();
        sonde.wait_log("cannot succeed as configured", WAIT);
        // A few more intervals: each snapshot is tried and dropped, none is held.
        let seen = server.connections();
        let deadline = Instant::now() + WAIT;
        while server.connections() < seen + 3 {
            assert!(Instant::now() < deadline, "{proto:?}: no further attempts");
            std::thread::sleep(Duration::from_millis(50));
        }
        sonde.signal(libc::SIGTERM);
        assert!(sonde.wait_exit(WAIT).success(), "{}", sonde.stderr());
        let log = sonde.stderr();
        assert!(log.contains("TLS"), "{proto:?}: the log names TLS: {log}");
        assert!(
            !log.contains("will retry"),
            "{proto:?}: a TLS failure is not retried: {log}"
        );
        assert!(
            !log.contains("could not deliver"),
            "{proto:?}: nothing was held for retry at exit: {log}"
        );
    }
}

#[test]
fn a_shutdown_during_backoff_still_tries_the_final_snapshot_once() {
    for proto in [Proto::Http, Proto::Grpc] {
        let refuse = match proto {
            Proto::Http => Reply::Http {
                status: 503,
                retry_after: Some(RetryAfter::Seconds(120)),
                message: "down for maintenance",
            },
            Proto::Grpc => Reply::Grpc {
                code: tonic::Code::Unavailable,
                retry_delay: Some(Duration::from_secs(120)),
                message: "down for maintenance",
            },
        };
        let rx = OtlpReceiver::start_scripted(proto, vec![refuse; 50]);
        let mut sonde = start(&rx);
        sonde.wait_log("will retry in 120", WAIT);
        // Let a few snapshots queue behind the one waiting out its 120 s.
        std::thread::sleep(Duration::from_secs(1));
        let signalled = sonde::unix_nanos();
        sonde.signal(libc::SIGTERM);
        assert!(
            sonde.wait_exit(WAIT).success(),
            "{proto:?}: exits at once, not after the server's delay: {}",
            sonde.stderr()
        );
        let got = rx.attempts();
        let snaps = by_snapshot(&got);
        assert!(snaps.len() >= 2, "{proto:?}: {snaps:#?}");
        let (first_time, first) = &snaps[0];
        assert!(*first_time < signalled);
        assert_eq!(
            first.len(),
            2,
            "{proto:?}: the oldest snapshot is tried again once at shutdown"
        );
        let (last_time, last) = snaps.last().expect("a final snapshot");
        assert!(
            *last_time >= signalled,
            "{proto:?}: the final snapshot, taken after the signal, was tried"
        );
        assert_eq!(last.len(), 1, "{proto:?}: once");
        assert_eq!(
            snaps.len(),
            2,
            "{proto:?}: the snapshots between them are not tried once one has failed"
        );
        let log = sonde.stderr();
        assert!(log.contains("could not deliver"), "{proto:?}: {log}");
    }
}
