use super::*;

fn env(pairs: &[(&str, &str)]) -> OtelEnv {
    OtelEnv::from_pairs(pairs.iter().copied())
}

#[test]
fn empty_file_and_environment_give_the_defaults() {
    let c = Config::from_yaml("", &env(&[])).expect("valid");
    assert!(c.ebpf_enabled);
    assert_eq!(c.interval, DEFAULT_INTERVAL);
    assert!(c.process.enabled);
    assert_eq!(c.otlp, None, "no collector configured");
    assert!(c.console, "console is the default output with no collector");
    assert_eq!(
        c.console_detail,
        ConsoleDetail::Summary,
        "a first run reads at a glance"
    );
    assert!(
        !c.probe_run_stats,
        "BPF run-time statistics slow every BPF program on the host: opt-in only"
    );
}

#[test]
fn series_ttl_and_process_pid() {
    let d = Config::from_yaml("", &env(&[])).expect("valid");
    assert_eq!(d.series_ttl, Duration::from_secs(300));
    assert!(!d.process_pid, "pids churn: opt-in only");
    let c = Config::from_yaml(
        "collection:\n  series_ttl: 1h\nattributes:\n  process_pid: true\n",
        &env(&[]),
    )
    .expect("valid");
    assert_eq!(c.series_ttl, Duration::from_secs(3600));
    assert!(c.process_pid);
    let forever = Config::from_yaml("collection:\n  series_ttl: 0s\n", &env(&[])).expect("valid");
    assert_eq!(forever.series_ttl, Duration::ZERO);
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let err = Config::from_yaml("exporters:\n  otlp:\n    endpointt: x\n", &env(&[]))
        .expect_err("typo must be rejected");
    let msg = err.to_string();
    assert!(msg.contains("exporters.otlp"), "{msg}");
    assert!(msg.contains("endpointt"), "{msg}");

    let err = Config::from_yaml("probes:\n  process:\n    enable: true\n", &env(&[]))
        .expect_err("typo must be rejected");
    assert!(err.to_string().contains("probes.process"), "{err}");
}

#[test]
fn wrong_types_name_the_key() {
    let err = Config::from_yaml("collection:\n  ebpf_enabled: maybe\n", &env(&[]))
        .expect_err("not a bool");
    assert!(err.to_string().contains("collection.ebpf_enabled"), "{err}");
}

#[test]
fn generic_endpoint_gets_signal_path_for_http_only() {
    let c = Config::from_yaml(
        "",
        &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]),
    )
    .expect("valid");
    let otlp = c.otlp.expect("configured by env");
    assert_eq!(otlp.protocol, Protocol::HttpProtobuf, "spec default");
    assert_eq!(otlp.endpoint, "http://collector:4318/v1/metrics");
    assert!(!c.console, "console off once a collector is configured");

    let c = Config::from_yaml(
        "",
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]),
    )
    .expect("valid");
    assert_eq!(c.otlp.expect("set").endpoint, "http://collector:4317");
}

#[test]
fn metrics_endpoint_is_used_as_given() {
    let c = Config::from_yaml(
        "",
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://b:9999/custom",
            ),
        ]),
    )
    .expect("valid");
    assert_eq!(c.otlp.expect("set").endpoint, "http://b:9999/custom");
}

#[test]
fn every_otel_variable_is_honoured() {
    let c = Config::from_yaml(
        "",
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20t,x-a=1",
            ),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-a=2"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
        ]),
    )
    .expect("valid");
    assert_eq!(c.interval, Duration::from_millis(1500));
    let o = c.otlp.expect("set");
    assert_eq!(
        o.headers,
        vec![
            ("authorization".into(), "Bearer t".into()),
            ("x-a".into(), "2".into())
        ]
    );
    assert_eq!(o.timeout, Duration::from_millis(2500));
    assert_eq!(o.compression, Compression::Gzip);
    assert_eq!(o.temporality, Temporality::Delta);
}

