//! The embedded default output with no collector: every interval a compact summary on
//! stdout (headline rates, the top 5 of each kind), or with `exporters.console.detail:
//! full` every series of every metric, so a first `sudo sonde run` reads at a glance.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use sonde_semconv::Instrument;

use crate::config::ConsoleDetail;
use crate::model::{Attributes, PointValue, Snapshot, Value};
use crate::view::frame::Viewer;
use crate::view::text;

#[derive(Debug, Default)]
pub struct ConsoleExporter {
    detail: ConsoleDetail,
    viewer: Viewer,
    /// Full table: each series' previous total and time, for its rate. Rebuilt from every
    /// snapshot so that series which are gone are forgotten.
    last: HashMap<(&'static str, Attributes), (f64, u64)>,
}

impl ConsoleExporter {
    pub fn new(detail: ConsoleDetail) -> Self {
        Self {
            detail,
            ..Self::default()
        }
    }

    /// Series it remembers between snapshots (its viewer's and the full table's), for
    /// tests of bounded state.
    pub fn series(&self) -> usize {
        self.viewer.series() + self.last.len()
    }

    /// Prints one snapshot. An error (`BrokenPipe` when the reader went away, as in
    /// `sonde run | head`) is the caller's to act on: nothing more can be shown.
    pub fn submit(&mut self, snap: &Snapshot) -> std::io::Result<()> {
        let text = self.render(snap);
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    pub fn render(&mut self, snap: &Snapshot) -> String {
        match self.detail {
            ConsoleDetail::Summary => text::summary(&self.viewer.update(snap)),
            ConsoleDetail::Full => self.render_full(snap),
        }
    }

    /// What to say once at start-up: where the output goes and how to get more.
    pub fn banner(&self, interval: Duration) -> String {
        let what = match self.detail {
            ConsoleDetail::Summary => "a summary",
            ConsoleDetail::Full => "every series",
        };
        format!(
            "sonde: no collector configured, printing {what} every {}.\n\
             \x20 send metrics to an OpenTelemetry Collector: \
             OTEL_EXPORTER_OTLP_ENDPOINT=http://HOST:4318 (or :4317 with \
             OTEL_EXPORTER_OTLP_PROTOCOL=grpc), or exporters.otlp in a config file\n\
             \x20 live view of this host: sudo sonde top\n\
             \x20 every series of every metric: sonde run --verbose-console\n",
            humantime::format_duration(interval)
        )
    }

    /// One block per snapshot: metric, attributes, value, and for counters the rate
    /// since the previous snapshot.
    fn render_full(&mut self, snap: &Snapshot) -> String {
        let mut last = HashMap::new();
        let mut out = String::new();
        let _ = writeln!(out, "\n{:-<100}", "-- sonde ");
        let _ = writeln!(
            out,
            "{:<34} {:<40} {:>12} {:>10}",
            "metric", "attributes", "value", "per s"
        );
        for m in &snap.metrics {
            for p in &m.points {
                let attrs = render_attrs(&p.attributes);
                let (value, total) = match &p.value {
                    PointValue::Number(n) => {
                        let v = n.as_f64();
                        (format_value(v, m.def.unit), v)
                    }
                    PointValue::Histogram(_) | PointValue::Exponential(_) => {
                        let Some(h) = p.value.explicit() else {
                            continue;
                        };
                        let mean = if h.count > 0 {
                            h.sum / h.count as f64
                        } else {
                            0.0
                        };
                        (
                            format!("n={} mean={}", h.count, format_value(mean, m.def.unit)),
                            h.count as f64,
                        )
                    }
                };
                let key = (m.def.name, p.attributes.clone());
                let rate = match (m.def.instrument, self.last.get(&key)) {
                    (Instrument::Counter | Instrument::Histogram, Some((prev, t)))
                        if snap.time_unix_nano > *t && total >= *prev =>
                    {
                        let secs = (snap.time_unix_nano - t) as f64 / 1e9;
                        format!("{:.2}", (total - prev) / secs)
                    }
                    _ => String::new(),
                };
                last.insert(key, (total, snap.time_unix_nano));
                let _ = writeln!(
                    out,
                    "{:<34} {:<40} {:>12} {:>10}",
                    m.def.name, attrs, value, rate
                );
            }
        }
        self.last = last;
        out
    }
}

fn render_attrs(a: &Attributes) -> String {
    let s: Vec<String> = a
        .iter()
        .map(|(k, v)| {
            let k = k.rsplit('.').next().unwrap_or(k);
            match v {
                Value::Str(s) => format!("{k}={s}"),
                Value::Int(i) => format!("{k}={i}"),
                Value::Bool(b) => format!("{k}={b}"),
            }
        })
        .collect();
    let s = s.join(",");
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(39).collect::<String>())
    } else {
        s
    }
}

fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "s" if v < 1.0 => format!("{:.3}ms", v * 1e3),
        "s" => format!("{v:.3}s"),
        "By" if v >= 1024.0 * 1024.0 => format!("{:.1}MiB", v / 1024.0 / 1024.0),
        "By" if v >= 1024.0 => format!("{:.1}KiB", v / 1024.0),
        _ if v.fract() == 0.0 => format!("{v:.0}"),
        _ => format!("{v:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{numbers, Number};
    use sonde_semconv::metric as m;

    #[test]
    fn shows_values_and_rates() {
        let snap = |t, n| Snapshot {
            time_unix_nano: t,
            metrics: vec![numbers(
                m::SYSTEM_PROCESS_CREATED,
                0,
                [(Attributes::new(), Number::Int(n))],
            )],
        };
        let mut c = ConsoleExporter::new(ConsoleDetail::Full);
        let first = c.render(&snap(1_000_000_000, 10));
        assert!(first.contains("system.process.created"));
        let second = c.render(&snap(3_000_000_000, 30));
        assert!(second.contains("10.00"), "20 over 2 s: {second}");
        c.render(&Snapshot::default());
        assert!(
            c.last.is_empty(),
            "series gone from the snapshot are forgotten"
        );
    }

    #[test]
    fn summary_by_default_and_a_banner_that_says_what_next() {
        let mut c = ConsoleExporter::default();
        let text = c.render(&Snapshot {
            time_unix_nano: 1_000_000_000,
            metrics: Vec::new(),
        });
        assert!(text.starts_with("── sonde"), "{text}");
        let banner = c.banner(Duration::from_secs(10));
        for needle in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "sonde top",
            "--verbose-console",
            "10s",
        ] {
            assert!(banner.contains(needle), "{needle}: {banner}");
        }
    }
}
