//! The demo and packaging files, checked without the tools that run them:
//! - the Collector config against the components and keys that the pinned contrib version
//!   (0.111.0) documents. No Collector binary is available on these machines
//!   (test-lab.md: no package carries it), so `otelcol validate` cannot run here; this
//!   test stands in for it with the components' config structs transcribed from their Go
//!   sources (`Fields` below), and fails on any key or component outside them;
//! - Sonde's own configs (deploy/sonde.yaml and the DaemonSet's ConfigMap) with Sonde's
//!   config validation;
//! - every dashboard's PromQL names only metrics of the contract, under their Prometheus
//!   names (tests/prometheus.rs runs every expression against a real Prometheus).
//!
//! The real tools' checks (promtool, docker-compose, kubernetes-validate, systemd-analyze)
//! are in scripts/check-deploy.sh, run by scripts/test.sh.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(text: &str, what: &str) -> Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A component's configuration as its Go config struct decodes it: each field's
/// `mapstructure` key and what sits under it. Transcribed from the sources of the pinned
/// version: collector core v0.111.0 (`receiver/otlpreceiver/config.go`,
/// `processor/batchprocessor/config.go`, `internal/memorylimiter/config.go`,
/// `exporter/otlpexporter/config.go` and the `config/config{grpc,http,tls,net,auth,retry}`
/// modules they embed) and contrib's `exporter/prometheusexporter/config.go` and
/// `extension/healthcheckextension/config.go` (keys added to those after 0.111.0, such as
/// the Prometheus exporter's `sending_queue` and `translation_strategy`, are left out).
type Fields = &'static [(&'static str, Field)];

#[derive(Clone, Copy)]
enum Field {
    /// A scalar or a list.
    Leaf,
    /// A free-form map (headers, labels).
    Free,
    /// A nested struct under the key.
    Nested(Fields),
    /// An embedded struct (`mapstructure:",squash"`): its keys sit at this level. The key
    /// it is listed under is never looked up.
    Squash(Fields),
}
use Field::{Free, Leaf, Nested, Squash};

const AUTH: Fields = &[("authenticator", Leaf)];
const TLS: Fields = &[
    ("ca_file", Leaf),
    ("ca_pem", Leaf),
    ("include_system_ca_certs_pool", Leaf),
    ("cert_file", Leaf),
    ("cert_pem", Leaf),
    ("key_file", Leaf),
    ("key_pem", Leaf),
    ("min_version", Leaf),
    ("max_version", Leaf),
    ("cipher_suites", Leaf),
    ("reload_interval", Leaf),
];
const TLS_CLIENT: Fields = &[
    ("", Squash(TLS)),
    ("insecure", Leaf),
    ("insecure_skip_verify", Leaf),
    ("server_name_override", Leaf),
];
const TLS_SERVER: Fields = &[
    ("", Squash(TLS)),
    ("client_ca_file", Leaf),
    ("client_ca_file_reload", Leaf),
];
const GRPC_SERVER: Fields = &[
    // confignet.AddrConfig, squashed
    ("endpoint", Leaf),
    ("transport", Leaf),
    ("dialer", Nested(&[("timeout", Leaf)])),
    ("tls", Nested(TLS_SERVER)),
    ("max_recv_msg_size_mib", Leaf),
    ("max_concurrent_streams", Leaf),
    ("read_buffer_size", Leaf),
    ("write_buffer_size", Leaf),
    (
        "keepalive",
        Nested(&[
            (
                "server_parameters",
                Nested(&[
                    ("max_connection_idle", Leaf),
                    ("max_connection_age", Leaf),
                    ("max_connection_age_grace", Leaf),
                    ("time", Leaf),
                    ("timeout", Leaf),
                ]),
            ),
            (
                "enforcement_policy",
                Nested(&[("min_time", Leaf), ("permit_without_stream", Leaf)]),
            ),
        ]),
    ),
    ("auth", Nested(AUTH)),
    ("include_metadata", Leaf),
];
const HTTP_SERVER: Fields = &[
    ("endpoint", Leaf),
    ("tls", Nested(TLS_SERVER)),
    (
        "cors",
        Nested(&[
            ("allowed_origins", Leaf),
            ("allowed_headers", Leaf),
            ("max_age", Leaf),
        ]),
    ),
    (
        "auth",
        Nested(&[("", Squash(AUTH)), ("request_params", Leaf)]),
    ),
    ("max_request_body_size", Leaf),
    ("include_metadata", Leaf),
    ("response_headers", Free),
    ("compression_algorithms", Leaf),
    ("read_timeout", Leaf),
    ("read_header_timeout", Leaf),
    ("write_timeout", Leaf),
    ("idle_timeout", Leaf),
];
const GRPC_CLIENT: Fields = &[
    ("endpoint", Leaf),
    ("compression", Leaf),
    ("tls", Nested(TLS_CLIENT)),
    (
        "keepalive",
        Nested(&[
            ("time", Leaf),
            ("timeout", Leaf),
            ("permit_without_stream", Leaf),
        ]),
    ),
    ("read_buffer_size", Leaf),
    ("write_buffer_size", Leaf),
    ("wait_for_ready", Leaf),
    ("headers", Free),
    ("balancer_name", Leaf),
    ("authority", Leaf),
    ("auth", Nested(AUTH)),
];