#[test]
fn traces_follow_the_traces_variables_and_otel_traces_exporter() {
    // The generic endpoint serves both signals, each with its own path over HTTP; the
    // _TRACES_ variables win for traces alone.
    let c = Config::from_yaml(
        "",
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-a=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-a=2"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ]),
    )
    .expect("valid");
    let t = c.traces.expect("traces go to the collector");
    assert_eq!(t.endpoint, "http://c:4318/v1/traces");
    assert_eq!(t.headers, vec![("x-a".into(), "2".into())]);
    assert_eq!(t.timeout, Duration::from_millis(700));
    assert_eq!(t.compression, Compression::Gzip);
    let m = c.otlp.expect("metrics too");
    assert_eq!(m.endpoint, "http://c:4318/v1/metrics");
    assert_eq!(m.headers, vec![("x-a".into(), "1".into())]);
    assert_eq!(m.compression, Compression::None);

    // A traces endpoint alone: spans are exported, metrics are not sent over OTLP.
    let c = Config::from_yaml(
        "",
        &env(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]),
    )
    .expect("valid");
    let t = c.traces.expect("traces endpoint");
    assert_eq!(
        (t.endpoint.as_str(), t.protocol),
        ("http://t:4317", Protocol::Grpc)
    );
    assert_eq!(c.otlp, None);

    // OTEL_TRACES_EXPORTER=none: metrics still go, spans do not.
    let c = Config::from_yaml(
        "",
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]),
    )
    .expect("valid");
    assert_eq!(c.traces, None);
    assert!(c.otlp.is_some());
    let c = Config::from_yaml(
        "",
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
        ]),
    )
    .expect("valid");
    assert!(c.traces.is_some());
    let err = Config::from_yaml(
        "",
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
        ]),
    )
    .expect_err("only otlp or none");
    assert!(err.to_string().contains("OTEL_TRACES_EXPORTER"), "{err}");

    // No collector at all: nowhere to send spans.
    let c = Config::from_yaml("", &env(&[])).expect("valid");
    assert_eq!(c.traces, None);
}

#[test]
fn file_wins_over_environment() {
    let yaml = "collection:\n  interval: 3s\nexporters:\n  otlp:\n    endpoint: http://file:4317\n    protocol: grpc\n    timeout: 1s\n";
    let c = Config::from_yaml(
        yaml,
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "9000"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "7000"),
        ]),
    )
    .expect("valid");
    assert_eq!(c.interval, Duration::from_secs(3));
    let o = c.otlp.expect("set");
    assert_eq!(o.endpoint, "http://file:4317");
    assert_eq!(o.timeout, Duration::from_secs(1));
}

#[test]
fn protocols_are_named_as_the_variable_spells_them() {
    for name in ["grpc", "http/protobuf"] {
        let c = Config::from_yaml(
            "",
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", name),
            ]),
        )
        .expect("valid");
        let otlp = c.otlp.expect("otlp");
        assert_eq!(otlp.protocol.to_string(), name);
    }
}

#[test]
fn bad_values_name_the_setting_and_the_fix() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "",
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")],
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        ("", &[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://c")], "scheme"),
        (
            "",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp"),
            ],
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            "",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ],
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ),
        (
            "",
            &[("OTEL_METRIC_EXPORT_INTERVAL", "10s")],
            "OTEL_METRIC_EXPORT_INTERVAL",
        ),
        (
            "collection:\n  interval: 10 parsecs\n",
            &[],
            "collection.interval",
        ),
        ("collection:\n  interval: 1ms\n", &[], "at least 100ms"),
        ("collection:\n  interval: 0s\n", &[], "collection.interval"),
        (
            "",
            &[("OTEL_METRIC_EXPORT_INTERVAL", "0")],
            "OTEL_METRIC_EXPORT_INTERVAL",
        ),
        (
            "exporters:\n  otlp:\n    endpoint: http://c:4318\n    timeout: 0s\n",
            &[],
            "exporters.otlp.timeout",
        ),
        (
            "",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ],
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ),
        (
            "",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "0"),
            ],
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
        ),
        (
            "probes:\n  dns:\n    timeout: 0s\n",
            &[],
            "probes.dns.timeout",
        ),
        (
            "health:\n  max_export_lag: 0s\n",
            &[],
            "health.max_export_lag",
        ),
        (
            "collection:\n  interval: 10s\n  series_ttl: 5s\n",
            &[],
            "collection.series_ttl",
        ),
        ("collection:\n  series_ttl: soon\n", &[], "series_ttl"),
        ("attributes:\n  pid: true\n", &[], "attributes"),
        (
            "probes:\n  process:\n    executable_name_limit: 0\n",
            &[],
            "executable_name_limit",
        ),
        ("log:\n  level: loud\n", &[], "log.level"),
        (
            "",
            &[("OTEL_RESOURCE_ATTRIBUTES", "team")],
            "OTEL_RESOURCE_ATTRIBUTES",
        ),
    ];
    for (yaml, vars, needle) in cases {
        let err = Config::from_yaml(yaml, &env(vars)).expect_err(needle);
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
}

