//! OTel -> Prometheus names (the OTel "Prometheus and OpenMetrics compatibility" rules, as
//! metrics.md's "Prometheus names" summarises them). Pure.

use sonde_semconv::{Instrument, MetricDef};

/// The Prometheus type a metric becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic cumulative sums (OTel Counter).
    Counter,
    /// Gauges and non-monotonic sums (OTel Gauge, UpDownCounter).
    Gauge,
    Histogram,
}

/// The metric family a contract metric becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Family name with its unit suffix, without `_total` (OpenMetrics' family name).
    pub name: String,
    pub kind: Kind,
    /// Prometheus unit word(s) (`seconds`, `bytes`, `ratio`), if any.
    pub unit: Option<String>,
}

impl Family {
    /// The name samples carry: `_total` on counters; histograms add `_bucket` etc. to it.
    pub fn sample_name(&self) -> String {
        match self.kind {
            Kind::Counter if !self.name.ends_with("_total") => format!("{}_total", self.name),
            _ => self.name.clone(),
        }
    }

    /// Every sample name the family exposes (what a PromQL query can select).
    pub fn series_names(&self) -> Vec<String> {
        match self.kind {
            Kind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{}{s}", self.name))
                .collect(),
            _ => vec![self.sample_name()],
        }
    }
}

pub fn kind(instrument: Instrument) -> Kind {
    match instrument {
        Instrument::Counter => Kind::Counter,
        Instrument::UpDownCounter | Instrument::Gauge => Kind::Gauge,
        Instrument::Histogram => Kind::Histogram,
    }
}

/// The family of a contract metric: dots (and anything else outside `[a-zA-Z0-9_:]`) to
/// `_`, runs of `_` collapsed, the unit's word appended unless the name already has it.
pub fn family(def: &MetricDef) -> Family {
    let kind = kind(def.instrument);
    let mut name = sanitize(def.name, true);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    let unit = unit_word(def.unit, def.instrument == Instrument::Gauge);
    if let Some(u) = &unit {
        let has_it = {
            let tokens: Vec<&str> = name.split('_').collect();
            let unit_tokens: Vec<&str> = u.split('_').collect();
            tokens.windows(unit_tokens.len()).any(|w| w == unit_tokens)
        };
        if !has_it {
            name = format!("{name}_{u}");
        }
    }
    Family { name, kind, unit }
}

/// A label name: invalid characters to `_`, runs collapsed, a leading digit prefixed with
/// `key_` (label names may not start with one).
pub fn label_name(key: &str) -> String {
    let s = sanitize(key, false);
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{s}")
    } else {
        s
    }
}

fn sanitize(s: &str, colons: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':');
        let c = if ok { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    out
}

/// The Prometheus word for a UCUM unit as OTel writes it: annotations (`{packet}`)
/// dropped, abbreviations spelled out, `a/b` as `a_per_b`, `1` as `ratio` on gauges only.
pub fn unit_word(unit: &str, gauge: bool) -> Option<String> {
    if unit == "1" {
        return gauge.then(|| "ratio".to_owned());
    }
    // Strip `{...}` annotations wherever they are.
    let mut plain = String::new();
    let mut depth = 0u32;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let plain = plain.trim();
    if plain.is_empty() || plain == "1" {
        return None;
    }
    let word = match plain.split_once('/') {
        Some((a, b)) => {
            let a = main_unit(a.trim());
            let b = per_unit(b.trim());
            match (a.is_empty(), b.is_empty()) {
                (true, true) => return None,
                (true, false) => format!("per_{b}"),
                (false, true) => a,
                (false, false) => format!("{a}_per_{b}"),
            }
        }
        None => main_unit(plain),
    };
    let word = sanitize(&word, false).trim_matches('_').to_owned();
    (!word.is_empty()).then_some(word)
}

fn main_unit(u: &str) -> String {
    match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        "1" => "",
        other => other,
    }
    .to_owned()
}

