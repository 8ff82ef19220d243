//! The embedded default output: a compact table on stdout every interval, so a first
//! `sudo sonde run` shows what Sonde measures with no collector at all.

use std::collections::HashMap;
use std::fmt::Write as _;

use sonde_semconv::Instrument;

use crate::model::{Attributes, PointValue, Snapshot, Value};

#[derive(Debug, Default)]
pub struct ConsoleExporter {
    last: HashMap<(&'static str, Attributes), (f64, u64)>,
}

impl ConsoleExporter {
    pub fn submit(&mut self, snap: &Snapshot) {
        print!("{}", self.render(snap));
    }

    /// One block per snapshot: metric, attributes, value, and for counters the rate
    /// since the previous snapshot.
    pub fn render(&mut self, snap: &Snapshot) -> String {
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
                    PointValue::Histogram(h) => {
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
                self.last.insert(key, (total, snap.time_unix_nano));
                let _ = writeln!(
                    out,
                    "{:<34} {:<40} {:>12} {:>10}",
                    m.def.name, attrs, value, rate
                );
            }
        }
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
        let mut c = ConsoleExporter::default();
        let first = c.render(&snap(1_000_000_000, 10));
        assert!(first.contains("system.process.created"));
        let second = c.render(&snap(3_000_000_000, 30));
        assert!(second.contains("10.00"), "20 over 2 s: {second}");
    }
}
