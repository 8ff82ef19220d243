//! The standard OTEL_* environment variables that Sonde honours.
//!
//! Read once, at start-up, into a plain struct, so validation is a pure function of
//! (file, environment) and tests can pass any environment they like.

use std::collections::BTreeMap;

/// A snapshot of the OTEL_* variables (and nothing else).
#[derive(Debug, Default, Clone)]
pub struct OtelEnv {
    vars: BTreeMap<String, String>,
}

impl OtelEnv {
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")))
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                // The spec treats an empty value as unset.
                .filter(|(_, v): &(String, String)| !v.trim().is_empty())
                .collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(|s| s.trim())
    }

    /// The first of `keys` that is set, with its name (for error messages). Callers list
    /// the metrics-specific variable before the generic one, as the spec orders them.
    pub fn first_of(&self, keys: &[&'static str]) -> Option<(&'static str, &str)> {
        keys.iter().find_map(|k| self.get(k).map(|v| (*k, v)))
    }
}

/// Parses `key1=value1,key2=value2` with percent-decoded values (W3C baggage style, as
/// OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES use).
pub fn parse_key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("`{item}` is not of the form key=value"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("`{item}` has an empty key"));
        }
        let v = percent_encoding::percent_decode_str(v.trim())
            .decode_utf8()
            .map_err(|_| format!("the value of `{k}` is not valid UTF-8 once percent-decoded"))?;
        out.push((k.to_owned(), v.into_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_are_percent_decoded_and_trimmed() {
        let kv = parse_key_values(" a=1 , api-key=x%20y%3D,empty= ").expect("valid");
        assert_eq!(
            kv,
            vec![
                ("a".into(), "1".into()),
                ("api-key".into(), "x y=".into()),
                ("empty".into(), "".into())
            ]
        );
        assert!(parse_key_values("novalue").is_err());
        assert!(parse_key_values("=v").is_err());
    }

    #[test]
    fn metrics_specific_variable_wins() {
        let env = OtelEnv::from_pairs([
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2000"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", ""),
        ]);
        assert_eq!(
            env.first_of(&[
                "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT"
            ]),
            Some(("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2000"))
        );
        assert_eq!(
            env.first_of(&["OTEL_EXPORTER_OTLP_PROTOCOL"]),
            None,
            "empty means unset"
        );
    }
}