#[test]
fn metric_names_and_host_keys() {
    use super::MetricNames;
    let d = Config::from_yaml("", &env(&[])).expect("valid");
    assert_eq!(d.metric_names, MetricNames::Semconv);
    assert_eq!(
        (d.host.enabled, d.host.per_cpu, d.host.top_processes),
        (true, false, 10)
    );
    let c = Config::from_yaml(
        "metric_names: hostmetrics_v0\nhost:\n  per_cpu: true\n  top_processes: 3\n",
        &env(&[]),
    )
    .expect("valid");
    assert_eq!(c.metric_names, MetricNames::HostmetricsV0);
    assert_eq!((c.host.per_cpu, c.host.top_processes), (true, 3));
    let err = Config::from_yaml("metric_names: v1\n", &env(&[])).expect_err("bad value");
    assert!(err.to_string().contains("hostmetrics_v0"), "{err}");
    let err = Config::from_yaml("host:\n  top_n: 3\n", &env(&[])).expect_err("unknown key");
    assert!(err.to_string().contains("host"), "{err}");
}

#[test]
fn example_config_documents_every_key_and_is_valid() {
    let text = include_str!("../../../examples/sonde.yaml");
    let c = Config::from_yaml(text, &env(&[])).expect("examples/sonde.yaml must be valid");
    assert!(c.otlp.is_some());
    assert!(c.prometheus.is_some());
}

#[test]
fn resource_variables_are_read_and_percent_decoded() {
    let c = Config::from_yaml(
        "",
        &env(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "team=sre%20core,k8s.node.name=n1",
            ),
            ("OTEL_SERVICE_NAME", "edge"),
        ]),
    )
    .expect("valid");
    assert_eq!(
        c.resource.env_attributes,
        vec![
            ("team".into(), "sre core".into()),
            ("k8s.node.name".into(), "n1".into())
        ]
    );
    assert_eq!(c.resource.env_service_name.as_deref(), Some("edge"));
}

