//! The exported Resource: who is reporting.

use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue as ProtoKeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_sdk::resource::Resource;
use sonde_semconv::attr;

use crate::config::ResourceConfig;

/// Facts about the host, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub host_name: String,
    pub host_id: Option<String>,
    pub host_arch: &'static str,
    pub os_version: String,
}

impl HostFacts {
    pub fn read() -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        Self {
            host_name: read("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into()),
            host_id: read("/etc/machine-id").or_else(|| read("/var/lib/dbus/machine-id")),
            host_arch: arch_name(std::env::consts::ARCH),
            os_version: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
        }
    }
}

/// semconv `host.arch` values.
fn arch_name(rust_arch: &'static str) -> &'static str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

/// Builds the resource. Precedence, lowest first: Sonde's detected host facts and
/// defaults, the config file's `resource.attributes`, OTEL_RESOURCE_ATTRIBUTES, then
/// `service.name` from OTEL_SERVICE_NAME or the file.
///
/// OTEL_RESOURCE_ATTRIBUTES is parsed by `config` rather than the SDK's
/// EnvResourceDetector, which (in 0.33) does not percent-decode values as the spec says.
pub fn build(cfg: &ResourceConfig, host: &HostFacts, mode: &str) -> Resource {
    let mut base = vec![
        KeyValue::new(attr::SERVICE_NAME, attr::DEFAULT_SERVICE_NAME),
        KeyValue::new(attr::SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
        KeyValue::new(attr::SERVICE_INSTANCE_ID, instance_id(host)),
        KeyValue::new(attr::HOST_NAME, host.host_name.clone()),
        KeyValue::new(attr::HOST_ARCH, host.host_arch),
        KeyValue::new(attr::OS_TYPE, attr::OS_TYPE_LINUX),
        KeyValue::new(attr::OS_VERSION, host.os_version.clone()),
        KeyValue::new(attr::SONDE_MODE, mode.to_owned()),
    ];
    if let Some(id) = &host.host_id {
        base.push(KeyValue::new(attr::HOST_ID, id.clone()));
    }
    base.extend(
        cfg.attributes
            .iter()
            .chain(&cfg.env_attributes)
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    let mut builder = Resource::builder_empty().with_attributes(base);
    let service_name = cfg
        .env_service_name
        .clone()
        .or_else(|| cfg.service_name.clone());
    if let Some(name) = service_name {
        builder = builder.with_attribute(KeyValue::new(attr::SERVICE_NAME, name));
    }
    builder.build()
}

/// Stable across restarts of the same agent on the same host, unique across hosts, and not
/// the machine-id in clear: machine-id(5) asks that it stay confidential and that an
/// application derive its own id with a keyed hash, as systemd's
/// `sd_id128_get_machine_app_specific()` does (HMAC-SHA256 keyed with the machine-id over
/// the application's id, the first 16 bytes made a version-4 UUID).
fn instance_id(host: &HostFacts) -> String {
    /// Sonde's application id (random, fixed forever: changing it changes every instance id).
    const SONDE_APP_ID: [u8; 16] = [
        0x5c, 0x0d, 0xe1, 0x7a, 0x93, 0x4e, 0x4b, 0x2f, 0x8a, 0x61, 0x0b, 0xd2, 0x3e, 0x77, 0xc4,
        0x19,
    ];
    // The machine-id's 16 bytes when it is the usual 32 hex digits; its text otherwise, or
    // the host name on a host without one.
    let key: Vec<u8> = match host.host_id.as_deref() {
        Some(id) => parse_hex16(id).map_or_else(|| id.as_bytes().to_vec(), |b| b.to_vec()),
        None => host.host_name.as_bytes().to_vec(),
    };
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        &SONDE_APP_ID,
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&tag.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn to_proto(resource: &Resource) -> ProtoResource {
    let mut attributes: Vec<ProtoKeyValue> = resource
        .iter()
        .map(|(k, v)| ProtoKeyValue {
            key: k.to_string(),
            value: Some(AnyValue {
                value: Some(match v {
                    opentelemetry::Value::Bool(b) => any_value::Value::BoolValue(*b),
                    opentelemetry::Value::I64(i) => any_value::Value::IntValue(*i),
                    opentelemetry::Value::F64(f) => any_value::Value::DoubleValue(*f),
                    other => any_value::Value::StringValue(other.to_string()),
                }),
            }),
            ..Default::default()
        })
        .collect();
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    ProtoResource {
        attributes,
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostFacts {
        HostFacts {
            host_name: "node-1".into(),
            host_id: Some("abc".into()),
            host_arch: "amd64",
            os_version: "6.18.0".into(),
        }
    }

    fn get(r: &Resource, k: &'static str) -> Option<String> {
        r.get(&opentelemetry::Key::from_static_str(k))
            .map(|v| v.to_string())
    }

    #[test]
    fn defaults_describe_the_host_and_mode() {
        let r = build(&ResourceConfig::default(), &host(), "ebpf");
        assert_eq!(get(&r, "service.name").as_deref(), Some("sonde"));
        assert_eq!(get(&r, "host.id").as_deref(), Some("abc"));
        assert_eq!(get(&r, "host.arch").as_deref(), Some("amd64"));
        assert_eq!(get(&r, "os.type").as_deref(), Some("linux"));
        assert_eq!(get(&r, "os.version").as_deref(), Some("6.18.0"));
        assert_eq!(get(&r, "sonde.mode").as_deref(), Some("ebpf"));
        assert!(get(&r, "service.instance.id").is_some());
        assert!(get(&r, "service.version").is_some());
    }

    #[test]
    fn instance_id_is_a_stable_uuid_that_does_not_reveal_the_machine_id() {
        let machine = "4c4c4544004a3510804cb7c04f573432";
        let with_id = |id: Option<&str>, name: &str| {
            instance_id(&HostFacts {
                host_name: name.into(),
                host_id: id.map(str::to_owned),
                ..host()
            })
        };
        let a = with_id(Some(machine), "n1");
        assert_eq!(
            a,
            with_id(Some(machine), "other-name"),
            "keyed on the machine-id"
        );
        assert_ne!(a, with_id(Some("4c4c4544004a3510804cb7c04f573433"), "n1"));
        assert_ne!(with_id(None, "n1"), with_id(None, "n2"));
        // A version-4 UUID in its canonical form.
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
        let bare: String = parts.concat();
        assert!(!bare.contains(machine) && !machine.contains(&bare[..8]));
        // The known answer (computed with Python's hmac module) pins the derivation:
        // changing it renames every instance.
        assert_eq!(a, "3c78474a-3c8e-4597-8de8-04f12279f30b");
    }

    #[test]
    fn service_name_precedence() {
        let mut cfg = ResourceConfig {
            service_name: Some("from-file".into()),
            attributes: vec![
                ("deployment.environment.name".into(), "prod".into()),
                ("team".into(), "file".into()),
            ],
            env_service_name: None,
            env_attributes: vec![("team".into(), "env".into())],
        };
        let r = build(&cfg, &host(), "ebpf");
        assert_eq!(get(&r, "service.name").as_deref(), Some("from-file"));
        assert_eq!(
            get(&r, "deployment.environment.name").as_deref(),
            Some("prod")
        );
        assert_eq!(get(&r, "team").as_deref(), Some("env"), "env wins per key");
        cfg.env_service_name = Some("from-env".into());
        let r = build(&cfg, &host(), "ebpf");
        assert_eq!(get(&r, "service.name").as_deref(), Some("from-env"));
    }
}
