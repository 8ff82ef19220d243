//! Pure mapping from collected counts to metrics with the contract's names, units and
//! attributes (all spelled in `sonde_semconv`). No I/O here.

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

/// A kernel log2 histogram (`probes/include/sonde_log2.h`: slot i counts values in
/// (2^(i-1), 2^i] ns, the last slot everything above) as an explicit-bucket histogram with
/// exactly those bounds, in seconds: the kernel's buckets, not re-bucketed.
pub fn log2_histogram(slots: &[u64], sum_ns: u64) -> crate::model::Histogram {
    crate::model::Histogram {
        bounds: log2_bounds_seconds(slots.len()),
        counts: slots.to_vec(),
        sum: sum_ns as f64 / 1e9,
        count: slots.iter().sum(),
    }
}

/// The explicit bounds of a log2 histogram of `slots` slots: 2^0 .. 2^(slots-2) ns.
pub fn log2_bounds_seconds(slots: usize) -> Vec<f64> {
    (0..slots.saturating_sub(1))
        .map(|i| (1u64 << i) as f64 / 1e9)
        .collect()
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