#[test]
fn dns_probe_keys_defaults_and_errors() {
    use crate::family::dns::aggregate::NamePolicy;
    let c = Config::from_yaml("", &env(&[])).expect("valid");
    assert!(c.dns.enabled);
    assert_eq!(c.dns.ports, vec![53]);
    assert_eq!(c.dns.timeout, Duration::from_secs(5));
    assert_eq!(c.dns.question_names, NamePolicy::TopN(100));

    let c = Config::from_yaml(
        "probes:\n  dns:\n    ports: [53, 5353]\n    timeout: 2s\n    question_names: top_n\n    question_name_limit: 7\n",
        &env(&[]),
    )
    .expect("valid");
    assert_eq!(c.dns.ports, vec![53, 5353]);
    assert_eq!(c.dns.timeout, Duration::from_secs(2));
    assert_eq!(c.dns.question_names, NamePolicy::TopN(7));
    for (value, want) in [("off", NamePolicy::Off), ("all", NamePolicy::All)] {
        let yaml = format!("probes:\n  dns:\n    question_names: {value}\n");
        let c = Config::from_yaml(&yaml, &env(&[])).expect("valid");
        assert_eq!(c.dns.question_names, want);
    }

    for (yaml, needle) in [
        ("probes:\n  dns:\n    ports: []\n", "probes.dns.ports"),
        ("probes:\n  dns:\n    ports: [0]\n", "probes.dns.ports"),
        (
            "probes:\n  dns:\n    ports: [1, 2, 3, 4, 5, 6, 7, 8, 9]\n",
            "probes.dns.ports",
        ),
        ("probes:\n  dns:\n    timeout: 1ms\n", "probes.dns.timeout"),
        ("probes:\n  dns:\n    timeout: soon\n", "probes.dns.timeout"),
        (
            "probes:\n  dns:\n    question_names: some\n",
            "probes.dns.question_names",
        ),
        (
            "probes:\n  dns:\n    question_name_limit: 0\n",
            "probes.dns.question_name_limit",
        ),
        ("probes:\n  dns:\n    port: 53\n", "probes.dns"),
    ] {
        let err = Config::from_yaml(yaml, &env(&[])).expect_err(needle);
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
}

#[test]
fn tcp_probe_keys_defaults_and_errors() {
    let c = Config::from_yaml("", &env(&[])).expect("valid");
    assert!(c.tcp.enabled);
    assert_eq!(c.tcp.series_limit, 100);
    let c = Config::from_yaml(
        "probes:\n  tcp:\n    enabled: false\n    series_limit: 7\n",
        &env(&[]),
    )
    .expect("valid");
    assert!(!c.tcp.enabled);
    assert_eq!(c.tcp.series_limit, 7);
    for (yaml, needle) in [
        (
            "probes:\n  tcp:\n    series_limit: 0\n",
            "probes.tcp.series_limit",
        ),
        ("probes:\n  tcp:\n    limit: 5\n", "probes.tcp"),
    ] {
        let err = Config::from_yaml(yaml, &env(&[])).expect_err(needle);
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
}

#[test]
fn fileio_probe_is_on_by_default_and_its_process_limit_is_validated() {
    let c = Config::from_yaml("", &env(&[])).expect("valid");
    assert!(c.fileio.enabled);
    assert_eq!(c.fileio.process_limit, DEFAULT_NAME_LIMIT);
    let c = Config::from_yaml(
        "probes:\n  fileio:\n    enabled: false\n    process_limit: 7\n    pseudo_filesystems: true\n",
        &env(&[]),
    )
    .expect("valid");
    assert_eq!(
        c.fileio,
        FileIoProbeConfig {
            enabled: false,
            process_limit: 7,
            pseudo_filesystems: true,
        }
    );
    let err = Config::from_yaml("probes:\n  fileio:\n    process_limit: 0\n", &env(&[]))
        .expect_err("0 is rejected");
    assert!(
        err.to_string().contains("probes.fileio.process_limit"),
        "{err}"
    );
    let err = Config::from_yaml("probes:\n  fileio:\n    limit: 5\n", &env(&[]))
        .expect_err("unknown key");
    assert!(err.to_string().contains("probes.fileio"), "{err}");
}

/// Issue 13: a wrong type is reported in the file's terms, with the key path once and
/// no Rust type name (it said "expected struct RawProbes").
#[test]
fn type_errors_name_the_key_path_and_no_rust_type() {
    for (yaml, key, expected) in [
        ("probes: [1]\n", "probes", "a mapping of keys"),
        (
            "probes:\n  process: 3\n",
            "probes.process",
            "a mapping of keys",
        ),
        (
            "exporters:\n  otlp:\n    backlog_max_points: -3\n",
            "exporters.otlp.backlog_max_points",
            "a whole number (0 or more)",
        ),
        (
            "probes:\n  dns:\n    ports: [70000]\n",
            "probes.dns.ports[0]",
            "a whole number from 0 to 65535",
        ),
        (
            "collection:\n  interval: [1]\n",
            "collection.interval",
            "a string",
        ),
        (
            "resource:\n  attributes: 5\n",
            "resource.attributes",
            "a mapping of keys",
        ),
        ("exporters: 1\n", "exporters", "a mapping of keys"),
    ] {
        let msg = Config::from_yaml(yaml, &env(&[]))
            .expect_err(yaml)
            .to_string();
        assert!(msg.contains(&format!("at `{key}`")), "{yaml}: {msg}");
        assert_eq!(msg.matches(key).count(), 1, "path said once: {msg}");
        assert!(msg.contains(expected), "{yaml}: {msg}");
        for rust in ["Raw", "struct", "usize", "u16", "u64", "Option", "Vec"] {
            assert!(!msg.contains(rust), "{yaml}: `{rust}` in {msg}");
        }
    }
}

#[test]
fn queue_and_health_keys() {
    let c = Config::from_yaml(
        "exporters:\n  otlp:\n    queue:\n      directory: /var/lib/sonde/queue\n",
        &env(&[]),
    )
    .expect("valid");
    let q = c.otlp.expect("otlp").queue.expect("queue");
    assert_eq!(q.directory, std::path::Path::new("/var/lib/sonde/queue"));
    assert_eq!(q.max_bytes, 64 << 20, "default 64 MiB");
    assert_eq!(c.health.listen, None, "health is off by default");
    assert_eq!(c.health.max_export_lag, Duration::from_secs(300));

    for (size, bytes) in [
        ("8MiB", 8u64 << 20),
        ("2000000", 2_000_000),
        ("3 MB", 3_000_000),
    ] {
        let yaml = format!(
            "exporters:\n  otlp:\n    queue:\n      directory: /q\n      max_bytes: {size}\n"
        );
        let c = Config::from_yaml(&yaml, &env(&[])).expect(&yaml);
        assert_eq!(c.otlp.expect("otlp").queue.expect("queue").max_bytes, bytes);
        let yaml = format!("exporters:\n  otlp:\n    backlog_max_bytes: {size}\n");
        let c = Config::from_yaml(&yaml, &env(&[])).expect(&yaml);
        assert_eq!(c.otlp.expect("otlp").backlog_max_bytes, bytes);
    }
    let c = Config::from_yaml("exporters:\n  otlp: {}\n", &env(&[])).expect("valid");
    assert_eq!(
        c.otlp.expect("otlp").backlog_max_bytes,
        2 << 20,
        "default 2 MiB"
    );
    for (yaml, key) in [
        (
            "exporters:\n  otlp:\n    queue:\n      directory: rel/q\n",
            "exporters.otlp.queue.directory",
        ),
        (
            "exporters:\n  otlp:\n    queue:\n      directory: /q\n      max_bytes: 64 parsecs\n",
            "exporters.otlp.queue.max_bytes",
        ),
        (
            "exporters:\n  otlp:\n    queue:\n      directory: /q\n      max_bytes: 1000\n",
            "exporters.otlp.queue.max_bytes",
        ),
        (
            "exporters:\n  otlp:\n    queue:\n      directory: /q\n      max_bytes: [1]\n",
            "exporters.otlp.queue.max_bytes",
        ),
        (
            "exporters:\n  otlp:\n    queue:\n      max_bytes: 8MiB\n",
            "exporters.otlp.queue",
        ),
        (
            "exporters:\n  otlp:\n    backlog_max_bytes: 0\n",
            "exporters.otlp.backlog_max_bytes",
        ),
        (
            "exporters:\n  otlp:\n    backlog_max_bytes: lots\n",
            "exporters.otlp.backlog_max_bytes",
        ),
        ("health:\n  listen: localhost\n", "health.listen"),
        ("health:\n  max_export_lag: soon\n", "health.max_export_lag"),
    ] {
        let msg = Config::from_yaml(yaml, &env(&[]))
            .expect_err(yaml)
            .to_string();
        assert!(msg.contains(key), "{yaml}: {msg}");
        assert!(
            !msg.contains("RawSize") && !msg.contains("untagged"),
            "{msg}"
        );
    }

    let c = Config::from_yaml(
        "health:\n  listen: 127.0.0.1:13133\n  max_export_lag: 1m\n",
        &env(&[]),
    )
    .expect("valid");
    assert_eq!(
        c.health.listen,
        Some("127.0.0.1:13133".parse().expect("addr"))
    );
    assert_eq!(c.health.max_export_lag, Duration::from_secs(60));
}

#[test]
fn console_detail() {
    let cases = [
        ("", Ok(ConsoleDetail::Summary)),
        (
            "exporters:\n  console:\n    detail: summary\n",
            Ok(ConsoleDetail::Summary),
        ),
        (
            "exporters:\n  console:\n    detail: full\n",
            Ok(ConsoleDetail::Full),
        ),
        (
            "exporters:\n  console:\n    detail: all\n",
            Err("exporters.console.detail"),
        ),
    ];
    for (yaml, want) in cases {
        match (Config::from_yaml(yaml, &env(&[])), want) {
            (Ok(c), Ok(d)) => assert_eq!(c.console_detail, d, "{yaml}"),
            (Err(e), Err(key)) => assert!(e.to_string().contains(key), "{yaml}: {e}"),
            (got, _) => panic!("{yaml}: unexpected {got:?}"),
        }
    }
}

#[test]
fn metrics_exporter_list_selects_exporters() {
    // (OTEL_METRICS_EXPORTER, extra env, file) -> (otlp, prometheus, console)
    let ep = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
    type Env<'a> = &'a [(&'a str, &'a str)];
    /// (OTLP, Prometheus, console) enabled.
    type On = (bool, bool, bool);
    let cases: &[(&str, Env, &str, On)] = &[
        ("", &[], "", (false, false, true)),
        ("", &[ep], "", (true, false, false)),
        ("prometheus", &[], "", (false, true, false)),
        ("prometheus", &[ep], "", (false, true, false)),
        ("otlp,prometheus", &[], "", (true, true, false)),
        (" otlp , console ", &[], "", (true, false, true)),
        ("none", &[ep], "", (false, false, false)),
        // The file's keys win over the variable.
        (
            "none",
            &[],
            "exporters:\n  prometheus:\n    port: 9999\n",
            (false, true, false),
        ),
        (
            "prometheus",
            &[],
            "exporters:\n  prometheus:\n    enabled: false\n",
            (false, false, false),
        ),
        (
            "otlp",
            &[],
            "exporters:\n  otlp:\n    enabled: false\n",
            (false, false, false),
        ),
        (
            "none",
            &[],
            "exporters:\n  console:\n    enabled: true\n",
            (false, false, true),
        ),
        (
            "",
            &[],
            "exporters:\n  prometheus: {}\n",
            (false, true, false),
        ),
    ];
    for (list, extra, yaml, (otlp, prom, console)) in cases {
        let mut pairs: Vec<(&str, &str)> = extra.to_vec();
        pairs.push(("OTEL_METRICS_EXPORTER", list));
        let c = Config::from_yaml(yaml, &env(&pairs))
            .unwrap_or_else(|e| panic!("{list:?} {yaml:?}: {e}"));
        assert_eq!(
            (c.otlp.is_some(), c.prometheus.is_some(), c.console),
            (*otlp, *prom, *console),
            "OTEL_METRICS_EXPORTER={list:?} file={yaml:?}"
        );
    }
}

#[test]
fn prometheus_host_and_port() {
    let on = ("OTEL_METRICS_EXPORTER", "prometheus");
    let c = Config::from_yaml("", &env(&[on])).expect("valid");
    assert_eq!(
        c.prometheus,
        Some(PrometheusConfig {
            host: "localhost".into(),
            port: 9464
        }),
        "the SDK environment spec's defaults"
    );
    let c = Config::from_yaml(
        "",
        &env(&[
            on,
            ("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", "9100"),
        ]),
    )
    .expect("valid");
    let p = c.prometheus.expect("on");
    assert_eq!((p.host.as_str(), p.port), ("0.0.0.0", 9100));
    let c = Config::from_yaml(
        "exporters:\n  prometheus:\n    host: \"::\"\n    port: 1234\n",
        &env(&[("OTEL_EXPORTER_PROMETHEUS_PORT", "9100")]),
    )
    .expect("valid");
    let p = c.prometheus.expect("on");
    assert_eq!((p.host.as_str(), p.port), ("::", 1234), "the file wins");
}

#[test]
fn exporter_errors_name_the_setting() {
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Env, &str, &str)] = &[
        (&[("OTEL_METRICS_EXPORTER", "otlp,zipkin")], "", "zipkin"),
        (&[("OTEL_METRICS_EXPORTER", "none,otlp")], "", "none"),
        (
            &[
                ("OTEL_METRICS_EXPORTER", "prometheus"),
                ("OTEL_EXPORTER_PROMETHEUS_PORT", "70000"),
            ],
            "",
            "OTEL_EXPORTER_PROMETHEUS_PORT",
        ),
        (
            &[],
            "exporters:\n  prometheus:\n    host: \"a b\"\n",
            "exporters.prometheus.host",
        ),
        (
            &[],
            "exporters:\n  prometheus:\n    prot: 1\n",
            "exporters.prometheus",
        ),
    ];
    for (pairs, yaml, needle) in cases {
        let err = Config::from_yaml(yaml, &env(pairs)).expect_err("invalid");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn dns_name_privacy_keys() {
    let c = Config::from_yaml(
        "probes:\n  dns:\n    question_names: redacted\n    never_export_suffixes: [corp.example, internal]\n",
        &env(&[]),
    )
    .expect("valid");
    assert!(c.dns.redact_names);
    assert_eq!(
        c.dns.question_names,
        crate::family::dns::aggregate::NamePolicy::TopN(100)
    );
    assert_eq!(c.dns.never_export_suffixes, ["corp.example", "internal"]);
    assert_eq!(
        c.dns.redaction_key_file,
        std::path::Path::new(DEFAULT_REDACTION_KEY_FILE)
    );
    let c = Config::from_yaml("", &env(&[])).expect("defaults");
    assert!(!c.dns.redact_names && c.dns.never_export_suffixes.is_empty());
    for (yaml, key) in [
        (
            "probes:\n  dns:\n    never_export_suffixes: [\"a b\"]\n",
            "probes.dns.never_export_suffixes",
        ),
        (
            "probes:\n  dns:\n    never_export_suffixes: [\".\"]\n",
            "probes.dns.never_export_suffixes",
        ),
        (
            "probes:\n  dns:\n    redaction_key_file: key\n",
            "probes.dns.redaction_key_file",
        ),
        (
            "probes:\n  dns:\n    question_names: hashed\n",
            "probes.dns.question_names",
        ),
    ] {
        let msg = Config::from_yaml(yaml, &env(&[]))
            .expect_err(yaml)
            .to_string();
        assert!(msg.contains(key), "{yaml}: {msg}");
    }
}

#[test]
fn histogram_aggregation_from_file_or_environment() {
    let base = "exporters:\n  otlp:\n    endpoint: http://c:4317\n";
    let get = |yaml: &str, vars: &[(&str, &str)]| {
        Config::from_yaml(yaml, &env(vars)).map(|c| c.otlp.expect("otlp").histogram_aggregation)
    };
    assert_eq!(
        get(base, &[]).expect("valid"),
        HistogramAggregation::Explicit
    );
    const VAR: &str = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION";
    assert_eq!(
        get(base, &[(VAR, "base2_exponential_bucket_histogram")]).expect("valid"),
        HistogramAggregation::Base2Exponential
    );
    let file = format!("{base}    histogram_aggregation: explicit_bucket_histogram\n");
    assert_eq!(
        get(&file, &[(VAR, "base2_exponential_bucket_histogram")]).expect("valid"),
        HistogramAggregation::Explicit,
        "the file wins"
    );
    let err = get(base, &[(VAR, "exponential")])
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains(VAR) && err.contains("base2_exponential_bucket_histogram"),
        "{err}"
    );
}