const OTLP_RECEIVER: Fields = &[(
    "protocols",
    Nested(&[
        ("grpc", Nested(GRPC_SERVER)),
        (
            "http",
            Nested(&[
                ("", Squash(HTTP_SERVER)),
                ("traces_url_path", Leaf),
                ("metrics_url_path", Leaf),
                ("logs_url_path", Leaf),
            ]),
        ),
    ]),
)];
const MEMORY_LIMITER: Fields = &[
    ("check_interval", Leaf),
    ("limit_mib", Leaf),
    ("spike_limit_mib", Leaf),
    ("limit_percentage", Leaf),
    ("spike_limit_percentage", Leaf),
];
const BATCH: Fields = &[
    ("timeout", Leaf),
    ("send_batch_size", Leaf),
    ("send_batch_max_size", Leaf),
    ("metadata_keys", Leaf),
    ("metadata_cardinality_limit", Leaf),
];
const PROMETHEUS_EXPORTER: Fields = &[
    ("", Squash(HTTP_SERVER)),
    ("namespace", Leaf),
    ("const_labels", Free),
    ("send_timestamps", Leaf),
    ("metric_expiration", Leaf),
    (
        "resource_to_telemetry_conversion",
        Nested(&[("enabled", Leaf)]),
    ),
    ("enable_open_metrics", Leaf),
    ("add_metric_suffixes", Leaf),
];
const OTLP_EXPORTER: Fields = &[
    // exporterhelper.TimeoutConfig, squashed
    ("timeout", Leaf),
    (
        "sending_queue",
        Nested(&[
            ("enabled", Leaf),
            ("num_consumers", Leaf),
            ("queue_size", Leaf),
            ("storage", Leaf),
        ]),
    ),
    (
        "retry_on_failure",
        Nested(&[
            ("enabled", Leaf),
            ("initial_interval", Leaf),
            ("randomization_factor", Leaf),
            ("multiplier", Leaf),
            ("max_interval", Leaf),
            ("max_elapsed_time", Leaf),
        ]),
    ),
    (
        "batcher",
        Nested(&[
            ("enabled", Leaf),
            ("flush_timeout", Leaf),
            ("min_size_items", Leaf),
            ("max_size_items", Leaf),
        ]),
    ),
    ("", Squash(GRPC_CLIENT)),
];
const HEALTH_CHECK: Fields = &[
    ("", Squash(HTTP_SERVER)),
    ("path", Leaf),
    (
        "response_body",
        Nested(&[("healthy", Leaf), ("unhealthy", Leaf)]),
    ),
    (
        "check_collector_pipeline",
        Nested(&[
            ("enabled", Leaf),
            ("interval", Leaf),
            ("exporter_failure_threshold", Leaf),
        ]),
    ),
];

