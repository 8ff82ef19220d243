//! A snapshot as the Prometheus text format (0.0.4) or OpenMetrics text (1.0.0). Pure: no
//! I/O, no tokio.
//!
//! What it guarantees (OTel "Prometheus and OpenMetrics compatibility", pull exporter):
//! names and units as [`super::names`] makes them; counters with `_total`; up-down
//! counters as gauges; histograms as `_bucket{le}` (cumulative, ending in `+Inf`), `_sum`
//! and `_count` with the snapshot's own bounds; every point labelled with
//! `otel_scope_name` / `otel_scope_version`; the resource as one `target_info` (an info
//! metric in OpenMetrics, a gauge in the text format); one TYPE per name. No sample
//! timestamps: Prometheus stamps the scrape, which keeps its staleness handling working.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use super::names::{self, Family, Kind};
use crate::model::{Histogram, Metric, Number, PointValue, Snapshot, Value};

/// The exposition format of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header asks for: OpenMetrics when it is listed with a
    /// higher (or equal) quality than the text format, else text (also when absent).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut om: Option<f32> = None;
        let mut text: Option<f32> = None;
        for part in accept.split(',') {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version = None;
            for p in params {
                if let Some((k, v)) = p.split_once('=') {
                    match k.trim() {
                        "q" => q = v.trim().parse().unwrap_or(0.0),
                        "version" => version = Some(v.trim().to_owned()),
                        _ => {}
                    }
                }
            }
            let best = |slot: &mut Option<f32>| *slot = Some(slot.map_or(q, |o| o.max(q)));
            match media.as_str() {
                // Only OpenMetrics 1.0.0 (and the unversioned form) is what we write.
                "application/openmetrics-text"
                    if version.as_deref().is_none_or(|v| v == "1.0.0") =>
                {
                    best(&mut om)
                }
                "text/plain" => best(&mut text),
                _ => {}
            }
        }
        match (om, text) {
            (Some(o), Some(t)) if o >= t && o > 0.0 => Format::OpenMetrics,
            (Some(o), None) if o > 0.0 => Format::OpenMetrics,
            _ => Format::Text,
        }
    }
}

/// Who the series describe: the resource, as `target_info` labels, and the scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    /// Resource attributes, key and value as OTel has them.
    pub resource: Vec<(String, String)>,
    pub scope_name: String,
    pub scope_version: String,
}

