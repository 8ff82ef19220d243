//! What of a DNS question name may leave the agent (`probes.dns.question_names`,
//! `probes.dns.never_export_suffixes`). One pure policy for every exporter of names: the
//! `dns.lookup.duration` series here and the DNS spans call [`NamePrivacy::exported`].
//!
//! - Names under a never-export suffix (`corp.example` covers `corp.example` and
//!   `db.corp.example`) are never exported, whatever the mode.
//! - `redacted` replaces the name with a keyed hash (HMAC-SHA-256, first 64 bits, hex,
//!   prefixed `h:`): stable for a host's key, so cardinality and repetition stay visible,
//!   but the name cannot be read back or guessed without the key, which never leaves the
//!   host.
//!
//! Names are compared and hashed lower-cased without a trailing dot (DNS is
//! case-insensitive); unredacted names are exported as they were asked.

use std::fmt::{self, Write as _};
use std::sync::Arc;

/// Prefix of a redacted name, so a reader can tell it from a real one.
pub const REDACTED_PREFIX: &str = "h:";

#[derive(Clone, Default)]
pub struct NamePrivacy {
    key: Option<ring::hmac::Key>,
    /// Identifies the key for equality (a tag of the empty string), never the key itself.
    key_id: Option<[u8; 8]>,
    /// Normalized suffixes.
    never_export: Vec<String>,
    /// No name leaves the agent (redaction asked for, but no key could be had).
    hide_all: bool,
}

impl fmt::Debug for NamePrivacy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamePrivacy")
            .field("redacted", &self.key.is_some())
            .field("never_export", &self.never_export)
            .finish()
    }
}

impl PartialEq for NamePrivacy {
    fn eq(&self, other: &Self) -> bool {
        self.key_id == other.key_id
            && self.never_export == other.never_export
            && self.hide_all == other.hide_all
    }
}

/// `Example.COM.` -> `example.com`.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl NamePrivacy {
    /// `redaction_key`: hash names with this key; `None` exports them as they are.
    pub fn new(redaction_key: Option<&[u8]>, never_export: &[String]) -> Self {
        let key = redaction_key.map(|k| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k));
        let key_id = key.as_ref().map(|k| {
            let mut id = [0u8; 8];
            id.copy_from_slice(&ring::hmac::sign(k, b"").as_ref()[..8]);
            id
        });
        Self {
            key,
            key_id,
            never_export: never_export.iter().map(|s| normalize(s)).collect(),
            hide_all: false,
        }
    }

    /// Exports no name at all.
    pub fn hide_all() -> Self {
        Self {
            hide_all: true,
            ..Self::default()
        }
    }

    pub fn redacts(&self) -> bool {
        self.key.is_some()
    }

    /// The name as it may be exported: `None` when it must not be, else the name
    /// (normalized) or its keyed hash.
    pub fn exported(&self, name: &str) -> Option<String> {
        if self.hidden(name) {
            return None;
        }
        Some(match &self.key {
            // Exported as the resolver saw it (as before the policy existed).
            None => name.to_owned(),
            Some(key) => self.hashed(key, name),
        })
    }

    /// As [`Self::exported`] for a shared name: an unredacted name is handed back as
    /// the same shared copy, so the reader allocates nothing per lookup.
    pub fn exported_shared(&self, name: &Arc<str>) -> Option<Arc<str>> {
        if self.hidden(name) {
            return None;
        }
        Some(match &self.key {
            None => name.clone(),
            Some(key) => self.hashed(key, name).into(),
        })
    }

    /// Whether `name` must not leave the agent: under a never-export suffix (compared
    /// as [`normalize`] would, without making the normalized copy).
    fn hidden(&self, name: &str) -> bool {
        if self.hide_all {
            return true;
        }
        let name = name.trim_end_matches('.').as_bytes();
        self.never_export.iter().any(|s| {
            let s = s.as_bytes();
            name.len() >= s.len()
                && name[name.len() - s.len()..].eq_ignore_ascii_case(s)
                && (name.len() == s.len() || name[name.len() - s.len() - 1] == b'.')
        })
    }

    fn hashed(&self, key: &ring::hmac::Key, name: &str) -> String {
        let tag = ring::hmac::sign(key, normalize(name).as_bytes());
        let mut out = String::with_capacity(REDACTED_PREFIX.len() + 16);
        out.push_str(REDACTED_PREFIX);
        for b in &tag.as_ref()[..8] {
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_hide_and_keys_hash() {
        let suffixes = vec!["corp.example.".to_owned(), "Internal".to_owned()];
        let plain = NamePrivacy::new(None, &suffixes);
        let a = NamePrivacy::new(Some(b"host a key"), &suffixes);
        let b = NamePrivacy::new(Some(b"host b key"), &suffixes);
        for (name, shown) in [
            ("www.Example.com.", Some("www.Example.com.")),
            ("corp.example", None),
            ("db.corp.example.", None),
            ("notcorp.example", Some("notcorp.example")),
            ("x.internal", None),
            ("internal.example.com", Some("internal.example.com")),
        ] {
            assert_eq!(plain.exported(name).as_deref(), shown, "{name}");
            let ha = a.exported(name);
            assert_eq!(ha.is_some(), shown.is_some(), "{name}");
            if let Some(h) = ha {
                assert!(h.starts_with("h:") && h.len() == 18, "{h}");
                assert!(!h.contains("example"), "{h}");
                assert_eq!(
                    a.exported(&name.to_ascii_uppercase()),
                    Some(h.clone()),
                    "stable, case-blind"
                );
                assert_ne!(
                    b.exported(name),
                    Some(h),
                    "another host's key hashes differently"
                );
            }
        }
        assert_ne!(a.exported("a.example"), a.exported("b.example"));
        assert_eq!(NamePrivacy::hide_all().exported("a.example"), None);
        assert!(
            !format!("{a:?}").contains("key\""),
            "the key is not printed"
        );
    }
}
