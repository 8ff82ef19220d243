//! DNS lookups from the DNS probe: queries, failures, cache hits and latency.

pub mod aggregate;
pub mod collect;
pub mod config;
pub mod mapping;
pub mod matcher;
pub mod privacy;
pub mod probe;
pub mod spans;
pub mod wire;

use sonde_semconv::attr::loss_reason;

use crate::family::dns::collect::{monotonic_now_ns, DnsCollector, DnsSettings};
use crate::family::{Family, ProbesConfig, Started};
use crate::probe::{LoadError, ProgramSpec};
use crate::source::{Output, Source};

#[derive(Debug)]
pub struct DnsSource {
    pub collector: DnsCollector,
    /// Whether the lookups left unknown by lost records were reported in the log.
    pub unknown_warned: bool,
}

impl Source for DnsSource {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn collect(&mut self, _start: u64, out: &mut Output) {
        let (metrics, counts) =
            self.collector
                .collect(monotonic_now_ns(), crate::unix_nanos(), mapping::metrics);
        out.metrics.extend(metrics);
        match counts {
            Ok(c) => {
                tracing::debug!(
                    packets = c.packets,
                    unparsed = c.unparsed,
                    lost = c.lost_ringbuf,
                    lost_copy = c.lost_copy,
                    unknown_after_loss = c.matcher.unknown_after_loss,
                    "dns packet counts"
                );
                if c.matcher.unknown_after_loss > 0 && !self.unknown_warned {
                    // Once: the running count is in the debug line above.
                    tracing::warn!(
                        "{} DNS lookups got no response while the probe was losing packet \
                         records (counted in sonde.probe.events.lost for dns), so they are not \
                         reported as timeouts: their response may have been among the lost",
                        c.matcher.unknown_after_loss
                    );
                    self.unknown_warned = true;
                }
                out.lost
                    .push(("dns", loss_reason::RINGBUF_FULL, c.lost_ringbuf));
                out.lost
                    .push(("dns", loss_reason::COPY_FAILED, c.lost_copy));
                // Queries the matcher could not track: its table of open lookups was full.
                out.lost
                    .push(("dns", loss_reason::MAP_FULL, c.matcher.dropped_open));
            }
            Err(e) => tracing::warn!("reading the DNS probe's counters failed: {e}"),
        }
        if let Some(why) = self.collector.ring_failure() {
            for probe in collect::RING_PROBES {
                out.failed.push((probe, why.to_owned()));
            }
        }
    }

    fn stop(&mut self) -> Vec<crate::collect::ring::DrainTask> {
        self.collector.stop().into_iter().collect()
    }
}

/// The question-name policy shared by DNS metrics and spans; loads (or makes) the host's
/// redaction key when names are redacted.
pub fn name_privacy(dns: &config::DnsProbeConfig) -> privacy::NamePrivacy {
    use privacy::NamePrivacy;
    if !dns.redact_names {
        return NamePrivacy::new(None, &dns.never_export_suffixes);
    }
    let key = redaction_key(&dns.redaction_key_file).ok().or_else(|| {
        tracing::warn!(
            "cannot read or make the DNS name redaction key {}: using a key for this run \
             only, so redacted names hash differently after a restart",
            dns.redaction_key_file.display()
        );
        random_key()
    });
    let Some(key) = key else {
        // No key at all: hide every name rather than export it in clear.
        tracing::error!("no random source for the DNS name redaction key: names are not exported");
        return NamePrivacy::hide_all();
    };
    NamePrivacy::new(Some(&key), &dns.never_export_suffixes)
}

/// The DNS family: queries and responses seen by cgroup_skb programs on the cgroup v2
/// root.
#[derive(Debug)]
pub struct Dns;

impl Family for Dns {
    fn kind(&self) -> sonde_probes::Family {
        sonde_probes::Family::Dns
    }

    fn programs(&self) -> &'static [ProgramSpec] {
        probe::PROGRAMS
    }

    fn needs(&self) -> &'static [crate::probe::needs::Need] {
        probe::NEEDS
    }

    fn enabled(&self, config: &ProbesConfig) -> bool {
        config.dns.enabled
    }

    fn start(
        &self,
        config: &ProbesConfig,
        series: crate::aggregate::bounded::SeriesPolicy,
        spans: Option<&crate::spans::Spans>,
        processes: &crate::cgroup::Attribution,
    ) -> Result<Started, LoadError> {
        let settings = DnsSettings {
            ports: config.dns.ports.clone(),
            timeout: config.dns.timeout,
            names: config.dns.question_names,
            privacy: name_privacy(&config.dns),
            series: series.with_limit(collect::SERIES_LIMIT),
            spans: spans.and_then(|s| {
                Some(collect::DnsSpans {
                    sink: s.sink.clone(),
                    rule: spans::DnsSpanRule {
                        slower_than_ns: u64::try_from(s.config.dns_slower_than?.as_nanos())
                            .unwrap_or(u64::MAX),
                        timeout_ns: u64::try_from(config.dns.timeout.as_nanos())
                            .unwrap_or(u64::MAX),
                    },
                })
            }),
            processes: processes.clone(),
        };
        let mut loaded = self.load()?;
        let source =
            super::collector("DNS", DnsCollector::start(&mut loaded, &settings)).map(|collector| {
                DnsSource {
                    collector,
                    unknown_warned: false,
                }
            });
        Ok(Started::new(loaded, source))
    }
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