fn per_unit(u: &str) -> String {
    match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_semconv::{host, tcp};

    /// Every contract metric, both name sets.
    fn contract() -> Vec<MetricDef> {
        [sonde_semconv::contract(), host::v0::ALL.to_vec()].concat()
    }

    #[test]
    fn contract_names_follow_the_rules() {
        // Hand-written from the rules: a change in the naming code or in semconv that
        // moves a Prometheus name fails here (dashboards depend on these strings).
        let table: &[(&str, &str)] = &[
            ("system.process.created", "system_process_created_total"),
            ("sonde.process.exec", "sonde_process_exec_total"),
            ("system.process.count", "system_process_count"),
            ("sonde.probe.status", "sonde_probe_status_ratio"),
            (
                "sonde.probe.run.duration",
                "sonde_probe_run_duration_seconds_total",
            ),
            ("sonde.agent.memory.rss", "sonde_agent_memory_rss_bytes"),
            ("sonde.agent.cpu.time", "sonde_agent_cpu_time_seconds_total"),
            ("sonde.export.points", "sonde_export_points_total"),
            (
                "system.network.connection.count",
                "system_network_connection_count",
            ),
            ("sonde.tcp.rtt", "sonde_tcp_rtt_seconds"),
            ("sonde.tcp.io", "sonde_tcp_io_bytes_total"),
            ("sonde.tcp.retransmits", "sonde_tcp_retransmits_total"),
            ("dns.lookup.duration", "dns_lookup_duration_seconds"),
            ("sonde.dns.queries", "sonde_dns_queries_total"),
            ("sonde.file.io.duration", "sonde_file_io_duration_seconds"),
            ("system.disk.io", "system_disk_io_bytes_total"),
            (
                "system.disk.operation_time",
                "system_disk_operation_time_seconds_total",
            ),
            ("system.uptime", "system_uptime_seconds"),
            ("system.cpu.time", "system_cpu_time_seconds_total"),
            ("system.cpu.utilization", "system_cpu_utilization_ratio"),
            ("system.cpu.load_average.1m", "system_cpu_load_average_1m"),
            ("system.memory.usage", "system_memory_usage_bytes"),
            (
                "system.filesystem.utilization",
                "system_filesystem_utilization_ratio",
            ),
            ("process.memory.usage", "process_memory_usage_bytes"),
            (
                "process.unix.file_descriptor.count",
                "process_unix_file_descriptor_count",
            ),
        ];
        let all = contract();
        for (otel, prom) in table {
            let def = all
                .iter()
                .find(|d| d.name == *otel)
                .unwrap_or_else(|| panic!("{otel} is not in the contract"));
            assert_eq!(family(def).sample_name(), *prom, "{otel}");
        }
    }

    #[test]
    fn histograms_expose_bucket_sum_count() {
        let f = family(&tcp::SONDE_TCP_RTT);
        assert_eq!(f.kind, Kind::Histogram);
        assert_eq!(
            f.series_names(),
            [
                "sonde_tcp_rtt_seconds_bucket",
                "sonde_tcp_rtt_seconds_sum",
                "sonde_tcp_rtt_seconds_count"
            ]
        );
    }

    #[test]
    fn every_contract_name_is_valid_and_one_name_has_one_type() {
        let mut seen: std::collections::HashMap<String, (Kind, &str)> = Default::default();
        for def in contract() {
            let f = family(&def);
            assert!(
                f.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                    && !f.name.starts_with(|c: char| c.is_ascii_digit()),
                "{}: {}",
                def.name,
                f.name
            );
            if let Some((k, other)) = seen.insert(f.name.clone(), (f.kind, def.name)) {
                assert_eq!(
                    k, f.kind,
                    "{} and {other} share the Prometheus name {} with different types",
                    def.name, f.name
                );
            }
        }
    }

    #[test]
    fn units() {
        let cases: &[(&str, bool, Option<&str>)] = &[
            ("s", false, Some("seconds")),
            ("ms", false, Some("milliseconds")),
            ("By", false, Some("bytes")),
            ("{packet}", false, None),
            ("{thread}", true, None),
            ("1", true, Some("ratio")),
            ("1", false, None),
            ("By/s", false, Some("bytes_per_second")),
            ("{packet}/s", false, Some("per_second")),
            ("KiBy", false, Some("kibibytes")),
            ("", true, None),
        ];
        for (unit, gauge, want) in cases {
            assert_eq!(
                unit_word(unit, *gauge).as_deref(),
                *want,
                "unit {unit:?} gauge={gauge}"
            );
        }
    }

    #[test]
    fn names_are_sanitized_and_units_not_repeated() {
        let def = |name, instrument, unit| MetricDef {
            name,
            instrument,
            unit,
            description: "",
        };
        let cases: &[(MetricDef, &str)] = &[
            (def("a.b-c/d", Instrument::Gauge, ""), "a_b_c_d"),
            (def("a..b", Instrument::Gauge, ""), "a_b"),
            (def("9lives", Instrument::Gauge, ""), "_9lives"),
            (def("ns:x.y", Instrument::Gauge, ""), "ns:x_y"),
            (def("up.seconds", Instrument::Gauge, "s"), "up_seconds"),
            (def("req.total", Instrument::Counter, ""), "req_total"),
            (
                def("req", Instrument::Counter, "ms"),
                "req_milliseconds_total",
            ),
            (def("ratio.x", Instrument::Gauge, "1"), "ratio_x"),
        ];
        for (d, want) in cases {
            assert_eq!(family(d).sample_name(), *want, "{}", d.name);
        }
        assert_eq!(
            label_name("process.executable.name"),
            "process_executable_name"
        );
        assert_eq!(label_name("a..b"), "a_b");
        assert_eq!(label_name("1st"), "key_1st");
        assert_eq!(label_name("k8s.pod.name"), "k8s_pod_name");
    }
}