/// contrib 0.111.0: (section, component type, its config).
const COMPONENTS: &[(&str, &str, Fields)] = &[
    ("receivers", "otlp", OTLP_RECEIVER),
    ("processors", "memory_limiter", MEMORY_LIMITER),
    ("processors", "batch", BATCH),
    ("exporters", "prometheus", PROMETHEUS_EXPORTER),
    ("exporters", "otlp", OTLP_EXPORTER),
    ("extensions", "health_check", HEALTH_CHECK),
];

/// The field a key decodes into, looking through squashed structs.
fn field(fields: Fields, key: &str) -> Option<Field> {
    fields.iter().find_map(|(k, f)| match f {
        Squash(inner) => field(inner, key),
        _ if *k == key => Some(*f),
        _ => None,
    })
}

fn check_keys(value: &Value, prefix: &str, fields: Fields, at: &str, errors: &mut Vec<String>) {
    let Value::Mapping(map) = value else {
        return;
    };
    for (k, v) in map {
        let key = k.as_str().unwrap_or_default();
        let path = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        match field(fields, key) {
            None => errors.push(format!("{at}: `{path}` is not a documented key")),
            Some(Leaf) if v.is_mapping() => {
                errors.push(format!("{at}: `{path}` takes a value, not a map"))
            }
            Some(Leaf | Free | Squash(_)) => {}
            Some(Nested(inner)) => check_keys(v, &path, inner, at, errors),
        }
    }
}

/// The errors of a Collector config: unknown sections, components or keys, and pipelines
/// that name components the config does not define.
fn collector_errors(config: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let Value::Mapping(top) = config else {
        return vec!["the config is not a mapping".into()];
    };
    let mut defined: BTreeSet<String> = BTreeSet::new();
    for (section, body) in top {
        let section = section.as_str().unwrap_or_default();
        if section == "service" {
            continue;
        }
        if ![
            "receivers",
            "processors",
            "exporters",
            "extensions",
            "connectors",
        ]
        .contains(&section)
        {
            errors.push(format!(
                "`{section}` is not a section of a Collector config"
            ));
            continue;
        }
        let Value::Mapping(components) = body else {
            continue;
        };
        for (id, cfg) in components {
            let id = id.as_str().unwrap_or_default();
            let kind = id.split('/').next().unwrap_or(id);
            match COMPONENTS
                .iter()
                .find(|(s, k, _)| *s == section && *k == kind)
            {
                Some((_, _, schema)) => {
                    check_keys(cfg, "", schema, &format!("{section}.{id}"), &mut errors)
                }
                None => errors.push(format!(
                    "{section}.{id}: `{kind}` is not a component this test knows for contrib 0.111.0"
                )),
            }
            defined.insert(format!("{section}.{id}"));
        }
    }
    let service = &config["service"];
    for ext in service["extensions"].as_sequence().into_iter().flatten() {
        let id = ext.as_str().unwrap_or_default();
        if !defined.contains(&format!("extensions.{id}")) {
            errors.push(format!("service.extensions: `{id}` is not defined"));
        }
    }
    let Some(pipelines) = service["pipelines"].as_mapping() else {
        errors.push("service.pipelines is missing".into());
        return errors;
    };
    for (name, p) in pipelines {
        let name = name.as_str().unwrap_or_default();
        let signal = name.split('/').next().unwrap_or(name);
        if !["traces", "metrics", "logs"].contains(&signal) {
            errors.push(format!("pipeline `{name}`: not traces, metrics or logs"));
        }
        for (role, section) in [
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ] {
            let ids = p[role].as_sequence().cloned().unwrap_or_default();
            if role != "processors" && ids.is_empty() {
                errors.push(format!("pipeline `{name}` has no {role}"));
            }
            for id in ids {
                let id = id.as_str().unwrap_or_default();
                if !defined.contains(&format!("{section}.{id}")) {
                    errors.push(format!("pipeline `{name}`: {role} `{id}` is not defined"));
                }
            }
        }
    }
    errors
}

