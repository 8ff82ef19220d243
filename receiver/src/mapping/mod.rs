//! Pure mapping from collected counts to metrics with the contract's names, units and
//! attributes (all spelled in `sonde_semconv`). No I/O here.

pub mod process;
pub mod self_telemetry;

/// mounts, swaps and mountinfo write space, tab, newline and backslash as \040, \011,
/// \012, \134.
pub fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = (b[i] == b'\\' && i + 3 < b.len())
            .then(|| &b[i + 1..i + 4])
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u16, |v, c| v * 8 + u16::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        if let Some(c) = code {
            out.push(c);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A kernel histogram on the grid (`probes/include/sonde_hist.h`, `sonde_probes::grid`:
/// slot 0 counts zero durations, slot s >= 1 is the bucket (2^(i/4), 2^((i+1)/4)] s with
/// i = s - 1 + MIN_INDEX) as the model's exponential histogram: the kernel's buckets,
/// not re-bucketed. Exporters that need explicit bounds sum them per doubling.
pub fn grid_histogram(slots: &[u64], sum_ns: u64) -> crate::model::ExpHistogram {
    use sonde_probes::grid;
    crate::model::ExpHistogram::from_dense(
        grid::SCALE,
        slots.first().copied().unwrap_or(0),
        grid::MIN_INDEX,
        slots.get(1..).unwrap_or(&[]),
        sum_ns as f64 / 1e9,
    )
}

/// Counter points of bounded series, each with its own start time. Two series that map
/// to one attribute set (two file systems shown at one mount point) are summed and keep
/// the earlier start.
#[derive(Debug, Default)]
pub struct CounterPoints(std::collections::BTreeMap<crate::model::Attributes, (u64, u64)>);

impl CounterPoints {
    pub fn add(&mut self, attributes: crate::model::Attributes, value: u64, start_unix_nano: u64) {
        let e = self.0.entry(attributes).or_insert((0, start_unix_nano));
        e.0 += value;
        e.1 = e.1.min(start_unix_nano);
    }

    /// The metric `def` with these points, in attribute order.
    pub fn metric(self, def: sonde_semconv::MetricDef) -> crate::model::Metric {
        crate::model::Metric {
            def,
            points: self
                .0
                .into_iter()
                .map(|(attributes, (v, start))| crate::model::Point {
                    attributes,
                    value: crate::model::PointValue::Number(crate::model::Number::Int(
                        i64::try_from(v).unwrap_or(i64::MAX),
                    )),
                    start_unix_nano: start,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes() {
        assert_eq!(
            unescape_octal("/a\\040b\\011c\\012d\\134e"),
            "/a b\tc\nd\\e"
        );
        assert_eq!(unescape_octal("trailing\\04"), "trailing\\04");
        assert_eq!(unescape_octal("\\999"), "\\999");
        assert_eq!(
            unescape_octal("\\777"),
            "\\777",
            "above 255: kept as written"
        );
        // The digit 7 in the first place once overflowed a u8 in a second copy of this.
        assert_eq!(unescape_octal("\\400\\377"), "\\400\u{fffd}");
    }
}
