//! DNS lookups from the DNS probe: queries, failures, cache hits and latency.

pub mod aggregate;
pub mod collect;
pub mod mapping;
pub mod matcher;
pub mod privacy;
pub mod probe;
pub mod wire;

use sonde_semconv::attr::loss_reason;

use crate::family::dns::collect::{monotonic_now_ns, DnsCollector, DnsSettings};
use crate::source::{Output, Source};

#[derive(Debug)]
pub struct DnsSource {
    pub collector: DnsCollector,
}

impl Source for DnsSource {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn collect(&mut self, start: u64, out: &mut Output) {
        let metrics = self
            .collector
            .with_stats(monotonic_now_ns(), |s| mapping::metrics(s, start));
        out.metrics.extend(metrics);
        match self.collector.counts() {
            Ok(c) => {
                tracing::debug!(
                    packets = c.packets,
                    unparsed = c.unparsed,
                    lost = c.lost_ringbuf,
                    "dns packet counts"
                );
                out.lost
                    .push(("dns", loss_reason::RINGBUF_FULL, c.lost_ringbuf));
                // Queries the matcher could not track: its table of open lookups was full.
                out.lost
                    .push(("dns", loss_reason::MAP_FULL, c.matcher.dropped_open));
            }
            Err(e) => tracing::warn!("reading the DNS probe's counters failed: {e}"),
        }
    }
}

/// Loads and attaches the DNS family and starts its collector. The family comes back
/// even when the collector fails (its reports say what attached); the source is then
/// `None` and the failure is logged.
pub fn load(
    settings: &DnsSettings,
) -> Result<(crate::probe::LoadedFamily, Option<DnsSource>), crate::probe::LoadError> {
    let mut loaded = crate::probe::load_family(
        sonde_probes::Family::Dns,
        crate::family::dns::probe::PROGRAMS,
        true,
    )?;
    let source = match DnsCollector::start(&mut loaded, settings) {
        Ok(collector) => Some(DnsSource { collector }),
        Err(e) => {
            tracing::error!("DNS probe collector failed: {e}");
            None
        }
    };
    Ok((loaded, source))
}

/// The host's key for redacted question names: read from `path`, or made (32 random bytes,
/// mode 0600) on first use, so hashes stay stable across restarts. `None` when neither
/// works; the caller then uses a key for this run only and says so.
pub fn redaction_key(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read(path) {
        Ok(k) if k.len() >= 16 => return Ok(k),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} holds fewer than 16 bytes: remove it to have a new key made",
                path.display()
            )))
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let key =
        random_key().ok_or_else(|| std::io::Error::other("the kernel's random source failed"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(&key)?;
    Ok(key)
}

/// 32 bytes from the kernel's random source (getrandom(2)).
pub fn random_key() -> Option<Vec<u8>> {
    use ring::rand::SecureRandom;
    let mut key = vec![0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut key).ok()?;
    Some(key)
}
