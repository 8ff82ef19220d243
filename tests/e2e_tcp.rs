//! The tcp probe end to end: the real `sonde` binary exporting to a real OTLP receiver,
//! against loopback connections of the test's own (filtered to the test's port).
//!
//! Needs root (eBPF).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

const WAIT: Duration = Duration::from_secs(60);
/// Pids in the keys (`attributes.process_pid`): the test finds its own series by pid.
const CONFIG: &str =
    "attributes:\n  process_pid: true\nprobes:\n  tcp:\n    series_limit: 100000\n";
const K: usize = 10;

#[test]
fn connections_bytes_and_states_arrive_with_the_contracts_names() {
    require_root();
    let rx = OtlpReceiver::start(Proto::Grpc);
    let mut env = rx.env();
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "300".into()));
    let mut sonde = Sonde::start(&env, Some(CONFIG));
    sonde.wait_started();
    rx.wait_for("a first export", WAIT, |e| !e.is_empty());

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        for _ in 0..K {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).expect("server read");
            s.write_all(b"ok").expect("server write");
        }
    });
    let mut written = 0u64;
    for i in 0..K {
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let data = vec![9u8; 4096 + i];
        c.write_all(&data).expect("write");
        written += data.len() as u64;
        c.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut reply = Vec::new();
        c.read_to_end(&mut reply).expect("read");
    }
    server.join().expect("server");

    let p = port.to_string();
    let out: &[(&str, &str)] = &[
        ("network.peer.port", &p),
        ("sonde.connection.direction", "outbound"),
    ];
    let inb: &[(&str, &str)] = &[
        ("server.port", &p),
        ("sonde.connection.direction", "inbound"),
    ];
    let k = K as f64;
    let exports = rx.wait_for("K closes on both sides", WAIT, |e| {
        latest(e, "sonde.tcp.connection.closed", out) == Some(k)
            && latest(e, "sonde.tcp.connection.closed", inb) == Some(k)
    });
    assert_eq!(
        latest(&exports, "sonde.tcp.connection.opened", out),
        Some(k)
    );
    assert_eq!(
        latest(&exports, "sonde.tcp.connection.opened", inb),
        Some(k)
    );
    assert_eq!(
        latest(
            &exports,
            "sonde.tcp.io",
            &[
                ("network.peer.port", &p),
                ("network.io.direction", "transmit")
            ]
        ),
        Some(written as f64)
    );
    assert_eq!(
        latest(
            &exports,
            "sonde.tcp.io",
            &[("server.port", &p), ("network.io.direction", "receive")]
        ),
        Some(written as f64)
    );
    let pid = std::process::id().to_string();
    assert_eq!(
        latest(
            &exports,
            "sonde.tcp.connection.opened",
            &[("network.peer.port", &p), ("process.pid", &pid)]
        ),
        Some(k),
        "attributed to this process"
    );
    let listening = latest(
        &exports,
        "system.network.connection.count",
        &[
            ("network.connection.state", "listen"),
            ("network.transport", "tcp"),
        ],
    );
    assert!(
        listening.is_some_and(|n| n >= 1.0),
        "sonde's own OTLP receiver listens: {listening:?}"
    );
    let rtt = metrics(&exports, "sonde.tcp.rtt")
        .last()
        .expect("sonde.tcp.rtt exported");
    match &rtt.data {
        Some(Data::Histogram(h)) => {
            let p = h.data_points.first().expect("an rtt point");
            assert_eq!(p.explicit_bounds.len() + 1, p.bucket_counts.len());
            assert_eq!(
                p.explicit_bounds[0],
                2f64.powi(-30),
                "powers of two of seconds, bounds of the kernel's grid"
            );
            assert!(p.explicit_bounds.windows(2).all(|w| w[1] == 2.0 * w[0]));
        }
        other => panic!("sonde.tcp.rtt is not a histogram: {other:?}"),
    }
    assert_eq!(rtt.unit, "s");

    // Self-telemetry: every attached program's skipped runs (recursion_misses) ...
    for probe in [
        "tcp.state",
        "tcp.destroy",
        "tcp.send",
        "tcp.recv",
        "tcp.retransmit",
        "tcp.send_reset",
        "tcp.receive_reset",
    ] {
        assert!(
            latest(
                &exports,
                "sonde.probe.events.lost",
                &[("sonde.probe", probe), ("sonde.loss.reason", "recursion")]
            )
            .is_some(),
            "{probe}'s recursion misses are exported"
        );
    }
    // ... and the kernel memory its maps pin, which bpftool reports the same.
    let exported = latest(&exports, "sonde.probe.map.memory", &[]).expect("map memory");
    let ids = sonde.bpf_ids().maps;
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "show"])
        .output()
        .expect("bpftool is needed: apt-get install bpftool");
    let maps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    let bpftool: f64 = maps
        .iter()
        .filter(|m| m["id"].as_u64().is_some_and(|id| ids.contains(&id)))
        .filter_map(|m| m["bytes_memlock"].as_f64())
        .sum();
    // Maps that are not preallocated grow and shrink with the host's connections and
    // files between the export and this reading: a few entries' worth, well under 10%.
    assert!(
        (exported - bpftool).abs() <= bpftool * 0.1,
        "sonde.probe.map.memory {exported} vs bpftool's memlock sum {bpftool}"
    );
}