fn configmap_file(manifest: &str, key: &str) -> String {
    for doc in read(manifest).split("\n---\n") {
        let v = yaml(doc, manifest);
        if v["kind"].as_str() == Some("ConfigMap") {
            if let Some(text) = v["data"][key].as_str() {
                return text.to_owned();
            }
        }
    }
    panic!("{manifest} has no ConfigMap with {key}");
}

#[test]
fn collector_configs_use_only_documented_components_and_keys() {
    let demo = yaml(&read("deploy/collector/config.yaml"), "collector config");
    assert_eq!(collector_errors(&demo), Vec::<String>::new());
    // The demo routes metrics to Prometheus and traces to Jaeger over OTLP.
    assert_eq!(
        demo["service"]["pipelines"]["traces"]["exporters"][0].as_str(),
        Some("otlp/jaeger")
    );
    assert_eq!(
        demo["exporters"]["otlp/jaeger"]["endpoint"].as_str(),
        Some("jaeger:4317")
    );
    let agent = yaml(
        &configmap_file("deploy/kubernetes/collector-agent.yaml", "config.yaml"),
        "agent config",
    );
    assert_eq!(collector_errors(&agent), Vec::<String>::new());

    // The check itself catches what it is for.
    let bad = yaml(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoit: x\n      http:\n        read_timeout: 5s\n        cors:\n          allowed_origin: [x]\nexporters:\n  otlp:\n    endpoint: {host: x}\n    tls:\n      insecure: true\n      ca_pem: x\n    retry_on_failure:\n      max_elapsed_tme: 1m\n  jaegr: {}\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [prometheus]\n",
        "bad",
    );
    let errors = collector_errors(&bad);
    assert!(
        errors.iter().any(|e| e.contains("protocols.grpc.endpoit")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("jaegr")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("cors.allowed_origin`")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("retry_on_failure.max_elapsed_tme")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`endpoint` takes a value")),
        "{errors:?}"
    );
    // Keys of squashed structs (the HTTP server's read_timeout, TLS's ca_pem) are accepted.
    assert!(
        !errors
            .iter()
            .any(|e| e.contains("read_timeout") || e.contains("ca_pem")),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 6, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`prometheus` is not defined")),
        "{errors:?}"
    );
}

#[test]
fn sondes_deploy_configs_are_valid_and_set_queue_and_health() {
    let env =
        sonde::config::OtelEnv::from_pairs([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]);
    for (what, text) in [
        ("deploy/sonde.yaml", read("deploy/sonde.yaml")),
        (
            "the DaemonSet's ConfigMap",
            configmap_file("deploy/kubernetes/sonde-daemonset.yaml", "sonde.yaml"),
        ),
    ] {
        let c =
            sonde::config::Config::from_yaml(&text, &env).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(c.otlp.is_some(), "{what}: OTLP on");
        assert!(c.prometheus.is_some(), "{what}: the endpoint on");
        assert!(c.health.listen.is_some(), "{what}: health.listen set");
        assert!(
            text.contains("directory: /var/lib/sonde/queue"),
            "{what}: durable queue"
        );
    }
}

/// Every metric name a dashboard selects (`name{`), per file.
fn dashboard_metrics() -> Vec<(String, String, BTreeSet<String>)> {
    let mut out = Vec::new();
    let dir = repo("deploy/grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dashboards dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "host, network, DNS, storage, processes, Sonde"
    );
    for f in files {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).expect("read"))
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for panel in v["panels"].as_array().expect("panels") {
            for t in panel["targets"].as_array().expect("targets") {
                let expr = t["expr"].as_str().expect("expr").to_owned();
                let names = metric_names_in(&expr);
                assert!(
                    !names.is_empty(),
                    "{}: `{expr}` selects no metric with braces",
                    f.display()
                );
                out.push((f.display().to_string(), expr, names));
            }
        }
    }
    out
}