/// Encodes one snapshot. Metrics that share a Prometheus name (and type) are one family;
/// a point whose label set repeats one already written in its family is left out (a
/// scrape with duplicate series is rejected whole).
pub fn encode(snap: &Snapshot, target: &Target, format: Format) -> String {
    let mut out = String::with_capacity(64 * snap.point_count() + 1024);
    let scope = format!(
        "otel_scope_name=\"{}\",otel_scope_version=\"{}\"",
        escape_label(&target.scope_name),
        escape_label(&target.scope_version)
    );

    // Families in order of first appearance; one TYPE per name.
    let mut order: Vec<(Family, Vec<&Metric>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for m in &snap.metrics {
        let fam = names::family(&m.def);
        match index.get(&fam.name) {
            Some(&i) if order[i].0.kind == fam.kind => order[i].1.push(m),
            // A second type under one name would make the scrape invalid; the contract
            // test `every_contract_name_is_valid_and_one_name_has_one_type` rules it out.
            Some(_) => {}
            None => {
                index.insert(fam.name.clone(), order.len());
                order.push((fam, vec![m]));
            }
        }
    }

    for (fam, metrics) in &order {
        let help = metrics[0].def.description;
        let sample = fam.sample_name();
        // The text format names a counter family by its sample name; OpenMetrics by the
        // name without `_total`.
        let meta_name = match format {
            Format::Text => &sample,
            Format::OpenMetrics => &fam.name,
        };
        let _ = writeln!(out, "# HELP {meta_name} {}", escape_help(help, format));
        let type_word = match fam.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# TYPE {meta_name} {type_word}");
        if let (Format::OpenMetrics, Some(unit)) = (format, &fam.unit) {
            let _ = writeln!(out, "# UNIT {meta_name} {unit}");
        }
        let mut seen: HashSet<String> = HashSet::new();
        for m in metrics {
            for p in &m.points {
                let labels = labels(p.attributes.iter(), &scope);
                if !seen.insert(labels.clone()) {
                    continue;
                }
                match &p.value {
                    PointValue::Number(n) => {
                        let _ = writeln!(out, "{sample}{{{labels}}} {}", number(*n));
                    }
                    // The explicit form: kernel grid histograms summed per doubling.
                    PointValue::Histogram(_) | PointValue::Exponential(_) => {
                        if let Some(h) = p.value.explicit() {
                            histogram(&mut out, &fam.name, &labels, &h, format);
                        }
                    }
                }
            }
        }
    }

    if !target.resource.is_empty() {
        let mut pairs: Vec<(&str, &str)> = target
            .resource
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.sort();
        let labels = join_labels(pairs.into_iter());
        match format {
            Format::Text => {
                out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
            }
            Format::OpenMetrics => {
                out.push_str("# HELP target Target metadata\n# TYPE target info\n");
            }
        }
        let _ = writeln!(out, "target_info{{{labels}}} 1");
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram, format: Format) {
    let mut cumulative = 0u64;
    for (i, bound) in h.bounds.iter().enumerate() {
        cumulative += h.counts.get(i).copied().unwrap_or(0);
        let _ = write!(
            out,
            "{name}_bucket{{{labels},le=\"{}\"}} {cumulative}",
            float(*bound)
        );
        exemplar(out, h, i, format);
    }
    // `+Inf` is the total count: the last (overflow) bucket included.
    let _ = write!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    exemplar(out, h, h.bounds.len(), format);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", float(h.sum));
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

/// Ends a bucket line, with the newest exemplar that falls in bucket `i` in OpenMetrics
/// (the text format has no exemplars): Grafana follows its trace_id to the trace.
fn exemplar(out: &mut String, h: &Histogram, i: usize, format: Format) {
    let lower = i.checked_sub(1).and_then(|j| h.bounds.get(j)).copied();
    let upper = h.bounds.get(i).copied();
    let found = (format == Format::OpenMetrics)
        .then(|| {
            h.exemplars
                .iter()
                .rev()
                .find(|e| lower.is_none_or(|l| e.value > l) && upper.is_none_or(|u| e.value <= u))
        })
        .flatten();
    if let Some(e) = found {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let _ = write!(
            out,
            " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {}.{:09}",
            hex(&e.trace_id),
            hex(&e.span_id),
            float(e.value),
            e.time_unix_nano / 1_000_000_000,
            e.time_unix_nano % 1_000_000_000
        );
    }
    out.push('\n');
}

/// Point attributes as labels, then the scope labels. Keys that collide once sanitized
/// are one label whose values are joined with `;` in the order of the original keys
/// (attributes are sorted by key).
fn labels<'a>(attrs: impl Iterator<Item = &'a (&'static str, Value)>, scope: &str) -> String {
    let mut s = join_labels(attrs.map(|(k, v)| (*k, value_text(v))));
    if !s.is_empty() {
        s.push(',');
    }
    s.push_str(scope);
    s
}

fn join_labels<K: AsRef<str>, V: AsRef<str>>(pairs: impl Iterator<Item = (K, V)>) -> String {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (k, v) in pairs {
        let name = names::label_name(k.as_ref());
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push(';');
                joined.push_str(v.as_ref());
            }
            None => merged.push((name, v.as_ref().to_owned())),
        }
    }
    let mut s = String::new();
    for (i, (k, v)) in merged.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"{}\"", escape_label(v));
    }
    s
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
    }
}

fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: the text format escapes `\` and newlines; OpenMetrics also `"`.
fn escape_help(s: &str, format: Format) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

fn number(n: Number) -> String {
    match n {
        Number::Int(i) => i.to_string(),
        Number::Double(d) => float(d),
    }
}

