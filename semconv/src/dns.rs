//! DNS metrics (metrics.md, "DNS") and the values their attributes take.
//!
//! `dns.lookup.duration` is semconv 1.44's; the counters are `sonde.*` (semconv has no
//! DNS counters). Attribute keys are in [`crate::attr`].

use crate::{Instrument, MetricDef};

pub const DNS_LOOKUP_DURATION: MetricDef = MetricDef {
    name: "dns.lookup.duration",
    instrument: Instrument::Histogram,
    unit: "s",
    description: "Time from a DNS query leaving (or reaching) the host to its response, from kernel timestamps of the two packets.",
};
pub const SONDE_DNS_QUERIES: MetricDef = MetricDef {
    name: "sonde.dns.queries",
    instrument: Instrument::Counter,
    unit: "{query}",
    description: "DNS queries seen on the host, by question type, resolver and process.",
};
pub const SONDE_DNS_FAILURES: MetricDef = MetricDef {
    name: "sonde.dns.failures",
    instrument: Instrument::Counter,
    unit: "{query}",
    description:
        "DNS queries answered with an rcode other than NOERROR, or not answered within the timeout.",
};
pub const SONDE_DNS_CACHE_HITS: MetricDef = MetricDef {
    name: "sonde.dns.cache_hits",
    instrument: Instrument::Counter,
    unit: "{query}",
    description: "DNS queries a resolver on this host answered without asking upstream for the same question while the query was open.",
};

/// Every metric of this family.
pub const ALL: &[MetricDef] = &[
    DNS_LOOKUP_DURATION,
    SONDE_DNS_QUERIES,
    SONDE_DNS_FAILURES,
    SONDE_DNS_CACHE_HITS,
];

/// semconv 1.44's advised explicit bucket bounds for `dns.lookup.duration`, in seconds.
/// DNS latency is computed in userspace from two kernel timestamps, so there is no kernel
/// bucketing to preserve: each lookup lands in exactly one of these buckets.
pub const DURATION_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// `error.type` for a query that got no response within the timeout.
pub const ERROR_TIMEOUT: &str = "timeout";

/// `error.type` for a response's 4-bit RCODE: the lower-cased IANA name (RFC 6895).
/// `None` for NOERROR (no error).
pub fn rcode_error(rcode: u8) -> Option<&'static str> {
    const NAMES: [&str; 16] = [
        "noerror",
        "formerr",
        "servfail",
        "nxdomain",
        "notimp",
        "refused",
        "yxdomain",
        "yxrrset",
        "nxrrset",
        "notauth",
        "notzone",
        "dsotypeni",
        "rcode_12",
        "rcode_13",
        "rcode_14",
        "rcode_15",
    ];
    match rcode {
        0 => None,
        r => NAMES.get(usize::from(r)).copied(),
    }
}

/// `sonde.dns.question.type`: the IANA mnemonic for common types, `TYPE<n>` (RFC 3597)
/// for the rest.
pub fn qtype_name(qtype: u16) -> std::borrow::Cow<'static, str> {
    let name = match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        52 => "TLSA",
        64 => "SVCB",
        65 => "HTTPS",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        other => return std::borrow::Cow::Owned(format!("TYPE{other}")),
    };
    std::borrow::Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_pins_dns_names_units_instruments_and_values() {
        let got: Vec<(&str, &str, Instrument)> =
            ALL.iter().map(|m| (m.name, m.unit, m.instrument)).collect();
        assert_eq!(
            got,
            [
                ("dns.lookup.duration", "s", Instrument::Histogram),
                ("sonde.dns.queries", "{query}", Instrument::Counter),
                ("sonde.dns.failures", "{query}", Instrument::Counter),
                ("sonde.dns.cache_hits", "{query}", Instrument::Counter),
            ]
        );
        for m in ALL {
            assert!(!crate::metric::ALL.iter().any(|o| o.name == m.name));
        }
        assert_eq!(rcode_error(0), None);
        assert_eq!(rcode_error(2), Some("servfail"));
        assert_eq!(rcode_error(3), Some("nxdomain"));
        assert_eq!(rcode_error(5), Some("refused"));
        assert_eq!(rcode_error(15), Some("rcode_15"));
        assert_eq!(rcode_error(16), None, "the header's rcode has 4 bits");
        assert_eq!(qtype_name(28), "AAAA");
        assert_eq!(qtype_name(65280), "TYPE65280");
        assert!(DURATION_BOUNDS.windows(2).all(|w| w[0] < w[1]));
    }
}