/// Identifiers directly followed by `{` (the dashboards always write selectors so).
fn metric_names_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'{' {
            continue;
        }
        let start = bytes[..i]
            .iter()
            .rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b':'))
            .map_or(0, |p| p + 1);
        if start < i {
            out.insert(expr[start..i].to_owned());
        }
    }
    out
}

#[test]
fn dashboards_name_only_contract_metrics() {
    let contract: BTreeSet<String> = sonde_semconv::contract()
        .iter()
        .flat_map(|d| sonde::export::prometheus::names::family(d).series_names())
        .collect();
    for (file, expr, names) in dashboard_metrics() {
        for n in names {
            assert!(
                contract.contains(&n),
                "{file}: `{n}` in `{expr}` is not a metric Sonde exports"
            );
        }
        assert!(
            !expr.contains("process_pid"),
            "{file}: `{expr}`: dashboards do not depend on process.pid"
        );
    }
}

/// Every image the demo and the manifests run, with where it is named.
fn images() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in [
        "docker-compose.yml",
        "deploy/kubernetes/sonde-daemonset.yaml",
        "deploy/kubernetes/collector-agent.yaml",
    ] {
        for line in read(file).lines() {
            let line = line.trim().trim_start_matches("- ");
            if let Some(image) = line.strip_prefix("image:") {
                out.push((file.to_owned(), image.trim().trim_matches('"').to_owned()));
            }
        }
    }
    for line in read("Dockerfile").lines() {
        if let Some(from) = line.strip_prefix("FROM ") {
            let image = from.split_whitespace().next().unwrap_or_default();
            out.push(("Dockerfile".to_owned(), image.to_owned()));
        }
    }
    out
}

#[test]
fn every_image_is_pinned_to_a_version() {
    let all = images();
    assert!(all.len() >= 8, "{all:?}");
    for (file, image) in all {
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
            "{file}: `{image}` is not pinned to a version"
        );
    }
}

#[test]
fn dashboards_use_the_provisioned_datasources() {
    let ds = yaml(
        &read("deploy/grafana/provisioning/datasources/datasources.yaml"),
        "datasources",
    );
    let uids: BTreeSet<String> = ds["datasources"]
        .as_sequence()
        .expect("datasources")
        .iter()
        .filter_map(|d| d["uid"].as_str().map(str::to_owned))
        .collect();
    assert!(
        uids.contains("prometheus") && uids.contains("jaeger"),
        "{uids:?}"
    );
    // Exemplars on Prometheus panels open the trace in Jaeger.
    let prom = ds["datasources"]
        .as_sequence()
        .expect("datasources")
        .iter()
        .find(|d| d["uid"].as_str() == Some("prometheus"))
        .expect("prometheus datasource");
    assert_eq!(
        prom["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"].as_str(),
        Some("jaeger")
    );
    let dir = repo("deploy/grafana/dashboards");
    for f in std::fs::read_dir(&dir).expect("dashboards").flatten() {
        let text = std::fs::read_to_string(f.path()).expect("read");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let mut seen = 0;
        let mut walk = vec![&v];
        while let Some(node) = walk.pop() {
            match node {
                serde_json::Value::Object(m) => {
                    if let Some(uid) = m.get("datasource").and_then(|d| d["uid"].as_str()) {
                        assert!(
                            uids.contains(uid),
                            "{}: datasource `{uid}`",
                            f.path().display()
                        );
                        seen += 1;
                    }
                    walk.extend(m.values());
                }
                serde_json::Value::Array(a) => walk.extend(a),
                _ => {}
            }
        }
        assert!(seen > 0, "{}: no datasource", f.path().display());
    }
}