/// Shortest text that parses back to the same f64 (Prometheus reads it with Go's
/// ParseFloat), with the exposition formats' spelling of the non-finite values.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{numbers, Attributes, Point};
    use sonde_semconv::{dns, metric, tcp, Instrument, MetricDef};

    fn target() -> Target {
        Target {
            resource: vec![
                ("service.name".into(), "sonde".into()),
                ("host.name".into(), "node \"1\"".into()),
            ],
            scope_name: "sonde".into(),
            scope_version: "0.1.0".into(),
        }
    }

    fn snap(metrics: Vec<Metric>) -> Snapshot {
        Snapshot {
            time_unix_nano: 1,
            metrics,
        }
    }

    #[test]
    fn counter_text_and_openmetrics() {
        let s = snap(vec![numbers(
            metric::SONDE_PROCESS_EXEC,
            0,
            [(
                Attributes::new().with("process.executable.name", "true"),
                Number::Int(7),
            )],
        )]);
        let text = encode(&s, &target(), Format::Text);
        assert_eq!(
            text,
            "# HELP sonde_process_exec_total Successful execs, by executable name.\n\
             # TYPE sonde_process_exec_total counter\n\
             sonde_process_exec_total{process_executable_name=\"true\",otel_scope_name=\"sonde\",otel_scope_version=\"0.1.0\"} 7\n\
             # HELP target_info Target metadata\n\
             # TYPE target_info gauge\n\
             target_info{host_name=\"node \\\"1\\\"\",service_name=\"sonde\"} 1\n"
        );
        let om = encode(&s, &target(), Format::OpenMetrics);
        assert_eq!(
            om,
            "# HELP sonde_process_exec Successful execs, by executable name.\n\
             # TYPE sonde_process_exec counter\n\
             sonde_process_exec_total{process_executable_name=\"true\",otel_scope_name=\"sonde\",otel_scope_version=\"0.1.0\"} 7\n\
             # HELP target Target metadata\n\
             # TYPE target info\n\
             target_info{host_name=\"node \\\"1\\\"\",service_name=\"sonde\"} 1\n\
             # EOF\n"
        );
    }

    #[test]
    fn ratio_gauge_unit_and_updowncounter() {
        let s = snap(vec![
            numbers(
                metric::SONDE_PROBE_STATUS,
                0,
                [(Attributes::new(), Number::Int(1))],
            ),
            numbers(
                metric::SONDE_AGENT_MEMORY_RSS,
                0,
                [(Attributes::new(), Number::Int(4096))],
            ),
            numbers(
                tcp::SYSTEM_NETWORK_CONNECTION_COUNT,
                0,
                [(Attributes::new(), Number::Int(3))],
            ),
        ]);
        let om = encode(&s, &Target::default(), Format::OpenMetrics);
        assert!(om.contains("# TYPE sonde_probe_status_ratio gauge\n# UNIT sonde_probe_status_ratio ratio\nsonde_probe_status_ratio{"), "{om}");
        assert!(
            om.contains("# UNIT sonde_agent_memory_rss_bytes bytes\n"),
            "{om}"
        );
        assert!(
            om.contains("# TYPE system_network_connection_count gauge\n"),
            "{om}"
        );
        assert!(!om.contains("target_info"), "no resource, no target_info");
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_exact_bounds() {
        let h = Histogram {
            bounds: vec![0.005, 0.01, 0.025],
            counts: vec![1, 0, 2, 3],
            sum: 1.5,
            count: 6,
            exemplars: Vec::new(),
        };
        let s = snap(vec![Metric {
            def: dns::DNS_LOOKUP_DURATION,
            points: vec![Point {
                attributes: Attributes::new().with("sonde.dns.question.type", "A"),
                value: PointValue::Histogram(h),
                start_unix_nano: 0,
            }],
        }]);
        let text = encode(&s, &Target::default(), Format::Text);
        let l = "sonde_dns_question_type=\"A\",otel_scope_name=\"\",otel_scope_version=\"\"";
        let want = format!(
            "# TYPE dns_lookup_duration_seconds histogram\n\
             dns_lookup_duration_seconds_bucket{{{l},le=\"0.005\"}} 1\n\
             dns_lookup_duration_seconds_bucket{{{l},le=\"0.01\"}} 1\n\
             dns_lookup_duration_seconds_bucket{{{l},le=\"0.025\"}} 3\n\
             dns_lookup_duration_seconds_bucket{{{l},le=\"+Inf\"}} 6\n\
             dns_lookup_duration_seconds_sum{{{l}}} 1.5\n\
             dns_lookup_duration_seconds_count{{{l}}} 6\n"
        );
        assert!(text.contains(&want), "{text}");
    }

    #[test]
    fn openmetrics_bucket_lines_carry_exemplars_in_their_bucket() {
        let ex = |value: f64, id: u8| crate::model::Exemplar {
            trace_id: [id; 16],
            span_id: [id; 8],
            value,
            time_unix_nano: 1_700_000_000_250_000_000,
        };
        let h = Histogram {
            bounds: vec![0.005, 0.01],
            counts: vec![0, 1, 1],
            sum: 2.0,
            count: 2,
            exemplars: vec![ex(0.007, 0xab), ex(1.9, 0xcd)],
        };
        let s = snap(vec![Metric {
            def: dns::DNS_LOOKUP_DURATION,
            points: vec![Point {
                attributes: Attributes::new(),
                value: PointValue::Histogram(h),
                start_unix_nano: 0,
            }],
        }]);
        let om = encode(&s, &Target::default(), Format::OpenMetrics);
        let ab = format!(
            "trace_id=\"{}\",span_id=\"{}\"",
            "ab".repeat(16),
            "ab".repeat(8)
        );
        let line = |le: &str| {
            om.lines()
                .find(|l| l.contains(&format!("le=\"{le}\"")))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(!line("0.005").contains('#'), "{om}");
        assert!(
            line("0.01").ends_with(&format!("1 # {{{ab}}} 0.007 1700000000.250000000")),
            "{om}"
        );
        assert!(line("+Inf").contains(&"cd".repeat(16)), "{om}");
        let text = encode(&s, &Target::default(), Format::Text);
        assert!(
            !text.contains("trace_id"),
            "no exemplars in the text format"
        );
    }

    #[test]
    fn escaping_and_colliding_labels() {
        let def = MetricDef {
            name: "x.y",
            instrument: Instrument::Gauge,
            unit: "",
            description: "a \\ b\nc \"q\"",
        };
        let attrs = Attributes::new()
            .with("a.b", "v\\1\n\"2\"")
            .with("a-b", "w")
            .with("n", 5i64)
            .with("ok", true);
        let s = snap(vec![numbers(def, 0, [(attrs, Number::Double(0.25))])]);
        let text = encode(&s, &Target::default(), Format::Text);
        assert!(text.contains("# HELP x_y a \\\\ b\\nc \"q\"\n"), "{text}");
        // `a-b` sorts before `a.b`: values joined in that order.
        assert!(
            text.contains("x_y{a_b=\"w;v\\\\1\\n\\\"2\\\"\",n=\"5\",ok=\"true\",otel_scope_name"),
            "{text}"
        );
        assert!(text.contains("} 0.25\n"));
        let om = encode(&s, &Target::default(), Format::OpenMetrics);
        assert!(om.contains("# HELP x_y a \\\\ b\\nc \\\"q\\\"\n"), "{om}");
    }

    #[test]
    fn one_family_per_name_and_no_duplicate_series() {
        let a = Attributes::new().with("cpu.mode", "user");
        let s = snap(vec![
            numbers(
                metric::SONDE_AGENT_CPU_TIME,
                0,
                [(a.clone(), Number::Double(1.0))],
            ),
            numbers(
                metric::SONDE_AGENT_CPU_TIME,
                0,
                [
                    (a, Number::Double(2.0)),
                    (
                        Attributes::new().with("cpu.mode", "system"),
                        Number::Double(f64::INFINITY),
                    ),
                ],
            ),
        ]);
        let text = encode(&s, &Target::default(), Format::Text);
        assert_eq!(text.matches("# TYPE").count(), 1, "{text}");
        assert_eq!(text.matches("cpu_mode=\"user\"").count(), 1, "{text}");
        assert!(
            text.contains("cpu_mode=\"user\",otel_scope_name=\"\",otel_scope_version=\"\"} 1\n")
        );
        assert!(text.contains("} +Inf\n"));
    }

    #[test]
    fn negotiation() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let cases: &[(Option<&str>, Format)] = &[
            (None, Format::Text),
            (Some(prom), Format::OpenMetrics),
            (Some("text/plain"), Format::Text),
            (Some("*/*"), Format::Text),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("application/openmetrics-text;version=0.0.1"),
                Format::Text,
            ),
            (
                Some("text/plain;q=0.9,application/openmetrics-text;q=0.5"),
                Format::Text,
            ),
            (Some("application/openmetrics-text;q=0"), Format::Text),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(*accept), *want, "{accept:?}");
        }
    }
}
